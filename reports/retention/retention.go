// Package retention enforces agentrail's tier-based retention on the events
// table, honours legal holds, and records every run.
//
// Events are partitioned by (tier, week) for tier 1 and (tier, month) for
// tiers 2 and 3. A partition expires when its whole range is older than its
// tier's retention. An expired partition without held events is dropped
// (ALTER TABLE ... DROP PARTITION); one with held events is rewritten to
// hold only them (the held rows are copied to a staging table and swapped in
// with REPLACE PARTITION, one atomic step), so v_events keeps showing each
// held event exactly once, in place. Tier 1 partitions older than
// tier1_full_fields keep metadata only: the same rewrite clears their
// rationale, parameters, context, error_message and comment (held events keep
// theirs). Nothing is deleted or updated row by row: no mutations, whose
// background scheduling would also make a run's record lag what it did.
//
// Every run is recorded in retention_runs and, per partition acted on, in
// retention_actions (tier, date range, action, events before, deleted,
// stripped, kept by holds, deleted per team, the holds that kept them). A dry
// run computes the same plan and writes nothing at all.
//
// Metrics:
//
//	agentrail_retention_runs_total{status="ok|failed|dry_run"}
//	agentrail_retention_partitions_total{action="drop|keep_held|held|strip_fields|strip_fields_keep_held"}
//	agentrail_retention_rows_deleted_total{tier}
//	agentrail_retention_rows_held_total{tier}
//	agentrail_retention_last_success_timestamp_seconds
//
// With a ledger (WithLedger), every step is recorded in the tamper-evidence
// chain: the sealed ranges it changes, before and after, so `agentrail
// verify` passes across the run (package ledger).
//
// It deliberately does not touch other tables (dead letters, violations,
// alerts, report records), nor redact fields beyond the tier 1 policy:
// producers redact what must never be stored.
package retention

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/ledger"
)

// Actions on a partition.
const (
	ActionDrop          = "drop"                   // expired, nothing held: the partition is dropped
	ActionKeepHeld      = "keep_held"              // expired: rewritten to hold only held events
	ActionHeld          = "held"                   // expired, every event held: left as it is
	ActionStrip         = "strip_fields"           // tier 1 past full-field age: fields cleared
	ActionStripKeepHeld = "strip_fields_keep_held" // the same, held events keep their fields
)

// StrippedColumns are the fields tier 1 events lose after tier1_full_fields.
var StrippedColumns = []string{"rationale", "parameters", "context", "error_message", "comment"}

// Action is what a run does (or, dry, would do) to one partition.
type Action struct {
	Tier        int
	PartitionID string
	RangeStart  time.Time // the partition's first instant
	RangeEnd    time.Time // its end (exclusive)
	Kind        string
	Rows        uint64            // events in the partition before
	Deleted     uint64            // events removed
	Stripped    uint64            // events whose fields were cleared
	Held        uint64            // events kept (or kept whole) by holds
	ByTeam      map[string]uint64 // events removed per team
	Holds       []string          // ids of the holds that kept events
}

// Run is the outcome of one enforcement.
type Run struct {
	ID        string
	Started   time.Time
	Finished  time.Time
	DryRun    bool
	Policy    string
	Actions   []Action
	Deleted   uint64
	Stripped  uint64
	Held      uint64
	Err       error
	Trigger   string
	HoldCount int // holds active during the run
}

// Enforcer applies the retention policy to one database.
type Enforcer struct {
	cfg  Config
	conn driver.Conn
	db   string
	log  *slog.Logger
	now  func() time.Time
	m    metrics
	led  *ledger.Ledger
}

type metrics struct {
	runs       *prometheus.CounterVec
	partitions *prometheus.CounterVec
	deleted    *prometheus.CounterVec
	held       *prometheus.CounterVec
	lastOK     prometheus.Gauge
}

// Option adjusts an Enforcer.
type Option func(*Enforcer)

// WithClock replaces time.Now (tests use a fixed clock).
func WithClock(now func() time.Time) Option { return func(e *Enforcer) { e.now = now } }

// WithLedger records every step in the tamper-evidence chain.
func WithLedger(l *ledger.Ledger) Option { return func(e *Enforcer) { e.led = l } }

// New returns an Enforcer for database db. cfg must have passed Validate.
func New(cfg Config, conn driver.Conn, db string, reg prometheus.Registerer, log *slog.Logger, opts ...Option) (*Enforcer, error) {
	if conn == nil || db == "" {
		return nil, errors.New("retention: a ClickHouse connection and database are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Enforcer{cfg: cfg, conn: conn, db: db, log: log, now: time.Now}
	for _, o := range opts {
		o(e)
	}
	e.m = metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentrail_retention_runs_total",
			Help: "Retention runs by outcome."}, []string{"status"}),
		partitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentrail_retention_partitions_total",
			Help: "Partitions acted on, by action."}, []string{"action"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentrail_retention_rows_deleted_total",
			Help: "Events deleted by retention, by tier."}, []string{"tier"}),
		held: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentrail_retention_rows_held_total",
			Help: "Expired events kept by legal holds, by tier (per run)."}, []string{"tier"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentrail_retention_last_success_timestamp_seconds",
			Help: "When the last successful retention run finished."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{e.m.runs, e.m.partitions, e.m.deleted, e.m.held, e.m.lastOK} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("retention: register metrics: %w", err)
			}
		}
	}
	return e, nil
}

// partition is one partition of events as system.parts lists it.
type partition struct {
	id         string
	tier       int
	start, end time.Time
}

var partitionIDRE = regexp.MustCompile(`^([0-9]+)-([0-9]{8})$`)

// parsePartition reads "1-20250106": tier 1, the week starting 2025-01-06.
func parsePartition(id string) (partition, bool) {
	m := partitionIDRE.FindStringSubmatch(id)
	if m == nil {
		return partition{}, false
	}
	tier, _ := strconv.Atoi(m[1])
	start, err := time.Parse("20060102", m[2])
	if err != nil || tier < 1 || tier > 3 {
		return partition{}, false
	}
	p := partition{id: id, tier: tier, start: start}
	if tier == 1 {
		p.end = start.AddDate(0, 0, 7)
	} else {
		p.end = start.AddDate(0, 1, 0)
	}
	return p, true
}

// Plan computes what a run would do now, without changing anything.
func (e *Enforcer) Plan(ctx context.Context) ([]Action, error) {
	now := e.now().UTC()
	holds, err := ActiveHolds(ctx, e.conn, e.db, now)
	if err != nil {
		return nil, err
	}
	return e.plan(ctx, now, newHeldSet(holds))
}

func (e *Enforcer) plan(ctx context.Context, now time.Time, held heldSet) ([]Action, error) {
	rows, err := e.conn.Query(ctx, `SELECT DISTINCT partition_id FROM system.parts
		WHERE database = ? AND table = 'events' AND active ORDER BY partition_id`, e.db)
	if err != nil {
		return nil, fmt.Errorf("retention: list partitions: %w", err)
	}
	var parts []partition
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("retention: list partitions: %w", err)
		}
		p, ok := parsePartition(id)
		if !ok {
			// Partitioning changed under us: leave it alone, loudly.
			e.log.Warn("retention: skipping a partition whose id it does not understand", "partition_id", id)
			continue
		}
		parts = append(parts, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("retention: list partitions: %w", err)
	}
	stripBefore := e.cfg.Tier1FullFields.Before(now)
	candidates := map[string]partition{}
	expired := map[string]bool{}
	var ids []string
	for _, p := range parts {
		exp := !p.end.After(e.cfg.Age(p.tier).Before(now))
		strip := p.tier == 1 && !exp && !p.end.After(stripBefore)
		if exp || strip {
			candidates[p.id], expired[p.id] = p, exp
			ids = append(ids, p.id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	// Count every candidate's events (each once, through FINAL) in one
	// scan, and those that would go, per team, in another.
	cond, args := held.expr()
	q := `SELECT _partition_id, count(), countIf(` + cond + `),
			countIf(NOT ` + cond + ` AND (rationale != '' OR length(parameters) > 0 OR length(context) > 0 OR error_message != '' OR comment != '')),
			groupUniqArrayIf(100)(trace_id, has(?, trace_id)), groupUniqArrayIf(100)(toString(agent_id), has(?, agent_id)),
			groupUniqArrayIf(100)(toString(team), has(?, toString(team)))
		FROM ` + e.db + `.events FINAL WHERE has(?, _partition_id) GROUP BY _partition_id`
	qargs := append(append(append([]any{}, args...), args...), held.traces, held.agents, held.teams, ids)
	rows, err = e.conn.Query(ctx, q, qargs...)
	if err != nil {
		return nil, fmt.Errorf("retention: inspect partitions: %w", err)
	}
	var plan []Action
	for rows.Next() {
		var id string
		var unstripped uint64
		var hTraces, hAgents, hTeams []string
		var a Action
		if err := rows.Scan(&id, &a.Rows, &a.Held, &unstripped, &hTraces, &hAgents, &hTeams); err != nil {
			rows.Close()
			return nil, fmt.Errorf("retention: inspect partitions: %w", err)
		}
		p := candidates[id]
		a.Tier, a.PartitionID, a.RangeStart, a.RangeEnd, a.ByTeam = p.tier, id, p.start, p.end, map[string]uint64{}
		a.Holds = held.ids(hTraces, hAgents, hTeams)
		if a.Holds == nil {
			a.Holds = []string{}
		}
		sort.Strings(a.Holds)
		switch {
		case a.Rows == 0:
			continue
		case expired[id] && a.Held == 0:
			a.Kind, a.Deleted = ActionDrop, a.Rows
		case expired[id] && a.Held == a.Rows:
			a.Kind = ActionHeld
		case expired[id]:
			a.Kind, a.Deleted = ActionKeepHeld, a.Rows-a.Held
		case unstripped == 0:
			continue // already metadata only
		case a.Held == 0:
			a.Kind, a.Stripped = ActionStrip, unstripped
		default:
			a.Kind, a.Stripped = ActionStripKeepHeld, unstripped
		}
		plan = append(plan, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("retention: inspect partitions: %w", err)
	}
	sort.Slice(plan, func(i, j int) bool {
		if plan[i].Tier != plan[j].Tier {
			return plan[i].Tier < plan[j].Tier
		}
		return plan[i].RangeStart.Before(plan[j].RangeStart)
	})
	var deleting []string
	byID := map[string]*Action{}
	for i := range plan {
		if plan[i].Deleted > 0 {
			deleting = append(deleting, plan[i].PartitionID)
			byID[plan[i].PartitionID] = &plan[i]
		}
	}
	if len(deleting) == 0 {
		return plan, nil
	}
	rows, err = e.conn.Query(ctx, `SELECT _partition_id, toString(team), count() FROM `+e.db+`.events FINAL
		WHERE has(?, _partition_id) AND NOT `+cond+` GROUP BY _partition_id, team`, append([]any{deleting}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("retention: count deletions per team: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, team string
		var n uint64
		if err := rows.Scan(&id, &team, &n); err != nil {
			return nil, fmt.Errorf("retention: count deletions per team: %w", err)
		}
		byID[id].ByTeam[team] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("retention: count deletions per team: %w", err)
	}
	return plan, nil
}

// Enforce runs the policy once. With dryRun it returns the plan and writes
// nothing (not even a run record). Otherwise it records the run, then acts
// partition by partition, recording each action before and after it. trigger
// says who asked ("cli", "schedule").
func (e *Enforcer) Enforce(ctx context.Context, dryRun bool, trigger string) (Run, error) {
	now := e.now().UTC()
	run := Run{ID: newRunID(now), Started: now, DryRun: dryRun, Policy: e.cfg.Policy(), Trigger: trigger}
	holds, err := ActiveHolds(ctx, e.conn, e.db, now)
	if err != nil {
		e.m.runs.WithLabelValues("failed").Inc()
		return run, err
	}
	run.HoldCount = len(holds)
	held := newHeldSet(holds)
	plan, err := e.plan(ctx, now, held)
	if err != nil {
		e.m.runs.WithLabelValues("failed").Inc()
		return run, err
	}
	if dryRun {
		run.Actions = plan
		run.sum()
		run.Finished = e.now().UTC()
		e.m.runs.WithLabelValues("dry_run").Inc()
		return run, nil
	}
	if err := e.recordRun(ctx, run, 1); err != nil {
		e.m.runs.WithLabelValues("failed").Inc()
		return run, err
	}
	stage := e.db + ".retention_stage"
	// A crashed run may have left a stage table, possibly of an older
	// events schema: start from a fresh one.
	if err := e.conn.Exec(ctx, "DROP TABLE IF EXISTS "+stage+" SYNC"); err != nil {
		run.Err = fmt.Errorf("retention: drop stale stage table: %w", err)
	}
	// Every planned action is recorded before any is taken, so a crash
	// leaves "started" rows for what may or may not have happened.
	if run.Err == nil {
		run.Err = e.recordActions(ctx, run.ID, plan, "started", 1)
	}
	staged := false
	for i := 0; i < len(plan) && run.Err == nil; {
		// Drops (and partitions left whole for their holds) go in batches,
		// one ALTER for many partitions; rewrites one at a time.
		step := plan[i : i+1]
		if k := plan[i].Kind; k == ActionDrop || k == ActionHeld {
			j := i
			for j < len(plan) && j-i < 64 && (plan[j].Kind == ActionDrop || plan[j].Kind == ActionHeld) {
				j++
			}
			step = plan[i:j]
		} else if !staged {
			if err := e.conn.Exec(ctx, "CREATE TABLE "+stage+" AS "+e.db+".events"); err != nil {
				run.Err = fmt.Errorf("retention: create stage table: %w", err)
				break
			}
			staged = true
		}
		i += len(step)
		if err := e.applyRecorded(ctx, run.ID, step, held, stage); err != nil {
			run.Err = err
			_ = e.recordActions(ctx, run.ID, step, "failed", 2)
			break
		}
		if err := e.recordActions(ctx, run.ID, step, "done", 2); err != nil {
			run.Err = err
			break
		}
		for _, a := range step {
			run.Actions = append(run.Actions, a)
			e.m.partitions.WithLabelValues(a.Kind).Inc()
			e.m.deleted.WithLabelValues(strconv.Itoa(a.Tier)).Add(float64(a.Deleted))
			e.m.held.WithLabelValues(strconv.Itoa(a.Tier)).Add(float64(a.Held))
			e.log.Debug("retention", "run", run.ID, "tier", a.Tier, "partition", a.PartitionID, "action", a.Kind,
				"from", a.RangeStart.Format(time.DateOnly), "to", a.RangeEnd.Format(time.DateOnly),
				"deleted", a.Deleted, "stripped", a.Stripped, "held", a.Held)
		}
	}
	if staged {
		if err := e.conn.Exec(ctx, "DROP TABLE IF EXISTS "+stage+" SYNC"); err != nil && run.Err == nil {
			run.Err = fmt.Errorf("retention: drop stage table: %w", err)
		}
	}
	run.sum()
	run.Finished = e.now().UTC()
	// The final record is written even when ctx ended: a run must not look
	// "running" forever because the process was asked to stop.
	recCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := e.recordRun(recCtx, run, 2); err != nil && run.Err == nil {
		run.Err = err
	}
	if run.Err != nil {
		e.m.runs.WithLabelValues("failed").Inc()
		e.log.Error("retention run failed", "run", run.ID, "partitions", len(run.Actions), "err", run.Err)
		return run, run.Err
	}
	e.log.Info("retention run", "run", run.ID, "partitions", len(run.Actions), "deleted", run.Deleted,
		"stripped", run.Stripped, "held", run.Held, "holds", run.HoldCount, "policy", run.Policy)
	e.m.runs.WithLabelValues("ok").Inc()
	e.m.lastOK.Set(float64(run.Finished.Unix()))
	return run, nil
}

func (r *Run) sum() {
	r.Deleted, r.Stripped, r.Held = 0, 0, 0
	for _, a := range r.Actions {
		r.Deleted += a.Deleted
		r.Stripped += a.Stripped
		r.Held += a.Held
	}
}

// applyRecorded applies a step and, with a ledger, records in the chain what
// it changed (even when it failed half-way).
func (e *Enforcer) applyRecorded(ctx context.Context, runID string, step []Action, held heldSet, stage string) error {
	var ids, actions []string
	for _, a := range step {
		if a.Kind != ActionHeld {
			ids = append(ids, a.PartitionID)
			actions = append(actions, a.Kind+" "+a.PartitionID)
		}
	}
	if e.led == nil || len(ids) == 0 {
		return e.apply(ctx, step, held, stage)
	}
	change, err := e.led.BeginChange(ctx, ids)
	if err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	err = e.apply(ctx, step, held, stage)
	return errors.Join(err, change.Commit(ctx, runID, actions))
}

// apply carries out one step: a batch of drops, or one rewrite.
func (e *Enforcer) apply(ctx context.Context, step []Action, held heldSet, stage string) error {
	events := e.db + ".events"
	var drops []string
	for _, a := range step {
		if a.Kind == ActionDrop {
			// Partition ids matched ^[0-9]+-[0-9]{8}$: safe to inline.
			drops = append(drops, "DROP PARTITION ID '"+a.PartitionID+"'")
		}
	}
	if len(drops) > 0 {
		if err := e.conn.Exec(ctx, "ALTER TABLE "+events+" "+strings.Join(drops, ", ")); err != nil {
			return fmt.Errorf("retention: drop %d partitions from %s: %w", len(drops), step[0].PartitionID, err)
		}
	}
	if len(step) != 1 || step[0].Kind == ActionDrop || step[0].Kind == ActionHeld {
		return nil
	}
	a := step[0]
	pid := "'" + a.PartitionID + "'"
	cond, args := held.expr()
	switch a.Kind {
	case ActionKeepHeld, ActionStrip, ActionStripKeepHeld:
		if err := e.conn.Exec(ctx, "TRUNCATE TABLE "+stage); err != nil {
			return fmt.Errorf("retention: empty stage table: %w", err)
		}
		var insert string
		if a.Kind == ActionKeepHeld {
			insert = "INSERT INTO " + stage + " SELECT * FROM " + events + " WHERE _partition_id = " + pid + " AND " + cond
		} else {
			// Every event stays; only the unheld lose their fields.
			var repl []string
			var rargs []any
			for _, c := range StrippedColumns {
				empty := "''"
				if c == "parameters" || c == "context" {
					empty = "CAST(map(), 'Map(String, String)')"
				}
				repl = append(repl, "if("+cond+", "+c+", "+empty+") AS "+c)
				rargs = append(rargs, args...)
			}
			args = rargs
			insert = "INSERT INTO " + stage + " SELECT * REPLACE (" + strings.Join(repl, ", ") + ") FROM " + events + " WHERE _partition_id = " + pid
		}
		// The stage inherits events' insert deduplication; a rewrite must
		// never be mistaken for a repeated block.
		ictx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_deduplicate": 0}))
		if err := e.conn.Exec(ictx, insert, args...); err != nil {
			return fmt.Errorf("retention: stage held events of partition %s: %w", a.PartitionID, err)
		}
		// One atomic swap: readers see the old partition or the new one.
		if err := e.conn.Exec(ctx, "ALTER TABLE "+events+" REPLACE PARTITION ID "+pid+" FROM "+stage); err != nil {
			return fmt.Errorf("retention: replace partition %s: %w", a.PartitionID, err)
		}
		return nil
	}
	return fmt.Errorf("retention: unknown action %q", a.Kind)
}

func (e *Enforcer) recordRun(ctx context.Context, r Run, revision uint8) error {
	status, errMsg := "running", ""
	var finished *time.Time
	if revision == 2 {
		status = "ok"
		if r.Err != nil {
			status, errMsg = "failed", r.Err.Error()
		}
		f := r.Finished
		finished = &f
	}
	if err := e.conn.Exec(ctx, `INSERT INTO `+e.db+`.retention_runs (run_id, started_at, finished_at, status, error, policy, trigger,
			partitions, rows_deleted, rows_stripped, rows_held, revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Started, finished, status, errMsg, r.Policy, r.Trigger, uint32(len(r.Actions)), r.Deleted, r.Stripped, r.Held, revision); err != nil {
		return fmt.Errorf("retention: record run %s: %w", r.ID, err)
	}
	return nil
}

func (e *Enforcer) recordActions(ctx context.Context, runID string, as []Action, status string, revision uint8) error {
	if len(as) == 0 {
		return nil
	}
	b, err := e.conn.PrepareBatch(ctx, `INSERT INTO `+e.db+`.retention_actions (run_id, tier, partition_id, range_start, range_end,
		action, status, rows_before, rows_deleted, rows_stripped, rows_held, deleted_by_team, holds, at, revision)`)
	if err != nil {
		return fmt.Errorf("retention: record actions: %w", err)
	}
	at := e.now().UTC()
	for _, a := range as {
		byTeam, holds := a.ByTeam, a.Holds
		if byTeam == nil {
			byTeam = map[string]uint64{}
		}
		if holds == nil {
			holds = []string{}
		}
		if err := b.Append(runID, uint8(a.Tier), a.PartitionID, a.RangeStart, a.RangeEnd, a.Kind, status,
			a.Rows, a.Deleted, a.Stripped, a.Held, byTeam, holds, at, revision); err != nil {
			return fmt.Errorf("retention: record actions: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("retention: record actions: %w", err)
	}
	return nil
}

func newRunID(now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "ret-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}
