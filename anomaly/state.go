package anomaly

import (
	"hash/maphash"
	"math/bits"
	"slices"
	"sort"

	"github.com/agentrail/agentrail/schemas"
)

// entry is one group's state (an agent, an approver, an agent and an
// action digest, ...) in a rule's table.
type entry[S any] struct {
	hash              uint64
	vals              []string  // group_by values, in the rule's order
	valsBuf           [2]string // vals' storage when there are at most two
	team, agent       string    // of the event that created the group
	last              int64     // newest event time seen, µs
	late              uint32    // events that arrived behind the watermark
	prev, next, chain *entry[S]
	s                 S
}

// table holds a rule's groups, bounded: past max, the least recently used
// group is evicted (and counted). Lookups hash the group values without
// allocating; a hash collision is resolved by comparing the values.
type table[S any] struct {
	m          map[uint64]*entry[S]
	head, tail *entry[S] // most and least recently used
	n, max     int
	evicted    uint64
}

func newTable[S any](max int) table[S] {
	return table[S]{m: make(map[uint64]*entry[S]), max: max}
}

func (t *table[S]) lookup(h uint64, vals []string) *entry[S] {
	for e := t.m[h]; e != nil; e = e.chain {
		if e.hash == h && slices.Equal(e.vals, vals) {
			return e
		}
	}
	return nil
}

// get returns the group for vals, creating it if needed, and marks it used
// at event time at.
func (t *table[S]) get(h uint64, vals []string, team, agent string, at int64) *entry[S] {
	if e := t.lookup(h, vals); e != nil {
		t.touch(e, at)
		return e
	}
	if t.n >= t.max && t.tail != nil {
		t.remove(t.tail)
		t.evicted++
	}
	e := &entry[S]{hash: h, team: team, agent: agent, last: at}
	if len(vals) <= len(e.valsBuf) {
		e.vals = e.valsBuf[:len(vals):len(vals)]
		copy(e.vals, vals)
	} else {
		e.vals = slices.Clone(vals)
	}
	e.chain = t.m[h]
	t.m[h] = e
	t.pushFront(e)
	t.n++
	return e
}

func (t *table[S]) touch(e *entry[S], at int64) {
	if at > e.last {
		e.last = at
	}
	if t.head == e {
		return
	}
	t.unlink(e)
	t.pushFront(e)
}

func (t *table[S]) pushFront(e *entry[S]) {
	e.prev, e.next = nil, t.head
	if t.head != nil {
		t.head.prev = e
	}
	t.head = e
	if t.tail == nil {
		t.tail = e
	}
}

func (t *table[S]) unlink(e *entry[S]) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		t.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		t.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (t *table[S]) remove(e *entry[S]) {
	t.unlink(e)
	if first := t.m[e.hash]; first == e {
		if e.chain == nil {
			delete(t.m, e.hash)
		} else {
			t.m[e.hash] = e.chain
		}
	} else {
		for p := first; p != nil; p = p.chain {
			if p.chain == e {
				p.chain = e.chain
				break
			}
		}
	}
	e.chain = nil
	t.n--
}

// expire drops the least recently used groups whose newest event is older
// than cutoff: their windows hold nothing that can still count.
func (t *table[S]) expire(cutoff int64) {
	for t.tail != nil && t.tail.last < cutoff {
		t.remove(t.tail)
	}
}

// stamp is one counted event in a window.
type stamp struct {
	t  int64 // event time, µs
	id string
}

// window holds a group's counted events in event-time order, at most max;
// events the same time and id (a redelivery) are counted once.
type window []stamp

// add inserts an event; it reports whether it was new and whether the
// window had to drop its oldest event to stay within max.
func (w *window) add(t int64, id string, max int) (added, truncated bool) {
	s := *w
	i := sort.Search(len(s), func(i int) bool { return s[i].t > t })
	for j := i - 1; j >= 0 && s[j].t == t; j-- {
		if s[j].id == id {
			return false, false
		}
	}
	if len(s) >= max {
		if i == 0 {
			return false, true // older than everything kept
		}
		copy(s, s[1:i])
		s[i-1] = stamp{t, id}
		return true, true
	}
	s = append(s, stamp{})
	copy(s[i+1:], s[i:])
	s[i] = stamp{t, id}
	*w = s
	return true, false
}

// trim drops events before cutoff, keeping the backing array.
func (w *window) trim(cutoff int64) {
	s := *w
	k := sort.Search(len(s), func(i int) bool { return s[i].t >= cutoff })
	if k == 0 {
		return
	}
	n := copy(s, s[k:])
	clear(s[n:])
	*w = s[:n]
	if cap(*w) > 64 && n < cap(*w)/4 {
		*w = slices.Clip(slices.Clone(*w))
	}
}

// span is a counted window: its events are w[lo:hi].
type span struct {
	lo, hi     int
	start, end int64 // µs; sliding: (start, end]; tumbling: [start, end)
}

func (s span) count() int { return s.hi - s.lo }

// slidingAt returns, among the sliding windows (x-size, x] that hold the
// event at time t (x is an event time in [t, t+size)), the one with the most
// events. With events in order that is the window ending at t.
func (w window) slidingAt(t, size int64) span {
	i := sort.Search(len(w), func(i int) bool { return w[i].t >= t })
	best := span{lo: i, hi: i, start: t - size, end: t}
	lo := sort.Search(len(w), func(j int) bool { return w[j].t > t-size })
	for x := i; x < len(w) && w[x].t < t+size; {
		end := w[x].t
		hi := x + 1
		for hi < len(w) && w[hi].t == end {
			hi++
		}
		for lo < len(w) && w[lo].t <= end-size {
			lo++
		}
		if hi-lo > best.count() {
			best = span{lo: lo, hi: hi, start: end - size, end: end}
		}
		x = hi
	}
	return best
}

// tumblingAt returns the aligned window [k*size, (k+1)*size) holding t.
func (w window) tumblingAt(t, size int64) span {
	start := floorDiv(t, size) * size
	lo := sort.Search(len(w), func(i int) bool { return w[i].t >= start })
	hi := sort.Search(len(w), func(i int) bool { return w[i].t >= start+size })
	return span{lo: lo, hi: hi, start: start, end: start + size}
}

func (w window) at(t int64, r *rule) span {
	if r.tumbling {
		return w.tumblingAt(t, r.size)
	}
	return w.slidingAt(t, r.size)
}

func (w window) ids(s span, max int) []string {
	n := min(s.count(), max)
	out := make([]string, n)
	for i := range n {
		out[i] = w[s.lo+i].id
	}
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// traceInfo is what the engine remembers of a recent trace, so that a
// decision, approval or result can be tied to the action it is about.
type traceInfo struct {
	tool, action, target, digest, class string
	hasIntent                           bool
	requestAt                           int64 // when an approval was asked for, µs (0: unknown)
}

// traceIndex remembers the last max traces, first in first out. The
// traces live in a ring of slots (grown up to max a chunk at a time, never copied), found by a map from
// the hash of their id (collisions chained through the slots): no
// allocation per trace, and a map of integers instead of strings.
type traceIndex struct {
	m         map[uint64]int32 // hash of a trace id -> its slot + 1
	chunks    [][]traceSlot    // the slots, traceChunk at a time (grown without copying)
	n         int              // slots in use so far
	max, next int
	evictions uint64
	seed      maphash.Seed
	empty     *traceInfo // the trace id "": it takes a slot but, as it always did, never leaves
}

type traceSlot struct {
	id    string // "": free, or the trace id ""
	h     uint64
	chain int32 // the next slot + 1 with the same hash, 0: none
	info  traceInfo
}

// traceHashMask is all ones; tests narrow it to force collisions.
var traceHashMask = ^uint64(0)

func newTraceIndex(max int) *traceIndex {
	return &traceIndex{m: make(map[uint64]int32), max: max, seed: maphash.MakeSeed()}
}

const traceChunk = 4096

func (x *traceIndex) slot(i int) *traceSlot { return &x.chunks[i/traceChunk][i%traceChunk] }

func (x *traceIndex) find(id string, h uint64) *traceInfo {
	if id == "" {
		return x.empty
	}
	for i := x.m[h]; i != 0; i = x.slot(int(i - 1)).chain {
		if s := x.slot(int(i - 1)); s.id == id {
			return &s.info
		}
	}
	return nil
}

// add puts a new trace into the next slot, evicting the trace there.
func (x *traceIndex) add(id string, h uint64) *traceInfo {
	slot := x.next
	if slot == x.n {
		if slot%traceChunk == 0 {
			x.chunks = append(x.chunks, make([]traceSlot, min(traceChunk, x.max-slot)))
		}
		x.n++
	} else if x.slot(slot).id != "" {
		x.unlink(slot)
		x.evictions++
	}
	x.next = (x.next + 1) % x.max
	s := x.slot(slot)
	if id == "" {
		*s = traceSlot{}
		x.empty = &traceInfo{}
		return x.empty
	}
	*s = traceSlot{id: id, h: h, chain: x.m[h]}
	x.m[h] = int32(slot + 1)
	return &s.info
}

func (x *traceIndex) unlink(slot int) {
	s := x.slot(slot)
	if head := x.m[s.h]; head == int32(slot+1) {
		if s.chain == 0 {
			delete(x.m, s.h)
		} else {
			x.m[s.h] = s.chain
		}
		return
	}
	for p := x.m[s.h]; p != 0; p = x.slot(int(p - 1)).chain {
		if ps := x.slot(int(p - 1)); ps.chain == int32(slot+1) {
			ps.chain = s.chain
			return
		}
	}
}

// update records what ev says about its trace and returns the trace's info,
// valid until the next update.
func (x *traceIndex) update(ev *schemas.Event, t int64, it *interner) *traceInfo {
	h := maphash.String(x.seed, ev.TraceID) & traceHashMask
	switch ev.Type {
	case schemas.TypeIntent:
	case schemas.TypeDecision:
		if ev.Decision == nil || ev.Decision.Outcome != schemas.OutcomeRequireApproval {
			return x.find(ev.TraceID, h)
		}
	case schemas.TypeApproval:
		if ev.Approval == nil || ev.Approval.Status != schemas.ApprovalRequested {
			return x.find(ev.TraceID, h)
		}
	default:
		return x.find(ev.TraceID, h)
	}
	ti := x.find(ev.TraceID, h)
	if ti == nil {
		ti = x.add(ev.TraceID, h)
	}
	switch ev.Type {
	case schemas.TypeIntent:
		if in := ev.Intent; in != nil && !ti.hasIntent {
			ti.hasIntent = true
			ti.tool, ti.action, ti.class = it.get(in.Tool), it.get(in.Action), it.get(in.ActionClass)
			ti.target, ti.digest = in.Target, in.ActionDigest
		}
	default:
		if ti.requestAt == 0 || t < ti.requestAt {
			ti.requestAt = t
		}
	}
	return ti
}

// interner shares the bytes of low-cardinality strings (tools, actions,
// teams) between groups, up to a bound.
type interner struct {
	m   map[string]string
	max int
}

func (in *interner) get(s string) string {
	if v, ok := in.m[s]; ok {
		return v
	}
	if len(in.m) < in.max {
		s = string([]byte(s)) // detach from the event's memory
		in.m[s] = s
	}
	return s
}

// hasher hashes group values without allocating: each value on its own
// (maphash.String, no per-call buffering), mixed into the sum by a step
// that is a bijection of the value's hash, so tuples differing in any value
// collide only by chance (2^-64). Its zero value picks a random seed on
// first use, as maphash.Hash did.
type hasher struct {
	seed   maphash.Seed
	seeded bool
}

func (h *hasher) sum(vals []string) uint64 {
	if !h.seeded {
		h.seed, h.seeded = maphash.MakeSeed(), true
	}
	x := uint64(len(vals))
	for _, v := range vals {
		x = bits.RotateLeft64(x^maphash.String(h.seed, v), 29) * 0x9e3779b97f4a7c15
	}
	return x
}
