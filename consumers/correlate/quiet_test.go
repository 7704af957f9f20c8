package correlate

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/schemas"
)

// ticking counts a correlator's ticks, and can crash once: on the first
// tick that emits, it writes the tick's rows to ClickHouse itself and stops
// ingest before the transaction, as a process killed between the two would.
type ticking struct {
	*Correlator
	ticks atomic.Int64
	crash func(consumers.Output) // nil: no crash
	mu    sync.Mutex
}

func (w *ticking) Tick(ctx context.Context, b *consumers.Batch) (consumers.Output, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out, err := w.Correlator.Tick(ctx, b)
	w.ticks.Add(1)
	if err == nil && len(out.Records) > 0 && w.crash != nil {
		w.crash(out)
		w.crash = nil
		return consumers.Output{}, errors.New("crashed before the tick's transaction")
	}
	return out, err
}

// quietTrace is a tier-3 trace executed without its approval, its last
// event at last.
func quietTrace(id string, last time.Time) []schemas.Event {
	evs := retrace(id, without(approved(), "ev-3")...)
	shift := last.Sub(evs[len(evs)-1].Time)
	for i := range evs {
		evs[i].Time = evs[i].Time.Add(shift)
		evs[i].EventID = id[:8] + "-" + evs[i].EventID
	}
	return evs
}

// TestViolationReportedOnQuietStream plants one execution without approval
// and then sends nothing: with settle_after 1s, ingest's tick reports it in
// v_violations, on the violations topic (read_committed) and in the metric
// within settle_after plus a bound. Then an ingest restart into silence
// reports nothing again; and a tick that crashes between its ClickHouse
// rows and its transaction has its violation reported once by the next
// incarnation (resolveTicks reads the topic).
func TestViolationReportedOnQuietStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter, DefaultViolationTopic)
	kc.Brokers = []string{addr}
	chCfg, conn := testenv.ClickHouse(t)
	db := chCfg.Database

	icfg := consumers.Config{Kafka: kc, ClickHouse: chCfg, Signatures: consumers.SignatureConfig{Mode: consumers.SignaturesOff}}
	icfg.Defaults()
	icfg.Ingest.BatchInterval = 50 * time.Millisecond
	icfg.Ingest.TickInterval = 200 * time.Millisecond
	ccfg := testConfig()
	ccfg.SettleAfter = time.Second
	const bound = 3 * time.Second // beyond settle_after: batch, tick interval, commit

	type member struct {
		w    *ticking
		reg  *prometheus.Registry
		stop func()
	}
	start := func(crash func(consumers.Output)) *member {
		t.Helper()
		reg := prometheus.NewRegistry()
		c, err := New(ccfg, conn, db, reg, quiet)
		if err != nil {
			t.Fatal(err)
		}
		w := &ticking{Correlator: c, crash: crash}
		ing, err := consumers.New(ctx, icfg, reg, quiet, consumers.WithProcessors(w))
		if err != nil {
			t.Fatal(err)
		}
		ictx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- ing.Run(ictx) }()
		m := &member{w: w, reg: reg}
		if crash != nil {
			w.crash = func(out consumers.Output) { crash(out); stop() }
		}
		m.stop = func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("ingest: %v", err)
			}
			_ = ing.Close(ctx)
		}
		return m
	}
	count := func(q string) uint64 {
		t.Helper()
		var n uint64
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	metric := func(m *member) float64 {
		return metricValue(m.w.m.violations.WithLabelValues(string(KindExecutedWithoutApproval)))
	}
	topic := func() map[string]int {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(DefaultViolationTopic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		got := map[string]int{}
		for {
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			fs := cl.PollFetches(pctx)
			cancel()
			n := 0
			fs.EachRecord(func(r *kgo.Record) { got[string(r.Key)]++; n++ })
			if n == 0 {
				return got
			}
		}
	}

	// 1. One trace, then silence.
	m1 := start(nil)
	trace1 := traceID(9001)
	replayFile(t, ctx, kc, quietTrace(trace1, time.Now().UTC().Add(-time.Second)))
	sent := time.Now()
	var inTable, onTopic, inMetric time.Duration
	testenv.Eventually(t, ccfg.SettleAfter+bound, "the violation in v_violations, on the topic and in the metric", func() (bool, error) {
		since := time.Since(sent)
		if inTable == 0 && count("SELECT count() FROM "+db+".v_violations WHERE trace_id = '"+trace1+"' AND kind = 'executed_without_approval'") == 1 {
			inTable = since
		}
		if onTopic == 0 && topic()[trace1] == 1 {
			onTopic = since
		}
		if inMetric == 0 && metric(m1) == 1 {
			inMetric = since
		}
		return inTable > 0 && onTopic > 0 && inMetric > 0, errors.New("not yet everywhere")
	})
	t.Logf("last event to visibility, settle_after %s: v_violations %s, topic %s, metric %s",
		ccfg.SettleAfter, inTable.Round(time.Millisecond), onTopic.Round(time.Millisecond), inMetric.Round(time.Millisecond))
	m1.stop()

	// 2. A restart into silence: the new correlator initializes the
	// partitions from ClickHouse on a tick and reports nothing again.
	m2 := start(nil)
	after := m2.w.ticks.Load()
	testenv.Eventually(t, 30*time.Second, "partitions initialized and ticks past settle_after", func() (bool, error) {
		return metricValue(m2.w.m.inits) > 0 && m2.w.ticks.Load() > after+int64(ccfg.SettleAfter/icfg.Ingest.TickInterval)+2, errors.New("waiting")
	})
	if n := metric(m2); n != 0 {
		t.Fatalf("after a restart into silence the correlator emitted %v violations again", n)
	}

	// 3. A tick that dies between its rows and its transaction.
	trace2 := traceID(9002)
	m2.stop()
	crashed := make(chan struct{})
	m3 := start(func(out consumers.Output) {
		for _, ins := range out.Inserts {
			applyInsert(t, conn, ins)
		}
		close(crashed)
	})
	replayFile(t, ctx, kc, quietTrace(trace2, time.Now().UTC().Add(-time.Second)))
	select {
	case <-crashed:
	case <-ctx.Done():
		t.Fatal("the tick that should crash never emitted")
	}
	m3.stop()
	if n := count("SELECT count() FROM " + db + ".violations FINAL WHERE trace_id = '" + trace2 + "' AND kafka_offset < 0"); n != 1 {
		t.Fatalf("the crashed tick left %d violation rows, want 1", n)
	}
	sent = time.Now()
	m4 := start(nil)
	testenv.Eventually(t, 30*time.Second, "the crashed tick's violation reported by the next incarnation", func() (bool, error) {
		return topic()[trace2] == 1 && metric(m4) == 1, errors.New("not yet")
	})
	t.Logf("crashed tick's violation on the topic %s after the restart", time.Since(sent).Round(time.Millisecond))
	after = m4.w.ticks.Load()
	testenv.Eventually(t, 30*time.Second, "ticks past settle_after", func() (bool, error) {
		return m4.w.ticks.Load() > after+int64(ccfg.SettleAfter/icfg.Ingest.TickInterval)+2, errors.New("waiting")
	})
	m4.stop()

	got := topic()
	for _, id := range []string{trace1, trace2} {
		if got[id] != 1 {
			t.Errorf("trace %s: %d records on the violations topic, want 1", id, got[id])
		}
		if n := count("SELECT count() FROM " + db + ".v_violations WHERE trace_id = '" + id + "'"); n != 1 {
			t.Errorf("trace %s: %d rows in v_violations, want 1", id, n)
		}
	}
	if len(got) != 2 {
		t.Errorf("violations topic holds records of %d traces, want 2: %v", len(got), got)
	}
}
