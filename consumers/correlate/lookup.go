package correlate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/schemas"
)

// ErrTraceNotFound is returned by Lookup for a trace with no events.
var ErrTraceNotFound = errors.New("correlate: trace not found")

// Report is one trace as `agentrail trace` shows it: its record and state,
// its events in time order, and its violations.
type Report struct {
	Trace     Trace     `json:"trace"`
	State     string    `json:"state"`
	AbandonAt time.Time `json:"abandon_at"`
	Events    []Step    `json:"events"`
	// Violations are those the correlator emitted (the violations table).
	Violations []Violation `json:"violations"`
	// Unreported are violations the trace's events show that the correlator
	// has not emitted (yet): waiting to settle, or the correlator is behind.
	// Stale policy versions are not looked for here.
	Unreported []Violation `json:"unreported,omitempty"`
	// QueryMS is how long the lookup took.
	QueryMS float64 `json:"query_ms"`
}

// Step is one event of the timeline. Parameters and context maps are not
// shown: the timeline says what was done, the events table holds the rest.
type Step struct {
	Time      time.Time `json:"time"`
	Type      string    `json:"event_type"`
	EventID   string    `json:"event_id"`
	SpanID    string    `json:"span_id,omitempty"`
	Tier      int32     `json:"tier"`
	AgentID   string    `json:"agent_id"`
	Requested string    `json:"requested_by,omitempty"`
	Host      string    `json:"producer_host,omitempty"`

	Tool          string   `json:"tool,omitempty"`
	Action        string   `json:"action,omitempty"`
	Target        string   `json:"target,omitempty"`
	ActionClass   string   `json:"action_class,omitempty"`
	Digest        string   `json:"action_digest,omitempty"`
	Rationale     string   `json:"rationale,omitempty"`
	ModelID       string   `json:"model_id,omitempty"`
	PromptVersion string   `json:"prompt_version,omitempty"`
	Confidence    *float64 `json:"confidence,omitempty"`

	Outcome       string `json:"outcome,omitempty"`
	PolicyID      string `json:"policy_id,omitempty"`
	PolicyVersion int64  `json:"policy_version,omitempty"`
	MatchedRule   string `json:"matched_rule,omitempty"`
	Reason        string `json:"reason,omitempty"`

	ApprovalID     string     `json:"approval_id,omitempty"`
	ApprovalStatus string     `json:"approval_status,omitempty"`
	Approver       string     `json:"approver,omitempty"`
	ApproverRole   string     `json:"approver_role,omitempty"`
	ApproverKind   string     `json:"approver_kind,omitempty"`
	Scope          string     `json:"scope,omitempty"`
	ExpiresAt      *time.Time `json:"expires_at,omitempty"`
	Channel        string     `json:"channel,omitempty"`
	Comment        string     `json:"comment,omitempty"`

	ResultStatus    string   `json:"result_status,omitempty"`
	Executor        string   `json:"executor,omitempty"`
	ChangedResource string   `json:"changed_resource,omitempty"`
	SideEffects     []string `json:"side_effects,omitempty"`
	ErrorClass      string   `json:"error_class,omitempty"`
	DurationUS      int64    `json:"duration_us,omitempty"`
}

const stepColumns = `event_id, span_id, event_type, event_time, tier, agent_id, agent_version, team, environment, tenant,
	requested_by, session_id, producer_host, tool, action, target, action_class, action_digest, rationale, model_id,
	prompt_version, confidence, outcome, policy_id, policy_version, matched_rule, reason, approval_id, approval_status,
	approver, approver_role, approver_kind, scope, expires_at, channel, comment, result_status, executor,
	changed_resource, side_effects, error_class, duration_us`

// Lookup reads one trace from ClickHouse: its events (each once), its
// emitted violations, and its record and state as of now, recomputed from
// the events so it is current even when the correlator lags. abandonAfter
// is correlation.abandon_after.
func Lookup(ctx context.Context, ch driver.Conn, database, traceID string, now time.Time, abandonAfter time.Duration) (*Report, error) {
	if !identRE.MatchString(database) {
		return nil, fmt.Errorf("correlate: database %q is not an identifier", database)
	}
	start := time.Now()
	// The violations are read meanwhile, on a connection of their own: they
	// need nothing from the queries below.
	type violations struct {
		vs  []Violation
		err error
	}
	vch := make(chan violations, 1)
	vctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		vs, err := readViolations(vctx, ch, database, traceID)
		vch <- violations{vs, err}
	}()
	// The trace's row, if the correlator wrote one, names its team, agent
	// and time: a prefix of the events sort key, so the events query reads
	// a granule or two. Without it (or if it finds fewer events than the
	// row counted) the bloom filter on trace_id finds the granules, reading
	// every granule's filter.
	var (
		team, agent string
		first       time.Time
		counted     uint32
		hinted      bool
	)
	err := ch.QueryRow(ctx, `SELECT team, agent_id, first_event_time, events FROM `+database+`.traces FINAL
		WHERE trace_id = ? LIMIT 1`, traceID).Scan(&team, &agent, &first, &counted)
	switch {
	case err == nil:
		hinted = true
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("correlate: read trace %s: %w", traceID, err)
	}
	var evs []schemas.Event
	var steps []Step
	if hinted {
		evs, steps, err = readSteps(ctx, ch, database, traceID, `AND team = ? AND agent_id = ? AND event_time >= ?`,
			team, agent, first.Add(-hintSlack))
		if err != nil {
			return nil, err
		}
	}
	if !hinted || len(evs) < int(counted) {
		if evs, steps, err = readSteps(ctx, ch, database, traceID, ""); err != nil {
			return nil, err
		}
	}
	if len(evs) == 0 {
		return nil, ErrTraceNotFound
	}
	v := <-vch
	if v.err != nil {
		return nil, v.err
	}
	vs := v.vs
	// Most severe first, then in report order.
	sort.Slice(vs, func(i, j int) bool {
		si, sj := severityRank(vs[i].Severity), severityRank(vs[j].Severity)
		if si != sj {
			return si < sj
		}
		return kindRank(vs[i].Kind) < kindRank(vs[j].Kind)
	})

	corr := Correlate(evs, nil)
	rep := &Report{Trace: corr.Trace, Events: steps, Violations: vs}
	rep.AbandonAt = corr.Trace.LastEventTime.Add(abandonAfter)
	rep.State = corr.Trace.State(now, rep.AbandonAt)
	emitted := map[Kind]bool{}
	for _, v := range vs {
		emitted[v.Kind] = true
	}
	for _, v := range corr.Violations {
		if !emitted[v.Kind] {
			rep.Unreported = append(rep.Unreported, v)
		}
	}
	rep.QueryMS = float64(time.Since(start).Microseconds()) / 1000
	return rep, nil
}

// readViolations reads the violations emitted for a trace.
func readViolations(ctx context.Context, ch driver.Conn, database, traceID string) ([]Violation, error) {
	vrows, err := ch.Query(ctx, `SELECT kind, severity, span_id, team, agent_id, requested_by, tool, action, tier, policy_id,
		policy_version, event_time, detected_at, deciding_event_id, evidence_event_ids, explanation
		FROM `+database+`.violations FINAL WHERE trace_id = ?`, traceID)
	if err != nil {
		return nil, fmt.Errorf("correlate: read violations of %s: %w", traceID, err)
	}
	defer vrows.Close()
	var vs []Violation
	for vrows.Next() {
		v := Violation{TraceID: traceID}
		var kind string
		var tier uint8
		if err := vrows.Scan(&kind, &v.Severity, &v.SpanID, &v.Team, &v.AgentID, &v.RequestedBy, &v.Tool, &v.Action, &tier,
			&v.PolicyID, &v.PolicyVersion, &v.EventTime, &v.DetectedAt, &v.DecidingEventID, &v.Evidence, &v.Explanation); err != nil {
			return nil, fmt.Errorf("correlate: read violations of %s: %w", traceID, err)
		}
		v.Kind, v.Tier, v.ViolationID = Kind(kind), int32(tier), ViolationID(traceID, Kind(kind))
		v.EventTime, v.DetectedAt = v.EventTime.UTC(), v.DetectedAt.UTC()
		vs = append(vs, v)
	}
	if err := vrows.Err(); err != nil {
		return nil, fmt.Errorf("correlate: read violations of %s: %w", traceID, err)
	}
	return vs, nil
}

// hintSlack is how much earlier than its row's first event a trace's event
// may lie and still be found through the row's hint.
const hintSlack = 7 * 24 * time.Hour

// readSteps reads a trace's events, each once, in time order, with an
// extra condition and its arguments. Unlike the correlator's rebuild, it
// keeps the server's exact FINAL mode for skip indexes (see
// skipIndexesFinal): for one trace the exact mode is the faster.
func readSteps(ctx context.Context, ch driver.Conn, database, traceID, cond string, args ...any) ([]schemas.Event, []Step, error) {
	rows, err := ch.Query(ctx, `SELECT `+stepColumns+` FROM `+database+`.events FINAL WHERE trace_id = ? `+cond+`
		ORDER BY event_time, event_id`, append([]any{traceID}, args...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("correlate: read trace %s: %w", traceID, err)
	}
	var evs []schemas.Event
	var steps []Step
	for rows.Next() {
		var (
			s                                             Step
			typ, agentVersion, team, env, tenant, session string
			tier                                          uint8
		)
		if err := rows.Scan(&s.EventID, &s.SpanID, &typ, &s.Time, &tier, &s.AgentID, &agentVersion, &team, &env, &tenant,
			&s.Requested, &session, &s.Host, &s.Tool, &s.Action, &s.Target, &s.ActionClass, &s.Digest, &s.Rationale, &s.ModelID,
			&s.PromptVersion, &s.Confidence, &s.Outcome, &s.PolicyID, &s.PolicyVersion, &s.MatchedRule, &s.Reason,
			&s.ApprovalID, &s.ApprovalStatus, &s.Approver, &s.ApproverRole, &s.ApproverKind, &s.Scope, &s.ExpiresAt,
			&s.Channel, &s.Comment, &s.ResultStatus, &s.Executor, &s.ChangedResource, &s.SideEffects, &s.ErrorClass,
			&s.DurationUS); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("correlate: read trace %s: %w", traceID, err)
		}
		s.Time, s.Type, s.Tier = s.Time.UTC(), typ, int32(tier)
		if s.ExpiresAt != nil {
			x := s.ExpiresAt.UTC()
			s.ExpiresAt = &x
		}
		r := consumers.EventRow{TraceID: traceID, EventID: s.EventID, SpanID: s.SpanID, EventType: typ, EventTime: s.Time, Tier: tier,
			AgentID: s.AgentID, AgentVersion: agentVersion, Team: team, Environment: env, Tenant: tenant,
			RequestedBy: s.Requested, SessionID: session, Tool: s.Tool, Action: s.Action, Target: s.Target,
			ActionClass: s.ActionClass, Digest: s.Digest, Outcome: s.Outcome, PolicyID: s.PolicyID,
			PolicyVersion: s.PolicyVersion, MatchedRule: s.MatchedRule, ApprovalID: s.ApprovalID,
			ApprovalStatus: s.ApprovalStatus, Approver: s.Approver, ApproverRole: s.ApproverRole,
			ApproverKind: s.ApproverKind, Scope: s.Scope, ExpiresAt: s.ExpiresAt, ResultStatus: s.ResultStatus,
			Executor: s.Executor, ChangedResource: s.ChangedResource, ErrorClass: s.ErrorClass}
		evs = append(evs, r.Event())
		steps = append(steps, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("correlate: read trace %s: %w", traceID, err)
	}
	return evs, steps, nil
}

// WriteText writes the report as a timeline a person reads in seconds.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	t := &r.Trace
	fmt.Fprintf(&b, "trace %s  %s  tier %d  team %s\n", t.TraceID, strings.ToUpper(r.State), t.Tier, t.Team)
	who := t.AgentID
	if t.AgentVersion != "" {
		who += " " + t.AgentVersion
	}
	fmt.Fprintf(&b, "who     %s, for %s\n", who, nameOr(t.RequestedBy, "(no requester on record)"))
	if t.Tool != "" {
		fmt.Fprintf(&b, "what    %s.%s %s (%s)\n", t.Tool, t.Action, t.Target, t.ActionClass)
	} else {
		b.WriteString("what    (no intent on record)\n")
	}
	if t.Outcome != "" {
		fmt.Fprintf(&b, "policy  %s by %s v%d", t.Outcome, t.PolicyID, t.PolicyVersion)
		if t.MatchedRule != "" {
			fmt.Fprintf(&b, ", rule %s", t.MatchedRule)
		}
		b.WriteString("\n")
	} else {
		b.WriteString("policy  (no decision on record)\n")
	}
	switch {
	case t.ApprovalStatus != "":
		fmt.Fprintf(&b, "approval %s", t.ApprovalStatus)
		if t.Approver != "" {
			fmt.Fprintf(&b, " by %s (%s)", t.Approver, nameOr(t.ApproverKind, "human"))
		}
		fmt.Fprintf(&b, ", %s scope, id %s", t.ApprovalScope, t.ApprovalID)
		if t.ApprovalTime != nil && t.ResultTime != nil && t.ApprovalTime.After(*t.ResultTime) {
			fmt.Fprintf(&b, " — given %s after the execution", short(t.ApprovalTime.Sub(*t.ResultTime)))
		}
		b.WriteString("\n")
	case t.Outcome == schemas.OutcomeRequireApproval:
		b.WriteString("approval none on record\n")
	}
	if t.ResultStatus != "" {
		fmt.Fprintf(&b, "result  %s", t.ResultStatus)
		if t.ChangedResource != "" {
			fmt.Fprintf(&b, ", changed %s", t.ChangedResource)
		}
		if t.ErrorClass != "" {
			fmt.Fprintf(&b, ", %s", t.ErrorClass)
		}
		b.WriteString("\n")
	}
	if t.Actions > 1 {
		fmt.Fprintf(&b, "actions %d (%d intents, %d results); the lines above are the first action\n", t.Actions, t.Intents, t.Results)
	}

	b.WriteString("\n")
	first := r.Events[0].Time
	for i := range r.Events {
		s := &r.Events[i]
		fmt.Fprintf(&b, "  %s  %9s  %-9s %s\n", s.Time.Format("2006-01-02 15:04:05.000"), "+"+short(s.Time.Sub(first)), label(s.Type), s.summary())
	}
	var lat []string
	for _, l := range []struct {
		name string
		ms   *int64
	}{{"decision", t.DecisionMS}, {"approval wait", t.ApprovalWaitMS}, {"execution", t.ExecutionMS}, {"total", t.TotalMS}} {
		if l.ms != nil {
			lat = append(lat, l.name+" "+short(time.Duration(*l.ms)*time.Millisecond))
		}
	}
	if len(lat) > 0 {
		fmt.Fprintf(&b, "\nlatency  %s\n", strings.Join(lat, " · "))
	}
	if r.State == StateOpen || r.State == StateAbandoned {
		fmt.Fprintf(&b, "open     %d action(s) waiting; abandoned from %s\n", t.PendingActions, r.AbandonAt.Format("2006-01-02 15:04:05"))
	}

	if len(r.Violations) == 0 && len(r.Unreported) == 0 {
		b.WriteString("\nviolations  none\n")
	}
	if len(r.Violations) > 0 {
		fmt.Fprintf(&b, "\nviolations  %d\n", len(r.Violations))
		for _, v := range r.Violations {
			fmt.Fprintf(&b, "  %-8s %-26s %s\n", strings.ToUpper(v.Severity), v.Kind, v.Explanation)
			fmt.Fprintf(&b, "  %-8s %-26s evidence %s; detected %s\n", "", "", strings.Join(v.Evidence, ", "), v.DetectedAt.Format("2006-01-02 15:04:05"))
		}
	}
	if len(r.Unreported) > 0 {
		fmt.Fprintf(&b, "\nnot reported (yet)  %d — waiting to settle, or the correlator is behind\n", len(r.Unreported))
		for _, v := range r.Unreported {
			fmt.Fprintf(&b, "  %-8s %-26s %s\n", strings.ToUpper(v.Severity), v.Kind, v.Explanation)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func severityRank(s string) int {
	switch s {
	case SeverityCritical:
		return 0
	case SeverityHigh:
		return 1
	}
	return 2
}

func label(typ string) string {
	if typ == string(schemas.TypeDecision) {
		return "decision"
	}
	return typ
}

// summary is the one-line content of a step.
func (s *Step) summary() string {
	var parts []string
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	switch schemas.EventType(s.Type) {
	case schemas.TypeIntent:
		add("%s.%s %s (%s, tier %d)", s.Tool, s.Action, s.Target, s.ActionClass, s.Tier)
		if s.Rationale != "" {
			add("%q", clip(s.Rationale, 70))
		}
		if s.ModelID != "" {
			add("model %s %s", s.ModelID, s.PromptVersion)
		}
		if s.Confidence != nil {
			add("confidence %.2f", *s.Confidence)
		}
	case schemas.TypeDecision:
		add("%s by %s v%d", s.Outcome, s.PolicyID, s.PolicyVersion)
		if s.MatchedRule != "" {
			add("rule %s", s.MatchedRule)
		}
		if s.Reason != "" {
			add("%q", clip(s.Reason, 70))
		}
	case schemas.TypeApproval:
		a := s.ApprovalStatus
		if s.Approver != "" {
			a += " by " + s.Approver
			var r []string
			if s.ApproverRole != "" {
				r = append(r, s.ApproverRole)
			}
			if s.ApproverKind != "" {
				r = append(r, s.ApproverKind)
			}
			if len(r) > 0 {
				a += " (" + strings.Join(r, ", ") + ")"
			}
		}
		add("%s", a)
		if s.Channel != "" {
			add("via %s", s.Channel)
		}
		add("%s scope, id %s", nameOr(s.Scope, schemas.ScopeSingle), s.ApprovalID)
		if s.ExpiresAt != nil {
			add("expires %s", s.ExpiresAt.Format("15:04:05"))
		}
		if s.Comment != "" {
			add("%q", clip(s.Comment, 60))
		}
	case schemas.TypeResult:
		add("%s", s.ResultStatus)
		if s.DurationUS > 0 {
			add("ran %s", short(time.Duration(s.DurationUS)*time.Microsecond))
		}
		if s.ChangedResource != "" {
			add("changed %s", s.ChangedResource)
		}
		if len(s.SideEffects) > 0 {
			add("side effects %s", strings.Join(s.SideEffects, " "))
		}
		if s.ErrorClass != "" {
			add("error %s", s.ErrorClass)
		}
	}
	if s.Digest != "" {
		add("digest %s…", s.Digest[:min(8, len(s.Digest))])
	}
	return strings.Join(parts, " · ")
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// short prints a duration compactly: 27ms, 6m2s, 1h4m.
func short(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d < time.Second:
		s = fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		s = fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		d = d.Round(time.Second)
		s = fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		s = fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	if neg {
		return "-" + s
	}
	return s
}
