package producers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/broker"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/schemas"
)

const testTopic = "agentrail.events"

// fastRetries makes franz-go notice a vanished broker in tens of
// milliseconds instead of seconds, so outage tests stay quick.
var fastRetries = []kgo.Opt{
	kgo.MetadataMinAge(10 * time.Millisecond),
	kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }),
}

var testAgent = schemas.Agent{ID: "billing-bot", Version: "1.4.2", Team: "finance", Environment: "test", Tenant: "acme"}

func startBroker(t testing.TB) *kfake.Cluster {
	t.Helper()
	c, err := broker.Start(broker.Config{Port: 0, Partitions: 12, Topics: []string{testTopic}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newTestEmitter(t testing.TB, brokers []string, mod func(*Config)) (*Emitter, *prometheus.Registry) {
	t.Helper()
	cfg := Config{
		Kafka:    kafkacfg.Config{Brokers: brokers},
		Agent:    testAgent,
		Producer: schemas.Producer{Name: "agentrail-go", Version: "test", Host: "test-host"},
	}
	if mod != nil {
		mod(&cfg)
	}
	reg := prometheus.NewRegistry()
	em, err := New(cfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = em.Close(ctx)
	})
	return em, reg
}

// consume reads n records of the events topic from the start.
func consume(t *testing.T, brokers []string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(testTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(recs), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// TestEmitTrace publishes the four events of one action and reads them back
// from Kafka: one partition, keyed by trace id, in order, fields intact.
func TestEmitTrace(t *testing.T) {
	c := startBroker(t)
	em, reg := newTestEmitter(t, c.ListenAddrs(), nil)
	ctx := context.Background()

	conf := 0.91
	quota := int64(7)
	act := Action{RequestedBy: "alice@acme.test", SessionID: "sess-1", Labels: map[string]string{"ticket": "4471"}}
	in := schemas.Intent{
		Tool: "payments", Action: "refund", Target: "order:991", ActionClass: "refund", Tier: 3,
		Parameters: map[string]string{"amount": "120.00", "currency": "EUR"}, Rationale: "charged twice",
		ModelID: "m-large", EvidenceIDs: []string{"doc-1"}, Confidence: &conf,
	}
	digest, err := em.Intent(ctx, &act, in)
	if err != nil {
		t.Fatal(err)
	}
	if want := schemas.ActionDigest(testAgent.ID, "payments", "refund", "order:991", in.Parameters); digest != want || act.Digest != want {
		t.Fatalf("digest %s (action %s), want %s", digest, act.Digest, want)
	}
	if act.Trace.IsZero() || act.Tier != 3 {
		t.Fatalf("Intent did not complete the action: %+v", act)
	}
	must(t, em.Decision(ctx, &act, schemas.Decision{Outcome: schemas.OutcomeRequireApproval, PolicyID: "refunds", PolicyVersion: 4, RemainingQuota: &quota}))
	must(t, em.Approval(ctx, &act, schemas.Approval{ApprovalID: "apr-1", Status: schemas.ApprovalGranted, Approver: "bob@acme.test", ApproverRole: "finance-lead"}))
	must(t, em.Result(ctx, &act, schemas.Result{Status: schemas.ResultSuccess, Executor: testAgent.ID, DurationUS: 4200}))
	must(t, em.Flush(ctx))

	recs := consume(t, c.ListenAddrs(), 4)
	if len(recs) != 4 {
		t.Fatalf("consumed %d records, want 4", len(recs))
	}
	dec, err := schemas.NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := []schemas.EventType{schemas.TypeIntent, schemas.TypeDecision, schemas.TypeApproval, schemas.TypeResult}
	ids := map[string]bool{}
	var prev time.Time
	for i, r := range recs {
		if string(r.Key) != act.Trace.TraceID {
			t.Errorf("record %d key %q, want the trace id %s", i, r.Key, act.Trace.TraceID)
		}
		if r.Partition != recs[0].Partition {
			t.Errorf("record %d in partition %d, the first in %d", i, r.Partition, recs[0].Partition)
		}
		if i > 0 && r.Offset <= recs[i-1].Offset {
			t.Errorf("record %d offset %d not after %d", i, r.Offset, recs[i-1].Offset)
		}
		var ev schemas.Event
		if err := dec.Decode(ctx, r.Value, &ev); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if ev.Type != wantTypes[i] {
			t.Errorf("record %d is %s, want %s", i, ev.Type, wantTypes[i])
		}
		if err := schemas.Validate(&ev, time.Now(), schemas.Limits{}); err != nil {
			t.Errorf("record %d: %v", i, err)
		}
		if !uuid7.MatchString(ev.EventID) || ids[ev.EventID] {
			t.Errorf("record %d event id %q: want a fresh UUIDv7", i, ev.EventID)
		}
		ids[ev.EventID] = true
		if ev.TraceID != act.Trace.TraceID || ev.SpanID != act.Trace.SpanID || ev.Agent != testAgent ||
			ev.RequestedBy != "alice@acme.test" || ev.Tier != 3 || ev.SessionID != "sess-1" || ev.Labels["ticket"] != "4471" ||
			ev.Producer != (schemas.Producer{Name: "agentrail-go", Version: "test", Host: "test-host"}) {
			t.Errorf("record %d envelope %+v", i, ev)
		}
		if ev.Time.Before(prev) || ev.Time.Nanosecond()%1000 != 0 || time.Since(ev.Time) > time.Minute {
			t.Errorf("record %d event_time %s: want recent, microseconds, not before the previous", i, ev.Time)
		}
		prev = ev.Time
		switch ev.Type {
		case schemas.TypeIntent:
			got := ev.Intent
			if got.Tool != "payments" || got.Parameters["currency"] != "EUR" || got.ActionDigest != digest || *got.Confidence != conf || got.EvidenceIDs[0] != "doc-1" {
				t.Errorf("intent %+v", got)
			}
		case schemas.TypeDecision:
			if d := ev.Decision; d.Outcome != schemas.OutcomeRequireApproval || d.Tier != 3 || *d.RemainingQuota != 7 {
				t.Errorf("decision %+v", d)
			}
		case schemas.TypeApproval:
			if a := ev.Approval; a.Approver != "bob@acme.test" || a.ActionDigest != digest {
				t.Errorf("approval %+v", a)
			}
		case schemas.TypeResult:
			if r := ev.Result; r.Status != schemas.ResultSuccess || r.ActionDigest != digest || r.DurationUS != 4200 {
				t.Errorf("result %+v", r)
			}
		}
	}
	if got := value(em.m.events[0]) + value(em.m.events[3]); got != 2 {
		t.Errorf("events_total for intent+result = %v, want 2", got)
	}
	if n, err := countSeries(reg); err != nil || n != 9 {
		t.Errorf("gathered %d series (%v), want 4 types + 4 reasons + 1 gauge", n, err)
	}
}

var uuid7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestTraceFromContext: with a zero Action.Trace, events take the trace in
// the context.
// TestHandOverKeepsOrder: events accepted from several goroutines at once,
// with Flush called meanwhile, all reach Kafka exactly once, each caller's
// (each trace's) in the order it emitted them; Flush leaves nothing
// buffered; Close hands over and delivers what is still queued.
func TestHandOverKeepsOrder(t *testing.T) {
	c := startBroker(t)
	em, _ := newTestEmitter(t, c.ListenAddrs(), func(cfg *Config) { cfg.MaxBufferedRecords = 64 })
	ctx := context.Background()
	const callers, each, atClose = 4, 300, 50
	acts := make([]Action, callers)
	for i := range acts {
		acts[i] = Action{Trace: NewTraceContext(), RequestedBy: "alice@acme.test", Tier: 1,
			Digest: schemas.ActionDigest(testAgent.ID, "email", "send", "customer:"+strconv.Itoa(i), nil)}
	}
	emit := func(a *Action, seq int) error {
		for {
			err := em.Result(ctx, a, schemas.Result{Status: schemas.ResultSuccess, DurationUS: int64(seq)})
			if !errors.Is(err, ErrBufferFull) {
				return err
			}
		}
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	flushes := make(chan error, 1)
	go func() { // flushes race the callers
		n := 0
		var err error
		for err == nil {
			select {
			case <-stop:
				flushes <- nil
				return
			default:
			}
			err = em.Flush(ctx)
			n++
		}
		flushes <- fmt.Errorf("flush %d: %w", n, err)
	}()
	for i := range acts {
		wg.Go(func() {
			for seq := range each {
				if err := emit(&acts[i], seq); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	close(stop)
	must(t, <-flushes)
	must(t, em.Flush(ctx))
	if n := em.Buffered(); n != 0 {
		t.Fatalf("after Flush, %d events still buffered", n)
	}
	for seq := range atClose { // queued, then Close at once
		must(t, emit(&acts[0], each+seq))
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	must(t, em.Close(cctx))

	want := callers*each + atClose
	recs := consume(t, c.ListenAddrs(), want)
	if len(recs) != want {
		t.Fatalf("consumed %d records, want %d", len(recs), want)
	}
	dec, err := schemas.NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]int64{} // trace id -> the sequence number expected next
	byKey := map[string][]*kgo.Record{}
	for _, r := range recs {
		byKey[string(r.Key)] = append(byKey[string(r.Key)], r)
	}
	for key, rs := range byKey {
		slices.SortFunc(rs, func(a, b *kgo.Record) int { return int(a.Offset - b.Offset) })
		for _, r := range rs {
			var ev schemas.Event
			if err := dec.Decode(ctx, r.Value, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Result.DurationUS != next[key] {
				t.Fatalf("trace %s: event %d arrived where %d was next", key, ev.Result.DurationUS, next[key])
			}
			next[key]++
		}
	}
	for i, a := range acts {
		want := int64(each)
		if i == 0 {
			want += atClose
		}
		if next[a.Trace.TraceID] != want {
			t.Errorf("caller %d: %d events delivered, want %d", i, next[a.Trace.TraceID], want)
		}
	}
}

func TestTraceFromContext(t *testing.T) {
	c := startBroker(t)
	em, _ := newTestEmitter(t, c.ListenAddrs(), nil)
	tc := NewTraceContext()
	ctx := ContextWithTrace(context.Background(), tc)
	var act Action
	if _, err := em.Intent(ctx, &act, schemas.Intent{Tool: "kb", Action: "search", ActionClass: "read", Tier: 1}); err != nil {
		t.Fatal(err)
	}
	if act.Trace != tc {
		t.Fatalf("action trace %+v, want the context's %+v", act.Trace, tc)
	}
	must(t, em.Flush(ctx))
	recs := consume(t, c.ListenAddrs(), 1)
	if string(recs[0].Key) != tc.TraceID {
		t.Fatalf("key %q, want %s", recs[0].Key, tc.TraceID)
	}
}

// TestInvalidEventRefused: a bad event is refused before it is buffered,
// with an error that names the field.
func TestInvalidEventRefused(t *testing.T) {
	// Nothing listens there: validation needs no broker.
	em, _ := newTestEmitter(t, []string{"127.0.0.1:1"}, nil)
	ctx := context.Background()
	good := func() *Action { return &Action{Trace: NewTraceContext(), RequestedBy: "alice@acme.test", Tier: 2} }
	tests := []struct {
		name  string
		emit  func() error
		field string
	}{
		{"intent without tool", func() error {
			_, err := em.Intent(ctx, good(), schemas.Intent{Action: "send", ActionClass: "send"})
			return err
		}, "intent.tool"},
		{"decision with unknown outcome", func() error {
			return em.Decision(ctx, good(), schemas.Decision{Outcome: "maybe", PolicyID: "p"})
		}, "policy_decision.outcome"},
		{"granted approval without approver", func() error {
			a := good()
			a.Digest = strings.Repeat("ab", 32)
			return em.Approval(ctx, a, schemas.Approval{ApprovalID: "apr-1", Status: schemas.ApprovalGranted})
		}, "approval.approver"},
		{"result without digest", func() error {
			return em.Result(ctx, good(), schemas.Result{Status: schemas.ResultSuccess})
		}, "result.action_digest"},
		{"decision without trace", func() error {
			return em.Decision(ctx, &Action{Tier: 1}, schemas.Decision{Outcome: "allow", PolicyID: "p"})
		}, "trace_id"},
		{"tier out of range", func() error {
			a := good()
			a.Tier = 5
			return em.Decision(ctx, a, schemas.Decision{Outcome: "allow", PolicyID: "p", Tier: 1})
		}, "tier"},
		{"agent without id", func() error {
			a := good()
			a.Agent = &schemas.Agent{Team: "x"}
			return em.Decision(ctx, a, schemas.Decision{Outcome: "allow", PolicyID: "p"})
		}, "agent.agent_id"},
		{"emit with bad time", func() error {
			return em.Emit(ctx, &schemas.Event{EventID: "e1", TraceID: NewTraceID(), Type: schemas.TypeResult})
		}, "event_time"},
		// Emit takes the caller's id and time: they are checked, unlike the
		// ones the typed methods make.
		{"emit with bad event id", func() error {
			ev := validEvent()
			ev.EventID = "ev 1"
			return em.Emit(ctx, ev)
		}, "event_id"},
		{"emit with future time", func() error {
			ev := validEvent()
			ev.Time = time.Now().Add(2 * time.Hour)
			return em.Emit(ctx, ev)
		}, "event_time"},
		{"emit with a label that is not utf-8", func() error {
			ev := validEvent()
			ev.Labels = map[string]string{"k": "v\xff"}
			return em.Emit(ctx, ev)
		}, "labels.k"},
		{"result with an error message that is not utf-8", func() error {
			a := good()
			a.Digest = strings.Repeat("ab", 32)
			return em.Result(ctx, a, schemas.Result{Status: schemas.ResultError, ErrorMessage: "caf\xe9"})
		}, "result.error_message"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.emit()
			var ve *schemas.ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field {
				t.Fatalf("error %v, want a validation error naming %s", err, tc.field)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name %s", err, tc.field)
			}
			if got := value(em.m.invalid); got != float64(i+1) {
				t.Fatalf("errors_total{invalid} = %v, want %d", got, i+1)
			}
			if em.Buffered() != 0 {
				t.Fatal("an invalid event was buffered")
			}
		})
	}
}

// validEvent is a complete result event, valid now.
func validEvent() *schemas.Event {
	return &schemas.Event{
		EventID: "ev-1", TraceID: NewTraceID(), Type: schemas.TypeResult, Time: time.Now().UTC(),
		Agent: testAgent, Tier: 1,
		Result: &schemas.Result{Status: schemas.ResultSuccess, ActionDigest: strings.Repeat("ab", 32)},
	}
}

// runqueueWait returns how long this process's threads have waited,
// runnable, for a CPU: the sum of the second field of each thread's
// /proc/self/task/TID/schedstat (0 where the kernel does not say).
func runqueueWait() time.Duration {
	tasks, _ := filepath.Glob("/proc/self/task/*/schedstat")
	var sum time.Duration
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread exited
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			if ns, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				sum += time.Duration(ns)
			}
		}
	}
	return sum
}

// TestBrokerGone: with Kafka gone, calls keep returning within BlockLimit,
// first ErrBufferFull, then ErrUnavailable once deliveries fail; the lost
// events are counted and reported, never dropped silently.
//
// A call's blocking is its wall time less the time the process's threads
// spent runnable but waiting for a CPU meanwhile: on a loaded machine the
// kernel can keep the thread that runs timers, or the call's own, off every
// CPU after the call's timer fired, which is no blocking of the Emitter's
// (on a loaded machine it made a call take several times its limit). Waiting on a
// timer, a lock or a channel is sleeping, not waiting for a CPU, so it
// still counts in full; on a quiet machine nothing is subtracted. And the
// median blocked call, which scheduler hiccups do not move, must end within
// a few milliseconds of the limit: a timer armed too long fails it however
// loaded the machine.
func TestBrokerGone(t *testing.T) {
	c := startBroker(t)
	var mu sync.Mutex
	reported := map[string]error{}
	const blockLimit = 50 * time.Millisecond
	em, _ := newTestEmitter(t, c.ListenAddrs(), func(cfg *Config) {
		cfg.MaxBufferedRecords = 8
		cfg.BlockLimit = blockLimit
		cfg.DeliveryTimeout = time.Second
		cfg.ProbeInterval = 50 * time.Millisecond
		cfg.KafkaOpts = fastRetries
		cfg.OnDeliveryError = func(id string, err error) {
			mu.Lock()
			reported[id] = err
			mu.Unlock()
		}
	})
	ctx := context.Background()
	emit := func() error {
		a := Action{Trace: NewTraceContext(), RequestedBy: "alice@acme.test", Tier: 1}
		_, err := em.Intent(ctx, &a, schemas.Intent{Tool: "kb", Action: "search", ActionClass: "read"})
		return err
	}
	must(t, emit())
	must(t, em.Flush(ctx))
	c.Close()

	var accepted, full, unavailable int
	var slowest, slowestStarved time.Duration
	var refused, refusedBlocked []time.Duration // calls refused after waiting: wall time, blocking
	deadline := time.Now().Add(20 * time.Second)
	for unavailable == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no ErrUnavailable within 20s (accepted %d, buffer full %d)", accepted, full)
		}
		w0 := runqueueWait()
		start := time.Now()
		err := emit()
		took := time.Since(start)
		starved := min(max(runqueueWait()-w0, 0), took)
		if took > slowest {
			slowest, slowestStarved = took, starved
		}
		if blocked := took - starved; blocked > blockLimit+100*time.Millisecond {
			t.Fatalf("call blocked %s (took %s, of which %s waiting for a CPU), BlockLimit is %s", blocked, took, starved, blockLimit)
		}
		switch {
		case err == nil:
			accepted++
		case errors.Is(err, ErrBufferFull):
			full++
			refused = append(refused, took)
			refusedBlocked = append(refusedBlocked, took-starved)
		case errors.Is(err, ErrUnavailable):
			unavailable++
			if errors.Unwrap(err) == nil {
				t.Fatalf("ErrUnavailable without a cause: %v", err)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	}
	if accepted == 0 || accepted > 8+8 || full == 0 {
		t.Fatalf("accepted %d, buffer full %d: want the buffer (8) to fill, then refusals", accepted, full)
	}
	slices.Sort(refused)
	slices.Sort(refusedBlocked)
	took, blocked := refused[len(refused)/2], refusedBlocked[len(refusedBlocked)/2]
	t.Logf("%d calls; the slowest took %s, of which %s waiting for a CPU; the median refused call took %s, blocked %s",
		accepted+full+unavailable, slowest, slowestStarved, took, blocked)
	// A refused call waits for buffer space until just before the limit.
	if took < blockLimit-wakeMargin(blockLimit)-time.Millisecond || blocked > blockLimit+5*time.Millisecond {
		t.Fatalf("the median call refused with ErrBufferFull took %s (blocked %s), want about BlockLimit %s", took, blocked, blockLimit)
	}
	// Deliveries have started failing, and each failure is reported. (They
	// go on concurrently: the callback and the metric are compared once
	// Close has settled every record, below.)
	mu.Lock()
	n := len(reported)
	mu.Unlock()
	if n == 0 {
		t.Fatal("no delivery failure reported before ErrUnavailable")
	}
	if got := value(em.m.bufferFull); got != float64(full) {
		t.Fatalf("errors_total{buffer_full} = %v, want %d", got, full)
	}

	// Close within its budget; whatever was still buffered is failed and
	// reported too.
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	closeErr := em.Close(cctx)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close took %s with a 200ms budget", took)
	}
	mu.Lock()
	n = len(reported)
	mu.Unlock()
	if n != accepted {
		t.Fatalf("%d of %d accepted events reported lost, want all", n, accepted)
	}
	if got := value(em.m.delivery); got != float64(n) {
		t.Fatalf("%d delivery failures reported, errors_total{delivery} says %v", n, got)
	}
	if err := emit(); !errors.Is(err, ErrClosed) {
		t.Fatalf("emit after Close: %v, want ErrClosed", err)
	}
	// Close is idempotent: the second call returns what the first did.
	if again := em.Close(ctx); again != closeErr {
		t.Fatalf("second Close returned %v, the first %v", again, closeErr)
	}
}

// TestDeliveryErrorKeepsID: the id OnDeliveryError gets stays the failed
// event's even when its record is reused at once, as it is when the
// callback itself emits (a typed method's event id lives in its record).
func TestDeliveryErrorKeepsID(t *testing.T) {
	c := startBroker(t)
	ctx := context.Background()
	type report struct{ got, after string }
	reports := make(chan report, 64)
	var em *Emitter
	result := func() error {
		a := Action{Trace: NewTraceContext(), RequestedBy: "alice@acme.test", Tier: 1, Digest: strings.Repeat("a", 64)}
		return em.Result(ctx, &a, schemas.Result{Status: schemas.ResultSuccess})
	}
	em, _ = newTestEmitter(t, c.ListenAddrs(), func(cfg *Config) {
		cfg.DeliveryTimeout = time.Second
		cfg.KafkaOpts = fastRetries
		cfg.OnDeliveryError = func(id string, err error) {
			got := strings.Clone(id)
			// The record just freed is the likeliest one for this call to
			// take; the call is refused, but only after making its id.
			_ = result()
			select {
			case reports <- report{got, id}:
			default:
			}
		}
	})
	must(t, result())
	must(t, em.Flush(ctx))
	c.Close()
	for range 5 {
		if result() != nil {
			break
		}
	}
	select {
	case r := <-reports:
		if r.after != r.got || !uuid7.MatchString(r.got) {
			t.Fatalf("OnDeliveryError got id %q, which became %q once the callback emitted", r.got, r.after)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery failure reported within 10s")
	}
}

// TestRecovers: once Kafka is back, the Emitter accepts events again.
func TestRecovers(t *testing.T) {
	// A persisted broker comes back with the same topic (and topic id), as
	// a restarted Kafka does.
	dir := t.TempDir()
	bcfg := broker.Config{Port: 0, Partitions: 12, Topics: []string{testTopic}, DataDir: dir}
	c, err := broker.Start(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	addrs := c.ListenAddrs()
	em, _ := newTestEmitter(t, addrs, func(cfg *Config) {
		cfg.MaxBufferedRecords = 4
		cfg.DeliveryTimeout = time.Second
		cfg.ProbeInterval = 20 * time.Millisecond
		cfg.KafkaOpts = fastRetries
	})
	ctx := context.Background()
	emit := func() error {
		a := Action{Trace: NewTraceContext(), Tier: 1}
		_, err := em.Intent(ctx, &a, schemas.Intent{Tool: "kb", Action: "search", ActionClass: "read"})
		return err
	}
	must(t, emit())
	must(t, em.Flush(ctx))
	c.Close()
	waitFor(t, 20*time.Second, "ErrUnavailable", func() bool { return errors.Is(emit(), ErrUnavailable) })

	bcfg.Port = atoi(t, addrs[0][strings.LastIndexByte(addrs[0], ':')+1:])
	c2, err := broker.Start(bcfg)
	if err != nil {
		t.Fatalf("restart the broker on port %d: %v", bcfg.Port, err)
	}
	defer c2.Close()
	waitFor(t, 20*time.Second, "events accepted again", func() bool { return emit() == nil })
	// Events accepted while the outage was building up may still time
	// out; that is reported by this Flush. After it, events go through.
	_ = em.Flush(ctx)
	waitFor(t, 20*time.Second, "events accepted again", func() bool { return emit() == nil })
	must(t, em.Flush(ctx))
}

func atoi(t *testing.T, s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("bad port %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// waitFor polls cond until it holds; each poll is itself bounded by the
// Emitter's BlockLimit, so this is a deadline, not a sleep.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*Config)
		field string // "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"buffer too small", func(c *Config) { c.MaxBufferedRecords = -1 }, "max_buffered_records"},
		{"block limit negative", func(c *Config) { c.BlockLimit = -time.Second }, "block_limit"},
		{"block limit too long", func(c *Config) { c.BlockLimit = time.Hour }, "block_limit"},
		{"delivery timeout under 1s", func(c *Config) { c.DeliveryTimeout = 10 * time.Millisecond }, "delivery_timeout"},
		{"linger negative", func(c *Config) { c.Linger = -1 }, "linger"},
		{"probe too fast", func(c *Config) { c.ProbeInterval = time.Microsecond }, "probe_interval"},
		{"registry not a url", func(c *Config) { c.RegistryURL = "registry:8081" }, "registry_url"},
		{"bad broker", func(c *Config) { c.Kafka.Brokers = []string{"nohost"} }, "kafka.brokers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			tc.mod(&c)
			c.Defaults()
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.MaxBufferedRecords != DefaultMaxBufferedRecords || c.BlockLimit != DefaultBlockLimit || c.Producer.Name != SDKName {
					t.Fatalf("defaults not filled: %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %v, want one naming %s", err, tc.field)
			}
		})
	}
}

func TestPutEventID(t *testing.T) {
	now := time.Now()
	var ab, bb [eventIDLen]byte
	putEventID(&ab, now)
	putEventID(&bb, now)
	a, b := string(ab[:]), string(bb[:])
	if !uuid7.MatchString(a) || a == b {
		t.Fatalf("ids %q %q: want distinct UUIDv7s", a, b)
	}
	// The first 48 bits are the time in milliseconds.
	hex := strings.ReplaceAll(a, "-", "")[:12]
	var ms int64
	for _, c := range hex {
		ms = ms<<4 | int64(strings.IndexRune(hexDigits, c))
	}
	if ms != now.UnixMilli() {
		t.Fatalf("id time %d, want %d", ms, now.UnixMilli())
	}
}

func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func countSeries(reg *prometheus.Registry) (int, error) {
	mfs, err := reg.Gather()
	n := 0
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "agentrail_producer_") {
			n += len(mf.GetMetric())
		}
	}
	return n, err
}

// TestRegistryFraming: with a schema registry, the schema is registered
// under the topic's subject and records carry the Confluent framing.
func TestRegistryFraming(t *testing.T) {
	var posted atomic.Int32
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/subjects/"+schemas.Subject(testTopic)+"/versions":
			posted.Add(1)
			fmt.Fprint(w, `{"id":7}`)
		case r.Method == http.MethodGet && r.URL.Path == "/schemas/ids/7/versions":
			fmt.Fprintf(w, `[{"subject":%q,"version":1}]`, schemas.Subject(testTopic))
		case r.Method == http.MethodGet && r.URL.Path == "/subjects/"+schemas.Subject(testTopic)+"/versions/1":
			fmt.Fprintf(w, `{"subject":%q,"version":1,"id":7,"schema":"{}"}`, schemas.Subject(testTopic))
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error_code":40401,"message":"not found"}`)
		}
	}))
	defer reg.Close()

	c := startBroker(t)
	em, _ := newTestEmitter(t, c.ListenAddrs(), func(cfg *Config) { cfg.RegistryURL = reg.URL })
	if posted.Load() != 1 {
		t.Fatalf("schema registered %d times, want once", posted.Load())
	}
	a := Action{Tier: 1}
	if _, err := em.Intent(context.Background(), &a, schemas.Intent{Tool: "kb", Action: "search", ActionClass: "read"}); err != nil {
		t.Fatal(err)
	}
	must(t, em.Flush(context.Background()))
	v := consume(t, c.ListenAddrs(), 1)[0].Value
	if !bytes.HasPrefix(v, []byte{0, 0, 0, 0, 7}) {
		t.Fatalf("value starts % x, want the Confluent header for id 7", v[:5])
	}
	text, _ := schemas.SchemaText(schemas.Latest().N)
	dec, err := schemas.NewDecoder(schemaByID{7: text})
	if err != nil {
		t.Fatal(err)
	}
	var ev schemas.Event
	if err := dec.Decode(context.Background(), v, &ev); err != nil || ev.TraceID != a.Trace.TraceID {
		t.Fatalf("decoded trace %s, %v; want %s", ev.TraceID, err, a.Trace.TraceID)
	}
}

type schemaByID map[int]string

func (m schemaByID) SchemaTextByID(_ context.Context, id int) (string, error) {
	if s, ok := m[id]; ok {
		return s, nil
	}
	return "", fmt.Errorf("no schema %d", id)
}
