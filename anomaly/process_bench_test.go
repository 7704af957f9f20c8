package anomaly

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/producers/simulate"
)

// benchEvents and benchBatchRows shape ingestBatches like `agentrail bench`:
// its 2,000,000 simulated events spread over a week (one trace every 0.9 s
// of event time across the fleet's 35 agents), of which the first
// benchEvents, about a day and a night, in batches of ingest.batch_rows.
const (
	benchEvents    = 300_000
	benchWeek      = 2_000_000
	benchBatchRows = 50_000
)

// ingestBatches is the bench's event stream as ingest hands it to the
// processors: keyed by trace id onto 12 partitions, each batch polled
// partition by partition (so its events are in offset order within a
// partition, not in event time), Now after every event.
func ingestBatches(tb testing.TB) []*consumers.Batch {
	ds := benchDeliveries(benchEvents)
	at := ds[len(ds)-1].at
	h := &harness{t: tb}
	recs := h.place(ds)
	now := at.Add(time.Minute)
	var out []*consumers.Batch
	for len(recs) > 0 {
		n := min(benchBatchRows, len(recs))
		polled := slices.Clone(recs[:n])
		slices.SortStableFunc(polled, func(a, b consumers.Accepted) int { return int(a.Partition - b.Partition) })
		out = append(out, batch(polled, now))
		recs = recs[n:]
	}
	return out
}

// benchDeliveries is the first n events of `agentrail bench`'s stream,
// from a Monday midnight on.
func benchDeliveries(n int) []delivery {
	fleet := simulate.New(simulate.Config{Seed: 2026, ReorderRate: simulate.DefaultReorderRate})
	at := time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC)
	step := 7 * 24 * time.Hour / time.Duration(benchWeek/3+1)
	var ds []delivery
	for len(ds) < n {
		at = at.Add(step)
		for _, ev := range fleet.NextTrace(at) {
			ds = append(ds, delivery{ev: ev, at: at})
		}
	}
	return ds[:n]
}

// BenchmarkProcessIngest is the anomaly stage's cost per event inside
// ingest: a fresh Processor (default rules, no ClickHouse) fed the bench's
// stream batch by batch through Process, the per-batch work included.
func BenchmarkProcessIngest(b *testing.B) {
	batches := ingestBatches(b)
	events := 0
	for _, bt := range batches {
		events += len(bt.Events)
	}
	ctx := context.Background()
	alerts := 0
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		b.StopTimer()
		p, err := New(Config{}, nil, "bench", prometheus.NewRegistry(), quiet)
		if err != nil {
			b.Fatal(err)
		}
		alerts = 0
		b.StartTimer()
		for _, bt := range batches {
			out, err := p.Process(ctx, bt)
			if err != nil {
				b.Fatal(err)
			}
			alerts += len(out.Records)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(events), "ns/event")
	// The process's CPU (GC included), less sensitive than ns/event to
	// other work on a shared machine.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N)/float64(events), "cpu-ns/event")
	b.ReportMetric(float64(alerts), "alert-rows")
}

// processCPU is the process's user and system CPU time so far, ns.
func processCPU(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
