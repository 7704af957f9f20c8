package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

type results struct {
	ours, peer []throughput
	fresh      freshness
	block      blocking
	queries    []query
	storage    []tierBytes
}

func (r *results) oursRates() []float64 { return rates(r.ours) }

func rates(ts []throughput) []float64 {
	var xs []float64
	for _, t := range ts {
		xs = append(xs, t.rate)
	}
	return xs
}

// cpus picks one CPU figure of each run.
func cpus(ts []throughput, f func(cpuPerEvent) float64) []float64 {
	var xs []float64
	for _, t := range ts {
		xs = append(xs, f(t.cpu))
	}
	return xs
}

// mergeCPUs is f of each run's CPU per event with its merges after the run.
func mergeCPUs(ts []throughput, f func(cpuPerEvent) float64) []float64 {
	var xs []float64
	for _, t := range ts {
		xs = append(xs, f(t.withMerges()))
	}
	return xs
}

func total(c cpuPerEvent) float64      { return c.total }
func self(c cpuPerEvent) float64       { return c.self }
func brokerCPU(c cpuPerEvent) float64  { return c.broker }
func clickhouse(c cpuPerEvent) float64 { return c.clickhouse }

// print writes the results as a Markdown table: min / median / max.
func (r *results) print(w io.Writer, cfg Config) {
	fmt.Fprintf(w, "| measure | min / median / max |\n|---|---|\n")
	row := func(name string, v string) { fmt.Fprintf(w, "| %s | %s |\n", name, v) }
	if len(r.ours) > 0 {
		row(fmt.Sprintf("ours: %d events, ingest with correlation and anomaly rules, events/s", cfg.Events), summarize(rates(r.ours)).format("", 0))
		row("ours: CPU-µs per event, all processes", summarize(cpus(r.ours, total)).format("", 1))
		row("ours: CPU-µs per event in ingest (bench process)", summarize(cpus(r.ours, self)).format("", 1))
		row("ours: CPU-µs per event in the broker", summarize(cpus(r.ours, brokerCPU)).format("", 1))
		row("ours: CPU-µs per event in ClickHouse", summarize(cpus(r.ours, clickhouse)).format("", 1))
		row("ours: CPU-µs per event, all processes, with the merges after the run", summarize(mergeCPUs(r.ours, total)).format("", 1))
		row("ours: CPU-µs per event in ClickHouse, with the merges after the run", summarize(mergeCPUs(r.ours, clickhouse)).format("", 1))
	}
	if len(r.peer) > 0 {
		row(fmt.Sprintf("peer: %d events, Kafka engine + materialized view, events/s", cfg.Events), summarize(rates(r.peer)).format("", 0))
		row("peer: CPU-µs per event, all processes", summarize(cpus(r.peer, total)).format("", 1))
		row("peer: CPU-µs per event in the broker", summarize(cpus(r.peer, brokerCPU)).format("", 1))
		row("peer: CPU-µs per event in ClickHouse", summarize(cpus(r.peer, clickhouse)).format("", 1))
		row("peer: CPU-µs per event, all processes, with the merges after the run", summarize(mergeCPUs(r.peer, total)).format("", 1))
	}
	if len(r.ours) > 0 && len(r.peer) == len(r.ours) {
		var ratios []float64
		for i := range r.ours {
			ratios = append(ratios, r.ours[i].rate/r.peer[i].rate)
		}
		row("ratio ours/peer, events/s (per run)", summarize(ratios).format("×", 2))
	}
	if f := r.fresh; f.events > 0 {
		row(fmt.Sprintf("freshness at %.0f events/s, %d events: event produced → row in ClickHouse, p50 / p99", f.rate, f.events),
			fmt.Sprintf("%s / %s", f.p50.Round(time.Millisecond), f.p99.Round(time.Millisecond)))
		var all []time.Duration
		plants := 0
		for _, k := range f.alerts {
			all = append(all, k.latency...)
			plants += k.plants
		}
		alertRow(row, "", len(all), plants, all)
		for _, k := range f.alerts {
			alertRow(row, k.kind+": ", len(k.latency), k.plants, k.latency)
		}
	}
	if b := r.block; b.calls > 0 {
		row(fmt.Sprintf("producer, Kafka unreachable: %d calls (%d refused), block p99 / max (limit %s)", b.calls, b.refused, b.limit),
			fmt.Sprintf("%s / %s", b.p99.Round(10*time.Microsecond), b.max.Round(10*time.Microsecond)))
	}
	for _, q := range r.queries {
		name := fmt.Sprintf("%d events: %s, ms (%d rows)", cfg.QueryEvents, q.name, q.rows)
		if q.report {
			name = fmt.Sprintf("%d events: %s, ms", cfg.QueryEvents, q.name)
		}
		row(name, q.ms.format("", 1))
	}
	for _, s := range r.storage {
		row(fmt.Sprintf("storage, tier %d: compressed bytes per event on disk (%d events)", s.tier, s.rows), fmt.Sprintf("%.0f", s.bytesPerEvent))
	}
}

// alertRow prints the alert latency of planted anomalies (of one kind).
func alertRow(row func(name, v string), kind string, alerted, plants int, ds []time.Duration) {
	if alerted == 0 {
		row(fmt.Sprintf("alert latency, %s%d planted anomalies", kind, plants), "no alert raised")
		return
	}
	row(fmt.Sprintf("alert latency, %s%d of %d planted anomalies alerted: anomaly produced → alert row, p50 / p99 / max", kind, alerted, plants),
		fmt.Sprintf("%s / %s / %s", quantile(ds, 0.5).Round(time.Millisecond), quantile(ds, 0.99).Round(time.Millisecond),
			quantile(ds, 1).Round(time.Millisecond)))
}

// quantile is the q-quantile (nearest rank) of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)]
}
