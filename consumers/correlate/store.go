package correlate

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentrail/agentrail/consumers"
)

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// quote makes a ClickHouse string literal.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return strings.Join(q, ",")
}

// skipIndexesFinal ends the rebuild query (loadTraces), which reads events
// FINAL for a set of traces within an event-time range. With FINAL,
// ClickHouse by default widens the granules a skip index picked to every
// overlapping range of newer parts, in case a newer version of a row no
// longer matches the index; on a table of 2 M rows in 14 parts a rebuild
// of two traces then read 452,618 rows instead of 16,384 (0.48 against
// 0.06 CPU-s). Every skip index of events is on a sort-key column
// (trace_id, event_id), and all versions of a row share their sort key, so
// the index picks every version of a matching row and the widening finds
// nothing more: the result is the same without it (ClickHouse issue 85897
// asks the server to see this by itself). The setting is there (and on by
// default) from 25.6 on; clickhouse-go supports 25.8 and later.
//
// It is not a rule for every such query. Looking up one trace by its id
// (Lookup, with or without its row's team, agent and time) was slower with
// the setting on ClickHouse 26.7, though it read as many rows or fewer
// (docs/PERFORMANCE-HISTORY.md, "One trace at 10 M events: `agentrail
// trace` keeps the exact FINAL mode"). So Lookup leaves the server's
// default.
const skipIndexesFinal = ` SETTINGS use_skip_indexes_if_final_exact_mode = 0`

func chTime(t time.Time) string {
	return "toDateTime64(" + quote(t.UTC().Format("2006-01-02 15:04:05.000000")) + ", 6, 'UTC')"
}

// loadPolicies merges every policy version's first sighting, which
// ClickHouse keeps in policy_versions, into the view.
func (c *Correlator) loadPolicies(ctx context.Context) error {
	rows, err := c.ch.Query(ctx, `SELECT policy_id, policy_version, min(first_seen), argMinMerge(first_event)
		FROM `+c.db+`.policy_versions GROUP BY policy_id, policy_version`)
	if err != nil {
		return fmt.Errorf("correlate: load policy versions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, ev  string
			version int64
			at      time.Time
		)
		if err := rows.Scan(&id, &version, &at, &ev); err != nil {
			return fmt.Errorf("correlate: load policy versions: %w", err)
		}
		c.pol.observe(id, version, at, ev)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("correlate: load policy versions: %w", err)
	}
	return nil
}

// initPartitions prepares the partitions this process starts on, or restarts
// on because the batch redoes offsets it already processed (an earlier
// attempt was not committed):
//   - violation rows an uncommitted attempt wrote (at or after the batch's
//     first offset) are deleted, so a row always means "emitted";
//   - the history filter learns which traces ClickHouse already holds;
//   - traces with a violation still waiting to settle become pending.
func (c *Correlator) initPartitions(ctx context.Context, bv *batchView) error {
	var fresh []int32
	for p, first := range bv.b.FirstOffset {
		ps := c.parts[p]
		if ps == nil || first <= ps.lastEnd {
			fresh = append(fresh, p)
		}
	}
	if len(fresh) == 0 {
		c.advance(bv)
		return nil
	}
	sort.Slice(fresh, func(i, j int) bool { return fresh[i] < fresh[j] })
	// Forget what this process held of them: ClickHouse is the truth.
	c.revokedMu.Lock()
	c.revoked = append(c.revoked, fresh...)
	c.revokedMu.Unlock()
	c.applyRevoked()

	minTime := map[int32]time.Time{}
	for i := range bv.b.Events {
		e := &bv.b.Events[i]
		if t, ok := minTime[e.Partition]; !ok || e.Time.Before(t) {
			minTime[e.Partition] = e.Time
		}
	}
	since := bv.b.Now
	for _, p := range fresh {
		if t, ok := minTime[p]; ok {
			since = minTime2(since, t)
		}
	}
	since = since.Add(-c.cfg.Lookback)

	// 1. Rows of uncommitted attempts.
	var n uint64
	cond := consumers.RedoSQL(bv.b.FirstOffset, fresh)
	if err := c.ch.QueryRow(ctx, "SELECT count() FROM "+c.db+".violations WHERE "+cond).Scan(&n); err != nil {
		return fmt.Errorf("correlate: look for uncommitted violation rows: %w", err)
	}
	if n > 0 {
		if err := c.ch.Exec(ctx, "DELETE FROM "+c.db+".violations WHERE "+cond); err != nil {
			return fmt.Errorf("correlate: delete %d uncommitted violation rows: %w", n, err)
		}
		c.log.Info("removed violation rows of an uncommitted batch; the batch is redone", "rows", n, "partitions", fresh)
	}
	// Rows of ticks whose transaction's fate ClickHouse cannot tell.
	if err := c.resolveTicks(ctx, bv, fresh); err != nil {
		return err
	}

	// 2. Traces ClickHouse already holds, as xxHash64 of their id.
	hashes := map[int32][]uint64{}
	rows, err := c.ch.Query(ctx, `SELECT kafka_partition, xxHash64(trace_id) AS h FROM `+c.db+`.events
		WHERE event_time >= `+chTime(since)+` AND `+consumers.PriorInSQL(bv.b.FirstOffset, fresh)+` GROUP BY kafka_partition, h`)
	if err != nil {
		return fmt.Errorf("correlate: load trace history: %w", err)
	}
	for rows.Next() {
		var p int32
		var h uint64
		if err := rows.Scan(&p, &h); err != nil {
			rows.Close()
			return fmt.Errorf("correlate: load trace history: %w", err)
		}
		hashes[p] = append(hashes[p], h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("correlate: load trace history: %w", err)
	}
	histories := map[int32]*history{}
	for _, p := range fresh {
		hs := hashes[p]
		h := newHistory(len(hs) + c.cfg.MaxTraces)
		for _, x := range hs {
			h.add(x)
		}
		histories[p] = h
	}

	// 3. Violations waiting to settle: the traces' unconfirmed kinds not yet
	// in the violations table.
	parts := make([]string, len(fresh))
	for i, p := range fresh {
		parts[i] = strconv.Itoa(int(p))
	}
	rows, err = c.ch.Query(ctx, `SELECT t.trace_id, any(t.kafka_partition), max(t.last_event_time), min(t.settle_at) FROM (
			SELECT trace_id, kafka_partition, last_event_time, assumeNotNull(settle_at) AS settle_at, arrayJoin(unconfirmed) AS kind
			FROM `+c.db+`.traces FINAL WHERE kafka_partition IN (`+strings.Join(parts, ",")+`) AND notEmpty(unconfirmed)
		) AS t LEFT ANTI JOIN (SELECT trace_id, kind FROM `+c.db+`.violations FINAL) AS v
		ON t.trace_id = v.trace_id AND t.kind = v.kind GROUP BY t.trace_id`)
	if err != nil {
		return fmt.Errorf("correlate: load pending violations: %w", err)
	}
	pending := map[string]pendingEntry{}
	for rows.Next() {
		var (
			id         string
			p          int32
			at, settle time.Time
		)
		if err := rows.Scan(&id, &p, &at, &settle); err != nil {
			rows.Close()
			return fmt.Errorf("correlate: load pending violations: %w", err)
		}
		pending[id] = pendingEntry{partition: p, settleAt: settle.UTC(), around: at}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("correlate: load pending violations: %w", err)
	}
	// Only now, so that a failed step (Process is retried) starts over.
	for _, p := range fresh {
		c.parts[p] = &partState{history: histories[p], lastEnd: -1}
	}
	for id, pe := range pending {
		c.pending[id] = pe
	}
	c.m.inits.Add(float64(len(fresh)))
	c.log.Info("correlation partitions initialized", "partitions", fresh, "known_traces", countHashes(hashes), "pending", len(pending))
	c.advance(bv)
	return nil
}

// advance records how far the batch reaches in each partition.
func (c *Correlator) advance(bv *batchView) {
	for i := range bv.b.Events {
		e := &bv.b.Events[i]
		if ps := c.parts[e.Partition]; ps != nil && e.Offset > ps.lastEnd {
			ps.lastEnd = e.Offset
		}
	}
	for p, first := range bv.b.FirstOffset {
		ps := c.parts[p]
		switch {
		case ps == nil:
		case bv.tick:
			// A tick reads below its committed offset and moves nothing:
			// the next batch starts at first without being a redo.
			ps.lastEnd = max(ps.lastEnd, first-1)
		case first > ps.lastEnd:
			// A batch of only rejected records still moves the partition on.
			ps.lastEnd = first
		}
	}
}

func countHashes(m map[int32][]uint64) int {
	n := 0
	for _, hs := range m {
		n += len(hs)
	}
	return n
}

func minTime2(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// slimColumns are the events columns correlation reads (consumers.ReadEvents
// adds kafka_partition and kafka_offset).
var slimColumns = []string{"trace_id", "event_id", "span_id", "event_type", "event_time", "tier", "agent_id", "agent_version", "team",
	"environment", "tenant", "requested_by", "session_id", "tool", "action", "target", "action_class", "action_digest",
	"outcome", "policy_id", "policy_version", "matched_rule", "approval_id", "approval_status", "approver", "approver_role",
	"approver_kind", "scope", "expires_at", "result_status", "executor", "changed_resource", "error_class"}

// loadTraces rebuilds traces from ClickHouse in one query: their events
// that earlier batches committed (below the batch's first offset in the
// batch's partitions; any offset in other partitions, for traces a producer
// split), first max_events_per_trace in stream order, within the lookback
// around the batch's events of them; and the violations already emitted.
func (c *Correlator) loadTraces(ctx context.Context, bv *batchView, ids []string, around map[string][2]time.Time) (map[string]*traceState, error) {
	var lo, hi time.Time
	for _, id := range ids {
		w := around[id]
		if lo.IsZero() || w[0].Before(lo) {
			lo = w[0]
		}
		if hi.IsZero() || w[1].After(hi) {
			hi = w[1]
		}
	}
	lo, hi = lo.Add(-c.cfg.Lookback), hi.Add(c.cfg.Lookback)
	idList := quoteAll(ids)
	states := map[string]*traceState{}
	err := consumers.ReadEvents(ctx, c.ch, c.db, consumers.EventRead{Columns: slimColumns, Final: true,
		Where: `trace_id IN (` + idList + `) AND event_time BETWEEN ` + chTime(lo) + ` AND ` + chTime(hi),
		Prior: bv.b.FirstOffset,
		Tail: `ORDER BY trace_id, kafka_partition, kafka_offset
		LIMIT ` + strconv.Itoa(c.cfg.MaxEventsPerTrace) + ` BY trace_id` + skipIndexesFinal,
	}, func(a *consumers.Accepted) error {
		st := states[a.TraceID]
		if st == nil {
			st = &traceState{id: a.TraceID, partition: a.Partition}
			states[a.TraceID] = st
		}
		// When ingest took it is not known here (ingested_at is another
		// clock): a violation it decides settles at the traces row's settle_at.
		st.add(stored{ev: a.Event, partition: a.Partition, offset: a.Offset})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("correlate: rebuild %d traces: %w", len(ids), err)
	}
	// The trace's partition is where this batch carries it, if it does.
	for id, st := range states {
		if evs := bv.eventsOf(id); len(evs) > 0 {
			st.partition = evs[0].Partition
		}
	}

	rows, err := c.ch.Query(ctx, `SELECT trace_id, kind, kafka_partition, kafka_offset FROM `+c.db+`.violations FINAL
		WHERE trace_id IN (`+idList+`)`)
	if err != nil {
		return nil, fmt.Errorf("correlate: read emitted violations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, kind string
			mk       marker
		)
		if err := rows.Scan(&id, &kind, &mk.partition, &mk.offset); err != nil {
			return nil, fmt.Errorf("correlate: read emitted violations: %w", err)
		}
		st := states[id]
		if st == nil {
			st = &traceState{id: id, partition: mk.partition}
			if evs := bv.eventsOf(id); len(evs) > 0 {
				st.partition = evs[0].Partition
			}
			states[id] = st
		}
		if st.emitted == nil {
			st.emitted = map[Kind]marker{}
		}
		st.emitted[Kind(kind)] = mk
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("correlate: read emitted violations: %w", err)
	}
	return states, nil
}

// traceColumns is the traces insert column list, in the order traceInsert
// fills them.
var traceColumns = []string{
	"trace_id", "kafka_partition", "team", "agent_id", "agent_version", "environment", "tenant", "session_id",
	"requested_by", "tool", "action", "target", "action_class", "tier",
	"outcome", "policy_id", "policy_version", "matched_rule",
	"approval_id", "approval_status", "approver", "approver_kind", "approval_scope", "approval_expires_at",
	"result_status", "executor", "changed_resource", "error_class",
	"intent_time", "decision_time", "approval_time", "result_time", "first_event_time", "last_event_time",
	"decision_ms", "approval_wait_ms", "execution_ms", "total_ms",
	"events", "intents", "decisions", "approvals", "results", "actions", "pending_actions", "orphan_actions",
	"abandon_at", "unconfirmed", "settle_at", "updated_at", "version",
}

func traceInsert(db string, rows []traceRow, now time.Time) consumers.Insert {
	n := len(rows)
	var (
		traceID, team, agentID, agentVersion, environment, tenant, sessionID = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		requestedBy, tool, action, target, actionClass                       = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		outcome, policyID, matchedRule                                       = make([]string, n), make([]string, n), make([]string, n)
		approvalID, approvalStatus, approver, approverKind, scope            = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		resultStatus, executor, changed, errorClass                          = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		partition                                                            = make([]int32, n)
		tier                                                                 = make([]uint8, n)
		policyVersion                                                        = make([]int64, n)
		expires, intentT, decisionT, approvalT, resultT                      = make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
		firstT, lastT, abandonAt, updated                                    = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		decisionMS, waitMS, execMS, totalMS                                  = make([]*int64, n), make([]*int64, n), make([]*int64, n), make([]*int64, n)
		events, intents, decisions, approvals, results                       = make([]uint32, n), make([]uint32, n), make([]uint32, n), make([]uint32, n), make([]uint32, n)
		actions, pendingA, orphanA                                           = make([]uint32, n), make([]uint32, n), make([]uint32, n)
		unconfirmed                                                          = make([][]string, n)
		settleAt                                                             = make([]*time.Time, n)
		version                                                              = make([]uint64, n)
	)
	for i, r := range rows {
		t := &r.t
		traceID[i], partition[i], team[i], agentID[i], agentVersion[i] = t.TraceID, r.partition, t.Team, t.AgentID, t.AgentVersion
		environment[i], tenant[i], sessionID[i], requestedBy[i] = t.Environment, t.Tenant, t.SessionID, t.RequestedBy
		tool[i], action[i], target[i], actionClass[i], tier[i] = t.Tool, t.Action, t.Target, t.ActionClass, uint8(t.Tier)
		outcome[i], policyID[i], policyVersion[i], matchedRule[i] = t.Outcome, t.PolicyID, t.PolicyVersion, t.MatchedRule
		approvalID[i], approvalStatus[i], approver[i], approverKind[i], scope[i] = t.ApprovalID, t.ApprovalStatus, t.Approver, t.ApproverKind, t.ApprovalScope
		expires[i] = t.ApprovalExpiresAt
		resultStatus[i], executor[i], changed[i], errorClass[i] = t.ResultStatus, t.Executor, t.ChangedResource, t.ErrorClass
		intentT[i], decisionT[i], approvalT[i], resultT[i] = t.IntentTime, t.DecisionTime, t.ApprovalTime, t.ResultTime
		firstT[i], lastT[i] = t.FirstEventTime, t.LastEventTime
		decisionMS[i], waitMS[i], execMS[i], totalMS[i] = t.DecisionMS, t.ApprovalWaitMS, t.ExecutionMS, t.TotalMS
		events[i], intents[i], decisions[i], approvals[i], results[i] = uint32(t.Events), uint32(t.Intents), uint32(t.Decisions), uint32(t.Approvals), uint32(t.Results)
		actions[i], pendingA[i], orphanA[i] = uint32(t.Actions), uint32(t.PendingActions), uint32(t.OrphanActions)
		abandonAt[i], updated[i], version[i] = r.abandonAt, now, r.version
		if !r.settleAt.IsZero() {
			settleAt[i] = &r.settleAt
		}
		unconfirmed[i] = make([]string, 0, len(r.unconfirmed))
		for _, k := range r.unconfirmed {
			unconfirmed[i] = append(unconfirmed[i], string(k))
		}
	}
	return consumers.Insert{
		Table:   db + ".traces",
		Columns: traceColumns,
		Values: []any{traceID, partition, team, agentID, agentVersion, environment, tenant, sessionID,
			requestedBy, tool, action, target, actionClass, tier,
			outcome, policyID, policyVersion, matchedRule,
			approvalID, approvalStatus, approver, approverKind, scope, expires,
			resultStatus, executor, changed, errorClass,
			intentT, decisionT, approvalT, resultT, firstT, lastT,
			decisionMS, waitMS, execMS, totalMS,
			events, intents, decisions, approvals, results, actions, pendingA, orphanA,
			abandonAt, unconfirmed, settleAt, updated, version},
	}
}

// violationColumns is the violations insert column list.
var violationColumns = []string{
	"violation_id", "kind", "severity", "trace_id", "span_id", "team", "agent_id", "requested_by", "tool", "action",
	"tier", "policy_id", "policy_version", "event_time", "detected_at", "deciding_event_id", "evidence_event_ids",
	"explanation", "kafka_partition", "kafka_offset",
}

func violationInsert(db string, vs []emitted) consumers.Insert {
	n := len(vs)
	var (
		id, kind, severity, traceID, spanID, team, agentID = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		requestedBy, tool, action, policyID, deciding      = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		explanation                                        = make([]string, n)
		tier                                               = make([]uint8, n)
		policyVersion, offset                              = make([]int64, n), make([]int64, n)
		eventTime, detected                                = make([]time.Time, n), make([]time.Time, n)
		evidence                                           = make([][]string, n)
		partition                                          = make([]int32, n)
	)
	for i, e := range vs {
		v := &e.v
		id[i], kind[i], severity[i], traceID[i], spanID[i] = v.ViolationID, string(v.Kind), v.Severity, v.TraceID, v.SpanID
		team[i], agentID[i], requestedBy[i], tool[i], action[i] = v.Team, v.AgentID, v.RequestedBy, v.Tool, v.Action
		tier[i], policyID[i], policyVersion[i] = uint8(v.Tier), v.PolicyID, v.PolicyVersion
		eventTime[i], detected[i], deciding[i], evidence[i], explanation[i] = v.EventTime, v.DetectedAt, v.DecidingEventID, v.Evidence, v.Explanation
		partition[i], offset[i] = e.marker.partition, e.marker.offset
	}
	return consumers.Insert{
		Table:   db + ".violations",
		Columns: violationColumns,
		Values: []any{id, kind, severity, traceID, spanID, team, agentID, requestedBy, tool, action,
			tier, policyID, policyVersion, eventTime, detected, deciding, evidence, explanation, partition, offset},
	}
}
