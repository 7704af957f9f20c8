package consumers

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// traceEvents builds the four events of trace i, valid as of now.
func traceEvents(i int, now time.Time) []*schemas.Event {
	trace := fmt.Sprintf("%032x", i+1)
	agent := schemas.Agent{ID: fmt.Sprintf("agent-%d", i%7), Team: []string{"finance", "support", "devops"}[i%3], Environment: "prod"}
	params := map[string]string{"amount": fmt.Sprint(i), "currency": "EUR"}
	digest := schemas.ActionDigest(agent.ID, "payments", "refund", "order:"+fmt.Sprint(i), params)
	base := func(n int, typ schemas.EventType) schemas.Event {
		return schemas.Event{EventID: fmt.Sprintf("ev-%d-%d", i, n), TraceID: trace, SpanID: "00f067aa0ba902b7",
			Type: typ, Time: now.Add(time.Duration(n-4) * time.Minute), Tier: schemas.TierHigh, Agent: agent,
			RequestedBy: "alice@acme.test", Producer: schemas.Producer{Name: "test"}}
	}
	in, de, ap, re := base(1, schemas.TypeIntent), base(2, schemas.TypeDecision), base(3, schemas.TypeApproval), base(4, schemas.TypeResult)
	in.Intent = &schemas.Intent{Tool: "payments", Action: "refund", Target: "order:" + fmt.Sprint(i), ActionClass: "refund",
		Tier: schemas.TierHigh, Parameters: params, ActionDigest: digest, Rationale: "double charge"}
	de.Decision = &schemas.Decision{Outcome: schemas.OutcomeRequireApproval, PolicyID: "refunds", PolicyVersion: 3, Tier: schemas.TierHigh}
	ap.Approval = &schemas.Approval{ApprovalID: "apr-" + fmt.Sprint(i), Status: schemas.ApprovalGranted, Approver: "bob@acme.test",
		ApproverKind: schemas.PrincipalHuman, ActionDigest: digest, Scope: schemas.ScopeSingle}
	re.Result = &schemas.Result{Status: schemas.ResultSuccess, ActionDigest: digest, DurationUS: 1200}
	return []*schemas.Event{&in, &de, &ap, &re}
}

// produce writes records to the events topic and waits for their acks.
func produce(t *testing.T, brokerAddr string, recs []*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokerAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func encodeAll(t testing.TB, topic string, evs []*schemas.Event) []*kgo.Record {
	enc := schemas.NewSingleObjectEncoder()
	var recs []*kgo.Record
	for _, e := range evs {
		b, err := enc.AppendEncode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(e.TraceID), Value: b})
	}
	return recs
}

func count(t *testing.T, conn driver.Conn, query string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startIngest runs an Ingest until the test ends (or the returned stop).
func startIngest(t *testing.T, cfg Config, reg prometheus.Registerer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in, err := New(ctx, cfg, reg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := in.Run(ctx); err != nil {
			t.Errorf("ingest run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			_ = in.Close(context.Background())
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestIngestEndToEnd sends good events (each twice), and poison records of
// every kind, through a real broker into a real ClickHouse, and accounts for
// every record: stored once, or dead-lettered with its reason.
func TestIngestEndToEnd(t *testing.T) {
	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter)
	chCfg, conn := testenv.ClickHouse(t)
	now := time.Now().UTC()

	const traces = 500
	var good []*schemas.Event
	for i := range traces {
		good = append(good, traceEvents(i, now)...)
	}
	recs := encodeAll(t, kc.Topics.Events, good)
	recs = append(recs, encodeAll(t, kc.Topics.Events, good[:400])...) // redelivered duplicates

	// Poison: one of each kind, each must be dead-lettered with its class.
	bad := func(mut func(e *schemas.Event)) *kgo.Record {
		e := traceEvents(10_000, now)[0]
		mut(e)
		return encodeAll(t, kc.Topics.Events, []*schemas.Event{e})[0]
	}
	valid := recs[0].Value
	poison := []struct {
		rec         *kgo.Record
		class, want string
	}{
		{&kgo.Record{Topic: kc.Topics.Events, Value: []byte("not avro at all")}, "decode", "unknown framing"},
		{&kgo.Record{Topic: kc.Topics.Events, Value: valid[:len(valid)/2]}, "decode", "decode avro payload"},
		{&kgo.Record{Topic: kc.Topics.Events, Value: append([]byte{0, 0, 0, 0, 42}, valid[10:]...)}, "decode", "no registry"},
		{&kgo.Record{Topic: kc.Topics.Events, Value: append(append([]byte{}, valid...), make([]byte, 100<<10)...)}, "oversize", "larger than"},
		{bad(func(e *schemas.Event) { e.TraceID = "" }), "validation", "trace_id"},
		{bad(func(e *schemas.Event) { e.Time = now.Add(48 * time.Hour) }), "validation", "event_time"},
		{bad(func(e *schemas.Event) { e.Time = now.AddDate(-5, 0, 0) }), "validation", "event_time"},
		{bad(func(e *schemas.Event) { e.Intent.Rationale = "bad \xff utf8" }), "validation", "intent.rationale"},
	}
	for _, p := range poison {
		recs = append(recs, p.rec)
	}
	produce(t, addr, recs)

	cfg := Config{Kafka: kafkacfg.Config{Brokers: []string{addr}}, ClickHouse: chCfg, Signatures: SignatureConfig{Mode: SignaturesOff}}
	cfg.Defaults()
	cfg.Ingest.BatchRows = 300 // several batches
	cfg.Ingest.BatchInterval = 50 * time.Millisecond
	cfg.Ingest.MaxRecordBytes = 64 << 10
	reg := prometheus.NewRegistry()
	stop := startIngest(t, cfg, reg)

	db := chCfg.Database
	testenv.Eventually(t, 60*time.Second, "every record accounted for", func() (bool, error) {
		n := count(t, conn, "SELECT count() FROM "+db+".v_events")
		d := count(t, conn, "SELECT count() FROM "+db+".dead_letters FINAL")
		return n == uint64(len(good)) && d == uint64(len(poison)), fmt.Errorf("events %d/%d, dead letters %d/%d", n, len(good), d, len(poison))
	})
	// Offsets are committed up to the end of every partition, so a
	// restarted member has nothing to re-deliver.
	adm := kadm.NewClient(mustClient(t, addr))
	testenv.Eventually(t, 30*time.Second, "offsets committed to the end", func() (bool, error) {
		ctx := context.Background()
		committed, err := adm.FetchOffsets(ctx, cfg.Ingest.Group)
		if err != nil {
			return false, err
		}
		ends, err := adm.ListEndOffsets(ctx, kc.Topics.Events)
		if err != nil {
			return false, err
		}
		var behind error
		ends.Each(func(o kadm.ListedOffset) {
			if c, _ := committed.Lookup(o.Topic, o.Partition); c.At != o.Offset && o.Offset > 0 {
				behind = fmt.Errorf("partition %d: committed %d, end %d", o.Partition, c.At, o.Offset)
			}
		})
		return behind == nil, behind
	})
	stop()

	if n := count(t, conn, "SELECT count(DISTINCT event_id) FROM "+db+".events"); n != uint64(len(good)) {
		t.Fatalf("distinct event ids = %d, want %d", n, len(good))
	}
	// Each poison record is dead-lettered with the right class and a reason
	// that names the problem.
	for i, p := range poison {
		var class, reason string
		err := conn.QueryRow(context.Background(), "SELECT reason_class, reason FROM "+db+".dead_letters FINAL WHERE offset = ? AND partition = ?",
			p.rec.Offset, p.rec.Partition).Scan(&class, &reason)
		if err != nil {
			t.Fatalf("poison %d: %v", i, err)
		}
		if class != p.class || !strings.Contains(reason, p.want) {
			t.Errorf("poison %d: class %q reason %q, want class %q reason containing %q", i, class, reason, p.class, p.want)
		}
	}
	// The dead-letter topic holds the original bytes and the reason.
	dl := consumeAll(t, addr, kc.Topics.DeadLetter, len(poison))
	for _, r := range dl {
		if header(r, HeaderReason) == "" || header(r, HeaderSource) == "" {
			t.Fatalf("dead letter without reason or source headers: %v", r.Headers)
		}
	}
	if got := metricValue(t, reg, "agentrail_ingest_records_total", "dead_lettered"); got != float64(len(poison)) {
		t.Errorf("dead_lettered metric = %v, want %d", got, len(poison))
	}

	// A stored row carries every stage's fields.
	var tool, approver, status, digest string
	var tier uint8
	err := conn.QueryRow(context.Background(), "SELECT anyIf(tool, event_type='intent'), anyIf(approver, event_type='approval'), anyIf(result_status, event_type='result'), anyIf(action_digest, event_type='result'), any(tier) FROM "+db+".v_events WHERE trace_id = ? ",
		good[0].TraceID).Scan(&tool, &approver, &status, &digest, &tier)
	if err != nil {
		t.Fatal(err)
	}
	if tool != "payments" || approver != "bob@acme.test" || status != "success" || digest != good[0].Intent.ActionDigest || tier != 3 {
		t.Errorf("trace row = %q %q %q %q %d", tool, approver, status, digest, tier)
	}
}

func mustClient(t *testing.T, addr string) *kgo.Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func consumeAll(t *testing.T, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("got %d of %d records from %s", len(out), n, topic)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// metricValue returns the value of counter name with the given label value
// (0 when it was never incremented).
func metricValue(t *testing.T, reg *prometheus.Registry, name, labelValue string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == labelValue {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestBatchClockStartsAtOldestRecord: a batch's interval runs from its
// oldest record's produce time, never earlier than one interval before the
// first poll (less catchUp, so that the fetch that poll started can still
// join the batch) and never later than that poll, whatever the producers'
// clocks say.
func TestBatchClockStartsAtOldestRecord(t *testing.T) {
	const interval = 250 * time.Millisecond
	poll := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		ts   []time.Duration // record timestamps relative to the poll
		want time.Duration   // batch start relative to the poll
	}{
		{"fresh records", []time.Duration{0, 0}, 0},
		{"waited 100ms in Kafka", []time.Duration{-40 * time.Millisecond, -100 * time.Millisecond, -10 * time.Millisecond}, -100 * time.Millisecond},
		{"waited all but catchUp", []time.Duration{-200 * time.Millisecond}, -200 * time.Millisecond},
		{"waited longer than the interval", []time.Duration{-3 * time.Second}, -200 * time.Millisecond},
		{"producer clock ahead", []time.Duration{5 * time.Second}, 0},
	} {
		b := newBatch()
		for i, d := range tc.ts {
			b.add(&kgo.Record{Partition: 0, Offset: int64(i), Timestamp: poll.Add(d)}, poll, interval)
		}
		if got := b.first.Sub(poll); got != tc.want {
			t.Errorf("%s: batch starts at poll%+v, want poll%+v", tc.name, got, tc.want)
		}
	}
	// A later poll's records still count, but the clamp stays at the first poll.
	b := newBatch()
	b.add(&kgo.Record{Timestamp: poll}, poll, interval)
	b.add(&kgo.Record{Offset: 1, Timestamp: poll.Add(-time.Hour)}, poll.Add(100*time.Millisecond), interval)
	if got := b.first.Sub(poll); got != -200*time.Millisecond {
		t.Errorf("second poll: batch starts at poll%+v, want poll%+v", got, -200*time.Millisecond)
	}
}
