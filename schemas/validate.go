package schemas

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// Limits bound what Validate accepts. The zero value means DefaultLimits.
type Limits struct {
	// MaxFuture is how far ahead of now an event_time may be (clock skew).
	MaxFuture time.Duration
	// MaxPast is how far behind now an event_time may be (late delivery,
	// replay of old files).
	MaxPast time.Duration
	// MaxString is the longest string field, in bytes.
	MaxString int
}

// DefaultLimits are the limits ingest applies unless configured otherwise.
var DefaultLimits = Limits{
	MaxFuture: time.Hour,
	MaxPast:   400 * 24 * time.Hour,
	MaxString: 64 << 10,
}

// ValidationError says which field of an event is wrong and why. It never
// quotes the field's value: values may hold secrets or personal data.
type ValidationError struct {
	Field  string // dotted path, e.g. "intent.action_digest"
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("schemas: invalid event: field %s: %s", e.Field, e.Reason)
}

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate checks e against the contract documented in schemas/README.md, as
// of now. It returns the first *ValidationError found, or nil.
func Validate(e *Event, now time.Time, lim Limits) error {
	if lim == (Limits{}) {
		lim = DefaultLimits
	}
	if err := checkShape(e, now, lim, nil); err != nil {
		return err
	}
	return checkStrings(e, lim.MaxString)
}

// checkShape is Validate without the length and UTF-8 checks of strings
// other than identifiers, which AppendValid makes while it encodes. An agent
// equal to env's was checked when env was made.
func checkShape(e *Event, now time.Time, lim Limits, env *Envelope) error {
	if err := checkID("event_id", e.EventID); err != nil {
		return err
	}
	if !isHex(e.TraceID, 32) {
		return invalid("trace_id", "must be 32 lowercase hex characters (W3C trace-context), got %d characters", len(e.TraceID))
	}
	if isZeroHex(e.TraceID) {
		return invalid("trace_id", "must not be all zeros")
	}
	if e.SpanID != "" && (!isHex(e.SpanID, 16) || isZeroHex(e.SpanID)) {
		return invalid("span_id", "must be empty or 16 lowercase hex characters, not all zeros")
	}
	if e.Time.IsZero() {
		return invalid("event_time", "is missing")
	}
	if d := e.Time.Sub(now); d > lim.MaxFuture {
		return invalid("event_time", "is %s in the future (limit %s)", d.Round(time.Second), lim.MaxFuture)
	}
	if d := now.Sub(e.Time); d > lim.MaxPast {
		return invalid("event_time", "is %s in the past (limit %s)", d.Round(time.Hour), lim.MaxPast)
	}
	if env == nil || e.Agent != env.agent {
		if err := checkAgent(&e.Agent); err != nil {
			return err
		}
	}
	if e.Tier < TierLow || e.Tier > TierHigh {
		return invalid("tier", "must be 1, 2 or 3, got %d", e.Tier)
	}
	return checkBody(e)
}

func checkAgent(a *Agent) error {
	if err := checkID("agent.agent_id", a.ID); err != nil {
		return err
	}
	if a.Team == "" {
		return invalid("agent.team", "is empty")
	}
	return nil
}

func checkBody(e *Event) error {
	set := b2i(e.Intent != nil) + b2i(e.Decision != nil) + b2i(e.Approval != nil) + b2i(e.Result != nil)
	if set != 1 {
		return invalid("event_type", "exactly one of intent, policy_decision, approval, result must be set, found %d", set)
	}
	switch e.Type {
	case TypeIntent:
		if e.Intent == nil {
			return invalid("intent", "is missing for event_type intent")
		}
		return checkIntent(e.Intent)
	case TypeDecision:
		if e.Decision == nil {
			return invalid("policy_decision", "is missing for event_type policy_decision")
		}
		return checkDecision(e.Decision)
	case TypeApproval:
		if e.Approval == nil {
			return invalid("approval", "is missing for event_type approval")
		}
		return checkApproval(e.Approval)
	case TypeResult:
		if e.Result == nil {
			return invalid("result", "is missing for event_type result")
		}
		return checkResult(e.Result)
	}
	return invalid("event_type", "must be one of intent, policy_decision, approval, result")
}

func checkIntent(in *Intent) error {
	switch {
	case in.Tool == "":
		return invalid("intent.tool", "is empty")
	case in.Action == "":
		return invalid("intent.action", "is empty")
	case in.ActionClass == "":
		return invalid("intent.action_class", "is empty")
	case in.Tier < TierLow || in.Tier > TierHigh:
		return invalid("intent.tier", "must be 1, 2 or 3, got %d", in.Tier)
	case !isHex(in.ActionDigest, 64):
		return invalid("intent.action_digest", "must be 64 lowercase hex characters (SHA-256), got %d characters", len(in.ActionDigest))
	case in.Confidence != nil && (*in.Confidence < 0 || *in.Confidence > 1):
		return invalid("intent.confidence", "must be between 0 and 1")
	}
	return nil
}

func checkDecision(d *Decision) error {
	switch {
	case !oneOf(d.Outcome, OutcomeAllow, OutcomeDeny, OutcomeRequireApproval):
		return invalid("policy_decision.outcome", "must be allow, deny or require_approval")
	case d.PolicyID == "":
		return invalid("policy_decision.policy_id", "is empty")
	case d.PolicyVersion < 0:
		return invalid("policy_decision.policy_version", "must be >= 0, got %d", d.PolicyVersion)
	case d.Tier < TierLow || d.Tier > TierHigh:
		return invalid("policy_decision.tier", "must be 1, 2 or 3, got %d", d.Tier)
	case d.RemainingQuota != nil && *d.RemainingQuota < 0:
		return invalid("policy_decision.remaining_quota", "must be >= 0")
	}
	return nil
}

func checkApproval(a *Approval) error {
	switch {
	case a.ApprovalID == "":
		return invalid("approval.approval_id", "is empty")
	case !oneOf(a.Status, ApprovalRequested, ApprovalGranted, ApprovalRejected, ApprovalExpired):
		return invalid("approval.status", "must be requested, granted, rejected or expired")
	case (a.Status == ApprovalGranted || a.Status == ApprovalRejected) && a.Approver == "":
		return invalid("approval.approver", "is empty for a %s approval", a.Status)
	case a.ApproverKind != "" && !oneOf(a.ApproverKind, PrincipalHuman, PrincipalAgent, PrincipalService):
		return invalid("approval.approver_kind", "must be human, agent or service")
	case a.Scope != "" && !oneOf(a.Scope, ScopeSingle, ScopeBundle, ScopeTimeWindow):
		return invalid("approval.scope", "must be single, bundle or time_window")
	case a.ActionDigest != "" && !isHex(a.ActionDigest, 64):
		return invalid("approval.action_digest", "must be empty or 64 lowercase hex characters, got %d characters", len(a.ActionDigest))
	case a.Status == ApprovalGranted && a.ActionDigest == "" && a.Scope != ScopeTimeWindow:
		return invalid("approval.action_digest", "is required for a granted %s approval", scopeOrSingle(a.Scope))
	}
	return nil
}

func scopeOrSingle(s string) string {
	if s == "" {
		return ScopeSingle
	}
	return s
}

func checkResult(r *Result) error {
	switch {
	case !oneOf(r.Status, ResultSuccess, ResultFailure, ResultError, ResultBlocked):
		return invalid("result.status", "must be success, failure, error or blocked")
	case !isHex(r.ActionDigest, 64):
		return invalid("result.action_digest", "must be 64 lowercase hex characters (SHA-256), got %d characters", len(r.ActionDigest))
	case r.DurationUS < 0:
		return invalid("result.duration_us", "must be >= 0")
	}
	return nil
}

// checkStrings rejects invalid UTF-8 and over-long strings anywhere in e:
// Avro does not check either, and ClickHouse and analysts' tools need both.
// Field paths are built only for the error, keeping the valid path free of
// allocations.
func checkStrings(e *Event, max int) error {
	c := stringChecker{max: max}
	c.str("event_id", e.EventID)
	c.str("span_id", e.SpanID)
	c.agent(&e.Agent)
	c.str("requested_by", e.RequestedBy)
	c.producer(&e.Producer)
	c.str("session_id", e.SessionID)
	c.strMap("labels", e.Labels)
	if in := e.Intent; in != nil {
		c.str("intent.tool", in.Tool)
		c.str("intent.action", in.Action)
		c.str("intent.target", in.Target)
		c.str("intent.action_class", in.ActionClass)
		c.strMap("intent.parameters", in.Parameters)
		c.str("intent.rationale", in.Rationale)
		c.strMap("intent.context", in.Context)
		c.str("intent.model_id", in.ModelID)
		c.str("intent.prompt_version", in.PromptVersion)
		c.strs("intent.evidence_ids[]", in.EvidenceIDs)
	}
	if d := e.Decision; d != nil {
		c.str("policy_decision.policy_id", d.PolicyID)
		c.str("policy_decision.matched_rule", d.MatchedRule)
		c.str("policy_decision.reason", d.Reason)
	}
	if a := e.Approval; a != nil {
		c.str("approval.approval_id", a.ApprovalID)
		c.str("approval.approver", a.Approver)
		c.str("approval.approver_role", a.ApproverRole)
		c.str("approval.channel", a.Channel)
		c.str("approval.comment", a.Comment)
	}
	if r := e.Result; r != nil {
		c.str("result.executor", r.Executor)
		c.str("result.changed_resource", r.ChangedResource)
		c.strs("result.side_effects[]", r.SideEffects)
		c.str("result.error_class", r.ErrorClass)
		c.str("result.error_message", r.ErrorMessage)
	}
	return c.err
}

// stringChecker keeps the first bad string's error.
type stringChecker struct {
	max int
	err error
}

func (c *stringChecker) problem(s string) string {
	switch {
	case len(s) > c.max:
		return fmt.Sprintf("is %d bytes, longer than %d", len(s), c.max)
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	}
	return ""
}

func (c *stringChecker) str(field, s string) {
	if len(s) <= c.max && utf8.ValidString(s) {
		return // the common case, without the error bookkeeping
	}
	c.fail(field, s)
}

func (c *stringChecker) fail(field, s string) {
	if c.err == nil {
		c.err = invalid(field, "%s", c.problem(s))
	}
}

// agent and producer check the envelope's strings (checkStrings and
// NewEnvelope).
func (c *stringChecker) agent(a *Agent) {
	c.str("agent.agent_id", a.ID)
	c.str("agent.agent_version", a.Version)
	c.str("agent.team", a.Team)
	c.str("agent.environment", a.Environment)
	c.str("agent.tenant", a.Tenant)
}

func (c *stringChecker) producer(p *Producer) {
	c.str("producer.name", p.Name)
	c.str("producer.version", p.Version)
	c.str("producer.host", p.Host)
}

func (c *stringChecker) strs(field string, ss []string) {
	for _, s := range ss {
		c.str(field, s)
	}
}

// strMap checks m's keys and values. Of several bad entries it names the
// one with the least key, so that an event is refused with the same error
// every time: Go's map order is random.
func (c *stringChecker) strMap(field string, m map[string]string) {
	if c.err != nil {
		return
	}
	var (
		least string
		err   error
	)
	for k, s := range m {
		if err != nil && k >= least {
			continue
		}
		if p := c.problem(k); p != "" {
			least, err = k, invalid(field+"{}", "a key %s", p)
		} else if p := c.problem(s); p != "" {
			least, err = k, invalid(field+"."+k, "%s", p)
		}
	}
	c.err = err
}

func checkID(field, s string) error {
	if s == "" {
		return invalid(field, "is empty")
	}
	if len(s) > 128 {
		return invalid(field, "is %d bytes, longer than 128", len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return invalid(field, "contains a space or control character at byte %d", i)
		}
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// lowerHex marks the bytes 0-9 and a-f: one load per byte instead of four
// comparisons, on the producer's hot path.
var lowerHex = func() (t [256]byte) {
	for _, c := range "0123456789abcdef" {
		t[c] = 1
	}
	return t
}()

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	ok := byte(1)
	for i := 0; i < len(s); i++ {
		ok &= lowerHex[s[i]]
	}
	return ok == 1
}

func isZeroHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

func oneOf(s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}
