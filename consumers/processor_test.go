package consumers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/schemas"
)

// echo is a Processor that emits one record and one row per event, and can
// crash (cancel ingest) on the first batch after its row insert was planned.
type echo struct {
	topic, table string
	crashOnce    func()

	mu   sync.Mutex
	seen map[string]int // event id -> times processed
}

func (p *echo) Name() string { return "echo" }

func (p *echo) Process(ctx context.Context, b *Batch) (Output, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out Output
	ids := make([]string, 0, len(b.Events))
	for _, e := range b.Events {
		if b.FirstOffset[e.Partition] > e.Offset {
			return out, fmt.Errorf("event at offset %d below the batch's first offset %d", e.Offset, b.FirstOffset[e.Partition])
		}
		p.seen[e.EventID]++
		ids = append(ids, e.EventID)
		out.Records = append(out.Records, &kgo.Record{Topic: p.topic, Key: []byte(e.TraceID), Value: []byte(e.EventID)})
	}
	out.Inserts = []Insert{{Table: p.table, Columns: []string{"event_id"}, Values: []any{ids}}}
	if p.crashOnce != nil {
		// The batch's rows are in ClickHouse; the process dies before the
		// transaction: the next incarnation must redo the batch.
		p.crashOnce()
		p.crashOnce = nil
		return out, errors.New("crashed")
	}
	return out, nil
}

func (p *echo) PartitionsRevoked([]int32) {}

// TestProcessorOutputExactlyOnce runs a processor inside ingest, crashes the
// ingest between a batch's ClickHouse inserts and its commit, restarts it, and
// checks that the processor's records reach a read_committed consumer exactly
// once per event and that its inserts are idempotent.
func TestProcessorOutputExactlyOnce(t *testing.T) {
	var kc kafkacfg.Config
	kc.Defaults()
	const outTopic = "agentrail.echo"
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter, outTopic)
	chCfg, conn := testenv.ClickHouse(t)
	db := chCfg.Database
	if err := conn.Exec(context.Background(), "CREATE TABLE "+db+".echo (event_id String) ENGINE = ReplacingMergeTree ORDER BY event_id"); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var evs []*schemas.Event
	for i := range 300 {
		evs = append(evs, traceEvents(i, now)...)
	}
	produce(t, addr, encodeAll(t, kc.Topics.Events, evs))

	cfg := Config{Kafka: kafkacfg.Config{Brokers: []string{addr}}, ClickHouse: chCfg, Signatures: SignatureConfig{Mode: SignaturesOff}}
	cfg.Defaults()
	cfg.Ingest.BatchRows = 250
	cfg.Ingest.BatchInterval = 20 * time.Millisecond

	// First incarnation: crashes on its first batch.
	ctx1, crash := context.WithCancel(context.Background())
	p1 := &echo{topic: outTopic, table: db + ".echo", crashOnce: crash, seen: map[string]int{}}
	in1, err := New(ctx1, cfg, prometheus.NewRegistry(), quietLog(), WithProcessors(p1))
	if err != nil {
		t.Fatal(err)
	}
	if err := in1.Run(ctx1); err != nil {
		t.Fatalf("run: %v", err)
	}
	_ = in1.Close(context.Background())
	if len(p1.seen) == 0 {
		t.Fatal("the first incarnation processed nothing")
	}

	// Second incarnation: redoes the crashed batch, then the rest.
	p2 := &echo{topic: outTopic, table: db + ".echo", seen: map[string]int{}}
	reg := prometheus.NewRegistry()
	ctx2, stop := context.WithCancel(context.Background())
	in2, err := New(ctx2, cfg, reg, quietLog(), WithProcessors(p2))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in2.Run(ctx2) }()
	testenv.Eventually(t, 60*time.Second, "every event processed after the restart", func() (bool, error) {
		p2.mu.Lock()
		defer p2.mu.Unlock()
		return len(p2.seen) == len(evs), fmt.Errorf("%d of %d", len(p2.seen), len(evs))
	})
	for id := range p1.seen {
		if p2.seen[id] == 0 {
			t.Fatalf("event %s of the crashed batch was not redone", id)
		}
	}

	// A read_committed consumer sees exactly one record per event.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(outTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]int{}
	pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(got) < len(evs) && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) { got[string(r.Value)]++ })
	}
	stop()
	<-done
	_ = in2.Close(context.Background())
	if len(got) != len(evs) {
		t.Fatalf("read_committed consumer saw %d distinct events, want %d", len(got), len(evs))
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("event %s emitted %d times, want once", id, n)
		}
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".echo FINAL"); n != uint64(len(evs)) {
		t.Fatalf("processor rows = %d, want %d", n, len(evs))
	}
}
