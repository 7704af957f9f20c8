package correlate

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/producers/simulate"
)

// ingestRows and ingestBatchRows shape ingestBatches like `agentrail
// bench`: its simulated stream (seed 2026, one trace every 0.9 s of event
// time), the first ingestRows events, in batches of ingest.batch_rows.
const (
	ingestRows      = 300_000
	ingestWeek      = 2_000_000
	ingestBatchRows = 50_000
)

// ingestBatches is the bench's event stream as ingest hands it to the
// correlator: keyed by trace id onto 12 partitions, each batch polled
// partition by partition, its clock a second after the previous batch's.
func ingestBatches() []*consumers.Batch {
	fleet := simulate.New(simulate.Config{Seed: 2026, ReorderRate: simulate.DefaultReorderRate})
	at := time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC)
	step := 7 * 24 * time.Hour / time.Duration(ingestWeek/3+1)
	s := newStream(12)
	for len(s.evs) < ingestRows {
		at = at.Add(step)
		s.add(fleet.NextTrace(at)...)
	}
	recs := s.evs[:ingestRows]
	now := at.Add(time.Minute)
	var out []*consumers.Batch
	for len(recs) > 0 {
		n := min(ingestBatchRows, len(recs))
		polled := slices.Clone(recs[:n])
		slices.SortStableFunc(polled, func(a, b consumers.Accepted) int { return int(a.Partition - b.Partition) })
		out = append(out, makeBatch(polled, now))
		recs = recs[n:]
		now = now.Add(time.Second)
	}
	return out
}

// BenchmarkProcessIngest is the correlator's cost per event inside ingest:
// a fresh Correlator over an empty, migrated database fed the bench's
// stream batch by batch through Process (its first batch initializes the
// partitions from ClickHouse; later ones find nothing to rebuild).
func BenchmarkProcessIngest(b *testing.B) {
	cfg, conn := testenv.ClickHouse(b)
	batches := ingestBatches()
	events := 0
	for _, bt := range batches {
		events += len(bt.Events)
	}
	ctx := context.Background()
	rows, violations := 0, 0
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		b.StopTimer()
		c, err := New(Config{}, conn, cfg.Database, prometheus.NewRegistry(), quiet)
		if err != nil {
			b.Fatal(err)
		}
		rows, violations = 0, 0
		b.StartTimer()
		for _, bt := range batches {
			out, err := c.Process(ctx, bt)
			if err != nil {
				b.Fatal(err)
			}
			for _, ins := range out.Inserts {
				if strings.HasSuffix(ins.Table, ".traces") {
					rows += reflect.ValueOf(ins.Values[0]).Len()
				}
			}
			violations += len(out.Records)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(events), "ns/event")
	// The process's CPU (GC included), less sensitive than ns/event to
	// other work on a shared machine.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N)/float64(events), "cpu-ns/event")
	b.ReportMetric(float64(rows), "trace-rows")
	b.ReportMetric(float64(violations), "violations")
}

// processCPU is the process's user and system CPU time so far, ns.
func processCPU(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
