package consumers

import (
	"slices"
	"time"

	"github.com/agentrail/agentrail/consumers/redact"
	"github.com/agentrail/agentrail/schemas"
)

// insertColumns is the column list of the events insert, in the order
// eventColumns.values returns them.
var insertColumns = []string{
	"event_id", "trace_id", "span_id", "event_type", "event_time", "tier",
	"agent_id", "agent_version", "team", "environment", "tenant", "requested_by",
	"producer_name", "producer_version", "producer_host", "session_id", "labels",
	"tool", "action", "target", "action_class", "parameters", "action_digest",
	"rationale", "context", "model_id", "prompt_version", "evidence_ids", "confidence",
	"outcome", "policy_id", "policy_version", "matched_rule", "reason", "remaining_quota",
	"approval_id", "approval_status", "approver", "approver_role", "approver_kind",
	"scope", "expires_at", "channel", "comment",
	"result_status", "executor", "changed_resource", "side_effects", "error_class",
	"error_message", "duration_us", "signer_key_id",
	"kafka_partition", "kafka_offset",
	"redactions.path", "redactions.action", "redactions.rule",
}

// eventColumns holds a batch of events column by column, the layout
// ClickHouse's native protocol sends: appending a whole column at once is far
// cheaper than appending row by row.
type eventColumns struct {
	eventID, traceID, spanID, eventType         []string
	eventTime                                   []time.Time
	tier                                        []uint8
	agentID, agentVersion, team, environment    []string
	tenant, requestedBy                         []string
	producerName, producerVersion, producerHost []string
	sessionID                                   []string
	labels                                      []map[string]string
	tool, action, target, actionClass           []string
	parameters                                  []map[string]string
	actionDigest, rationale                     []string
	context                                     []map[string]string
	modelID, promptVersion                      []string
	evidenceIDs                                 [][]string
	confidence                                  []*float64
	outcome, policyID                           []string
	policyVersion                               []int64
	matchedRule, reason                         []string
	remainingQuota                              []*int64
	approvalID, approvalStatus, approver        []string
	approverRole, approverKind, scope           []string
	expiresAt                                   []*time.Time
	channel, comment                            []string
	resultStatus, executor, changedResource     []string
	sideEffects                                 [][]string
	errorClass, errorMessage                    []string
	durationUS                                  []int64
	signerKeyID                                 []string
	kafkaPartition                              []int32
	kafkaOffset                                 []int64
	redactions                                  redactionColumns
}

func (c *eventColumns) len() int { return len(c.eventID) }

// grow makes room for n more events in every column at once, instead of
// each column doubling its way there.
func (c *eventColumns) grow(n int) {
	for _, p := range []*[]string{&c.eventID, &c.traceID, &c.spanID, &c.eventType,
		&c.agentID, &c.agentVersion, &c.team, &c.environment, &c.tenant, &c.requestedBy,
		&c.producerName, &c.producerVersion, &c.producerHost, &c.sessionID,
		&c.tool, &c.action, &c.target, &c.actionClass, &c.actionDigest, &c.rationale, &c.modelID, &c.promptVersion,
		&c.outcome, &c.policyID, &c.matchedRule, &c.reason,
		&c.approvalID, &c.approvalStatus, &c.approver, &c.approverRole, &c.approverKind, &c.scope, &c.channel, &c.comment,
		&c.resultStatus, &c.executor, &c.changedResource, &c.errorClass, &c.errorMessage} {
		*p = slices.Grow(*p, n)
	}
	for _, p := range []*[]map[string]string{&c.labels, &c.parameters, &c.context} {
		*p = slices.Grow(*p, n)
	}
	for _, p := range []*[]int64{&c.policyVersion, &c.durationUS, &c.kafkaOffset} {
		*p = slices.Grow(*p, n)
	}
	c.eventTime = slices.Grow(c.eventTime, n)
	c.tier = slices.Grow(c.tier, n)
	c.evidenceIDs = slices.Grow(c.evidenceIDs, n)
	c.sideEffects = slices.Grow(c.sideEffects, n)
	c.confidence = slices.Grow(c.confidence, n)
	c.remainingQuota = slices.Grow(c.remainingQuota, n)
	c.expiresAt = slices.Grow(c.expiresAt, n)
	c.kafkaPartition = slices.Grow(c.kafkaPartition, n)
}

// add appends one event. Absent bodies contribute zero values: one wide table
// keeps a trace's events together on disk and every stage in one scan.
func (c *eventColumns) add(e *schemas.Event, reds []redact.Redaction, partition int32, offset int64, signerKeyID string) {
	c.eventID = append(c.eventID, e.EventID)
	c.traceID = append(c.traceID, e.TraceID)
	c.spanID = append(c.spanID, e.SpanID)
	c.eventType = append(c.eventType, string(e.Type))
	c.eventTime = append(c.eventTime, e.Time)
	c.tier = append(c.tier, uint8(e.Tier))
	c.agentID = append(c.agentID, e.Agent.ID)
	c.agentVersion = append(c.agentVersion, e.Agent.Version)
	c.team = append(c.team, e.Agent.Team)
	c.environment = append(c.environment, e.Agent.Environment)
	c.tenant = append(c.tenant, e.Agent.Tenant)
	c.requestedBy = append(c.requestedBy, e.RequestedBy)
	c.producerName = append(c.producerName, e.Producer.Name)
	c.producerVersion = append(c.producerVersion, e.Producer.Version)
	c.producerHost = append(c.producerHost, e.Producer.Host)
	c.sessionID = append(c.sessionID, e.SessionID)
	c.labels = append(c.labels, nonNil(e.Labels))

	in := e.Intent
	if in == nil {
		in = &noIntent
	}
	c.tool = append(c.tool, in.Tool)
	c.action = append(c.action, in.Action)
	c.target = append(c.target, in.Target)
	c.actionClass = append(c.actionClass, in.ActionClass)
	c.parameters = append(c.parameters, nonNil(in.Parameters))
	digest := in.ActionDigest
	c.rationale = append(c.rationale, in.Rationale)
	c.context = append(c.context, nonNil(in.Context))
	c.modelID = append(c.modelID, in.ModelID)
	c.promptVersion = append(c.promptVersion, in.PromptVersion)
	c.evidenceIDs = append(c.evidenceIDs, nonNilSlice(in.EvidenceIDs))
	c.confidence = append(c.confidence, in.Confidence)

	d := e.Decision
	if d == nil {
		d = &noDecision
	}
	c.outcome = append(c.outcome, d.Outcome)
	c.policyID = append(c.policyID, d.PolicyID)
	c.policyVersion = append(c.policyVersion, d.PolicyVersion)
	c.matchedRule = append(c.matchedRule, d.MatchedRule)
	c.reason = append(c.reason, d.Reason)
	c.remainingQuota = append(c.remainingQuota, d.RemainingQuota)

	a := e.Approval
	if a == nil {
		a = &noApproval
	} else if a.ActionDigest != "" {
		digest = a.ActionDigest
	}
	c.approvalID = append(c.approvalID, a.ApprovalID)
	c.approvalStatus = append(c.approvalStatus, a.Status)
	c.approver = append(c.approver, a.Approver)
	c.approverRole = append(c.approverRole, a.ApproverRole)
	c.approverKind = append(c.approverKind, a.ApproverKind)
	c.scope = append(c.scope, a.Scope)
	c.expiresAt = append(c.expiresAt, a.ExpiresAt)
	c.channel = append(c.channel, a.Channel)
	c.comment = append(c.comment, a.Comment)

	r := e.Result
	if r == nil {
		r = &noResult
	} else {
		digest = r.ActionDigest
	}
	c.resultStatus = append(c.resultStatus, r.Status)
	c.executor = append(c.executor, r.Executor)
	c.changedResource = append(c.changedResource, r.ChangedResource)
	c.sideEffects = append(c.sideEffects, nonNilSlice(r.SideEffects))
	c.errorClass = append(c.errorClass, r.ErrorClass)
	c.errorMessage = append(c.errorMessage, r.ErrorMessage)
	c.durationUS = append(c.durationUS, r.DurationUS)

	// action_digest is one column for all stages: the intent's payload, the
	// approved payload, or the executed payload, by event_type.
	c.actionDigest = append(c.actionDigest, digest)
	c.signerKeyID = append(c.signerKeyID, signerKeyID)
	c.kafkaPartition = append(c.kafkaPartition, partition)
	c.kafkaOffset = append(c.kafkaOffset, offset)
	c.redactions.add(reds)
}

var (
	noIntent   schemas.Intent
	noDecision schemas.Decision
	noApproval schemas.Approval
	noResult   schemas.Result
)

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// values returns the columns in insertColumns order.
func (c *eventColumns) values() []any {
	return []any{
		c.eventID, c.traceID, c.spanID, c.eventType, c.eventTime, c.tier,
		c.agentID, c.agentVersion, c.team, c.environment, c.tenant, c.requestedBy,
		c.producerName, c.producerVersion, c.producerHost, c.sessionID, c.labels,
		c.tool, c.action, c.target, c.actionClass, c.parameters, c.actionDigest,
		c.rationale, c.context, c.modelID, c.promptVersion, c.evidenceIDs, c.confidence,
		c.outcome, c.policyID, c.policyVersion, c.matchedRule, c.reason, c.remainingQuota,
		c.approvalID, c.approvalStatus, c.approver, c.approverRole, c.approverKind,
		c.scope, c.expiresAt, c.channel, c.comment,
		c.resultStatus, c.executor, c.changedResource, c.sideEffects, c.errorClass,
		c.errorMessage, c.durationUS, c.signerKeyID,
		c.kafkaPartition, c.kafkaOffset,
		c.redactions.path, c.redactions.action, c.redactions.rule,
	}
}
