// Package correlate joins the intent, policy decision, approval and result
// events of each trace into one trace record and flags governance
// violations: an action executed without the approval its tier or its
// policy decision requires, after a deny, or without any policy decision;
// separation of duties broken; a payload executed other than the one
// approved; an approval used outside its scope; a decision under a stale
// policy version.
//
// Correlate is the heart: a pure function from a trace's set of events (in
// any order, duplicates allowed) to its record and violations. The
// Correlator runs it inside ingest on every batch (a consumers.Processor):
// it keeps recent traces in a bounded LRU cache, rebuilds a trace it does
// not hold from ClickHouse (the events earlier batches committed: below the
// batch's first offset of each partition), and emits a violation of a given
// kind once per trace, in the batch where it becomes derivable, to the
// ClickHouse table violations, the Kafka topic agentrail.violations and a
// Prometheus counter. Violations that rest on missing evidence (no approval,
// no decision) are held for Config.SettleAfter after the result arrived, so
// an approval given before the execution but delivered after it is not
// flagged; they are emitted when due even if no further event arrives, by
// ingest's tick (Tick, tick.go). Abandoned traces need no tick: v_traces
// computes the state from abandon_at at query time. docs/ANALYSTS.md
// describes the tables and views.
//
// Metrics:
//
//	agentrail_violations_total{kind}                    violations emitted (counted when Process returns)
//	agentrail_correlate_traces_cached                   traces held in memory
//	agentrail_correlate_evictions_total                 traces evicted at max_traces
//	agentrail_correlate_rebuilt_traces_total            traces rebuilt from ClickHouse
//	agentrail_correlate_rebuild_seconds (histogram)     time of one batch's rebuild queries
//	agentrail_correlate_pending_violations              traces with a violation waiting to settle
//	agentrail_correlate_events_over_limit_total         events not correlated: their trace had max_events_per_trace
//	agentrail_correlate_partition_inits_total           partitions (re)initialized after start, rebalance or redo
//
// It deliberately does not: read Kafka itself (ingest hands it batches and
// produces its records in the batch's transaction), retract a violation that
// later evidence contradicts (it reports what was derivable when it was
// emitted), or keep state across partitions it no longer owns. Producers
// must key events by trace_id: a trace split across partitions is correlated
// best-effort (see docs/ANALYSTS.md).
package correlate

import (
	"errors"
	"fmt"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// Config configures correlation: the `correlation` section of the pipeline
// config.
type Config struct {
	// Disabled switches the stage off.
	Disabled bool `yaml:"disabled"`
	// ViolationTopic is the Kafka topic violations are produced to, keyed by
	// trace_id, one JSON object per violation. In the pipeline config it is
	// kafka.topics.violations; the key violation_topic here is its old
	// name, read for one release with a warning.
	ViolationTopic string `yaml:"violation_topic"`
	// MaxTraces bounds the traces held in memory; the least recently used is
	// evicted (and rebuilt from ClickHouse if it shows up again).
	MaxTraces int `yaml:"max_traces"`
	// MaxEventsPerTrace bounds the events of one trace that are correlated:
	// the first ones in stream order count, later ones are counted and
	// otherwise ignored.
	MaxEventsPerTrace int `yaml:"max_events_per_trace"`
	// AbandonAfter is how long after a trace's last event an action still
	// waiting for its result is called abandoned.
	AbandonAfter time.Duration `yaml:"abandon_after"`
	// SettleAfter is how long a violation that rests on missing evidence (no
	// approval, no policy decision) waits, after the result was ingested,
	// for that evidence to arrive before it is emitted.
	SettleAfter time.Duration `yaml:"settle_after"`
	// Lookback bounds, around a batch's events, how far back in event time a
	// trace's earlier events are looked for when it is rebuilt from
	// ClickHouse.
	Lookback time.Duration `yaml:"lookback"`
	// PolicyRefresh is how often the versions of every policy seen are
	// re-read from ClickHouse (decisions handled by other ingest members).
	PolicyRefresh time.Duration `yaml:"policy_refresh"`
}

// Defaults for Config.
const (
	DefaultViolationTopic    = "agentrail.violations"
	DefaultMaxTraces         = 100_000
	DefaultMaxEventsPerTrace = 1000
	DefaultAbandonAfter      = 24 * time.Hour
	DefaultSettleAfter       = 2 * time.Minute
	DefaultLookback          = 7 * 24 * time.Hour
	DefaultPolicyRefresh     = time.Minute
)

// Defaults fills unset fields, in one place.
func (c *Config) Defaults() {
	if c.ViolationTopic == "" {
		c.ViolationTopic = DefaultViolationTopic
	}
	if c.MaxTraces == 0 {
		c.MaxTraces = DefaultMaxTraces
	}
	if c.MaxEventsPerTrace == 0 {
		c.MaxEventsPerTrace = DefaultMaxEventsPerTrace
	}
	if c.AbandonAfter == 0 {
		c.AbandonAfter = DefaultAbandonAfter
	}
	if c.SettleAfter == 0 {
		c.SettleAfter = DefaultSettleAfter
	}
	if c.Lookback == 0 {
		c.Lookback = DefaultLookback
	}
	if c.PolicyRefresh == 0 {
		c.PolicyRefresh = DefaultPolicyRefresh
	}
}

// Validate checks the settings without I/O; call Defaults first.
func (c *Config) Validate() error {
	switch {
	case c.ViolationTopic == "":
		return errors.New("correlation.violation_topic: is empty")
	case c.MaxTraces < 100 || c.MaxTraces > 10_000_000:
		return fmt.Errorf("correlation.max_traces: %d out of range 100..10000000", c.MaxTraces)
	case c.MaxEventsPerTrace < 4 || c.MaxEventsPerTrace > 100_000:
		return fmt.Errorf("correlation.max_events_per_trace: %d out of range 4..100000", c.MaxEventsPerTrace)
	case c.AbandonAfter < time.Minute || c.AbandonAfter > 90*24*time.Hour:
		return fmt.Errorf("correlation.abandon_after: %s out of range 1m..2160h", c.AbandonAfter)
	case c.SettleAfter < 0 || c.SettleAfter > time.Hour:
		// 0 takes the default; 1ns (tests) emits at once.
		return fmt.Errorf("correlation.settle_after: %s out of range 0..1h", c.SettleAfter)
	case c.Lookback < time.Hour || c.Lookback > 400*24*time.Hour:
		return fmt.Errorf("correlation.lookback: %s out of range 1h..9600h", c.Lookback)
	case c.PolicyRefresh < time.Second || c.PolicyRefresh > 24*time.Hour:
		return fmt.Errorf("correlation.policy_refresh: %s out of range 1s..24h", c.PolicyRefresh)
	}
	return nil
}

// Kind names a governance violation; the values are the `kind` column of
// the violations table and the label of agentrail_violations_total.
type Kind string

// The violation kinds, in the order they are reported.
const (
	// An action ran without the granted approval its tier (3) or its policy
	// decision (require_approval) requires before execution.
	KindExecutedWithoutApproval Kind = "executed_without_approval"
	// An action ran although its policy decision was deny.
	KindExecutedAfterDeny Kind = "executed_after_deny"
	// An action ran with no policy decision on record at all.
	KindNoPolicyDecision Kind = "no_policy_decision"
	// An approval was granted by the requesting human, by an agent or
	// service identity, or by the acting agent itself.
	KindSeparationOfDuties Kind = "separation_of_duties"
	// The executed payload (action_digest) is not the approved one, or, for
	// an action that needed no approval, not the one the policy allowed.
	KindPayloadMismatch Kind = "payload_mismatch"
	// An approval was used after it expired, or a single-action approval was
	// used for more than one execution.
	KindApprovalOutOfScope Kind = "approval_out_of_scope"
	// A decision was made under a policy version older than one already in
	// use for the same policy.
	KindStalePolicy Kind = "stale_policy"
)

// Kinds returns every kind, in report order.
func Kinds() []Kind {
	return []Kind{KindExecutedWithoutApproval, KindExecutedAfterDeny, KindNoPolicyDecision,
		KindSeparationOfDuties, KindPayloadMismatch, KindApprovalOutOfScope, KindStalePolicy}
}

// Severities, from a bounded set.
const (
	SeverityCritical = "critical"
	SeverityHigh     = "high"
	SeverityMedium   = "medium"
)

// Severity is the fixed severity of a kind.
func (k Kind) Severity() string {
	switch k {
	case KindExecutedWithoutApproval, KindExecutedAfterDeny, KindPayloadMismatch:
		return SeverityCritical
	case KindNoPolicyDecision, KindSeparationOfDuties, KindApprovalOutOfScope:
		return SeverityHigh
	default:
		return SeverityMedium
	}
}

func kindRank(k Kind) int {
	for i, x := range Kinds() {
		if x == k {
			return i
		}
	}
	return len(Kinds())
}

// Violation is one governance violation of one trace: at most one per trace
// and kind (the earliest instance, preferring one proven by evidence).
type Violation struct {
	ViolationID string `json:"violation_id"` // hash of trace_id and kind
	Kind        Kind   `json:"kind"`
	Severity    string `json:"severity"`
	TraceID     string `json:"trace_id"`
	SpanID      string `json:"span_id,omitempty"`
	Team        string `json:"team"`
	AgentID     string `json:"agent_id"`
	RequestedBy string `json:"requested_by,omitempty"`
	Tool        string `json:"tool,omitempty"`
	Action      string `json:"action,omitempty"`
	Tier        int32  `json:"tier"`
	// PolicyID and PolicyVersion are those of the decision involved, if any.
	PolicyID      string `json:"policy_id,omitempty"`
	PolicyVersion int64  `json:"policy_version,omitempty"`
	// EventTime is the time of the deciding event: the execution, the
	// approval or the decision that broke the rule.
	EventTime time.Time `json:"event_time"`
	// DetectedAt is when the correlator emitted it (zero until then).
	DetectedAt time.Time `json:"detected_at,omitzero"`
	// DecidingEventID is the event the violation is about.
	DecidingEventID string `json:"deciding_event_id"`
	// Evidence lists the event ids involved, the deciding one last.
	Evidence []string `json:"evidence_event_ids"`
	// Explanation is one line an analyst reads. It never holds parameter
	// values.
	Explanation string `json:"explanation"`
	// Unconfirmed marks a violation that rests on missing evidence (no
	// approval or no decision seen yet); the Correlator emits it only after
	// Config.SettleAfter.
	Unconfirmed bool `json:"unconfirmed,omitempty"`
}

// Trace is the correlated record of one trace, the row of the traces table.
// The stage fields describe the trace's primary action (its earliest
// intent); the counts cover all of its actions.
type Trace struct {
	TraceID      string `json:"trace_id"`
	Team         string `json:"team"`
	AgentID      string `json:"agent_id"`
	AgentVersion string `json:"agent_version,omitempty"`
	Environment  string `json:"environment,omitempty"`
	Tenant       string `json:"tenant,omitempty"`
	SessionID    string `json:"session_id,omitempty"`
	RequestedBy  string `json:"requested_by,omitempty"`

	Tool        string `json:"tool,omitempty"`
	Action      string `json:"action,omitempty"`
	Target      string `json:"target,omitempty"`
	ActionClass string `json:"action_class,omitempty"`
	Tier        int32  `json:"tier"` // highest tier any event of the trace carries

	Outcome       string `json:"outcome,omitempty"` // policy decision
	PolicyID      string `json:"policy_id,omitempty"`
	PolicyVersion int64  `json:"policy_version,omitempty"`
	MatchedRule   string `json:"matched_rule,omitempty"`

	ApprovalID        string     `json:"approval_id,omitempty"`
	ApprovalStatus    string     `json:"approval_status,omitempty"`
	Approver          string     `json:"approver,omitempty"`
	ApproverKind      string     `json:"approver_kind,omitempty"`
	ApprovalScope     string     `json:"approval_scope,omitempty"`
	ApprovalExpiresAt *time.Time `json:"approval_expires_at,omitempty"`

	ResultStatus    string `json:"result_status,omitempty"`
	Executor        string `json:"executor,omitempty"`
	ChangedResource string `json:"changed_resource,omitempty"`
	ErrorClass      string `json:"error_class,omitempty"`

	IntentTime     *time.Time `json:"intent_time,omitempty"`
	DecisionTime   *time.Time `json:"decision_time,omitempty"`
	ApprovalTime   *time.Time `json:"approval_time,omitempty"`
	ResultTime     *time.Time `json:"result_time,omitempty"`
	FirstEventTime time.Time  `json:"first_event_time"`
	LastEventTime  time.Time  `json:"last_event_time"`

	// Latencies between stages, in milliseconds (nil when a stage is
	// missing; negative when the events say the stages ran out of order).
	DecisionMS     *int64 `json:"decision_ms,omitempty"`      // intent → decision
	ApprovalWaitMS *int64 `json:"approval_wait_ms,omitempty"` // decision → approval
	ExecutionMS    *int64 `json:"execution_ms,omitempty"`     // approval (or decision) → result
	TotalMS        *int64 `json:"total_ms,omitempty"`         // intent → result

	Events    int `json:"events"`
	Intents   int `json:"intents"`
	Decisions int `json:"decisions"`
	Approvals int `json:"approvals"`
	Results   int `json:"results"`
	// Actions counts the trace's actions (spans with an intent, decision or
	// result); PendingActions those not ended yet (no result, no deny, no
	// rejected or expired approval); OrphanActions those with a result but
	// without their intent or decision.
	Actions        int `json:"actions"`
	PendingActions int `json:"pending_actions"`
	OrphanActions  int `json:"orphan_actions"`
}

// Trace states, as v_traces computes them from the clock.
const (
	StateOpen       = "open"       // an action waits for its result
	StateAbandoned  = "abandoned"  // ... for longer than abandon_after since the last event
	StateIncomplete = "incomplete" // every action ended, but one has a result without its intent or decision
	StateCompleted  = "completed"
)

// State is the trace's state at now, given when it counts as abandoned.
func (t *Trace) State(now, abandonAt time.Time) string {
	switch {
	case t.PendingActions > 0 && now.Before(abandonAt):
		return StateOpen
	case t.PendingActions > 0:
		return StateAbandoned
	case t.OrphanActions > 0:
		return StateIncomplete
	}
	return StateCompleted
}

// executed reports whether a result says the action ran (or was attempted):
// every status but blocked.
func executed(r *schemas.Result) bool { return r != nil && r.Status != schemas.ResultBlocked }
