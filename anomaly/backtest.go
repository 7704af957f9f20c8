package anomaly

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentrail/agentrail/consumers"
)

// BacktestResult is what a rule set would have raised over stored events.
type BacktestResult struct {
	From, To time.Time
	Events   int // events replayed in [From, To)
	Warmup   int // events replayed before From to build the state as of From
	// Alerts are the alerts raised in [From, To), at their last version.
	Alerts []Alert
	// PerDay counts alerts raised per UTC day (of first_seen) and rule.
	PerDay map[string]map[string]int
	Rules  []string
	Late   uint64 // late events (none when replaying in event-time order)
}

// Backtest replays the events stored in ClickHouse between from and to,
// in event-time order, through a fresh engine whose state is first built
// from the events before from, exactly as a restart would build it. It
// raises nothing anywhere: it reports what the rules would have raised.
//
// Replaying in event-time order means no event is late, whereas live events
// may arrive up to the allowed lateness out of order: counts of a backtest
// are what a perfectly ordered stream would give.
func Backtest(ctx context.Context, conn driver.Conn, db string, rs *RuleSet, cfg Config, from, to time.Time) (*BacktestResult, error) {
	if !from.Before(to) {
		return nil, fmt.Errorf("anomaly: backtest: --from %s is not before --to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	en, err := NewEngine(rs, cfg)
	if err != nil {
		return nil, err
	}
	st, err := restore(ctx, conn, db, en, from, nil, from, false)
	if err != nil {
		return nil, err
	}
	res := &BacktestResult{From: from.UTC(), To: to.UTC(), Warmup: st.Events, PerDay: map[string]map[string]int{}, Rules: rs.RuleNames()}
	latest := map[string]int{}
	err = consumers.ReadEvents(ctx, conn, db, consumers.EventRead{Columns: eventColumns, Final: true,
		Where: "event_time >= fromUnixTimestamp64Micro(?) AND event_time < fromUnixTimestamp64Micro(?)", Args: []any{from.UnixMicro(), to.UnixMicro()},
		Tail: "ORDER BY event_time, kafka_partition, kafka_offset"}, func(ev *consumers.Accepted) error {
		res.Events++
		for _, a := range en.Observe(&ev.Event) {
			if i, ok := latest[a.ID]; ok {
				res.Alerts[i] = a
				continue
			}
			latest[a.ID] = len(res.Alerts)
			res.Alerts = append(res.Alerts, a)
			day := a.FirstSeen.Format(time.DateOnly)
			if res.PerDay[day] == nil {
				res.PerDay[day] = map[string]int{}
			}
			res.PerDay[day][a.Rule]++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("anomaly: backtest: %w", err)
	}
	for _, s := range en.Stats().Rules {
		res.Late += s.Late
	}
	return res, nil
}

// Print writes the per-day, per-rule table of alerts the rules would have
// raised, then one line per alert if verbose.
func (r *BacktestResult) Print(w io.Writer, verbose bool) error {
	fmt.Fprintf(w, "backtest %s .. %s: %d events replayed (%d before --from to build the state), %d alerts\n\n",
		r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), r.Events, r.Warmup, len(r.Alerts))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "day\t%s\ttotal\t\n", strings.Join(r.Rules, "\t"))
	days := sortedKeys(r.PerDay)
	totals := make([]int, len(r.Rules))
	for _, day := range days {
		row, sum := []string{day}, 0
		for i, rule := range r.Rules {
			n := r.PerDay[day][rule]
			totals[i] += n
			sum += n
			row = append(row, fmt.Sprint(n))
		}
		fmt.Fprintf(tw, "%s\t%d\t\n", strings.Join(row, "\t"), sum)
	}
	row, sum := []string{"total"}, 0
	for _, n := range totals {
		row = append(row, fmt.Sprint(n))
		sum += n
	}
	fmt.Fprintf(tw, "%s\t%d\t\n", strings.Join(row, "\t"), sum)
	if err := tw.Flush(); err != nil {
		return err
	}
	if verbose && len(r.Alerts) > 0 {
		fmt.Fprintln(w)
		alerts := slices.Clone(r.Alerts)
		slices.SortStableFunc(alerts, func(a, b Alert) int { return a.FirstSeen.Compare(b.FirstSeen) })
		for _, a := range alerts {
			fmt.Fprintf(w, "%s  %-8s %-22s %s\n", a.FirstSeen.Format("2006-01-02 15:04:05"), a.Severity, a.Rule, a.Summary)
		}
	}
	return nil
}
