package consumers

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentrail/agentrail/schemas"
)

// The events table, read back: ingest writes it (columns.go, flush.go), and
// the stages that rebuild state from it (correlation, the anomaly rules)
// read it here, by the Processor's prior-state rule (PriorSQL).

// EventRead is a read of db.events for a stage's restore: SELECT Columns
// FROM db.events [FINAL] WHERE (Where) [AND PriorSQL(Prior)] Tail.
type EventRead struct {
	// Columns are the columns to read, of RestoreColumns, in any order;
	// kafka_partition and kafka_offset are always read. The Event fields
	// of the others are left zero.
	Columns []string
	// Final reads the table FINAL: each event once, at the cost of a merge.
	Final bool
	// Where is the stage's condition on the events columns ("1": none).
	Where string
	Args  []any // Where's placeholders
	// Prior, when it holds a partition, keeps only what earlier batches
	// committed (PriorSQL): a Batch's FirstOffset.
	Prior map[int32]int64
	// Tail follows the condition: ORDER BY, LIMIT BY, SETTINGS.
	Tail string
}

// RestoreColumns are the events columns ReadEvents can read back into an
// Event.
var RestoreColumns = []string{"event_id", "trace_id", "span_id", "event_type", "event_time", "tier",
	"agent_id", "agent_version", "team", "environment", "tenant", "requested_by", "session_id",
	"tool", "action", "target", "action_class", "action_digest",
	"outcome", "policy_id", "policy_version", "matched_rule",
	"approval_id", "approval_status", "approver", "approver_role", "approver_kind", "scope", "expires_at",
	"result_status", "executor", "changed_resource", "error_class",
	"kafka_partition", "kafka_offset"}

// ReadEvents calls fn with every event r selects, in the order r.Tail
// asks for. fn's argument is reused for the next event: keep a copy. An
// error from fn stops the read and is returned as it is.
func ReadEvents(ctx context.Context, conn driver.Conn, db string, r EventRead, fn func(*Accepted) error) error {
	var row eventRow
	cols := r.Columns
	for _, c := range []string{"kafka_partition", "kafka_offset"} {
		if !slices.Contains(cols, c) {
			cols = append(slices.Clip(cols), c)
		}
	}
	dest := make([]any, len(cols))
	for i, c := range cols {
		if dest[i] = row.dest(c); dest[i] == nil {
			return fmt.Errorf("consumers: read events: no column %q to restore", c)
		}
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + db + ".events"
	if r.Final {
		q += " FINAL"
	}
	q += " WHERE (" + r.Where + ")"
	if len(r.Prior) > 0 {
		q += " AND " + PriorSQL(r.Prior)
	}
	if r.Tail != "" {
		q += " " + r.Tail
	}
	rows, err := conn.Query(ctx, q, r.Args...)
	if err != nil {
		return fmt.Errorf("consumers: query events: %w", err)
	}
	defer rows.Close()
	var a Accepted
	for rows.Next() {
		row.expiresAt = nil // a NULL is not scanned over the last row's
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("consumers: scan event: %w", err)
		}
		row.event(&a)
		if err := fn(&a); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("consumers: read events: %w", err)
	}
	return nil
}

// PriorSQL is the Processor's prior-state rule as a condition on a table
// with kafka_partition and kafka_offset: the events earlier batches
// committed, given a batch's first offset per partition. In those
// partitions they are the offsets below it; in any other partition, every
// offset (a trace a producer split across partitions). "1" when first is
// empty.
func PriorSQL(first map[int32]int64) string {
	if len(first) == 0 {
		return "1"
	}
	ps := sortedPartitions(first)
	conds := make([]string, 0, len(ps)+1)
	in := make([]string, len(ps))
	for i, p := range ps {
		conds = append(conds, offsetCond(p, "<", first[p]))
		in[i] = strconv.Itoa(int(p))
	}
	conds = append(conds, "kafka_partition NOT IN ("+strings.Join(in, ",")+")")
	return "(" + strings.Join(conds, " OR ") + ")"
}

// PriorInSQL is PriorSQL for the partitions ps only (each in first): the
// events of ps that earlier batches committed.
func PriorInSQL(first map[int32]int64, ps []int32) string {
	return partitionsSQL(first, ps, "<")
}

// RedoSQL is the complement of PriorInSQL in ps: the rows at or after the
// batch's first offsets, which an attempt of the batch that did not commit
// may have written.
func RedoSQL(first map[int32]int64, ps []int32) string {
	return partitionsSQL(first, ps, ">=")
}

func partitionsSQL(first map[int32]int64, ps []int32, op string) string {
	conds := make([]string, len(ps))
	for i, p := range ps {
		conds[i] = offsetCond(p, op, first[p])
	}
	return "(" + strings.Join(conds, " OR ") + ")"
}

func offsetCond(p int32, op string, off int64) string {
	return "(kafka_partition = " + strconv.Itoa(int(p)) + " AND kafka_offset " + op + " " + strconv.FormatInt(off, 10) + ")"
}

func sortedPartitions(m map[int32]int64) []int32 {
	ps := make([]int32, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// eventRow is where ReadEvents scans one row.
type eventRow struct {
	eventID, traceID, spanID, eventType                 string
	eventTime                                           time.Time
	tier                                                uint8
	agentID, agentVersion, team, environment, tenant    string
	requestedBy, sessionID                              string
	tool, action, target, actionClass, digest           string
	outcome, policyID                                   string
	policyVersion                                       int64
	matchedRule, approvalID, approvalStatus, approver   string
	approverRole, approverKind, scope                   string
	expiresAt                                           *time.Time
	resultStatus, executor, changedResource, errorClass string
	partition                                           int32
	offset                                              int64
}

// dest is the scan destination of column c, nil for a column not in
// RestoreColumns.
func (r *eventRow) dest(c string) any {
	switch c {
	case "event_id":
		return &r.eventID
	case "trace_id":
		return &r.traceID
	case "span_id":
		return &r.spanID
	case "event_type":
		return &r.eventType
	case "event_time":
		return &r.eventTime
	case "tier":
		return &r.tier
	case "agent_id":
		return &r.agentID
	case "agent_version":
		return &r.agentVersion
	case "team":
		return &r.team
	case "environment":
		return &r.environment
	case "tenant":
		return &r.tenant
	case "requested_by":
		return &r.requestedBy
	case "session_id":
		return &r.sessionID
	case "tool":
		return &r.tool
	case "action":
		return &r.action
	case "target":
		return &r.target
	case "action_class":
		return &r.actionClass
	case "action_digest":
		return &r.digest
	case "outcome":
		return &r.outcome
	case "policy_id":
		return &r.policyID
	case "policy_version":
		return &r.policyVersion
	case "matched_rule":
		return &r.matchedRule
	case "approval_id":
		return &r.approvalID
	case "approval_status":
		return &r.approvalStatus
	case "approver":
		return &r.approver
	case "approver_role":
		return &r.approverRole
	case "approver_kind":
		return &r.approverKind
	case "scope":
		return &r.scope
	case "expires_at":
		return &r.expiresAt
	case "result_status":
		return &r.resultStatus
	case "executor":
		return &r.executor
	case "changed_resource":
		return &r.changedResource
	case "error_class":
		return &r.errorClass
	case "kafka_partition":
		return &r.partition
	case "kafka_offset":
		return &r.offset
	}
	return nil
}

// event rebuilds the event into a: the fields the events table keeps of
// its type, in UTC.
func (r *eventRow) event(a *Accepted) {
	a.Partition, a.Offset = r.partition, r.offset
	e := &a.Event
	*e = schemas.Event{
		EventID: r.eventID, TraceID: r.traceID, SpanID: r.spanID, Type: schemas.EventType(r.eventType),
		Time: r.eventTime.UTC(), Tier: int32(r.tier), RequestedBy: r.requestedBy, SessionID: r.sessionID,
		Agent: schemas.Agent{ID: r.agentID, Version: r.agentVersion, Team: r.team, Environment: r.environment, Tenant: r.tenant},
	}
	switch e.Type {
	case schemas.TypeIntent:
		e.Intent = &schemas.Intent{Tool: r.tool, Action: r.action, Target: r.target, ActionClass: r.actionClass,
			Tier: int32(r.tier), ActionDigest: r.digest}
	case schemas.TypeDecision:
		e.Decision = &schemas.Decision{Outcome: r.outcome, PolicyID: r.policyID, PolicyVersion: r.policyVersion,
			MatchedRule: r.matchedRule, Tier: int32(r.tier)}
	case schemas.TypeApproval:
		e.Approval = &schemas.Approval{ApprovalID: r.approvalID, Status: r.approvalStatus, Approver: r.approver,
			ApproverRole: r.approverRole, ApproverKind: r.approverKind, ActionDigest: r.digest, Scope: r.scope}
		if r.expiresAt != nil {
			x := r.expiresAt.UTC()
			e.Approval.ExpiresAt = &x
		}
	case schemas.TypeResult:
		e.Result = &schemas.Result{Status: r.resultStatus, ActionDigest: r.digest, Executor: r.executor,
			ChangedResource: r.changedResource, ErrorClass: r.errorClass}
	}
}
