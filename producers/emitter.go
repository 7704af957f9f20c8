package producers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// Errors callers branch on.
var (
	// ErrBufferFull: the event was refused because MaxBufferedRecords
	// events were waiting for Kafka for longer than BlockLimit. It reports
	// Temporary() true: the same event may be offered again.
	ErrBufferFull error = temporaryError("producers: buffer full")
	// ErrUnavailable: the event was refused because recent deliveries to
	// Kafka failed. The returned error wraps the delivery failure's cause.
	// Calls succeed again once Kafka answers.
	ErrUnavailable = errors.New("producers: kafka unavailable")
	// ErrClosed: the Emitter is closed.
	ErrClosed = errors.New("producers: emitter closed")
)

// temporaryError is an error worth retrying; generic callers (the
// simulator) recognise it by its Temporary method without importing this
// package.
type temporaryError string

func (e temporaryError) Error() string   { return string(e) }
func (e temporaryError) Temporary() bool { return true }

// unavailableError is ErrUnavailable with its cause. One value is built per
// outage and returned to every refused call, so refusing costs nothing.
type unavailableError struct{ cause error }

func (e *unavailableError) Error() string        { return ErrUnavailable.Error() + ": " + e.cause.Error() }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }
func (e *unavailableError) Unwrap() error        { return e.cause }

// Action is what the events of one agent action share besides their body:
// the trace, who asked for it, its tier. Fill it once and pass the same
// *Action to Intent, Decision, Approval and Result; Intent completes it.
type Action struct {
	// Trace identifies the action. If zero, the methods use the trace in
	// the context (ContextWithTrace); if there is none, Intent starts a new
	// trace and stores it here.
	Trace       TraceContext
	RequestedBy string            // the human on whose behalf the agent acts
	Tier        int32             // 1..3; if 0, Intent and Decision set it from their body
	SessionID   string            // optional
	Labels      map[string]string // optional, copied by reference onto every event
	Agent       *schemas.Agent    // nil: Config.Agent
	// Digest is the action digest; Intent sets it, and Approval and Result
	// use it when their body's ActionDigest is empty.
	Digest string
}

// Emitter publishes agent events to Kafka. Its methods are safe for
// concurrent use.
type Emitter struct {
	cfg     Config
	log     *slog.Logger
	cl      *kgo.Client
	m       metrics
	promise func(*kgo.Record, error) // bound once: a method value allocates

	enc     *schemas.Encoder  // only read by AppendValid: shared by all calls
	env     *schemas.Envelope // Config.Agent and Producer, checked and encoded once; nil if invalid
	records sync.Pool         // *pending
	boxes   sync.Pool         // *eventBox

	// slots holds one token per accepted, unacknowledged event.
	slots chan struct{}
	// queue carries accepted records, in order, to handOver, which gives
	// them to franz-go off the caller's thread; flush markers ride along.
	queue  queue
	handed chan struct{} // closed when handOver has returned

	down     atomic.Pointer[unavailableError] // non-nil while deliveries fail
	failures atomic.Uint64                    // delivery failures so far
	lastErr  atomic.Pointer[error]            // the latest delivery failure
	wake     chan struct{}                    // tells the prober an outage began

	mu     sync.RWMutex // held shared by publishers, exclusively by Close
	closed bool

	closeOnce sync.Once
	closeErr  error
	done      chan struct{}
	probeDone chan struct{}
}

// pending is one record on its way to Kafka. It is its own record context:
// the context is never canceled, so franz-go fails a buffered record only at
// the delivery timeout, and the promise finds the pending again through it.
type pending struct {
	context.Context
	rec     kgo.Record
	buf     []byte                         // key (the trace id) then value; inline unless it outgrew it
	eventID string                         // the event's id: the caller's string, or one over id
	id      [eventIDLen]byte               // the id a typed method made for the event
	mark    chan struct{}                  // a flush marker: handOver closes it instead of producing
	hdrs    [2]kgo.RecordHeader            // signature headers (sign.go)
	sig     [signing.MaxSignatureSize]byte // the signature's bytes
	// inline holds most events (about 400 bytes in Avro), so that a record
	// the pool must make anew, after the garbage collector emptied it, is
	// one allocation, not two.
	inline [1024]byte
}

// eventBox holds an event and its bodies, so the typed methods build events
// without allocating.
type eventBox struct {
	ev schemas.Event
	in schemas.Intent
	de schemas.Decision
	ap schemas.Approval
	re schemas.Result
}

// maxPooledBuf keeps an occasional huge event from pinning its buffer.
const maxPooledBuf = 64 << 10

// New validates cfg and builds an Emitter. When cfg.RegistryURL is set it
// registers the Event schema there first, within DeliveryTimeout; Kafka
// itself is dialled lazily, on the first event.
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Emitter, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.loadSigner(); err != nil { // sign.go
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Emitter{
		cfg:       cfg,
		log:       log,
		slots:     make(chan struct{}, cfg.MaxBufferedRecords),
		queue:     queue{wake: make(chan struct{}, 1)},
		handed:    make(chan struct{}),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		probeDone: make(chan struct{}),
	}
	e.promise = e.delivered
	e.records.New = func() any {
		p := &pending{Context: context.Background()}
		p.buf = p.inline[:0]
		return p
	}
	e.boxes.New = func() any { return new(eventBox) }

	// An invalid configured agent is not an error here: Emit callers
	// (replay, the simulator) bring their own, and the typed methods' events
	// are refused as invalid, naming the field, as any other.
	e.env, _ = schemas.NewEnvelope(cfg.Agent, cfg.Producer, schemas.Limits{})
	e.enc = schemas.NewSingleObjectEncoder()
	if cfg.RegistryURL != "" {
		id, err := register(cfg)
		if err != nil {
			return nil, err
		}
		e.enc = schemas.NewConfluentEncoder(id)
		log.Info("event schema registered", "registry", cfg.RegistryURL, "subject", schemas.Subject(cfg.Kafka.Topics.Events), "id", id)
	}

	opts, err := cfg.Kafka.Opts()
	if err != nil {
		return nil, fmt.Errorf("producers: kafka options: %w", err)
	}
	opts = append(opts,
		kgo.DefaultProduceTopic(cfg.Kafka.Topics.Events),
		// The slots channel is the real bound. franz-go's own bound sits a
		// little above it because it frees a record's space only after the
		// record's promise (which frees the slot) returns.
		kgo.MaxBufferedRecords(cfg.MaxBufferedRecords+64),
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout),
		// Without this, franz-go's idempotent producer holds a record it
		// once tried to send until it learns the outcome, and a vanished
		// cluster never tells: the delivery timeout would not bound
		// anything. The price is a possible duplicate when a failed event
		// is re-emitted, which consumers absorb: event_id is the
		// deduplication key.
		kgo.AllowIdempotentProduceCancellation(),
		kgo.ProducerLinger(cfg.Linger),
		// Records are keyed by trace id; the default partitioner hashes keys
		// with murmur2 like the Java client, so a trace keeps one partition
		// whatever language produced it.
		// franz-go's errors only: its warnings repeat on every retry during
		// an outage, and the Emitter logs an outage's start and end itself.
		kgo.WithLogger(kafkacfg.Logger(log, kgo.LogLevelError)),
	)
	opts = append(opts, cfg.KafkaOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("producers: kafka client: %w", err)
	}
	e.cl = cl
	if err := e.m.register(reg, e.slots); err != nil {
		cl.Close()
		return nil, err
	}
	go e.probe()
	go e.handOver()
	return e, nil
}

func register(cfg Config) (int, error) {
	rcl, err := sr.NewClient(sr.URLs(cfg.RegistryURL))
	if err != nil {
		return 0, fmt.Errorf("producers: schema registry client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DeliveryTimeout)
	defer cancel()
	id, err := schemas.Register(ctx, rcl, cfg.Kafka.Topics.Events)
	if err != nil {
		return 0, fmt.Errorf("producers: register event schema: %w", err)
	}
	return id, nil
}

// Intent publishes what the agent is about to do. If in.ActionDigest is
// empty it is computed; the digest is returned and stored in a.Digest, and
// a zero a.Tier takes in.Tier (and the other way round).
func (e *Emitter) Intent(ctx context.Context, a *Action, in schemas.Intent) (string, error) {
	if a.Trace.IsZero() {
		tc, ok := TraceFromContext(ctx)
		if !ok {
			tc = NewTraceContext()
		}
		a.Trace = tc
	}
	if in.Tier == 0 {
		in.Tier = a.Tier
	}
	if a.Tier == 0 {
		a.Tier = in.Tier
	}
	if in.ActionDigest == "" {
		in.ActionDigest = schemas.ActionDigest(e.agent(a).ID, in.Tool, in.Action, in.Target, in.Parameters)
	}
	b := e.boxes.Get().(*eventBox)
	b.in = in
	b.ev.Intent = &b.in
	err := e.publishBox(ctx, b, a, schemas.TypeIntent)
	if err != nil {
		return "", err
	}
	a.Digest = in.ActionDigest
	return in.ActionDigest, nil
}

// Decision publishes the policy engine's verdict on the action. A zero
// d.Tier takes a.Tier (and the other way round).
func (e *Emitter) Decision(ctx context.Context, a *Action, d schemas.Decision) error {
	if d.Tier == 0 {
		d.Tier = a.Tier
	}
	if a.Tier == 0 {
		a.Tier = d.Tier
	}
	b := e.boxes.Get().(*eventBox)
	b.de = d
	b.ev.Decision = &b.de
	return e.publishBox(ctx, b, a, schemas.TypeDecision)
}

// Approval publishes a step of the action's approval. An empty
// ap.ActionDigest takes a.Digest.
func (e *Emitter) Approval(ctx context.Context, a *Action, ap schemas.Approval) error {
	if ap.ActionDigest == "" {
		ap.ActionDigest = a.Digest
	}
	b := e.boxes.Get().(*eventBox)
	b.ap = ap
	b.ev.Approval = &b.ap
	return e.publishBox(ctx, b, a, schemas.TypeApproval)
}

// Result publishes what happened when the action ran, or why it did not.
// An empty r.ActionDigest takes a.Digest.
func (e *Emitter) Result(ctx context.Context, a *Action, r schemas.Result) error {
	if r.ActionDigest == "" {
		r.ActionDigest = a.Digest
	}
	b := e.boxes.Get().(*eventBox)
	b.re = r
	b.ev.Result = &b.re
	return e.publishBox(ctx, b, a, schemas.TypeResult)
}

// Emit publishes ev as it is, validated but not filled in. Replay and the
// simulator use it; agents use the typed methods.
func (e *Emitter) Emit(ctx context.Context, ev *schemas.Event) error {
	return e.publish(ctx, e.records.Get().(*pending), ev, time.Now())
}

func (e *Emitter) agent(a *Action) *schemas.Agent {
	if a.Agent != nil {
		return a.Agent
	}
	return &e.cfg.Agent
}

// publishBox fills the envelope of b.ev from a, publishes it and recycles b.
func (e *Emitter) publishBox(ctx context.Context, b *eventBox, a *Action, typ schemas.EventType) error {
	tc := a.Trace
	if tc.IsZero() {
		tc, _ = TraceFromContext(ctx)
	}
	now := time.Now()
	ev := &b.ev
	// The id is made in the record that will carry the event, and the event
	// refers to it there: no string of its own to allocate. The event is
	// cleared below, and the record's id is copied before the record is
	// reused (delivered), so the reference never outlives its bytes.
	p := e.records.Get().(*pending)
	putEventID(&p.id, now)
	ev.EventID = unsafe.String(&p.id[0], len(p.id))
	ev.TraceID = tc.TraceID
	ev.SpanID = tc.SpanID
	ev.Type = typ
	ev.Time = now.UTC().Truncate(time.Microsecond)
	ev.Agent = *e.agent(a)
	ev.RequestedBy = a.RequestedBy
	ev.Tier = a.Tier
	ev.Producer = e.cfg.Producer
	ev.SessionID = a.SessionID
	ev.Labels = a.Labels
	err := e.publish(ctx, p, ev, now)
	*b = eventBox{}
	e.boxes.Put(b)
	return err
}

// publish validates and encodes ev, and queues it for handOver. It blocks
// only while waiting for buffer space, at most BlockLimit.
func (e *Emitter) publish(ctx context.Context, p *pending, ev *schemas.Event, now time.Time) error {
	// Validation and encoding are one pass over the event (AppendValid),
	// made first: an invalid event is refused as invalid whatever the
	// Emitter's state.
	buf := append(p.buf[:0], ev.TraceID...)
	buf, err := e.enc.AppendValidIn(buf, ev, now, schemas.Limits{}, e.env)
	p.buf = buf
	if err != nil {
		e.recycle(p)
		e.m.invalid.Inc()
		return fmt.Errorf("producers: %s event refused: %w", ev.Type, err)
	}
	if err := e.sign(p, ev, buf[len(ev.TraceID):]); err != nil { // sign.go
		e.recycle(p)
		e.m.invalid.Inc()
		return err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		e.recycle(p)
		return ErrClosed
	}
	if d := e.down.Load(); d != nil {
		e.recycle(p)
		e.m.unavailable.Inc()
		return d
	}
	if err := e.acquire(ctx, now); err != nil {
		e.recycle(p)
		return err
	}
	k := len(ev.TraceID)
	p.rec.Key = buf[:k:k]
	p.rec.Value = buf[k:]
	p.rec.Context = p
	p.eventID = ev.EventID
	e.queue.push(p)
	e.m.countAccepted(ev.Type)
	return nil
}

// queue is a FIFO of records with one consumer, handOver, which takes all
// that is queued at once: one lock per batch on its side, and an
// uncontended lock, mostly, on the publishers' side. Its length is bounded
// by the slots (plus flush markers), so it needs no bound of its own.
type queue struct {
	mu     sync.Mutex
	recs   []*pending
	idle   bool // the consumer waits for wake
	closed bool
	wake   chan struct{}
	spare  []*pending // the consumer's last batch, its array reused
}

// push appends p, and wakes the consumer if it waits. It never blocks
// (but for the lock). p must not be pushed after close.
func (q *queue) push(p *pending) {
	q.mu.Lock()
	q.recs = append(q.recs, p)
	wake := q.idle
	q.idle = false
	q.mu.Unlock()
	if wake {
		q.wake <- struct{}{} // cap 1, and only the push that cleared idle sends
	}
}

// close ends the queue: next returns what is left, then nil.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	wake := q.idle
	q.idle = false
	q.mu.Unlock()
	if wake {
		q.wake <- struct{}{}
	}
}

// next waits for records and returns all that are queued, in order; nil
// once the queue is closed and empty. The slice is valid until next call.
func (q *queue) next() []*pending {
	if len(q.spare) > 0 {
		// Busy: let a batch gather, rather than have every push wake us.
		clear(q.spare)
		time.Sleep(gatherInterval)
	}
	q.mu.Lock()
	for len(q.recs) == 0 {
		if q.closed {
			q.mu.Unlock()
			return nil
		}
		q.idle = true
		q.mu.Unlock()
		<-q.wake
		q.mu.Lock()
	}
	batch := q.recs
	q.recs = q.spare[:0]
	q.mu.Unlock()
	q.spare = batch
	return batch
}

// gatherInterval is how long handOver lets records gather after a batch,
// while callers keep it busy, so that a busy caller rarely has to wake it
// or contend with it for the queue's lock (without it, the callers kept
// less of the saving: docs/PERFORMANCE-HISTORY.md, "Third round"). It adds about
// this much to an event's way to Kafka, little against Linger's default
// 5 ms; an idle handOver sleeps until a push wakes it.
const gatherInterval = 200 * time.Microsecond

// handOver runs for the Emitter's life, until Close closes the queue, and
// gives the queued records to franz-go in the order they were accepted (so
// one caller's events, and one trace's, keep their order). franz-go's
// TryProduce takes the client's lock, partitions and buffers the record:
// done here, that work leaves the caller's thread.
func (e *Emitter) handOver() {
	defer close(e.handed)
	for batch := e.queue.next(); batch != nil; batch = e.queue.next() {
		for _, p := range batch {
			if p.mark != nil {
				close(p.mark)
				continue
			}
			// TryProduce, not Produce: our slots already bound the buffer,
			// and the record's context (p) is never canceled, so a caller's
			// short deadline cannot fail records that are already
			// buffered. It never blocks.
			e.cl.TryProduce(p, &p.rec, e.promise)
		}
	}
}

// enqueueMark queues a flush marker behind every record accepted so far.
// The caller holds e.mu (shared or exclusive), or has set e.closed itself,
// so the queue is still open.
func (e *Emitter) enqueueMark() chan struct{} {
	m := &pending{mark: make(chan struct{})}
	e.queue.push(m)
	return m.mark
}

func (e *Emitter) stillBuffered(err error) error {
	return fmt.Errorf("producers: flush: %d events still buffered: %w", len(e.slots), err)
}

// acquire takes a buffer slot, waiting until BlockLimit after the call
// began (validation and encoding count against the limit too), less
// wakeMargin.
func (e *Emitter) acquire(ctx context.Context, began time.Time) error {
	select {
	case e.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(e.cfg.BlockLimit - wakeMargin(e.cfg.BlockLimit) - time.Since(began))
	defer t.Stop()
	select {
	case e.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("producers: waiting for buffer space: %w", context.Cause(ctx))
	case <-t.C:
	}
	// A buffer that stays full usually means Kafka is gone: say so if the
	// deliveries have started failing meanwhile.
	if d := e.down.Load(); d != nil {
		e.m.unavailable.Inc()
		return d
	}
	e.m.bufferFull.Inc()
	return ErrBufferFull
}

// wakeMargin is how much earlier than the limit a waiting call gives up:
// after its timer fires, the call must still be scheduled and return, and
// on a loaded host that takes milliseconds. A fixed 2 ms margin let calls
// block past a 50 ms limit with the two cores busy; a tenth of the limit
// kept them under it (docs/PERFORMANCE-HISTORY.md, "The block limit under
// CPU load").
func wakeMargin(limit time.Duration) time.Duration { return limit / 10 }

func (e *Emitter) recycle(p *pending) {
	if cap(p.buf) > maxPooledBuf {
		p.buf = p.inline[:0]
	}
	p.buf = p.buf[:0]
	p.rec = kgo.Record{}
	p.eventID = ""
	e.records.Put(p)
}

// delivered is the promise of every record. franz-go calls promises one at
// a time on its own goroutine, and forgets the record once this returns.
func (e *Emitter) delivered(r *kgo.Record, err error) {
	p := r.Context.(*pending)
	var id string
	if err != nil && e.cfg.OnDeliveryError != nil {
		id = strings.Clone(p.eventID) // it may refer to p.id, which recycle frees
	}
	e.recycle(p)
	<-e.slots
	if err == nil {
		if e.down.Load() != nil {
			e.down.Store(nil)
			e.log.Info("kafka deliveries succeed again")
		}
		return
	}
	e.failures.Add(1)
	last := err // a copy, so that err itself stays off the heap on success
	e.lastErr.Store(&last)
	e.m.delivery.Inc()
	if recordSpecific(err) || errors.Is(err, kgo.ErrClientClosed) || errors.Is(err, kgo.ErrMaxBuffered) {
		// This record is at fault, or we are shutting down, or franz-go's
		// own buffer bound raced ours: Kafka itself is not known to be
		// unavailable.
	} else if e.down.CompareAndSwap(nil, &unavailableError{cause: err}) {
		e.log.Warn("kafka deliveries failing, refusing events until kafka answers", "err", err)
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
	if fn := e.cfg.OnDeliveryError; fn != nil {
		fn(id, err)
	}
}

// recordSpecific reports whether err condemns one record rather than the
// connection to Kafka.
func recordSpecific(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord) || errors.Is(err, kerr.CorruptMessage)
}

// probe runs for the Emitter's life. During an outage it asks Kafka every
// ProbeInterval whether the events topic has leaders again, and ends the
// outage when it does: refused calls produce nothing, so without the probe
// no delivery could ever succeed to end it.
func (e *Emitter) probe() {
	defer close(e.probeDone)
	adm := kadm.NewClient(e.cl)
	topic := e.cfg.Kafka.Topics.Events
	tick := time.NewTicker(e.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-e.done:
			return
		case <-e.wake:
		}
		for e.down.Load() != nil {
			select {
			case <-e.done:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), e.cfg.ProbeInterval)
			err := topicReady(ctx, adm, topic)
			cancel()
			if err == nil {
				e.down.Store(nil)
				e.log.Info("kafka reachable again, accepting events", "topic", topic)
			}
		}
	}
}

func topicReady(ctx context.Context, adm *kadm.Client, topic string) error {
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return err
	}
	td, ok := md.Topics[topic]
	switch {
	case !ok:
		return kerr.UnknownTopicOrPartition
	case td.Err != nil:
		return td.Err
	case len(td.Partitions) == 0:
		return kerr.UnknownTopicOrPartition
	}
	for _, p := range td.Partitions {
		if p.Err != nil {
			return p.Err
		}
		if p.Leader < 0 {
			return kerr.LeaderNotAvailable
		}
	}
	return nil
}

// Flush waits until every accepted event is delivered or failed, or ctx
// ends. It reports the failures that happened meanwhile.
func (e *Emitter) Flush(ctx context.Context) error {
	before := e.failures.Load()
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		return ErrClosed
	}
	mark := e.enqueueMark()
	e.mu.RUnlock()
	return e.flush(ctx, mark, before)
}

// flush waits until handOver has reached mark, then until franz-go has
// settled every record it was given.
func (e *Emitter) flush(ctx context.Context, mark chan struct{}, before uint64) error {
	select {
	case <-mark:
	case <-ctx.Done():
		return e.stillBuffered(context.Cause(ctx))
	}
	if err := e.cl.Flush(ctx); err != nil {
		return e.stillBuffered(err)
	}
	if n := e.failures.Load() - before; n > 0 {
		var cause error = ErrUnavailable
		if p := e.lastErr.Load(); p != nil {
			cause = *p
		}
		return fmt.Errorf("producers: flush: %d events failed delivery: %w", n, cause)
	}
	return nil
}

// Close refuses new events, flushes the buffered ones within ctx's budget,
// and closes the Kafka client; events still buffered then are failed and
// reported like any delivery failure. It is idempotent.
func (e *Emitter) Close(ctx context.Context) error {
	e.closeOnce.Do(func() {
		before := e.failures.Load()
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		// No publisher or Flush sends on the queue from here on.
		e.closeErr = e.flush(ctx, e.enqueueMark(), before)
		// Whatever is still queued goes to franz-go too (TryProduce never
		// blocks), so that closing the client below fails and reports it.
		e.queue.close()
		<-e.handed
		close(e.done)
		<-e.probeDone
		e.cl.Close()
		e.awaitPromises()
	})
	return e.closeErr
}

// awaitPromises waits until every accepted event's promise has run, so each
// failure has been counted and reported when Close returns: franz-go fails
// the records Close leaves behind asynchronously. Holding every slot means
// no promise is outstanding.
func (e *Emitter) awaitPromises() {
	bound := time.NewTimer(5 * time.Second) // franz-go runs them in microseconds; this only guards against a bug
	defer bound.Stop()
	held := 0
	defer func() {
		for ; held > 0; held-- {
			<-e.slots
		}
	}()
	for held < cap(e.slots) {
		select {
		case e.slots <- struct{}{}:
			held++
		case <-bound.C:
			e.log.Error("kafka client closed with delivery reports still outstanding", "outstanding", cap(e.slots)-held)
			return
		}
	}
}

// Buffered returns how many accepted events await Kafka's acknowledgement.
func (e *Emitter) Buffered() int { return len(e.slots) }

// metrics are the Emitter's Prometheus series, bound to their labels once.
type metrics struct {
	events                                     [4]prometheus.Counter
	bufferFull, unavailable, invalid, delivery prometheus.Counter
}

func (m *metrics) register(reg prometheus.Registerer, slots chan struct{}) error {
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentrail_producer_events_total",
		Help: "Events accepted for delivery to Kafka, by event type.",
	}, []string{"type"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentrail_producer_errors_total",
		Help: "Events refused (buffer_full, unavailable, invalid) or accepted and not delivered (delivery).",
	}, []string{"reason"})
	buffered := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "agentrail_producer_buffered_records",
		Help: "Events accepted and not yet acknowledged by Kafka.",
	}, func() float64 { return float64(len(slots)) })
	for i, t := range []schemas.EventType{schemas.TypeIntent, schemas.TypeDecision, schemas.TypeApproval, schemas.TypeResult} {
		m.events[i] = events.WithLabelValues(string(t))
	}
	m.bufferFull = errs.WithLabelValues("buffer_full")
	m.unavailable = errs.WithLabelValues("unavailable")
	m.invalid = errs.WithLabelValues("invalid")
	m.delivery = errs.WithLabelValues("delivery")
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{events, errs, buffered} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("producers: register metrics (one Emitter per registry; wrap it with prometheus.WrapRegistererWith for more): %w", err)
		}
	}
	return nil
}

func (m *metrics) countAccepted(t schemas.EventType) {
	switch t {
	case schemas.TypeIntent:
		m.events[0].Inc()
	case schemas.TypeDecision:
		m.events[1].Inc()
	case schemas.TypeApproval:
		m.events[2].Inc()
	case schemas.TypeResult:
		m.events[3].Inc()
	}
}

// eventIDLen is the length of a UUID's text.
const eventIDLen = 36

// putEventID writes a new UUIDv7 (RFC 9562) into b: time-ordered to the
// millisecond, then 74 random bits, so ids sort roughly by creation and
// never collide in practice.
func putEventID(b *[eventIDLen]byte, now time.Time) {
	ms := uint64(now.UnixMilli())
	hi := ms<<16 | 0x7000 | rand.Uint64()&0x0fff                // 48-bit time, version 7, 12 random bits
	lo := rand.Uint64()&0x3fffffffffffffff | 0x8000000000000000 // variant 10, 62 random bits
	var h [32]byte
	putHex64(h[0:16], hi)
	putHex64(h[16:32], lo)
	copy(b[0:8], h[0:8])
	b[8] = '-'
	copy(b[9:13], h[8:12])
	b[13] = '-'
	copy(b[14:18], h[12:16])
	b[18] = '-'
	copy(b[19:23], h[16:20])
	b[23] = '-'
	copy(b[24:36], h[20:32])
}
