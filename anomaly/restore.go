package anomaly

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentrail/agentrail/consumers"
)

// eventColumns are the columns of the events table the rules read
// (consumers.ReadEvents adds kafka_partition and kafka_offset).
var eventColumns = []string{"event_id", "trace_id", "event_type", "event_time", "tier", "agent_id", "team", "requested_by",
	"tool", "action", "target", "action_class", "action_digest", "outcome", "policy_id",
	"approval_status", "approver", "approver_kind", "result_status"}

// restoreFilter is the SQL condition selecting the events a rule's state is
// made of, and how far before the reference time they reach (µs); "" when
// the rule restores otherwise (first_use) or needs nothing.
func restoreFilter(k evaluator) (cond string, reach int64) {
	r := k.rule()
	switch k := k.(type) {
	case *retryBurst:
		return "event_type IN ('intent', 'policy_decision', 'result')", r.size
	case *outOfHours:
		if r.Threshold == 1 {
			return "", 0 // every out-of-hours action fires on its own
		}
		return "event_type = 'intent'", r.size
	case *denialSpike:
		return "event_type = 'policy_decision' AND outcome = 'deny'", k.horizon()
	case *probing:
		return "event_type IN ('intent', 'policy_decision')", 2 * r.size
	case *fatigue:
		if k.speed {
			return "(event_type = 'approval' OR (event_type = 'policy_decision' AND outcome = 'require_approval'))", k.horizon()
		}
		return "event_type = 'approval'", r.size
	}
	return "", 0
}

// restoreStats says what a restore read.
type restoreStats struct {
	Events     int             // events replayed
	Seeded     int             // first_use history rows
	OpenAlerts int             // alerts still open, read back
	MaxOffset  map[int32]int64 // per partition, the highest offset replayed
}

// restore rebuilds en's state as of ref from ClickHouse: it replays each
// rule's recent events (in event-time order, raising nothing), seeds
// first_use from an aggregate of its history, and reads back the alerts
// still open. It reads events without FINAL: a redelivered copy has the
// same time and id, and windows count a (time, id) once. With exclude (a
// Batch's FirstOffset), only what earlier batches committed is read
// (consumers.PriorSQL): not the batch being done or redone. With upto set,
// events from upto on are left out too (backtests).
func restore(ctx context.Context, conn driver.Conn, db string, en *Engine, ref time.Time, exclude map[int32]int64, upto time.Time, alerts bool) (restoreStats, error) {
	st := restoreStats{MaxOffset: map[int32]int64{}}
	refUS := ref.UnixMicro()
	en.restoring, en.restoreRef = true, refUS
	defer func() { en.restoring = false }()

	var where []string
	for _, k := range en.evals {
		cond, reach := restoreFilter(k)
		if cond == "" {
			continue
		}
		from := refUS - en.lateness - reach
		where = append(where, fmt.Sprintf("(%s AND event_time >= fromUnixTimestamp64Micro(%d))", cond, from))
	}
	var common string // the conditions every restore query ends with
	if len(exclude) > 0 {
		common = " AND " + consumers.PriorSQL(exclude)
	}
	if !upto.IsZero() {
		common += fmt.Sprintf(" AND event_time < fromUnixTimestamp64Micro(%d)", upto.UnixMicro())
	}
	if len(where) > 0 {
		cond := "(" + strings.Join(where, " OR ") + ")"
		if !upto.IsZero() {
			cond += fmt.Sprintf(" AND event_time < fromUnixTimestamp64Micro(%d)", upto.UnixMicro())
		}
		err := consumers.ReadEvents(ctx, conn, db, consumers.EventRead{Columns: eventColumns, Where: cond, Prior: exclude,
			Tail: "ORDER BY event_time, kafka_partition, kafka_offset"}, func(a *consumers.Accepted) error {
			en.Observe(&a.Event)
			st.Events++
			if o, ok := st.MaxOffset[a.Partition]; !ok || a.Offset > o {
				st.MaxOffset[a.Partition] = a.Offset
			}
			return nil
		})
		if err != nil {
			return st, fmt.Errorf("anomaly: restore: %w", err)
		}
	}

	for _, k := range en.evals {
		fu, ok := k.(*firstUse)
		if !ok {
			continue
		}
		from := refUS - fu.horizon()
		q := "SELECT agent_id, team, tier, tool, action, action_class, min(event_time), max(event_time), count() FROM " + db +
			".events WHERE event_type = 'intent' AND event_time >= fromUnixTimestamp64Micro(" + strconv.FormatInt(from, 10) + ")" +
			common + " GROUP BY agent_id, team, tier, tool, action, action_class ORDER BY agent_id, tool, action"
		rows, err := conn.Query(ctx, q)
		if err != nil {
			return st, fmt.Errorf("anomaly: restore %s: query history: %w", fu.r.Name, err)
		}
		for rows.Next() {
			var (
				agent, team, tool, action, class string
				tier                             uint8
				first, last                      time.Time
				n                                uint64
			)
			if err := rows.Scan(&agent, &team, &tier, &tool, &action, &class, &first, &last, &n); err != nil {
				rows.Close()
				return st, fmt.Errorf("anomaly: restore %s: scan history: %w", fu.r.Name, err)
			}
			fu.seed(en, agent, team, int32(tier), tool, action, class, first.UnixMicro(), last.UnixMicro(), n)
			st.Seeded++
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return st, fmt.Errorf("anomaly: restore %s: read history: %w", fu.r.Name, err)
		}
	}

	if alerts {
		open, err := readAlerts(ctx, conn, db, fmt.Sprintf("suppress_until >= fromUnixTimestamp64Micro(%d)", refUS-en.lateness))
		if err != nil {
			return st, err
		}
		for _, a := range open {
			if en.restoreAlert(a) {
				st.OpenAlerts++
			}
		}
	}
	return st, nil
}

// alertColumns are the alerts table's columns the stage writes, in the
// order alertValues returns them.
var alertColumns = []string{"alert_id", "version", "rule", "kind", "severity", "team", "agent_id", "group_key",
	"window_start", "window_end", "observed", "threshold", "event_ids", "first_seen", "last_seen", "raised_at",
	"suppress_until", "late_events", "summary"}

// readAlerts reads the latest version of the alerts matching a condition
// on the alerts table's columns.
func readAlerts(ctx context.Context, conn driver.Conn, db, cond string) ([]Alert, error) {
	q := "SELECT " + strings.Join(alertColumns, ", ") + " FROM " + db + ".alerts FINAL WHERE " + cond + " ORDER BY raised_at, alert_id"
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("anomaly: read alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		var a Alert
		if err := rows.Scan(&a.ID, &a.Version, &a.Rule, &a.Kind, &a.Severity, &a.Team, &a.AgentID, &a.GroupKey,
			&a.WindowStart, &a.WindowEnd, &a.Observed, &a.Threshold, &a.EventIDs, &a.FirstSeen, &a.LastSeen, &a.RaisedAt,
			&a.SuppressUntil, &a.LateEvents, &a.Summary); err != nil {
			return nil, fmt.Errorf("anomaly: read alerts: %w", err)
		}
		for _, t := range []*time.Time{&a.WindowStart, &a.WindowEnd, &a.FirstSeen, &a.LastSeen, &a.RaisedAt, &a.SuppressUntil} {
			*t = t.UTC()
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("anomaly: read alerts: %w", err)
	}
	return out, nil
}

// ReadAlerts returns the latest version of every alert raised in [from, to).
func ReadAlerts(ctx context.Context, conn driver.Conn, db string, from, to time.Time) ([]Alert, error) {
	return readAlerts(ctx, conn, db, fmt.Sprintf("raised_at >= fromUnixTimestamp64Micro(%d) AND raised_at < fromUnixTimestamp64Micro(%d)",
		from.UnixMicro(), to.UnixMicro()))
}

// alertValues turns alerts into the alerts table's columns.
func alertValues(as []Alert) []any {
	n := len(as)
	var (
		ids, rules, kinds, sevs, teams, agents, keys, sums = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		versions, lates                                    = make([]uint64, n), make([]uint64, n)
		ws, we, fs, ls, ra, su                             = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n), make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		obs, thr                                           = make([]float64, n), make([]float64, n)
		evs                                                = make([][]string, n)
	)
	for i, a := range as {
		ids[i], versions[i], rules[i], kinds[i], sevs[i], teams[i], agents[i], keys[i] = a.ID, a.Version, a.Rule, a.Kind, a.Severity, a.Team, a.AgentID, a.GroupKey
		ws[i], we[i], obs[i], thr[i], evs[i], fs[i], ls[i], ra[i] = a.WindowStart, a.WindowEnd, a.Observed, a.Threshold, a.EventIDs, a.FirstSeen, a.LastSeen, a.RaisedAt
		su[i], lates[i], sums[i] = a.SuppressUntil, a.LateEvents, a.Summary
		if evs[i] == nil {
			evs[i] = []string{}
		}
	}
	return []any{ids, versions, rules, kinds, sevs, teams, agents, keys, ws, we, obs, thr, evs, fs, ls, ra, su, lates, sums}
}
