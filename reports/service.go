package reports

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"

	"github.com/agentrail/agentrail/reports/retention"
)

// Store is where the reports read and record: a ClickHouse connection and
// the agentrail database.
type Store struct {
	Conn     driver.Conn
	Database string
}

// Clock is the service's time: Now, and a channel that fires after d.
// Tests inject one that jumps ahead instead of waiting.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Option adjusts a Service.
type Option func(*Service)

// WithClock replaces the real clock.
func WithClock(c Clock) Option { return func(s *Service) { s.clock = c } }

// WithSender replaces the SMTP sender built from the config.
func WithSender(snd Sender) Option { return func(s *Service) { s.sender = snd } }

// WithRetentionOptions passes options to the retention job's Enforcer
// (retention.WithLedger records its runs in the tamper-evidence chain).
func WithRetentionOptions(opts ...retention.Option) Option {
	return func(s *Service) { s.retOpts = append(s.retOpts, opts...) }
}

// Service sends the scheduled reports and runs the retention job.
type Service struct {
	cfg     Config
	st      Store
	log     *slog.Logger
	clock   Clock
	sender  Sender
	builder *Builder
	ret     *retention.Enforcer
	retOpts []retention.Option
	from    string
	domain  string
	m       serviceMetrics

	closeOnce sync.Once
}

type serviceMetrics struct {
	runs       *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	build      prometheus.Histogram
	lastSent   prometheus.Gauge
}

// maxSleep bounds how long the loop sleeps, so registry changes (a new
// team, a new schedule) are picked up within the hour.
const maxSleep = time.Hour

// New returns a Service. cfg must have passed Validate; mail needs
// cfg.SMTP.Host unless WithSender is given.
func New(cfg Config, st Store, reg prometheus.Registerer, log *slog.Logger, opts ...Option) (*Service, error) {
	if st.Conn == nil || st.Database == "" {
		return nil, errors.New("reports: a ClickHouse connection and database are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := loadZone(cfg.TimeZone); err != nil {
		return nil, fmt.Errorf("reports: reports.timezone: %w", err)
	}
	s := &Service{cfg: cfg, st: st, log: log, clock: realClock{}, from: cfg.SMTP.From, domain: fromDomain(cfg.SMTP.From)}
	for _, o := range opts {
		o(s)
	}
	if s.sender == nil {
		snd, err := NewSMTPSender(cfg.SMTP)
		if err != nil {
			return nil, err
		}
		s.sender = snd
	}
	s.builder = NewBuilder(cfg, st.Conn, st.Database, s.clock.Now)
	s.m = serviceMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentrail_reports_runs_total",
			Help: "Report runs by trigger and outcome."}, []string{"trigger", "status"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentrail_reports_deliveries_total",
			Help: "Report deliveries per recipient, by outcome."}, []string{"status"}),
		build: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agentrail_reports_build_seconds",
			Help: "Time to build and render one team's weekly report.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 10)}),
		lastSent: prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentrail_reports_last_sent_timestamp_seconds",
			Help: "When a report was last delivered."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.m.runs, s.m.deliveries, s.m.build, s.m.lastSent} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("reports: register metrics: %w", err)
			}
		}
	}
	if cfg.Retention.Schedule != "off" {
		enf, err := retention.New(cfg.Retention, st.Conn, st.Database, reg, log, append([]retention.Option{retention.WithClock(s.clock.Now)}, s.retOpts...)...)
		if err != nil {
			return nil, err
		}
		s.ret = enf
	}
	return s, nil
}

// Close ends the service; Run has returned by then (it returns when its
// ctx ends). Idempotent.
func (s *Service) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.log.Info("reports: closed") })
	return nil
}

// job is one schedule the loop follows.
type job struct {
	name  string // team name, or "retention"
	sched cron.Schedule
	team  *TeamInfo
}

// jobs reads the registered teams with recipients, and the retention
// schedule.
func (s *Service) jobs(ctx context.Context) ([]job, error) {
	teams, err := s.builder.Teams(ctx, time.Time{}, time.Time{})
	if err != nil {
		return nil, err
	}
	var out []job
	for i := range teams {
		t := teams[i]
		if len(t.Recipients) == 0 {
			continue
		}
		sched, err := cron.ParseStandard("CRON_TZ=" + t.Location.String() + " " + t.Schedule)
		if err != nil {
			s.log.Error("reports: team schedule does not parse; team skipped", "team", t.Name, "schedule", t.Schedule, "err", err)
			continue
		}
		out = append(out, job{name: t.Name, sched: sched, team: &t})
	}
	if s.ret != nil {
		sched, err := cron.ParseStandard(s.cfg.Retention.Schedule)
		if err != nil {
			return nil, fmt.Errorf("reports: reports.retention.schedule: %w", err)
		}
		out = append(out, job{name: "retention", sched: sched})
	}
	return out, nil
}

// lastFire is the latest instant in (after, upTo] the schedule fires at,
// or zero.
func lastFire(sched cron.Schedule, after, upTo time.Time) time.Time {
	var last time.Time
	for t := sched.Next(after); !t.IsZero() && !t.After(upTo); t = sched.Next(t) {
		last = t
	}
	return last
}

// Run follows the schedules until ctx ends: each team's report at the
// team's cron times (in its zone) for the week that just ended there, and
// retention at its own. When it starts it first catches up on what fell due
// in the last catch_up while it was not running; deliveries already made are
// not repeated.
func (s *Service) Run(ctx context.Context) error {
	start := s.clock.Now()
	checked := start.Add(-s.cfg.CatchUp)
	var jobs []job
	for {
		now := s.clock.Now()
		if js, err := s.jobs(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Error("reports: read schedules; keeping the previous ones", "err", err)
		} else {
			jobs = js
		}
		for _, j := range jobs {
			fire := lastFire(j.sched, checked, now)
			if fire.IsZero() {
				continue
			}
			trigger := "schedule"
			if fire.Before(start) {
				trigger = "catch_up"
			}
			if j.team == nil {
				if trigger == "catch_up" && s.retentionRanSince(ctx, fire) {
					continue
				}
				if _, err := s.ret.Enforce(ctx, false, trigger); err != nil {
					s.log.Error("reports: retention run failed", "err", err)
				}
				continue
			}
			week := LastComplete(fire, j.team.Location)
			if _, err := s.SendWeek(ctx, *j.team, week, trigger, false); err != nil {
				s.log.Error("reports: weekly report not delivered", "team", j.name, "week", week.String(), "err", err)
			}
		}
		checked = now
		next := now.Add(maxSleep)
		for _, j := range jobs {
			if t := j.sched.Next(now); !t.IsZero() && t.Before(next) {
				next = t
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.clock.After(next.Sub(now)):
		}
	}
}

// retentionRanSince reports whether a retention run succeeded at or after
// t, so a restart does not repeat the day's run.
func (s *Service) retentionRanSince(ctx context.Context, t time.Time) bool {
	var n uint64
	if err := s.st.Conn.QueryRow(ctx, `SELECT count() FROM `+s.st.Database+`.retention_runs FINAL
		WHERE status = 'ok' AND started_at >= ?`, ts(t)).Scan(&n); err != nil {
		s.log.Warn("reports: read retention runs; running retention", "err", err)
		return false
	}
	return n > 0
}

// Delivery is the outcome of one SendWeek.
type Delivery struct {
	RunID      string
	Team, Week string
	// Partial: the week had not ended when it was sent; the report covers
	// it up to CoversUntil, and the final report is still to be sent.
	Partial     bool
	CoversUntil time.Time
	MessageID   string
	Sent        []string // delivered now
	Already     []string // delivered (or possibly delivered) before
	Unconfirmed []string // found interrupted now: marked, not resent
	Attempts    int
}

// prior classifies each recipient's earlier final deliveries of the week
// (partial ones never stand in for the final report): "sent";
// "unconfirmed" (marked so by an earlier run); "interrupted" (an attempt
// with no recorded outcome, not marked yet); or "" (never, or only failed
// attempts: safe to send).
func (s *Service) prior(ctx context.Context, team, week string) (map[string]string, error) {
	rows, err := s.st.Conn.Query(ctx, `SELECT recipient, run_id, attempt, groupUniqArray(toString(status))
		FROM `+s.st.Database+`.report_deliveries WHERE team = ? AND week = ? AND coverage = 'final'
		GROUP BY recipient, run_id, attempt`, team, week)
	if err != nil {
		return nil, fmt.Errorf("reports: read deliveries of %s %s: %w", team, week, err)
	}
	defer rows.Close()
	type flags struct{ sent, marked, interrupted bool }
	per := map[string]*flags{}
	for rows.Next() {
		var rcpt, run string
		var attempt uint8
		var st []string
		if err := rows.Scan(&rcpt, &run, &attempt, &st); err != nil {
			return nil, fmt.Errorf("reports: read deliveries of %s %s: %w", team, week, err)
		}
		has := map[string]bool{}
		for _, v := range st {
			has[v] = true
		}
		rcpt = strings.ToLower(rcpt)
		f := per[rcpt]
		if f == nil {
			f = &flags{}
			per[rcpt] = f
		}
		f.sent = f.sent || has["sent"]
		f.marked = f.marked || has["unconfirmed"]
		f.interrupted = f.interrupted || (has["sending"] && !has["sent"] && !has["failed"])
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reports: read deliveries of %s %s: %w", team, week, err)
	}
	out := map[string]string{}
	for r, f := range per {
		switch {
		case f.sent:
			out[r] = "sent"
		case f.marked:
			out[r] = "unconfirmed"
		case f.interrupted:
			out[r] = "interrupted"
		}
	}
	return out, nil
}

func (s *Service) recordDeliveries(ctx context.Context, team, week, run string, attempt int, status, coverage, msgID, reason string, rcpts []string) error {
	b, err := s.st.Conn.PrepareBatch(ctx, `INSERT INTO `+s.st.Database+`.report_deliveries
		(team, week, recipient, run_id, attempt, status, coverage, message_id, error, at)`)
	if err != nil {
		return fmt.Errorf("reports: record deliveries: %w", err)
	}
	at := s.clock.Now().UTC()
	for _, r := range rcpts {
		if err := b.Append(team, week, r, run, uint8(attempt), status, coverage, msgID, reason, at); err != nil {
			return fmt.Errorf("reports: record deliveries: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("reports: record deliveries: %w", err)
	}
	return nil
}

func (s *Service) recordRun(ctx context.Context, run, trigger, team, week, coverage string, started time.Time, status, reason string, rcpts, sent int, revision uint8) error {
	var finished *time.Time
	if revision == 2 {
		f := s.clock.Now().UTC()
		finished = &f
	}
	if err := s.st.Conn.Exec(ctx, `INSERT INTO `+s.st.Database+`.report_runs
		(run_id, trigger, team, week, started_at, finished_at, status, coverage, reason, recipients, sent, revision)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, run, trigger, team, week, started, finished, status, coverage, reason,
		uint16(rcpts), uint16(sent), revision); err != nil {
		return fmt.Errorf("reports: record run %s: %w", run, err)
	}
	return nil
}

// SendWeek builds team's report for week and mails it to the team's
// recipients that have not had it yet (force: to all of them), retrying
// with backoff. The run and every attempt are recorded.
//
// A week that has not ended in the team's zone is sent as a partial report
// to every recipient, marked so in the mail and recorded with coverage
// "partial": it is a snapshot, not the week's report, so it neither counts
// as the week delivered nor is held back by an earlier snapshot.
func (s *Service) SendWeek(ctx context.Context, team TeamInfo, week Week, trigger string, force bool) (Delivery, error) {
	started := s.clock.Now().UTC()
	d := Delivery{RunID: newID("rep", started), Team: team.Name, Week: week.String(), Sent: []string{}, Already: []string{}, Unconfirmed: []string{}}
	_, end := week.Bounds(team.Location)
	coverage := "final"
	if started.Before(end) {
		coverage, d.Partial = "partial", true
	}
	finish := func(status, reason string, err error) (Delivery, error) {
		// Recorded even when ctx ended: a run is never left "running"
		// because the process was told to stop.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if rerr := s.recordRun(rctx, d.RunID, trigger, d.Team, d.Week, coverage, started, status, reason, len(team.Recipients), len(d.Sent), 2); rerr != nil && err == nil {
			err = rerr
		}
		s.m.runs.WithLabelValues(trigger, status).Inc()
		return d, err
	}
	if err := s.recordRun(ctx, d.RunID, trigger, d.Team, d.Week, coverage, started, "running", "", len(team.Recipients), 0, 1); err != nil {
		s.m.runs.WithLabelValues(trigger, "failed").Inc()
		return d, err
	}
	if len(team.Recipients) == 0 {
		s.log.Info("reports: team has no recipients", "team", team.Name, "week", d.Week)
		return finish("skipped", "no recipients", nil)
	}
	prior := map[string]string{}
	if !d.Partial {
		var err error
		if prior, err = s.prior(ctx, d.Team, d.Week); err != nil {
			return finish("failed", err.Error(), err)
		}
	}
	var to, interrupted []string
	for _, r := range team.Recipients {
		switch st := prior[strings.ToLower(r)]; {
		case force || st == "":
			to = append(to, r)
		case st == "interrupted":
			d.Already = append(d.Already, r)
			interrupted = append(interrupted, r)
		default: // sent, or unconfirmed before
			d.Already = append(d.Already, r)
		}
	}
	if len(interrupted) > 0 {
		// At most once: a send that may have reached the server is not
		// repeated. The record says so, for an operator to check the
		// mail server's log by Message-ID and force a resend if needed.
		if err := s.recordDeliveries(ctx, d.Team, d.Week, d.RunID, 0, "unconfirmed", coverage, "",
			"an earlier attempt has no recorded outcome (interrupted between send and record); not resent", interrupted); err != nil {
			return finish("failed", err.Error(), err)
		}
		d.Unconfirmed = interrupted
		s.m.deliveries.WithLabelValues("unconfirmed").Add(float64(len(interrupted)))
		s.log.Warn("reports: delivery unconfirmed, not resent", "team", d.Team, "week", d.Week, "recipients", interrupted)
	}
	if len(to) == 0 {
		s.m.deliveries.WithLabelValues("skipped").Add(float64(len(d.Already)))
		return finish("skipped", "already delivered to every recipient", nil)
	}

	t0 := time.Now()
	rep, err := s.builder.Build(ctx, team, week)
	if err != nil {
		return finish("failed", err.Error(), err)
	}
	rd, err := Render(rep, s.domain)
	if err != nil {
		return finish("failed", err.Error(), err)
	}
	s.m.build.Observe(time.Since(t0).Seconds())
	var partialUntil time.Time
	if d.Partial {
		partialUntil = rep.CoversUntil
	}
	d.CoversUntil = rep.CoversUntil
	d.MessageID = MessageID(d.Team, d.Week, to, s.domain, partialUntil)
	msg, err := Message(rd, s.from, to, d.MessageID, s.clock.Now())
	if err != nil {
		return finish("failed", err.Error(), err)
	}
	var lastErr error
	for attempt := 1; attempt <= s.cfg.Retry.Attempts; attempt++ {
		d.Attempts = attempt
		if err := s.recordDeliveries(ctx, d.Team, d.Week, d.RunID, attempt, "sending", coverage, d.MessageID, "", to); err != nil {
			return finish("failed", err.Error(), err)
		}
		sendErr := s.sender.Send(ctx, msg)
		if sendErr == nil {
			if err := s.recordDeliveries(ctx, d.Team, d.Week, d.RunID, attempt, "sent", coverage, d.MessageID, "", to); err != nil {
				// Sent but not recorded: the next run finds "sending" and
				// marks it unconfirmed rather than sending again.
				return finish("failed", err.Error(), err)
			}
			d.Sent = to
			s.m.deliveries.WithLabelValues("sent").Add(float64(len(to)))
			s.m.lastSent.Set(float64(s.clock.Now().Unix()))
			s.log.Info("reports: weekly report sent", "team", d.Team, "week", d.Week, "coverage", coverage, "recipients", to,
				"attempt", attempt, "message_id", d.MessageID, "trigger", trigger)
			return finish("ok", "", nil)
		}
		lastErr = sendErr
		reason := sendErr.Error()
		if err := s.recordDeliveries(ctx, d.Team, d.Week, d.RunID, attempt, "failed", coverage, d.MessageID, reason, to); err != nil {
			return finish("failed", err.Error(), errors.Join(sendErr, err))
		}
		s.m.deliveries.WithLabelValues("failed").Add(float64(len(to)))
		if attempt == s.cfg.Retry.Attempts {
			break
		}
		wait := s.cfg.Retry.backoff(attempt)
		s.log.Warn("reports: send failed; retrying", "team", d.Team, "week", d.Week, "attempt", attempt, "retry_in", wait, "err", sendErr)
		select {
		case <-ctx.Done():
			return finish("failed", "stopped while waiting to retry: "+reason, ctx.Err())
		case <-s.clock.After(wait):
		}
	}
	return finish("failed", lastErr.Error(), lastErr)
}

// Team returns one team's settings as registered now.
func (s *Service) Team(ctx context.Context, name string) (TeamInfo, error) {
	return s.builder.Team(ctx, name)
}

func newID(prefix string, now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}
