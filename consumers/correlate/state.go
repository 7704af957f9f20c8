package correlate

import (
	"math/bits"
	"sort"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// Bounds of the policy-version view.
const (
	maxPolicies          = 100_000
	maxVersionsPerPolicy = 256
)

// policyView remembers, per policy, when each version was first seen in a
// decision. Sightings only ever get earlier and more numerous, so a decision
// found stale stays stale.
type policyView struct {
	by      map[string][]Sighting // by policy id, ascending version
	dropped int                   // sightings not kept: over the bounds
}

func newPolicyView() *policyView { return &policyView{by: map[string][]Sighting{}} }

// observe records a decision under policyID's version at the given time.
func (v *policyView) observe(policyID string, version int64, at time.Time, eventID string) {
	if policyID == "" {
		return
	}
	list, ok := v.by[policyID]
	if !ok && len(v.by) >= maxPolicies {
		v.dropped++
		return
	}
	i := sort.Search(len(list), func(i int) bool { return list[i].Version >= version })
	if i < len(list) && list[i].Version == version {
		s := &list[i]
		if at.Before(s.FirstSeen) || (at.Equal(s.FirstSeen) && eventID < s.EventID) {
			s.FirstSeen, s.EventID = at, eventID
		}
		return
	}
	list = append(list, Sighting{})
	copy(list[i+1:], list[i:])
	list[i] = Sighting{Version: version, FirstSeen: at, EventID: eventID}
	if len(list) > maxVersionsPerPolicy {
		// The oldest versions go first: a decision under one of them is
		// still compared with every newer version kept.
		list = list[1:]
		v.dropped++
	}
	v.by[policyID] = list
}

// Newer implements Policies.
func (v *policyView) Newer(policyID string, version int64, at time.Time) (Sighting, bool) {
	list := v.by[policyID]
	for i := len(list) - 1; i >= 0 && list[i].Version > version; i-- {
		if list[i].FirstSeen.Before(at) {
			return list[i], true
		}
	}
	return Sighting{}, false
}

// bloom is a fixed-size Bloom filter over 64-bit hashes.
type bloom struct {
	bits     []uint64
	n, limit int
}

const bloomHashes = 7 // with 10 bits per entry: about 1% false positives

func newBloom(capacity int) *bloom {
	capacity = max(capacity, 1024)
	return &bloom{bits: make([]uint64, (capacity*10+63)/64), limit: capacity}
}

func (b *bloom) positions(h uint64, fn func(word int, bit uint64) bool) bool {
	m := uint64(len(b.bits) * 64)
	h2 := bits.RotateLeft64(h*0x9e3779b97f4a7c15, 31) | 1
	for i := uint64(0); i < bloomHashes; i++ {
		p := (h + i*h2) % m
		if !fn(int(p/64), 1<<(p%64)) {
			return false
		}
	}
	return true
}

func (b *bloom) add(h uint64) {
	b.positions(h, func(w int, bit uint64) bool { b.bits[w] |= bit; return true })
	b.n++
}

func (b *bloom) has(h uint64) bool {
	return b.positions(h, func(w int, bit uint64) bool { return b.bits[w]&bit != 0 })
}

// history answers "may this trace have events this process does not hold?"
// for one partition: the traces ClickHouse had before this process started
// on the partition, and the traces it evicted since. A false positive costs
// a query; there are no false negatives. Full filters are chained, not
// rebuilt, so it never needs the keys again.
type history struct{ chain []*bloom }

func newHistory(capacity int) *history { return &history{chain: []*bloom{newBloom(capacity)}} }

func (h *history) add(x uint64) {
	last := h.chain[len(h.chain)-1]
	if last.n >= last.limit {
		last = newBloom(2 * last.limit)
		h.chain = append(h.chain, last)
	}
	last.add(x)
}

func (h *history) has(x uint64) bool {
	for _, b := range h.chain {
		if b.has(x) {
			return true
		}
	}
	return false
}

// stored is one event of a cached trace with its place in the stream.
type stored struct {
	ev        schemas.Event // without parameters, rationale, context and labels
	partition int32
	offset    int64
	seenAt    time.Time // when ingest took it (the batch's clock, or ingested_at)
}

// marker records that a violation kind was emitted for a trace, by the batch
// whose first offset in the trace's partition was offset.
type marker struct {
	partition int32
	offset    int64
}

// traceState is what the correlator holds of one trace.
type traceState struct {
	id        string
	partition int32
	events    []stored // in stream order
	emitted   map[Kind]marker

	prev, next *traceState // LRU list, most recent first
}

// add appends an event, sharing the strings it repeats from the trace's
// other events (trace id, agent, requester, session, digests): a decoded
// event brings its own copies, and they are most of a cached trace's size.
func (st *traceState) add(s stored) {
	e := &s.ev
	e.TraceID = st.id
	switch e.Type {
	case schemas.TypeIntent, schemas.TypeDecision, schemas.TypeApproval, schemas.TypeResult:
		e.Type = canonicalType[e.Type]
	}
	if len(st.events) > 0 {
		for _, p := range [...]*string{&e.SpanID, &e.Agent.ID, &e.Agent.Team, &e.Agent.Version, &e.Agent.Environment,
			&e.Agent.Tenant, &e.RequestedBy, &e.SessionID} {
			st.share(p)
		}
		switch {
		case e.Intent != nil:
			st.share(&e.Intent.ActionDigest)
		case e.Approval != nil:
			st.share(&e.Approval.ActionDigest)
		case e.Result != nil:
			st.share(&e.Result.ActionDigest)
			st.share(&e.Result.Executor)
		}
	}
	st.events = append(st.events, s)
}

// share points *p at the first equal string of the trace's events, in
// event order and, within one, in the order of the cases.
func (st *traceState) share(p *string) {
	if *p == "" {
		return
	}
	for i := range st.events {
		o := &st.events[i].ev
		switch *p {
		case o.SpanID:
			*p = o.SpanID
		case o.Agent.ID:
			*p = o.Agent.ID
		case o.Agent.Team:
			*p = o.Agent.Team
		case o.Agent.Version:
			*p = o.Agent.Version
		case o.Agent.Environment:
			*p = o.Agent.Environment
		case o.Agent.Tenant:
			*p = o.Agent.Tenant
		case o.RequestedBy:
			*p = o.RequestedBy
		case o.SessionID:
			*p = o.SessionID
		case digestOf(o):
			*p = digestOf(o)
		default:
			continue
		}
		return
	}
}

var canonicalType = map[schemas.EventType]schemas.EventType{
	schemas.TypeIntent: schemas.TypeIntent, schemas.TypeDecision: schemas.TypeDecision,
	schemas.TypeApproval: schemas.TypeApproval, schemas.TypeResult: schemas.TypeResult,
}

func digestOf(e *schemas.Event) string {
	switch {
	case e.Intent != nil:
		return e.Intent.ActionDigest
	case e.Approval != nil:
		return e.Approval.ActionDigest
	case e.Result != nil:
		return e.Result.ActionDigest
	}
	return ""
}

// lru holds trace states, most recently used first.
type lru struct {
	m          map[string]*traceState
	head, tail *traceState
}

func newLRU() *lru { return &lru{m: map[string]*traceState{}} }

func (l *lru) get(id string) *traceState { return l.m[id] }

func (l *lru) len() int { return len(l.m) }

// touch inserts st or, if it is held (st itself: one state per id), moves
// it to the front.
func (l *lru) touch(st *traceState) {
	if _, ok := l.m[st.id]; ok {
		l.front(st)
		return
	}
	l.m[st.id] = st
	l.pushFront(st)
}

// front moves st, which the cache holds, to the front.
func (l *lru) front(st *traceState) {
	if l.head == st {
		return
	}
	l.unlink(st)
	l.pushFront(st)
}

func (l *lru) pushFront(st *traceState) {
	st.prev, st.next = nil, l.head
	if l.head != nil {
		l.head.prev = st
	}
	l.head = st
	if l.tail == nil {
		l.tail = st
	}
}

func (l *lru) unlink(st *traceState) {
	if st.prev != nil {
		st.prev.next = st.next
	} else {
		l.head = st.next
	}
	if st.next != nil {
		st.next.prev = st.prev
	} else {
		l.tail = st.prev
	}
	st.prev, st.next = nil, nil
}

func (l *lru) remove(st *traceState) {
	if _, ok := l.m[st.id]; !ok {
		return
	}
	l.unlink(st)
	delete(l.m, st.id)
}

// oldest returns the least recently used state, or nil.
func (l *lru) oldest() *traceState { return l.tail }

// strip keeps what correlation and the timeline need of an event.
func strip(e *schemas.Event) schemas.Event {
	out := *e
	out.Labels = nil
	out.Producer = schemas.Producer{}
	if e.Intent != nil {
		in := *e.Intent
		in.Parameters, in.Context, in.Rationale, in.EvidenceIDs, in.Confidence = nil, nil, "", nil, nil
		in.ModelID, in.PromptVersion = "", ""
		out.Intent = &in
	}
	if e.Decision != nil {
		d := *e.Decision
		d.Reason, d.RemainingQuota = "", nil
		out.Decision = &d
	}
	if e.Approval != nil {
		a := *e.Approval
		a.Comment, a.Channel = "", ""
		out.Approval = &a
	}
	if e.Result != nil {
		r := *e.Result
		r.SideEffects, r.ErrorMessage = nil, ""
		out.Result = &r
	}
	return out
}
