package demo

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentrail/agentrail/anomaly"
	"github.com/agentrail/agentrail/consumers/correlate"
	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/pipeline"
	"github.com/agentrail/agentrail/producers"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/reports"
	"github.com/agentrail/agentrail/reports/registry"
)

// businessClock returns a clock that starts at 13:00 UTC on the latest
// weekday at least two hours ago — inside business hours in Europe and on
// the US east coast alike — and advances demoSpeed times faster than real
// time, so the simulated fleet neither works at night nor at an impossible
// pace.
func businessClock(now time.Time) func() time.Time {
	base := time.Date(now.Year(), now.Month(), now.Day(), 13, 0, 0, 0, time.UTC)
	for base.After(now.Add(-3*time.Hour)) || base.Weekday() == time.Saturday || base.Weekday() == time.Sunday {
		base = base.AddDate(0, 0, -1)
	}
	start := time.Now()
	return func() time.Time { return base.Add(demoSpeed * time.Since(start)) }
}

// demoSpeed is how much faster than the wall clock the simulated fleet's
// clock runs: the demo emits in a minute what 35 agents acting about once a
// minute each do in most of an hour, so its event times say so, and the
// anomaly rules see the pace they are tuned for.
const demoSpeed = 40

// plantAnomalies emits one of each anomaly kind the rules know, spaced two
// minutes apart after the clock's present (out-of-hours at a time outside
// finance's hours), and returns their kinds.
func (d *demo) plantAnomalies(ctx context.Context, fleet *simulate.Fleet, em *producers.Emitter, clock func() time.Time) ([]string, error) {
	now := clock()
	rules := anomaly.DefaultRules()
	off := now.Add(-30 * time.Minute).Truncate(time.Hour)
	for i := 0; i < 48; i++ {
		if out, known := rules.OutOfHours("finance", "", off); out && known {
			break
		}
		off = off.Add(-time.Hour)
	}
	// After the background in event time (the clock is hours behind the
	// wall clock, so this is still in the past): first use needs the
	// agent's track record before it, and nothing planted is late.
	planted, err := fleet.PlantAll(now.Add(2*time.Minute), 2*time.Minute, off, "finance")
	if err != nil {
		return nil, err
	}
	var kinds []string
	for _, a := range planted {
		for _, ev := range a.Events() {
			if err := em.Emit(ctx, &ev); err != nil {
				return nil, fmt.Errorf("plant %s: %w", a.Kind, err)
			}
		}
		kinds = append(kinds, a.Kind)
	}
	return kinds, nil
}

func sumCounts(ms ...map[string]int) int {
	n := 0
	for _, m := range ms {
		for _, v := range m {
			n += v
		}
	}
	return n
}

func describeCounts(ms ...map[string]int) string {
	total := map[string]int{}
	for _, m := range ms {
		for k, v := range m {
			total[k] += v
		}
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(total)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, total[k]))
	}
	return strings.Join(parts, ", ")
}

// findings prints what correlation and the anomaly rules found, and one
// violating trace as `agentrail trace` shows it.
func (d *demo) findings(ctx context.Context, cfg pipeline.Config) error {
	db := cfg.ClickHouse.Database
	sections := []struct{ title, sql string }{
		{"Governance violations found (v_violations: once per trace and kind; also on the agentrail.violations topic)",
			`SELECT kind, severity, count() AS found, substring(argMin(explanation, event_time), 1, 110) AS example
			 FROM {db}.v_violations GROUP BY kind, severity ORDER BY found DESC`},
		{"Trace states (v_traces)",
			`SELECT state, count() AS traces FROM {db}.v_traces GROUP BY state ORDER BY traces DESC`},
		{"Anomaly alerts (v_alerts: one per rule and group, updated while the anomaly goes on; also on agentrail.alerts)",
			`SELECT rule, severity, count() AS alerts, max(observed) AS peak, any(threshold) AS threshold,
			        countIf(planted != '') AS from_planted, countIf(planted = '') AS from_background
			 FROM (SELECT a.alert_id, any(a.rule) AS rule, any(a.severity) AS severity, any(a.observed) AS observed,
			              any(a.threshold) AS threshold, max(p.kind) AS planted
			       FROM {db}.v_alerts AS a ARRAY JOIN a.event_ids AS eid
			       LEFT JOIN (SELECT event_id, labels['simulate.planted'] AS kind FROM {db}.v_events
			                  WHERE labels['simulate.planted'] != '') AS p ON p.event_id = eid
			       WHERE a.rule != '` + anomaly.QuarantineRule + `'
			       GROUP BY a.alert_id)
			 GROUP BY rule, severity ORDER BY rule`},
	}
	for _, s := range sections {
		if err := d.query(ctx, db, s.title, s.sql, false); err != nil {
			return err
		}
	}
	var trace string
	if err := d.scalar(ctx, "SELECT trace_id FROM "+db+".v_violations WHERE kind = 'executed_without_approval' ORDER BY event_time LIMIT 1", &trace); err != nil {
		return err
	}
	if trace == "" {
		return nil
	}
	conn, err := chstore.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer conn.Close()
	rep, err := correlate.Lookup(ctx, conn, db, trace, time.Now(), cfg.Correlation.AbandonAfter)
	if err != nil {
		return err
	}
	d.printf("One violating trace, as `agentrail trace %s` prints it:\n", trace)
	if err := rep.WriteText(d.out); err != nil {
		return err
	}
	d.printf("\n")
	return nil
}

// weeklyReport loads the example agent registry (backdated, so the unused-
// permission check can judge the grants) and writes the finance team's
// report for the week of the simulated clock.
func (d *demo) weeklyReport(ctx context.Context, c chstore.Config, at time.Time) error {
	conn, err := chstore.Open(ctx, c)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := registry.ApplyFile(ctx, conn, c.Database, filepath.Join("deployments", "registry.yaml"),
		registry.ApplyOptions{AsOf: time.Now().AddDate(0, 0, -45), By: "demo"}); err != nil {
		return err
	}
	year, wk := at.ISOWeek()
	week := fmt.Sprintf("%d-W%02d", year, wk)
	paths, err := reports.WriteWeekly(ctx, conn, c.Database, week, "finance", filepath.Join(d.dir, "reports"))
	if err != nil {
		return err
	}
	if len(paths) > 0 {
		abs, _ := filepath.Abs(paths[0])
		d.printf("Weekly permission report for the finance team, %s (HTML; JSON, CSV and the chart beside it):\n  %s\n\n", week, abs)
	}
	return nil
}

// waitViolations waits, with no traffic at all, until correlation has
// reported the planted violations (those that wait for missing evidence
// settle on ingest's clock, settle_after after their trace was seen), or
// until settle_after plus a margin has passed, and says when the last one
// appeared.
func (d *demo) waitViolations(ctx context.Context, cfg pipeline.Config, planted int, lastEvent time.Time) error {
	deadline := lastEvent.Add(cfg.Correlation.SettleAfter + 20*time.Second)
	last, seen := lastEvent, 0
	for {
		var n string
		if err := d.scalar(ctx, "SELECT count() FROM "+cfg.ClickHouse.Database+".v_violations", &n); err != nil {
			return err
		}
		if c, _ := strconv.Atoi(n); c > seen {
			seen, last = c, time.Now()
		}
		if seen >= planted || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	d.printf("%d governance violations reported with no traffic after the last event; the last %s after it (settle_after %s, ingest's tick)\n",
		seen, last.Sub(lastEvent).Round(100*time.Millisecond), cfg.Correlation.SettleAfter)
	return nil
}
