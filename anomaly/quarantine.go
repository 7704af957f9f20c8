package anomaly

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/signing"
)

// QuarantineRule names the alerts raised for events ingest quarantined
// because their signature did not verify. It is built in, not a rule of the
// rule file: an unauthentic event is always worth an alert.
const QuarantineRule = "event_signature"

// QuarantineSeverity is those alerts' severity.
const QuarantineSeverity = "high"

// qGroup is one alert's group: the agent an event claimed to be, why it was
// quarantined, and the hour of its event time. Grouping by hour keeps a
// misconfigured producer (every event unsigned) to one alert an hour that
// grows, instead of one per event, while a single forged event still raises
// its own alert at once.
type qGroup struct {
	agent  string
	reason signing.Reason
	hour   int64 // µs
}

// qStats is what the quarantine table says about a group.
type qStats struct {
	team         string
	count        uint64
	first, last  time.Time
	ids, keys    []string
	minPartition int32
	minOffset    int64
}

// quarantineAlerts returns the alerts for the batch's quarantined events,
// and which of them are new. The rows are read back from the quarantine
// table, where ingest inserted this batch's before calling processors: an
// alert's version is the number of events in its group so far, so a redone
// batch rewrites the same version and the table (ReplacingMergeTree on the
// Kafka position) never counts an event twice. An alert is new in the
// batch holding its group's first record. Without a connection (tests) the
// batch alone is counted.
func (p *Processor) quarantineAlerts(ctx context.Context, b *consumers.Batch) ([]Alert, map[string]bool, error) {
	if len(b.Quarantined) == 0 {
		return nil, nil, nil
	}
	groups := map[qGroup]*qStats{}
	type pos struct {
		p int32
		o int64
	}
	firstInBatch := map[qGroup]pos{}
	var agents, reasons []string
	lo, hi := int64(1<<62), int64(-1<<62)
	for i := range b.Quarantined {
		q := &b.Quarantined[i]
		g := qGroup{agent: q.Agent.ID, reason: q.Verdict.Reason, hour: q.Time.Truncate(time.Hour).UnixMicro()}
		st, ok := groups[g]
		if !ok {
			st = &qStats{team: q.Agent.Team, first: q.Time, last: q.Time, minPartition: q.Partition, minOffset: q.Offset}
			groups[g] = st
			if !slices.Contains(agents, g.agent) {
				agents = append(agents, g.agent)
			}
			if !slices.Contains(reasons, string(g.reason)) {
				reasons = append(reasons, string(g.reason))
			}
		}
		st.count++
		st.first, st.last = earlier(st.first, q.Time), later(st.last, q.Time)
		if q.EventID != "" { // "" when the value was withheld (not a valid event)
			st.ids = append(st.ids, q.EventID)
		}
		if q.Verdict.KeyID != "" && len(st.keys) < 5 && !slices.Contains(st.keys, q.Verdict.KeyID) {
			st.keys = append(st.keys, q.Verdict.KeyID)
		}
		if f, ok := firstInBatch[g]; !ok || q.Partition < f.p || (q.Partition == f.p && q.Offset < f.o) {
			firstInBatch[g] = pos{q.Partition, q.Offset}
			st.minPartition, st.minOffset = q.Partition, q.Offset
		}
		lo, hi = min(lo, g.hour), max(hi, g.hour)
	}
	if p.conn != nil {
		stored, err := p.readQuarantine(ctx, agents, reasons, lo, hi+time.Hour.Microseconds())
		if err != nil {
			return nil, nil, err
		}
		for g, st := range stored {
			if _, inBatch := groups[g]; inBatch {
				groups[g] = st
			}
		}
	}
	alerts := make([]Alert, 0, len(groups))
	isNew := map[string]bool{}
	for g, st := range groups {
		a := quarantineAlert(g, st, p.cfg.MaxEventIDs)
		alerts = append(alerts, a)
		if f := firstInBatch[g]; f.p == st.minPartition && f.o == st.minOffset {
			isNew[a.ID] = true
		}
	}
	sort.Slice(alerts, func(i, j int) bool { return alerts[i].ID < alerts[j].ID })
	return alerts, isNew, nil
}

// readQuarantine reads the groups of the given agents and reasons with
// event times in [fromUS, toUS) from the quarantine table.
func (p *Processor) readQuarantine(ctx context.Context, agents, reasons []string, fromUS, toUS int64) (map[qGroup]*qStats, error) {
	maxIDs := strconv.Itoa(p.cfg.MaxEventIDs)
	q := `SELECT agent_id, reason, toInt64(toUnixTimestamp(toStartOfHour(event_time))) * 1000000 AS hour, any(team), count(),
			min(event_time), max(event_time),
			arrayMap(x -> x.2, groupArraySortedIf(` + maxIDs + `)((event_time, event_id), event_id != '')),
			arrayFilter(k -> k != '', groupUniqArray(5)(key_id)),
			tupleElement(min((partition, offset)), 1), tupleElement(min((partition, offset)), 2)
		FROM ` + p.db + `.quarantine FINAL
		WHERE has(?, toString(agent_id)) AND has(?, toString(reason))
			AND event_time >= fromUnixTimestamp64Micro(` + strconv.FormatInt(fromUS, 10) + `)
			AND event_time < fromUnixTimestamp64Micro(` + strconv.FormatInt(toUS, 10) + `)
		GROUP BY agent_id, reason, hour`
	rows, err := p.conn.Query(ctx, q, agents, reasons)
	if err != nil {
		return nil, fmt.Errorf("anomaly: read quarantine: %w", err)
	}
	defer rows.Close()
	out := map[qGroup]*qStats{}
	for rows.Next() {
		var (
			agent, reason string
			hour          int64
			st            qStats
		)
		if err := rows.Scan(&agent, &reason, &hour, &st.team, &st.count, &st.first, &st.last, &st.ids, &st.keys, &st.minPartition, &st.minOffset); err != nil {
			return nil, fmt.Errorf("anomaly: read quarantine: %w", err)
		}
		st.first, st.last = st.first.UTC(), st.last.UTC()
		out[qGroup{agent: agent, reason: signing.Reason(reason), hour: hour}] = &st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("anomaly: read quarantine: %w", err)
	}
	return out, nil
}

func quarantineAlert(g qGroup, st *qStats, maxIDs int) Alert {
	start := time.UnixMicro(g.hour).UTC()
	h := sha256.Sum256([]byte(QuarantineRule + "\x00" + g.agent + "\x00" + string(g.reason) + "\x00" + strconv.FormatInt(g.hour, 10)))
	keys := append([]string(nil), st.keys...)
	sort.Strings(keys)
	ids := st.ids
	if len(ids) > maxIDs {
		ids = ids[:maxIDs]
	}
	noun := "events"
	if st.count == 1 {
		noun = "event"
	}
	summary := fmt.Sprintf("%d %s claiming agent %s quarantined: %s", st.count, noun, g.agent, describeReason(g.reason))
	if len(keys) > 0 {
		summary += " (key " + strings.Join(keys, ", ") + ")"
	}
	return Alert{
		ID: hex.EncodeToString(h[:16]), Version: st.count,
		Rule: QuarantineRule, Kind: "quarantine", Severity: QuarantineSeverity,
		Team: st.team, AgentID: g.agent,
		GroupKey:    "agent=" + g.agent + ", reason=" + string(g.reason),
		WindowStart: start, WindowEnd: start.Add(time.Hour),
		Observed: float64(st.count), Threshold: 1,
		EventIDs:  ids,
		FirstSeen: st.first, LastSeen: st.last,
		// The window's start, not the first event's time: it stays the same
		// in every version, so each version lands in the same partition of
		// the alerts table and replaces the previous one.
		RaisedAt: start, SuppressUntil: start.Add(time.Hour),
		Summary: summary,
	}
}

func describeReason(r signing.Reason) string {
	switch r {
	case signing.Unsigned:
		return "not signed"
	case signing.UnknownKey:
		return "signed with a key that is not in the registry"
	case signing.BadSignature:
		return "the signature does not match the record (forged or altered)"
	case signing.IdentityMismatch:
		return "signed with another agent's key"
	case signing.KeyExpired:
		return "signed with a key past its not_after"
	case signing.KeyNotYetValid:
		return "signed with a key before its not_before"
	}
	return string(r)
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
