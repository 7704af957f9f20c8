package bench

import (
	"fmt"
	"io"
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

func cpus(ts []throughput) []float64 {
	var xs []float64
	for _, t := range ts {
		xs = append(xs, t.cpuPerEvent)
	}
	return xs
}

// print writes the results as a Markdown table: min / median / max.
func (r *results) print(w io.Writer, cfg Config) {
	ours, peer := summarize(rates(r.ours)), summarize(rates(r.peer))
	var ratios []float64
	for i := range r.ours {
		ratios = append(ratios, r.ours[i].rate/r.peer[i].rate)
	}
	fmt.Fprintf(w, "| measure | min / median / max |\n|---|---|\n")
	fmt.Fprintf(w, "| ours: %d events, ingest with in-ingest stages, events/s | %s |\n", cfg.Events, ours.format("", 0))
	fmt.Fprintf(w, "| ours: CPU-µs per event, all processes | %s |\n", summarize(cpus(r.ours)).format("", 2))
	fmt.Fprintf(w, "| peer: Kafka engine + materialized view, events/s | %s |\n", peer.format("", 0))
	fmt.Fprintf(w, "| peer: CPU-µs per event, all processes | %s |\n", summarize(cpus(r.peer)).format("", 2))
	fmt.Fprintf(w, "| ratio ours/peer (per run) | %s |\n", summarize(ratios).format("×", 2))
	fmt.Fprintf(w, "| freshness at %.0f events/s (half of ours' median), %d events: p50 / p99 | %s / %s |\n",
		r.fresh.rate, r.fresh.events, r.fresh.p50.Round(100_000), r.fresh.p99.Round(100_000))
	fmt.Fprintf(w, "| producer, Kafka unreachable: %d calls (%d refused), block p99 / max (limit %s) | %s / %s |\n",
		r.block.calls, r.block.refused, r.block.limit, r.block.p99.Round(100_000), r.block.max.Round(100_000))
	for _, q := range r.queries {
		fmt.Fprintf(w, "| %d events: %s, ms (%d rows) | %s |\n", cfg.QueryEvents, q.name, q.rows, q.ms.format("", 1))
	}
	for _, s := range r.storage {
		fmt.Fprintf(w, "| storage, tier %d: compressed bytes per event (%d events) | %.0f |\n", s.tier, s.rows, s.bytesPerEvent)
	}
}
