package consumers

import (
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"
	"github.com/cespare/xxhash/v2"

	"github.com/agentrail/agentrail/consumers/redact"
	"github.com/agentrail/agentrail/schemas"
)

// eventColumns holds a batch of events column by column, as ClickHouse's
// native protocol sends them, in ch-go's typed buffers (wireStr for the
// plain strings): a string is copied once, into its column's byte buffer,
// and sent from there. Ingest keeps one eventColumns and resets it for
// every batch, so after the first few batches appending allocates nothing
// and the collector has no per-row string headers to scan.
//
// LowCardinality(String) columns are appended as String: the insert sets
// low_cardinality_allow_in_native_format=0 (insertSettings), so the server
// asks for plain strings and builds the dictionaries itself; a table whose
// columns are plain String takes the same block.
type eventColumns struct {
	eventID, traceID, spanID, eventType         wireStr
	eventTime                                   dateTime64
	tier                                        proto.ColUInt8
	agentID, agentVersion, team, environment    wireStr
	tenant, requestedBy                         wireStr
	producerName, producerVersion, producerHost wireStr
	sessionID                                   wireStr
	labels, parameters, context                 *proto.ColMap[string, string]
	tool, action, target, actionClass           wireStr
	actionDigest, rationale                     wireStr
	modelID, promptVersion                      wireStr
	evidenceIDs, sideEffects                    *proto.ColArr[string]
	confidence                                  *proto.ColNullable[float64]
	outcome, policyID                           wireStr
	policyVersion                               proto.ColInt64
	matchedRule, reason                         wireStr
	remainingQuota                              *proto.ColNullable[int64]
	approvalID, approvalStatus, approver        wireStr
	approverRole, approverKind, scope           wireStr
	expiresAt                                   *proto.ColNullable[proto.DateTime64]
	channel, comment                            wireStr
	resultStatus, executor, changedResource     wireStr
	errorClass, errorMessage                    wireStr
	durationUS                                  proto.ColInt64
	signerKeyID                                 wireStr
	kafkaPartition                              proto.ColInt32
	kafkaOffset                                 proto.ColInt64

	// The redactions Nested column: three parallel Array(String).
	redPath, redAction, redRule          proto.ColStr
	redPathArr, redActionArr, redRuleArr *proto.ColArr[string]

	input proto.Input // every column above, named, in the insert's order

	// blockID digests each row's partition, offset and event_id: the
	// insert's deduplication token (see query).
	blockID xxhash.Digest
}

// newEventColumns returns empty columns, ready to be reused batch after
// batch.
func newEventColumns() *eventColumns {
	c := &eventColumns{}
	c.blockID.Reset()
	for _, m := range []**proto.ColMap[string, string]{&c.labels, &c.parameters, &c.context} {
		*m = proto.NewMap[string, string](new(proto.ColStr), new(proto.ColStr))
	}
	c.evidenceIDs = proto.NewArray[string](new(proto.ColStr))
	c.sideEffects = proto.NewArray[string](new(proto.ColStr))
	c.confidence = proto.NewColNullable[float64](new(proto.ColFloat64))
	c.remainingQuota = proto.NewColNullable[int64](new(proto.ColInt64))
	c.eventTime.WithPrecision(proto.PrecisionMicro).WithLocation(time.UTC)
	expires := &proto.ColDateTime64Raw{}
	expires.WithPrecision(proto.PrecisionMicro).WithLocation(time.UTC)
	c.expiresAt = proto.NewColNullable[proto.DateTime64](expires)
	c.redPathArr = proto.NewArray[string](&c.redPath)
	c.redActionArr = proto.NewArray[string](&c.redAction)
	c.redRuleArr = proto.NewArray[string](&c.redRule)
	c.input = proto.Input{
		{Name: "event_id", Data: &c.eventID},
		{Name: "trace_id", Data: &c.traceID},
		{Name: "span_id", Data: &c.spanID},
		{Name: "event_type", Data: &c.eventType},
		{Name: "event_time", Data: &c.eventTime},
		{Name: "tier", Data: &c.tier},
		{Name: "agent_id", Data: &c.agentID},
		{Name: "agent_version", Data: &c.agentVersion},
		{Name: "team", Data: &c.team},
		{Name: "environment", Data: &c.environment},
		{Name: "tenant", Data: &c.tenant},
		{Name: "requested_by", Data: &c.requestedBy},
		{Name: "producer_name", Data: &c.producerName},
		{Name: "producer_version", Data: &c.producerVersion},
		{Name: "producer_host", Data: &c.producerHost},
		{Name: "session_id", Data: &c.sessionID},
		{Name: "labels", Data: c.labels},
		{Name: "tool", Data: &c.tool},
		{Name: "action", Data: &c.action},
		{Name: "target", Data: &c.target},
		{Name: "action_class", Data: &c.actionClass},
		{Name: "parameters", Data: c.parameters},
		{Name: "action_digest", Data: &c.actionDigest},
		{Name: "rationale", Data: &c.rationale},
		{Name: "context", Data: c.context},
		{Name: "model_id", Data: &c.modelID},
		{Name: "prompt_version", Data: &c.promptVersion},
		{Name: "evidence_ids", Data: c.evidenceIDs},
		{Name: "confidence", Data: c.confidence},
		{Name: "outcome", Data: &c.outcome},
		{Name: "policy_id", Data: &c.policyID},
		{Name: "policy_version", Data: &c.policyVersion},
		{Name: "matched_rule", Data: &c.matchedRule},
		{Name: "reason", Data: &c.reason},
		{Name: "remaining_quota", Data: c.remainingQuota},
		{Name: "approval_id", Data: &c.approvalID},
		{Name: "approval_status", Data: &c.approvalStatus},
		{Name: "approver", Data: &c.approver},
		{Name: "approver_role", Data: &c.approverRole},
		{Name: "approver_kind", Data: &c.approverKind},
		{Name: "scope", Data: &c.scope},
		{Name: "expires_at", Data: c.expiresAt},
		{Name: "channel", Data: &c.channel},
		{Name: "comment", Data: &c.comment},
		{Name: "result_status", Data: &c.resultStatus},
		{Name: "executor", Data: &c.executor},
		{Name: "changed_resource", Data: &c.changedResource},
		{Name: "side_effects", Data: c.sideEffects},
		{Name: "error_class", Data: &c.errorClass},
		{Name: "error_message", Data: &c.errorMessage},
		{Name: "duration_us", Data: &c.durationUS},
		{Name: "signer_key_id", Data: &c.signerKeyID},
		{Name: "kafka_partition", Data: &c.kafkaPartition},
		{Name: "kafka_offset", Data: &c.kafkaOffset},
		{Name: "redactions.path", Data: c.redPathArr},
		{Name: "redactions.action", Data: c.redActionArr},
		{Name: "redactions.rule", Data: c.redRuleArr},
	}
	return c
}

func (c *eventColumns) len() int { return c.eventID.Rows() }

// reset empties every column, keeping what they allocated.
func (c *eventColumns) reset() {
	c.input.Reset()
	c.blockID.Reset()
}

// query is the insert of the columns into table (db.events).
//
// Its insert_deduplication_token names the block by its rows' partitions,
// offsets and event ids, so a block sent again (an insert retried after an
// error that left its fate unknown) is dropped as before, when the server
// named a block by hashing all of its data; hashing some 50 bytes per row
// here instead costs the server less than hashing the whole block
// (docs/PERFORMANCE-HISTORY.md, "ClickHouse: the correlator's rebuild
// query, the insert's block id, and the cost of a merged row"). Rows at the same coordinates with the same event
// ids are the same records, so a block this drops is already stored.
func (c *eventColumns) query(table string) ch.Query {
	names := make([]string, len(c.input))
	for i, col := range c.input {
		names[i] = col.Name
	}
	token := "agentrail:" + strconv.Itoa(c.len()) + ":" + strconv.FormatUint(c.blockID.Sum64(), 16)
	return ch.Query{
		Body:     "INSERT INTO " + table + " (" + strings.Join(names, ", ") + ") VALUES",
		Input:    c.input,
		Settings: append(slices.Clip(nativeInsertSettings), ch.Setting{Key: "insert_deduplication_token", Value: token, Important: true}),
	}
}

// nativeInsertSettings are insertSettings (flush.go) for ch-go.
var nativeInsertSettings = func() []ch.Setting {
	var s []ch.Setting
	for k := range insertSettings {
		s = append(s, ch.SettingInt(k, insertSettings[k].(int)))
	}
	return s
}()

// dateTime64 is a DateTime64(6, 'UTC') column that keeps its type: the
// values are appended as microseconds, so ch-go must not re-read the
// precision from the table's (a table with another precision gets the
// column as declared here and converts it).
type dateTime64 struct{ proto.ColDateTime64 }

// Infer keeps the declared type (see dateTime64).
func (*dateTime64) Infer(proto.ColumnType) error { return nil }

// micros is t as DateTime64(6): microseconds since the epoch, 0 for the
// zero time (as clickhouse-go stored it). Exact over DateTime64's whole
// range, where t.UnixNano would overflow after 2262.
func micros(t time.Time) proto.DateTime64 {
	if t.IsZero() {
		return 0
	}
	return proto.DateTime64(t.UnixMicro())
}

// add appends one event. Absent bodies contribute zero values: one wide table
// keeps a trace's events together on disk and every stage in one scan.
func (c *eventColumns) add(e *schemas.Event, reds []redact.Redaction, partition int32, offset int64, signerKeyID string) {
	c.eventID.Append(e.EventID)
	c.traceID.Append(e.TraceID)
	c.spanID.Append(e.SpanID)
	c.eventType.Append(string(e.Type))
	c.eventTime.AppendRaw(micros(e.Time))
	c.tier.Append(uint8(e.Tier))
	c.agentID.Append(e.Agent.ID)
	c.agentVersion.Append(e.Agent.Version)
	c.team.Append(e.Agent.Team)
	c.environment.Append(e.Agent.Environment)
	c.tenant.Append(e.Agent.Tenant)
	c.requestedBy.Append(e.RequestedBy)
	c.producerName.Append(e.Producer.Name)
	c.producerVersion.Append(e.Producer.Version)
	c.producerHost.Append(e.Producer.Host)
	c.sessionID.Append(e.SessionID)
	c.labels.Append(e.Labels) // a nil map appends an empty one

	in := e.Intent
	if in == nil {
		in = &noIntent
	}
	c.tool.Append(in.Tool)
	c.action.Append(in.Action)
	c.target.Append(in.Target)
	c.actionClass.Append(in.ActionClass)
	c.parameters.Append(in.Parameters)
	digest := in.ActionDigest
	c.rationale.Append(in.Rationale)
	c.context.Append(in.Context)
	c.modelID.Append(in.ModelID)
	c.promptVersion.Append(in.PromptVersion)
	c.evidenceIDs.Append(in.EvidenceIDs) // nil: an empty array
	if in.Confidence != nil {
		c.confidence.Append(proto.NewNullable(*in.Confidence))
	} else {
		c.confidence.Append(proto.Null[float64]())
	}

	d := e.Decision
	if d == nil {
		d = &noDecision
	}
	c.outcome.Append(d.Outcome)
	c.policyID.Append(d.PolicyID)
	c.policyVersion.Append(d.PolicyVersion)
	c.matchedRule.Append(d.MatchedRule)
	c.reason.Append(d.Reason)
	if d.RemainingQuota != nil {
		c.remainingQuota.Append(proto.NewNullable(*d.RemainingQuota))
	} else {
		c.remainingQuota.Append(proto.Null[int64]())
	}

	a := e.Approval
	if a == nil {
		a = &noApproval
	} else if a.ActionDigest != "" {
		digest = a.ActionDigest
	}
	c.approvalID.Append(a.ApprovalID)
	c.approvalStatus.Append(a.Status)
	c.approver.Append(a.Approver)
	c.approverRole.Append(a.ApproverRole)
	c.approverKind.Append(a.ApproverKind)
	c.scope.Append(a.Scope)
	if a.ExpiresAt != nil {
		c.expiresAt.Append(proto.NewNullable(micros(*a.ExpiresAt)))
	} else {
		c.expiresAt.Append(proto.Null[proto.DateTime64]())
	}
	c.channel.Append(a.Channel)
	c.comment.Append(a.Comment)

	r := e.Result
	if r == nil {
		r = &noResult
	} else {
		digest = r.ActionDigest
	}
	c.resultStatus.Append(r.Status)
	c.executor.Append(r.Executor)
	c.changedResource.Append(r.ChangedResource)
	c.sideEffects.Append(r.SideEffects)
	c.errorClass.Append(r.ErrorClass)
	c.errorMessage.Append(r.ErrorMessage)
	c.durationUS.Append(r.DurationUS)

	// action_digest is one column for all stages: the intent's payload, the
	// approved payload, or the executed payload, by event_type.
	c.actionDigest.Append(digest)
	c.signerKeyID.Append(signerKeyID)
	c.kafkaPartition.Append(partition)
	c.kafkaOffset.Append(offset)
	var coord [12]byte
	binary.LittleEndian.PutUint32(coord[:4], uint32(partition))
	binary.LittleEndian.PutUint64(coord[4:], uint64(offset))
	_, _ = c.blockID.Write(coord[:])
	_, _ = c.blockID.WriteString(e.EventID)

	for _, rd := range reds {
		c.redPath.Append(rd.Path)
		c.redAction.Append(rd.Action)
		c.redRule.Append(rd.Rule)
	}
	n := uint64(c.redPath.Rows())
	c.redPathArr.Offsets.Append(n)
	c.redActionArr.Offsets.Append(n)
	c.redRuleArr.Offsets.Append(n)
}

var (
	noIntent   schemas.Intent
	noDecision schemas.Decision
	noApproval schemas.Approval
	noResult   schemas.Result
)
