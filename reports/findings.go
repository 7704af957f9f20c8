package reports

import (
	"context"
	"fmt"
	"time"

	"github.com/agentrail/agentrail/reports/registry"
	"github.com/agentrail/agentrail/reports/retention"
)

// The report's findings from tables other than the events: violations,
// alerts (where those tables exist) and the retention summary.

// tableExists reports whether db.name exists (the violations and alerts
// tables belong to other stages and may not be there).
func (b *Builder) tableExists(ctx context.Context, name string) (bool, error) {
	var n uint64
	if err := b.conn.QueryRow(ctx, `SELECT count() FROM system.tables WHERE database = ? AND name = ?`, b.db, name).Scan(&n); err != nil {
		return false, fmt.Errorf("reports: look up table %s: %w", name, err)
	}
	return n > 0, nil
}

// countPerAgent counts a team's rows of table (violations or alerts) with
// timeCol in [from, to), in all and per agent.
func (b *Builder) countPerAgent(ctx context.Context, table, timeCol, team string, from, to time.Time) (int, map[string]int, error) {
	rows, err := b.conn.Query(ctx, `SELECT toString(agent_id), count() FROM `+b.db+`.`+table+` FINAL
		WHERE team = ? AND `+timeCol+` >= ? AND `+timeCol+` < ? GROUP BY agent_id`, team, ts(from), ts(to))
	if err != nil {
		return 0, nil, fmt.Errorf("reports: count %s: %w", table, err)
	}
	defer rows.Close()
	total, per := 0, map[string]int{}
	for rows.Next() {
		var a string
		var n uint64
		if err := rows.Scan(&a, &n); err != nil {
			return 0, nil, fmt.Errorf("reports: count %s: %w", table, err)
		}
		total += int(n)
		per[a] = int(n)
	}
	return total, per, rows.Err()
}

// TraceCommand is the command line that shows a trace's timeline.
func TraceCommand(traceID string) string { return "agentrail trace " + traceID }

func (b *Builder) violations(ctx context.Context, r *Weekly, team string, from, to, pfrom, pto time.Time, agent func(string) *AgentEntry) error {
	r.Violations.Items = []Violation{}
	ok, err := b.tableExists(ctx, "violations")
	if err != nil || !ok {
		r.Violations.Note = "no violations table in this database: governance violations are not detected here yet"
		return err
	}
	r.Violations.Available = true
	count := func(from, to time.Time) (int, map[string]int, error) {
		return b.countPerAgent(ctx, "violations", "event_time", team, from, to)
	}
	total, per, err := count(from, to)
	if err != nil {
		return err
	}
	r.Violations.Total, r.Figures.Violations = total, total
	for a, n := range per {
		agent(a).Figures.Violations = n
	}
	if r.Previous.Violations, _, err = count(pfrom, pto); err != nil {
		return err
	}
	rows, err := b.conn.Query(ctx, `SELECT violation_id, toString(kind), toString(severity), toString(agent_id), trace_id,
			toDateTime64(event_time, 6, 'UTC'), explanation
		FROM `+b.db+`.violations FINAL WHERE team = ? AND event_time >= ? AND event_time < ?
		ORDER BY event_time, violation_id LIMIT ?`, team, ts(from), ts(to), b.cfg.MaxFindings)
	if err != nil {
		return fmt.Errorf("reports: read violations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v Violation
		if err := rows.Scan(&v.ID, &v.Kind, &v.Severity, &v.AgentID, &v.TraceID, &v.EventTime, &v.Explanation); err != nil {
			return fmt.Errorf("reports: read violations: %w", err)
		}
		v.EventTime = v.EventTime.UTC()
		v.TraceCmd = TraceCommand(v.TraceID)
		r.Violations.Items = append(r.Violations.Items, v)
	}
	return rows.Err()
}

func (b *Builder) alerts(ctx context.Context, r *Weekly, team string, from, to, pfrom, pto time.Time, agent func(string) *AgentEntry) error {
	r.Alerts.Items = []Alert{}
	ok, err := b.tableExists(ctx, "alerts")
	if err != nil || !ok {
		r.Alerts.Note = "no alerts table in this database: anomaly rules are not running here yet"
		return err
	}
	r.Alerts.Available = true
	count := func(from, to time.Time) (int, map[string]int, error) {
		return b.countPerAgent(ctx, "alerts", "raised_at", team, from, to)
	}
	total, per, err := count(from, to)
	if err != nil {
		return err
	}
	r.Alerts.Total, r.Figures.Alerts = total, total
	for a, n := range per {
		if a != "" {
			agent(a).Figures.Alerts = n
		}
	}
	if r.Previous.Alerts, _, err = count(pfrom, pto); err != nil {
		return err
	}
	rows, err := b.conn.Query(ctx, `SELECT alert_id, toString(rule), toString(kind), toString(severity), toString(agent_id),
			toDateTime64(window_start, 6, 'UTC'), toDateTime64(window_end, 6, 'UTC'),
			toFloat64OrZero(toString(observed)), toFloat64OrZero(toString(threshold)),
			arraySlice(arrayMap(x -> toString(x), event_ids), 1, 3), toDateTime64(raised_at, 6, 'UTC')
		FROM `+b.db+`.alerts FINAL WHERE team = ? AND raised_at >= ? AND raised_at < ?
		ORDER BY raised_at, alert_id LIMIT ?`, team, ts(from), ts(to), b.cfg.MaxFindings)
	if err != nil {
		return fmt.Errorf("reports: read alerts: %w", err)
	}
	var events []string
	for rows.Next() {
		var a Alert
		var ids []string
		if err := rows.Scan(&a.ID, &a.Rule, &a.Kind, &a.Severity, &a.AgentID, &a.WindowStart, &a.WindowEnd,
			&a.Observed, &a.Threshold, &ids, &a.RaisedAt); err != nil {
			rows.Close()
			return fmt.Errorf("reports: read alerts: %w", err)
		}
		a.WindowStart, a.WindowEnd, a.RaisedAt = a.WindowStart.UTC(), a.WindowEnd.UTC(), a.RaisedAt.UTC()
		a.Traces = ids // event ids, resolved below
		events = append(events, ids...)
		r.Alerts.Items = append(r.Alerts.Items, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reports: read alerts: %w", err)
	}
	// Resolve each alert's first events to their traces.
	traceOf := map[string]string{}
	if len(events) > 0 {
		rows, err := b.conn.Query(ctx, `SELECT event_id, any(trace_id) FROM `+b.db+`.events
			WHERE team = ? AND has(?, event_id) GROUP BY event_id`, team, events)
		if err != nil {
			return fmt.Errorf("reports: resolve alert events: %w", err)
		}
		for rows.Next() {
			var e, tr string
			if err := rows.Scan(&e, &tr); err != nil {
				rows.Close()
				return fmt.Errorf("reports: resolve alert events: %w", err)
			}
			traceOf[e] = tr
		}
		rows.Close()
	}
	for i := range r.Alerts.Items {
		a := &r.Alerts.Items[i]
		var traces []string
		seen := map[string]bool{}
		for _, e := range a.Traces {
			if tr := traceOf[e]; tr != "" && !seen[tr] {
				seen[tr] = true
				traces = append(traces, tr)
			}
		}
		if traces == nil {
			traces = []string{}
		} else {
			a.TraceCmd = TraceCommand(traces[0])
		}
		a.Traces = traces
	}
	return nil
}

// retentionSummary reports the retention runs finished in the week and the
// holds in force at its end that touch the team.
func (b *Builder) retentionSummary(ctx context.Context, team string, from, to time.Time) (Retention, error) {
	rc := b.cfg.Retention
	out := Retention{Policy: rc.Policy(), Tiers: []RetentionTier{}, ActiveHolds: []HoldEntry{}}
	var runs, failed uint64
	var last time.Time
	var lastStatus, lastPolicy string
	if err := b.conn.QueryRow(ctx, `SELECT count(), countIf(status = 'failed'), max(assumeNotNull(finished_at)), argMax(status, assumeNotNull(finished_at)), argMax(policy, assumeNotNull(finished_at))
		FROM `+b.db+`.retention_runs FINAL WHERE revision = 2 AND finished_at >= ? AND finished_at < ?`, ts(from), ts(to)).
		Scan(&runs, &failed, &last, &lastStatus, &lastPolicy); err != nil {
		return out, fmt.Errorf("reports: read retention runs: %w", err)
	}
	out.Runs, out.FailedRuns = int(runs), int(failed)
	if runs > 0 {
		out.LastRun, out.LastStatus = last.UTC(), lastStatus
		if lastPolicy != "" {
			out.Policy = lastPolicy
		}
	}
	tiers := map[uint8]*RetentionTier{}
	for tier := 1; tier <= 3; tier++ {
		tiers[uint8(tier)] = &RetentionTier{Tier: tier, KeptFor: rc.Age(tier).String()}
	}
	rows, err := b.conn.Query(ctx, `SELECT tier, sum(rows_deleted), sum(deleted_by_team[?]), sum(rows_stripped), sum(rows_held),
			min(range_start), max(range_end)
		FROM `+b.db+`.retention_actions FINAL
		WHERE status = 'done' AND run_id IN (SELECT run_id FROM `+b.db+`.retention_runs FINAL
			WHERE revision = 2 AND finished_at >= ? AND finished_at < ?)
		GROUP BY tier`, team, ts(from), ts(to))
	if err != nil {
		return out, fmt.Errorf("reports: read retention actions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var tier uint8
		var rt RetentionTier
		if err := rows.Scan(&tier, &rt.Deleted, &rt.DeletedTeam, &rt.Stripped, &rt.Held, &rt.From, &rt.To); err != nil {
			return out, fmt.Errorf("reports: read retention actions: %w", err)
		}
		if t, ok := tiers[tier]; ok {
			t.Deleted, t.DeletedTeam, t.Stripped, t.Held, t.From, t.To = rt.Deleted, rt.DeletedTeam, rt.Stripped, rt.Held, rt.From.UTC(), rt.To.UTC()
		}
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("reports: read retention actions: %w", err)
	}
	for tier := 1; tier <= 3; tier++ {
		out.Tiers = append(out.Tiers, *tiers[uint8(tier)])
	}

	holds, err := retention.ActiveHolds(ctx, b.conn, b.db, to.Add(-time.Millisecond))
	if err != nil {
		return out, err
	}
	var traceHolds []string
	for _, h := range holds {
		if h.Scope == retention.ScopeTrace {
			traceHolds = append(traceHolds, h.Value)
		}
	}
	teamTraces := map[string]bool{}
	agentsOfTeam := map[string]bool{}
	if len(traceHolds) > 0 {
		rows, err := b.conn.Query(ctx, `SELECT DISTINCT trace_id FROM `+b.db+`.events WHERE team = ? AND has(?, trace_id)`, team, traceHolds)
		if err != nil {
			return out, fmt.Errorf("reports: match trace holds: %w", err)
		}
		for rows.Next() {
			var tr string
			if err := rows.Scan(&tr); err != nil {
				rows.Close()
				return out, fmt.Errorf("reports: match trace holds: %w", err)
			}
			teamTraces[tr] = true
		}
		rows.Close()
	}
	regAgents, err := registry.AgentsAt(ctx, b.conn, b.db, team, to.Add(-time.Millisecond))
	if err != nil {
		return out, err
	}
	for _, a := range regAgents {
		agentsOfTeam[a.ID] = true
	}
	rowsA, err := b.conn.Query(ctx, `SELECT DISTINCT toString(agent_id) FROM `+b.db+`.events WHERE team = ? AND event_time >= ? AND event_time < ?`,
		team, ts(from), ts(to))
	if err != nil {
		return out, fmt.Errorf("reports: list agents: %w", err)
	}
	for rowsA.Next() {
		var a string
		if err := rowsA.Scan(&a); err != nil {
			rowsA.Close()
			return out, fmt.Errorf("reports: list agents: %w", err)
		}
		agentsOfTeam[a] = true
	}
	rowsA.Close()
	for _, h := range holds {
		if (h.Scope == retention.ScopeTeam && h.Value == team) || (h.Scope == retention.ScopeAgent && agentsOfTeam[h.Value]) ||
			(h.Scope == retention.ScopeTrace && teamTraces[h.Value]) {
			out.ActiveHolds = append(out.ActiveHolds, HoldEntry{ID: h.ID, Scope: h.Scope, Value: h.Value, Reason: h.Reason,
				SetBy: h.SetBy, SetAt: h.SetAt.UTC()})
		}
	}
	return out, nil
}
