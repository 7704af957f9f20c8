package correlate

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/schemas"
)

// Correlator is the correlation stage: a consumers.Processor that runs
// inside ingest on every batch. It is not safe for concurrent Process calls
// (ingest makes them one at a time); PartitionsRevoked may be called from
// any goroutine.
type Correlator struct {
	cfg Config
	ch  driver.Conn
	db  string
	log *slog.Logger
	m   metrics

	revokedMu sync.Mutex
	revoked   []int32

	cache   *lru
	pending map[string]pendingEntry
	parts   map[int32]*partState
	pol     *policyView
	polAt   time.Time        // batch clock of the last policy load; zero: never
	ptrs    []*schemas.Event // evaluate's scratch
}

// pendingEntry is a trace with a violation waiting to settle.
type pendingEntry struct {
	partition int32
	settleAt  time.Time
	around    time.Time // an event time of the trace, to bound its rebuild
}

// partState is what the correlator knows of one partition it owns.
type partState struct {
	history *history
	// lastEnd is the highest offset a batch carried: a batch that starts at
	// or before it redoes offsets an uncommitted attempt processed, and the
	// partition is initialized again from ClickHouse.
	lastEnd int64
}

type metrics struct {
	violations  *prometheus.CounterVec
	cached      prometheus.Gauge
	evictions   prometheus.Counter
	rebuilt     prometheus.Counter
	rebuildSecs prometheus.Histogram
	pending     prometheus.Gauge
	overLimit   prometheus.Counter
	inits       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentrail_violations_total", Help: "Governance violations emitted, by kind (counted when the batch's output is handed to ingest).",
		}, []string{"kind"}),
		cached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentrail_correlate_traces_cached", Help: "Traces held in memory.",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentrail_correlate_evictions_total", Help: "Traces evicted at correlation.max_traces.",
		}),
		rebuilt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentrail_correlate_rebuilt_traces_total", Help: "Traces rebuilt from ClickHouse.",
		}),
		rebuildSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentrail_correlate_rebuild_seconds", Help: "Time of one batch's rebuild queries.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentrail_correlate_pending_violations", Help: "Traces with a violation waiting for correlation.settle_after.",
		}),
		overLimit: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentrail_correlate_events_over_limit_total", Help: "Events not correlated because their trace had correlation.max_events_per_trace.",
		}),
		inits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentrail_correlate_partition_inits_total", Help: "Partitions (re)initialized from ClickHouse.",
		}),
	}
	for _, c := range []prometheus.Collector{m.violations, m.cached, m.evictions, m.rebuilt, m.rebuildSecs, m.pending, m.overLimit, m.inits} {
		if err := reg.Register(c); err != nil {
			return m, fmt.Errorf("correlate: register metrics: %w", err)
		}
	}
	for _, k := range Kinds() {
		m.violations.WithLabelValues(string(k))
	}
	return m, nil
}

// New builds the correlator over an open ClickHouse connection to database,
// which must be migrated (chstore.Migrate). It does no I/O: state is loaded
// from ClickHouse on the first batch.
func New(cfg Config, ch driver.Conn, database string, reg prometheus.Registerer, log *slog.Logger) (*Correlator, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("correlate: %w", err)
	}
	if !identRE.MatchString(database) {
		return nil, fmt.Errorf("correlate: database %q is not an identifier", database)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Correlator{
		cfg: cfg, ch: ch, db: database, log: log, m: m,
		cache: newLRU(), pending: map[string]pendingEntry{}, parts: map[int32]*partState{}, pol: newPolicyView(),
	}, nil
}

// Name implements consumers.Processor.
func (c *Correlator) Name() string { return "correlate" }

// PartitionsRevoked implements consumers.Processor: the state of these
// partitions is dropped when the next batch starts.
func (c *Correlator) PartitionsRevoked(partitions []int32) {
	c.revokedMu.Lock()
	c.revoked = append(c.revoked, partitions...)
	c.revokedMu.Unlock()
}

func (c *Correlator) applyRevoked() {
	c.revokedMu.Lock()
	revoked := c.revoked
	c.revoked = nil
	c.revokedMu.Unlock()
	if len(revoked) == 0 {
		return
	}
	gone := map[int32]bool{}
	for _, p := range revoked {
		gone[p] = true
		delete(c.parts, p)
	}
	for id, st := range c.cache.m {
		if gone[st.partition] {
			c.cache.remove(st)
			delete(c.pending, id)
		}
	}
	for id, pe := range c.pending {
		if gone[pe.partition] {
			delete(c.pending, id)
		}
	}
	c.m.cached.Set(float64(c.cache.len()))
	c.m.pending.Set(float64(len(c.pending)))
}

// batchView is one batch seen per trace.
type batchView struct {
	b      *consumers.Batch
	index  map[string]int32        // trace id → its place in order and events
	order  []string                // traces in order of first appearance
	events [][]*consumers.Accepted // each trace's events, in stream order
	states []*traceState           // each trace's cached state, once restore found or made it
	tick   bool                    // a tick: no events, at the committed offsets (tick.go)
}

// eventsOf returns the batch's events of a trace, in stream order.
func (bv *batchView) eventsOf(id string) []*consumers.Accepted {
	if i, ok := bv.index[id]; ok {
		return bv.events[i]
	}
	return nil
}

// committed reports whether an event (or a marker) at partition/offset was
// made durable by an earlier batch.
func (bv *batchView) committed(partition int32, offset int64) bool {
	first, ok := bv.b.FirstOffset[partition]
	return !ok || offset < first
}

// newBatchView groups a batch's events by trace: one map entry per trace,
// and every trace's list cut from one array.
func newBatchView(b *consumers.Batch) *batchView {
	bv := &batchView{b: b, index: make(map[string]int32, len(b.Events)/2)}
	of := make([]int32, len(b.Events))
	var counts []int32
	for i := range b.Events {
		id := b.Events[i].TraceID
		k, ok := bv.index[id]
		if !ok {
			k = int32(len(bv.order))
			bv.index[id] = k
			bv.order = append(bv.order, id)
			counts = append(counts, 0)
		}
		of[i] = k
		counts[k]++
	}
	all := make([]*consumers.Accepted, len(b.Events))
	bv.events = make([][]*consumers.Accepted, len(counts))
	bv.states = make([]*traceState, len(counts))
	o := 0
	for k, n := range counts {
		bv.events[k] = all[o : o : o+int(n)]
		o += int(n)
	}
	for i := range b.Events {
		bv.events[of[i]] = append(bv.events[of[i]], &b.Events[i])
	}
	for _, evs := range bv.events {
		// Usually in order already: a trace keeps to one partition.
		if !slices.IsSortedFunc(evs, streamOrder) {
			slices.SortStableFunc(evs, streamOrder)
		}
	}
	return bv
}

func streamOrder(x, y *consumers.Accepted) int {
	if c := cmp.Compare(x.Partition, y.Partition); c != 0 {
		return c
	}
	return cmp.Compare(x.Offset, y.Offset)
}

// Process implements consumers.Processor.
func (c *Correlator) Process(ctx context.Context, b *consumers.Batch) (consumers.Output, error) {
	c.applyRevoked()
	bv := newBatchView(b)

	if c.polAt.IsZero() || b.Now.Sub(c.polAt) >= c.cfg.PolicyRefresh {
		if err := c.loadPolicies(ctx); err != nil {
			return consumers.Output{}, err
		}
		c.polAt = b.Now
	}
	if err := c.initPartitions(ctx, bv); err != nil {
		return consumers.Output{}, err
	}
	// Decisions of this batch count for every trace in it.
	for i := range b.Events {
		e := &b.Events[i]
		if e.Decision != nil {
			c.pol.observe(e.Decision.PolicyID, e.Decision.PolicyVersion, e.Time, e.EventID)
		}
	}

	// Traces with a violation that settles now, in partitions this batch
	// carries (their emission is committed with the partition's offsets).
	due := map[string]bool{}
	for id, pe := range c.pending {
		if _, inBatch := b.FirstOffset[pe.partition]; inBatch && !pe.settleAt.After(b.Now) {
			if _, touched := bv.index[id]; !touched {
				due[id] = true
			}
		}
	}
	dueIDs := sortedKeys(due)

	if err := c.restore(ctx, bv, dueIDs); err != nil {
		return consumers.Output{}, err
	}

	// One row per trace touched: sized once, the rows are large.
	out := outputBuilder{traces: make([]traceRow, 0, len(bv.order)+len(dueIDs))}
	for i, id := range bv.order {
		c.evaluate(bv, id, bv.states[i], bv.events[i], &out)
	}
	for _, id := range dueIDs {
		c.evaluate(bv, id, c.cache.get(id), nil, &out)
	}
	return c.finish(&out, b.Now)
}

// finish ends a batch's or a tick's evaluation: it evicts what the cache
// cannot hold, updates the gauges, and turns out into the stage's output,
// counting each violation it reports.
func (c *Correlator) finish(out *outputBuilder, now time.Time) (consumers.Output, error) {
	c.evict()
	c.m.cached.Set(float64(c.cache.len()))
	c.m.pending.Set(float64(len(c.pending)))
	o, err := out.output(c, now)
	if err != nil {
		return consumers.Output{}, err
	}
	for _, e := range out.violations {
		c.m.violations.WithLabelValues(string(e.v.Kind)).Inc()
	}
	return o, nil
}

// restore makes sure every trace the batch touches, and every due one, has
// its state in the cache: rebuilt from ClickHouse when this process may not
// hold all of its events, empty when it cannot have any before this batch.
func (c *Correlator) restore(ctx context.Context, bv *batchView, dueIDs []string) error {
	var need []string
	around := map[string][2]time.Time{}
	for i, id := range bv.order {
		if st := c.cache.get(id); st != nil {
			bv.states[i] = st
			continue
		}
		evs := bv.events[i]
		maybe := false
		h := xxhash.Sum64String(id)
		for _, a := range evs {
			if ps := c.parts[a.Partition]; ps == nil || ps.history.has(h) {
				maybe = true
			}
		}
		if !maybe {
			st := &traceState{id: id, partition: evs[0].Partition}
			c.cache.touch(st)
			bv.states[i] = st
			continue
		}
		need = append(need, id)
		lo, hi := evs[0].Time, evs[0].Time
		for _, a := range evs {
			lo, hi = minTime(lo, a.Time), maxTime(hi, a.Time)
		}
		around[id] = [2]time.Time{lo, hi}
	}
	for _, id := range dueIDs {
		if c.cache.get(id) == nil {
			need = append(need, id)
			t := c.pending[id].around
			around[id] = [2]time.Time{t, t}
		}
	}
	if len(need) == 0 {
		return nil
	}
	start := time.Now()
	states, err := c.loadTraces(ctx, bv, need, around)
	if err != nil {
		return err
	}
	c.m.rebuildSecs.Observe(time.Since(start).Seconds())
	c.m.rebuilt.Add(float64(len(need)))
	for _, id := range need {
		st := states[id]
		if st == nil {
			p := c.pending[id].partition
			if evs := bv.eventsOf(id); len(evs) > 0 {
				p = evs[0].Partition
			}
			st = &traceState{id: id, partition: p}
		}
		c.cache.touch(st)
		if i, ok := bv.index[id]; ok {
			bv.states[i] = st
		}
	}
	return nil
}

// evaluate brings one trace up to date with the batch's events of it (none
// for a due trace) and emits what became derivable.
// st is the trace's cached state, as restore left it.
func (c *Correlator) evaluate(bv *batchView, id string, st *traceState, batchEvents []*consumers.Accepted, out *outputBuilder) {
	if st == nil {
		return // cannot happen: restore put it there
	}
	c.cache.front(st)
	// Prior state: what earlier batches committed, each event once. A small
	// trace's duplicates are found by scanning, a larger one's through a
	// map; the events are filtered in place.
	small := len(st.events)+len(batchEvents) <= smallTrace
	var seen map[string]bool
	if !small {
		seen = make(map[string]bool, len(st.events)+len(batchEvents))
	}
	n := 0
	for i := range st.events {
		s := &st.events[i]
		if !bv.committed(s.partition, s.offset) {
			continue
		}
		if small {
			if hasEvent(st.events[:n], s.ev.EventID) {
				continue
			}
		} else {
			if seen[s.ev.EventID] {
				continue
			}
			seen[s.ev.EventID] = true
		}
		if n != i {
			st.events[n] = *s
		}
		n++
	}
	clear(st.events[n:]) // hold no dropped event
	st.events = st.events[:n]
	// Room for the batch's events at once, not by doubling (an event is a
	// few hundred bytes).
	st.events = slices.Grow(st.events, max(0, min(len(batchEvents), c.cfg.MaxEventsPerTrace-len(st.events))))
	added := 0
	for j, a := range batchEvents {
		if small {
			// Seen: kept above, or earlier in the batch (added or not).
			if hasEvent(st.events, a.EventID) || slices.ContainsFunc(batchEvents[:j], func(x *consumers.Accepted) bool { return x.EventID == a.EventID }) {
				continue
			}
		} else {
			if seen[a.EventID] {
				continue
			}
			seen[a.EventID] = true
		}
		if len(st.events) >= c.cfg.MaxEventsPerTrace {
			c.m.overLimit.Inc()
			continue
		}
		st.add(stored{ev: strip(&a.Event), partition: a.Partition, offset: a.Offset, seenAt: bv.b.Now})
		added++
	}
	all := st.events
	// Violations emitted by earlier, committed batches (most traces have
	// none: the map stays nil).
	var markers map[Kind]marker
	for k, mk := range st.emitted {
		if bv.committed(mk.partition, mk.offset) {
			if markers == nil {
				markers = map[Kind]marker{}
			}
			markers[k] = mk
		}
	}
	if added == 0 && batchEvents != nil {
		// Only re-deliveries of events already correlated: nothing new,
		// except a settle that may be due.
		if pe, ok := c.pending[id]; !ok || pe.settleAt.After(bv.b.Now) {
			st.emitted = markers
			return
		}
	}
	if len(all) == 0 {
		delete(c.pending, id)
		st.emitted = markers
		return
	}

	// Correlate reads the cached events in place (it does not change them
	// and keeps no pointer to them); the pointer slice is reused.
	ptrs := c.ptrs[:0]
	for i := range all {
		ptrs = append(ptrs, &all[i].ev)
	}
	corr := correlate(ptrs, c.pol)
	clear(ptrs)
	c.ptrs = ptrs[:0]

	var settle time.Time
	var unconfirmed []Kind
	for _, v := range corr.Violations {
		if _, done := markers[v.Kind]; done {
			continue
		}
		if v.Unconfirmed {
			unconfirmed = append(unconfirmed, v.Kind)
			at := c.settleAt(id, seenAtOf(all, v.DecidingEventID), bv.b.Now)
			if at.After(bv.b.Now) {
				if settle.IsZero() || at.Before(settle) {
					settle = at
				}
				continue
			}
		}
		p := st.partition
		if _, ok := bv.b.FirstOffset[p]; !ok && len(batchEvents) > 0 {
			p = batchEvents[0].Partition
		}
		mk := marker{partition: p, offset: bv.b.FirstOffset[p]}
		if bv.tick {
			mk.offset = tickOffset(mk.offset)
		}
		if markers == nil {
			markers = map[Kind]marker{}
		}
		markers[v.Kind] = mk
		v.DetectedAt = bv.b.Now
		out.violations = append(out.violations, emitted{v: v, marker: mk})
	}
	st.emitted = markers
	if !settle.IsZero() {
		c.pending[id] = pendingEntry{partition: st.partition, settleAt: settle, around: corr.Trace.LastEventTime}
	} else {
		delete(c.pending, id)
	}
	if added > 0 {
		out.traces = append(out.traces, traceRow{t: corr.Trace, partition: st.partition, unconfirmed: unconfirmed,
			settleAt: settle, version: uint64(len(all)), abandonAt: corr.Trace.LastEventTime.Add(c.cfg.AbandonAfter)})
	}
}

// hasEvent reports whether an event of evs has the id.
func hasEvent(evs []stored, id string) bool {
	for i := range evs {
		if evs[i].ev.EventID == id {
			return true
		}
	}
	return false
}

// seenAtOf is when ingest took the event of all (each id once) with the id;
// zero if none has it.
func seenAtOf(all []stored, id string) time.Time {
	for i := range all {
		if all[i].ev.EventID == id {
			return all[i].seenAt
		}
	}
	return time.Time{}
}

// settleAt is when a violation decided by an event ingest took at seenAt
// settles. For an event rebuilt from ClickHouse the time is not known: the
// deadline recorded when the trace became pending holds, or, if there is
// none, settle_after from now.
func (c *Correlator) settleAt(id string, seenAt, now time.Time) time.Time {
	if !seenAt.IsZero() {
		return seenAt.Add(c.cfg.SettleAfter)
	}
	if pe, ok := c.pending[id]; ok {
		return pe.settleAt
	}
	return now.Add(c.cfg.SettleAfter)
}

// evict drops the least recently used traces over the bound; their ids go
// to their partition's history, so they are rebuilt if they come back.
// Traces waiting to settle are rebuilt when due.
func (c *Correlator) evict() {
	for c.cache.len() > c.cfg.MaxTraces {
		st := c.cache.oldest()
		c.cache.remove(st)
		if ps := c.parts[st.partition]; ps != nil {
			ps.history.add(xxhash.Sum64String(st.id))
		}
		c.m.evictions.Inc()
	}
}

// emitted is a violation with the marker of the batch that emits it.
type emitted struct {
	v      Violation
	marker marker
}

type traceRow struct {
	t           Trace
	partition   int32
	unconfirmed []Kind
	settleAt    time.Time
	version     uint64
	abandonAt   time.Time
}

type outputBuilder struct {
	traces     []traceRow
	violations []emitted
	tick       bool // records stamped with their detection time (resolveTicks looks them up by it)
}

// ViolationRecord is the JSON value of a record on the violations topic.
type ViolationRecord struct {
	ViolationID   string    `json:"violation_id"`
	Kind          Kind      `json:"kind"`
	Severity      string    `json:"severity"`
	TraceID       string    `json:"trace_id"`
	SpanID        string    `json:"span_id,omitempty"`
	Team          string    `json:"team"`
	AgentID       string    `json:"agent_id"`
	RequestedBy   string    `json:"requested_by,omitempty"`
	Tool          string    `json:"tool,omitempty"`
	Action        string    `json:"action,omitempty"`
	Tier          int32     `json:"tier"`
	PolicyID      string    `json:"policy_id,omitempty"`
	PolicyVersion int64     `json:"policy_version,omitempty"`
	EventTime     time.Time `json:"event_time"`
	DetectedAt    time.Time `json:"detected_at"`
	Evidence      []string  `json:"evidence_event_ids"`
	Explanation   string    `json:"explanation"`
}

func recordOf(v *Violation) ViolationRecord {
	return ViolationRecord{
		ViolationID: v.ViolationID, Kind: v.Kind, Severity: v.Severity, TraceID: v.TraceID, SpanID: v.SpanID,
		Team: v.Team, AgentID: v.AgentID, RequestedBy: v.RequestedBy, Tool: v.Tool, Action: v.Action, Tier: v.Tier,
		PolicyID: v.PolicyID, PolicyVersion: v.PolicyVersion, EventTime: v.EventTime.UTC(), DetectedAt: v.DetectedAt.UTC(),
		Evidence: v.Evidence, Explanation: v.Explanation,
	}
}

func (ob *outputBuilder) output(c *Correlator, now time.Time) (consumers.Output, error) {
	var o consumers.Output
	if len(ob.traces) > 0 {
		o.Inserts = append(o.Inserts, traceInsert(c.db, ob.traces, now))
	}
	if len(ob.violations) > 0 {
		o.Inserts = append(o.Inserts, violationInsert(c.db, ob.violations))
		for i := range ob.violations {
			v := &ob.violations[i].v
			val, err := json.Marshal(recordOf(v))
			if err != nil {
				return o, fmt.Errorf("correlate: encode violation: %w", err)
			}
			r := &kgo.Record{Topic: c.cfg.ViolationTopic, Key: []byte(v.TraceID), Value: val}
			if ob.tick {
				r.Timestamp = v.DetectedAt
			}
			o.Records = append(o.Records, r)
		}
	}
	return o, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
