package consumers

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/broker"
	"github.com/agentrail/agentrail/internal/chserver"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/schemas"
)

// outage is a Processor that emits one record per event and, on its
// second batch, stops the broker instead: the batch's events are being
// inserted while it runs, so its transaction then ends against a broker
// that is gone.
type outage struct {
	topic string
	stop  func() // stops the broker; called once

	mu      sync.Mutex
	batches int
	once    sync.Once
	hit     chan struct{} // closed once the broker was stopped
	// armed: stop the broker on the next batch too, with its records to
	// produce; hit2 is closed then.
	armed bool
	hit2  chan struct{}
}

func (p *outage) Name() string { return "outage" }

func (p *outage) Process(_ context.Context, b *Batch) (Output, error) {
	p.mu.Lock()
	p.batches++
	n := p.batches
	armed := p.armed && len(b.Events) > 0
	if armed {
		p.armed = false
	}
	p.mu.Unlock()
	var out Output
	if n == 2 {
		// No records: with records to produce, the transaction would wait
		// in ProduceSync for the broker to come back rather than fail.
		p.once.Do(func() { p.stop(); close(p.hit) })
		return out, nil
	}
	for _, e := range b.Events {
		out.Records = append(out.Records, &kgo.Record{Topic: p.topic, Key: []byte(e.TraceID), Value: []byte(e.EventID)})
	}
	if armed {
		p.stop()
		close(p.hit2)
	}
	return out, nil
}

func (p *outage) PartitionsRevoked([]int32) {}

// TestIngestSurvivesBrokerOutage stops the broker (its own data directory,
// as `agentrail broker` runs it) while a batch is between its ClickHouse
// insert and its Kafka transaction, keeps it down until that transaction
// has failed, and starts it again on the same port and directory. Ingest
// must not exit, and every event must end up stored once (as analysts see
// it), with each emitted record visible once to a read_committed consumer.
// Then the broker goes away while a batch's records are being produced, and
// ingest is stopped meanwhile: it must return at once, not wait for the
// broker.
func TestIngestSurvivesBrokerOutage(t *testing.T) {
	var kc kafkacfg.Config
	kc.Defaults()
	const outTopic = "agentrail.outage"
	port, err := chserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	bcfg := broker.Config{Port: port, DataDir: t.TempDir(), SyncWrites: true, Topics: []string{kc.Topics.Events, kc.Topics.DeadLetter, outTopic}}
	var (
		clMu sync.Mutex
		cl   *kfake.Cluster
	)
	start := func() {
		c, err := broker.Start(bcfg)
		if err != nil {
			t.Error(err)
			return
		}
		clMu.Lock()
		cl = c
		clMu.Unlock()
	}
	start()
	t.Cleanup(func() {
		clMu.Lock()
		defer clMu.Unlock()
		if cl != nil {
			cl.Close()
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	chCfg, conn := testenv.ClickHouse(t)
	db := chCfg.Database

	now := time.Now().UTC()
	var evs []*schemas.Event
	for i := range 1500 {
		evs = append(evs, traceEvents(i, now)...)
	}
	half := len(evs) / 2
	produce(t, addr, encodeAll(t, kc.Topics.Events, evs[:half]))

	cfg := Config{Kafka: kafkacfg.Config{Brokers: []string{addr}}, ClickHouse: chCfg, Signatures: SignatureConfig{Mode: SignaturesOff}}
	cfg.Defaults()
	cfg.Ingest.BatchRows = 500
	cfg.Ingest.BatchInterval = 20 * time.Millisecond
	cfg.Ingest.SessionTimeout = 6 * time.Second
	cfg.Ingest.RebalanceTimeout = 6 * time.Second

	p := &outage{topic: outTopic, hit: make(chan struct{}), hit2: make(chan struct{}), stop: func() {
		clMu.Lock()
		defer clMu.Unlock()
		cl.Close() // flushes the data directory, closes every connection
		cl = nil
	}}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := New(ctx, cfg, reg, quietLog(), WithProcessors(p))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	defer func() { _ = in.Close(context.Background()) }() // idempotent: closed below too

	select {
	case <-p.hit:
	case err := <-done:
		t.Fatalf("ingest returned before the outage: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("no second batch within 60s")
	}
	// The broker stays down until the batch's transaction has failed (ingest
	// counts it as a commit retry), or ingest gave up.
	deadline := time.After(90 * time.Second)
	for metricValue(t, reg, "agentrail_ingest_retries_total", "commit") == 0 {
		select {
		case err := <-done:
			t.Fatalf("ingest exited when the broker went away: %v", err)
		case <-deadline:
			t.Fatal("the batch's transaction neither failed nor ingest exited within 90s of the outage")
		case <-time.After(100 * time.Millisecond):
		}
	}
	time.Sleep(500 * time.Millisecond) // down a little longer: the new session meets it down too
	start()
	produce(t, addr, encodeAll(t, kc.Topics.Events, evs[half:]))

	testenv.Eventually(t, 90*time.Second, "every event stored after the outage", func() (bool, error) {
		select {
		case err := <-done:
			t.Fatalf("ingest exited after the outage: %v", err)
		default:
		}
		n := count(t, conn, "SELECT count(DISTINCT event_id) FROM "+db+".events")
		return n == uint64(len(evs)), fmt.Errorf("%d of %d", n, len(evs))
	})
	if n := count(t, conn, "SELECT count() FROM "+db+".v_events"); n != uint64(len(evs)) {
		t.Fatalf("analysts see %d events, want exactly %d", n, len(evs))
	}

	// The emitted records: each once for a read_committed consumer.
	rc, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(outTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]int{}
	pctx, pcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer pcancel()
	for len(got) < len(evs) && pctx.Err() == nil {
		rc.PollFetches(pctx).EachRecord(func(r *kgo.Record) { got[string(r.Value)]++ })
	}
	if len(got) != len(evs) {
		t.Fatalf("read_committed consumer saw %d distinct events, want %d", len(got), len(evs))
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("event %s emitted %d times, want once", id, n)
		}
	}

	p.mu.Lock()
	p.armed = true
	p.mu.Unlock()
	produce(t, addr, encodeAll(t, kc.Topics.Events, traceEvents(99_999, time.Now().UTC())))
	select {
	case <-p.hit2:
	case err := <-done:
		t.Fatalf("ingest returned: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("no batch within 60s")
	}
	time.Sleep(time.Second) // the batch's records are waiting for the broker
	cancel()
	stopStart := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ingest run after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("ingest did not stop within 15s of its context ending, with the broker down")
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	closeStart := time.Now()
	_ = in.Close(cctx)
	if took := time.Since(closeStart); took > 10*time.Second {
		t.Fatalf("Close took %s with the broker down", took)
	}
	t.Logf("with the broker down, Run returned %s after its context ended, Close took %s", closeStart.Sub(stopStart), time.Since(closeStart))
	t.Logf("commit retries: %v", metricValue(t, reg, "agentrail_ingest_retries_total", "commit"))
}
