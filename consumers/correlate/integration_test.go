package correlate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/producers"
	"github.com/agentrail/agentrail/schemas"
)

// TestReplayFleetThroughKafka writes a mixed file of several thousand
// simulated traces with every violation kind planted (plus reordered and
// duplicated deliveries), replays it through the producer SDK into a real
// broker, and runs ingest with the correlator inside it into a real
// ClickHouse: half of the file, a restart of ingest and correlator, the
// other half, then (ten minutes later on ingest's clock) a tail of clean
// traces that lets every violation waiting on missing evidence settle.
// Every planted violation is found, once, on the violations topic (read
// committed) and in the table, and nothing else.
func TestReplayFleetThroughKafka(t *testing.T) {
	n, tail := 3000, 300
	if testing.Short() {
		n, tail = 1200, 200
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	base := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
	fx := newFixture(t, 3, n, 0, 0.012, base)
	byKind := map[Kind]int{}
	for f := range fx.planted {
		byKind[f.kind]++
	}
	for _, k := range Kinds() {
		if byKind[k] == 0 {
			t.Fatalf("the fixture plants no %s (planted: %v)", k, byKind)
		}
	}
	unique := map[string]bool{}
	for _, e := range fx.events {
		unique[e.EventID] = true
	}

	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter, DefaultViolationTopic)
	kc.Brokers = []string{addr}
	chCfg, conn := testenv.ClickHouse(t)
	db := chCfg.Database
	var shift atomic.Int64 // the correlator's clock runs ahead of ingest's by this much

	icfg := consumers.Config{Kafka: kc, ClickHouse: chCfg, Signatures: consumers.SignatureConfig{Mode: consumers.SignaturesOff}}
	icfg.Defaults()
	icfg.Ingest.BatchRows = 1500
	icfg.Ingest.BatchInterval = 50 * time.Millisecond
	ccfg := testConfig()
	ccfg.MaxTraces = 2000 // evictions and rebuilds happen too

	// runIngest runs ingest with a fresh correlator until every record of
	// the events topic is committed, and returns the correlator.
	runIngest := func(what string) *Correlator {
		t.Helper()
		c, err := New(ccfg, conn, db, prometheus.NewRegistry(), quiet)
		if err != nil {
			t.Fatal(err)
		}
		ing, err := consumers.New(ctx, icfg, prometheus.NewRegistry(), quiet, consumers.WithProcessors(shifted{c, &shift}))
		if err != nil {
			t.Fatal(err)
		}
		ictx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- ing.Run(ictx) }()
		waitCommitted(t, ctx, addr, icfg.Ingest.Group, kc.Topics.Events, what)
		stop()
		if err := <-done; err != nil {
			t.Fatalf("%s: ingest: %v", what, err)
		}
		_ = ing.Close(ctx)
		return c
	}

	// 1. The file, in two halves (a trace may straddle them), through the
	// producer SDK, with a restart of ingest and correlator in between.
	half := len(fx.events) / 2
	replayFile(t, ctx, kc, fx.events[:half])
	runIngest("first half")
	replayFile(t, ctx, kc, fx.events[half:])
	runIngest("second half")

	// 2. Ten minutes later (on the correlator's clock), clean traces in
	// every partition settle what waits for missing evidence.
	shift.Store(int64(10 * time.Minute))
	tailFx := newFixture(t, 4, 0, tail, 0, time.Now().UTC())
	replayFile(t, ctx, kc, tailFx.events)
	c := runIngest("tail")
	if len(c.pending) != 0 {
		t.Fatalf("%d traces still wait to settle", len(c.pending))
	}

	// 3. What a downstream tool (SIEM, ticketing) reads, and the table.
	onTopic := consumeRecords(t, ctx, addr, DefaultViolationTopic, len(fx.planted), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	compare(t, "topic", recordsByViolation(t, onTopic), fx.planted)
	compare(t, "table", tableViolations(t, conn, db), fx.planted)
	var events uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".v_events").Scan(&events); err != nil {
		t.Fatal(err)
	}
	if int(events) != len(unique)+len(tailFx.events) {
		t.Errorf("v_events holds %d events, want %d", events, len(unique)+len(tailFx.events))
	}

	// Every trace has its record; only the traces whose decision was
	// removed are incomplete.
	states := map[string]int{}
	rows, err := conn.Query(ctx, "SELECT state, count() FROM "+db+".v_traces GROUP BY state")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for rows.Next() {
		var s string
		var k uint64
		if err := rows.Scan(&s, &k); err != nil {
			t.Fatal(err)
		}
		states[s] = int(k)
		total += int(k)
	}
	rows.Close()
	if want := len(fx.traces) + len(tailFx.traces); total != want || states[StateIncomplete] != byKind[KindNoPolicyDecision] || states[StateCompleted] != total-states[StateIncomplete] {
		t.Errorf("v_traces states %v for %d traces; want %d incomplete (no decision planted), the rest completed", states, want, byKind[KindNoPolicyDecision])
	}
	t.Logf("%d traces, %d events (%d unique) + %d tail traces; planted and found %d violations: %v",
		len(fx.traces), len(fx.events), len(unique), len(tailFx.traces), len(fx.planted), byKind)
}

// shifted hands the correlator batches whose clock runs ahead: ingest's
// clock also paces its polling, so the test moves only the correlator's.
type shifted struct {
	*Correlator
	by *atomic.Int64
}

func (s shifted) Process(ctx context.Context, b *consumers.Batch) (consumers.Output, error) {
	moved := *b
	moved.Now = b.Now.Add(time.Duration(s.by.Load()))
	return s.Correlator.Process(ctx, &moved)
}

// replayFile writes events to a canonical-JSON file and replays it through
// the producer SDK.
func replayFile(t *testing.T, ctx context.Context, kc kafkacfg.Config, evs []schemas.Event) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fleet.jsonl")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(fh)
	var line []byte
	for i := range evs {
		if line, err = schemas.AppendJSON(line[:0], &evs[i]); err != nil {
			t.Fatal(err)
		}
		w.Write(append(line, '\n'))
	}
	if err := errors.Join(w.Flush(), fh.Close()); err != nil {
		t.Fatal(err)
	}
	em, err := producers.New(producers.Config{Kafka: kc}, prometheus.NewRegistry(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	rep, err := producers.Replay(ctx, in, em.Emit, nil)
	if err != nil || rep.Rejected > 0 {
		t.Fatalf("replay: %v, %d rejected: %v", err, rep.Rejected, rep.Rejections)
	}
	if err := em.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitCommitted waits until group has committed the end of every partition
// of topic.
func waitCommitted(t *testing.T, ctx context.Context, addr, group, topic, what string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	testenv.Eventually(t, 90*time.Second, what+": every record committed", func() (bool, error) {
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			return false, err
		}
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return false, err
		}
		var behind error
		ends.Each(func(o kadm.ListedOffset) {
			if c, _ := committed.Lookup(o.Topic, o.Partition); o.Offset > 0 && c.At != o.Offset {
				behind = fmt.Errorf("partition %d: committed %d of %d", o.Partition, c.At, o.Offset)
			}
		})
		return behind == nil, behind
	})
}

func consumeRecords(t *testing.T, ctx context.Context, addr, topic string, want int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	opts = append(opts, kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(out) < want {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		fs := cl.PollFetches(pctx)
		timedOut := pctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("read %d of %d records of %s: %v", len(out), want, topic, fs.Err())
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	// Nothing more: a duplicate would show up here.
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	return out
}
