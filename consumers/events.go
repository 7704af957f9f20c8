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
	var row EventRow
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
		row.ExpiresAt = nil // a NULL is not scanned over the last row's
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("consumers: scan event: %w", err)
		}
		a.Event, a.Partition, a.Offset = row.Event(), row.Partition, row.Offset
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

// EventRow is one events row as a stage's restore or a lookup reads it:
// the envelope, the columns that identify each body, and the row's place in
// the events topic. ReadEvents scans into one; Event rebuilds the event
// from it, the one place the stored columns become a schemas.Event again.
type EventRow struct {
	EventID, TraceID, SpanID, EventType                 string
	EventTime                                           time.Time
	Tier                                                uint8
	AgentID, AgentVersion, Team, Environment, Tenant    string
	RequestedBy, SessionID                              string
	Tool, Action, Target, ActionClass, Digest           string
	Outcome, PolicyID                                   string
	PolicyVersion                                       int64
	MatchedRule, ApprovalID, ApprovalStatus, Approver   string
	ApproverRole, ApproverKind, Scope                   string
	ExpiresAt                                           *time.Time
	ResultStatus, Executor, ChangedResource, ErrorClass string
	Partition                                           int32
	Offset                                              int64
}

func (r *EventRow) dest(c string) any {
	switch c {
	case "event_id":
		return &r.EventID
	case "trace_id":
		return &r.TraceID
	case "span_id":
		return &r.SpanID
	case "event_type":
		return &r.EventType
	case "event_time":
		return &r.EventTime
	case "tier":
		return &r.Tier
	case "agent_id":
		return &r.AgentID
	case "agent_version":
		return &r.AgentVersion
	case "team":
		return &r.Team
	case "environment":
		return &r.Environment
	case "tenant":
		return &r.Tenant
	case "requested_by":
		return &r.RequestedBy
	case "session_id":
		return &r.SessionID
	case "tool":
		return &r.Tool
	case "action":
		return &r.Action
	case "target":
		return &r.Target
	case "action_class":
		return &r.ActionClass
	case "action_digest":
		return &r.Digest
	case "outcome":
		return &r.Outcome
	case "policy_id":
		return &r.PolicyID
	case "policy_version":
		return &r.PolicyVersion
	case "matched_rule":
		return &r.MatchedRule
	case "approval_id":
		return &r.ApprovalID
	case "approval_status":
		return &r.ApprovalStatus
	case "approver":
		return &r.Approver
	case "approver_role":
		return &r.ApproverRole
	case "approver_kind":
		return &r.ApproverKind
	case "scope":
		return &r.Scope
	case "expires_at":
		return &r.ExpiresAt
	case "result_status":
		return &r.ResultStatus
	case "executor":
		return &r.Executor
	case "changed_resource":
		return &r.ChangedResource
	case "error_class":
		return &r.ErrorClass
	case "kafka_partition":
		return &r.Partition
	case "kafka_offset":
		return &r.Offset
	}
	return nil
}

// Event rebuilds the event: the fields the events table keeps of its
// type, in UTC.
func (r *EventRow) Event() schemas.Event {
	e := schemas.Event{
		EventID: r.EventID, TraceID: r.TraceID, SpanID: r.SpanID, Type: schemas.EventType(r.EventType),
		Time: r.EventTime.UTC(), Tier: int32(r.Tier), RequestedBy: r.RequestedBy, SessionID: r.SessionID,
		Agent: schemas.Agent{ID: r.AgentID, Version: r.AgentVersion, Team: r.Team, Environment: r.Environment, Tenant: r.Tenant},
	}
	switch e.Type {
	case schemas.TypeIntent:
		e.Intent = &schemas.Intent{Tool: r.Tool, Action: r.Action, Target: r.Target, ActionClass: r.ActionClass,
			Tier: int32(r.Tier), ActionDigest: r.Digest}
	case schemas.TypeDecision:
		e.Decision = &schemas.Decision{Outcome: r.Outcome, PolicyID: r.PolicyID, PolicyVersion: r.PolicyVersion,
			MatchedRule: r.MatchedRule, Tier: int32(r.Tier)}
	case schemas.TypeApproval:
		e.Approval = &schemas.Approval{ApprovalID: r.ApprovalID, Status: r.ApprovalStatus, Approver: r.Approver,
			ApproverRole: r.ApproverRole, ApproverKind: r.ApproverKind, ActionDigest: r.Digest, Scope: r.Scope}
		if r.ExpiresAt != nil {
			x := r.ExpiresAt.UTC()
			e.Approval.ExpiresAt = &x
		}
	case schemas.TypeResult:
		e.Result = &schemas.Result{Status: r.ResultStatus, ActionDigest: r.Digest, Executor: r.Executor,
			ChangedResource: r.ChangedResource, ErrorClass: r.ErrorClass}
	}
	return e
}
