package correlate

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/schemas"
)

var (
	transcriptOut  = flag.String("transcript", "", "write processTranscript's output to this file (to compare two versions of the code)")
	transcriptSeed = flag.Uint64("transcript-seed", 7, "processTranscript's seed in TestProcessTranscript")
)

// processTranscript runs a messy stream through Process and writes down
// everything it produced, batch by batch: every row of every insert, every
// record, and the metrics. The stream: a simulated fleet with every
// violation planted, reordered and duplicated delivery; events redelivered
// in later batches; traces over max_events_per_trace (8) with their own
// duplicates; more traces than max_traces (100), so traces are evicted and
// rebuilt from ClickHouse; batches that crash before their commit and are
// redone in two parts, retried, or cut by a rebalance.
func processTranscript(t *testing.T, seed uint64) string {
	var w strings.Builder
	r := rand.New(rand.NewPCG(seed, seed))
	fx := newFixture(t, seed, 300, 40, 0.04, t0.Add(-2*time.Hour))
	evs := append([]schemas.Event(nil), fx.events...)
	// Traces over the limit: 12 to 30 events each, some repeated.
	for i := 0; i < 12; i++ {
		id := fmt.Sprintf("%032x", 0xfeed0000+i)
		for k := 0; k < 12+r.IntN(19); k++ {
			e := intentEv(fmt.Sprintf("big-%d-%d", i, k), fmt.Sprintf("%ds", k), int32(1+r.IntN(3)), digestA)
			e.TraceID, e.SpanID = id, fmt.Sprintf("s%d", k%3)
			if k%4 == 3 {
				e = resultEv(e.EventID, fmt.Sprintf("%ds", k), 3, schemas.ResultSuccess, digestB)
				e.TraceID, e.SpanID = id, fmt.Sprintf("s%d", k%3)
			}
			at := r.IntN(len(evs) + 1)
			evs = append(evs[:at], append([]schemas.Event{e}, evs[at:]...)...)
			if r.IntN(4) == 0 {
				evs = append(evs, e)
			}
		}
	}
	// Redeliveries of earlier events, later in the stream.
	for i := 0; i < 200; i++ {
		evs = append(evs, evs[r.IntN(len(evs))])
	}
	s := newStream(4)
	s.add(evs...)
	bs := s.batches(150, t0, 20*time.Second)
	bs[len(bs)-1].Now = bs[len(bs)-1].Now.Add(10 * time.Minute)

	h := newHarness(t)
	cfg := testConfig()
	cfg.MaxEventsPerTrace = 8
	c := h.correlator(cfg)
	write := func(step string, out consumers.Output) {
		fmt.Fprintf(&w, "== %s\n", step)
		for _, ins := range out.Inserts {
			table := ins.Table[strings.LastIndexByte(ins.Table, '.')+1:]
			fmt.Fprintf(&w, "insert %s %v\n", table, ins.Columns)
			n := reflect.ValueOf(ins.Values[0]).Len()
			for i := 0; i < n; i++ {
				var row []string
				for _, col := range ins.Values {
					v := reflect.ValueOf(col).Index(i)
					if v.Kind() == reflect.Pointer && !v.IsNil() {
						v = v.Elem()
					}
					b, _ := json.Marshal(v.Interface())
					row = append(row, string(b))
				}
				fmt.Fprintf(&w, "  %s\n", strings.Join(row, " "))
			}
		}
		for _, rec := range out.Records {
			fmt.Fprintf(&w, "record %s %s %s\n", rec.Topic, rec.Key, rec.Value)
		}
		fmt.Fprintf(&w, "metrics over_limit=%v evictions=%v rebuilt=%v cached=%v pending=%v inits=%v",
			metricValue(c.m.overLimit), metricValue(c.m.evictions), metricValue(c.m.rebuilt),
			metricValue(c.m.cached), metricValue(c.m.pending), metricValue(c.m.inits))
		for _, k := range Kinds() {
			fmt.Fprintf(&w, " %s=%v", k, metricValue(c.m.violations.WithLabelValues(string(k))))
		}
		w.WriteString("\n")
	}
	for i, b := range bs {
		switch {
		case i%7 == 3:
			write(fmt.Sprintf("batch %d crashed", i), h.step(c, b, false))
			c = h.correlator(cfg)
			half := len(b.Events) / 2
			write(fmt.Sprintf("batch %d redo 1", i), h.step(c, makeBatch(b.Events[:half], b.Now), true))
			write(fmt.Sprintf("batch %d redo 2", i), h.step(c, makeBatch(b.Events[half:], b.Now), true))
			continue
		case i%11 == 5:
			write(fmt.Sprintf("batch %d retried", i), h.step(c, b, false))
		case i%13 == 8:
			c.PartitionsRevoked([]int32{1, 2})
		}
		write(fmt.Sprintf("batch %d", i), h.step(c, b, true))
	}
	return w.String()
}

// TestProcessTranscript checks the transcript says something (violations,
// events over the limit, evictions, rebuilds) and, with -transcript, writes
// it out.
func TestProcessTranscript(t *testing.T) {
	tr := processTranscript(t, *transcriptSeed)
	for _, want := range []string{"record agentrail.violations", "insert traces", "insert violations"} {
		if !strings.Contains(tr, want) {
			t.Fatalf("transcript has no %q", want)
		}
	}
	last := tr[strings.LastIndex(tr, "metrics "):]
	for _, zero := range []string{"over_limit=0 ", "evictions=0 ", "rebuilt=0 "} {
		if strings.Contains(last, zero) {
			t.Fatalf("stream too tame: %s", last)
		}
	}
	if *transcriptOut != "" {
		if err := os.WriteFile(*transcriptOut, []byte(tr), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d lines; %s", strings.Count(tr, "\n"), last)
}

// metricValue is a counter's or gauge's value.
func metricValue(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
