package anomaly

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/agentrail/agentrail/schemas"
)

// refTraceIndex is the trace index as it was: a map of trace ids to
// separately allocated infos and a ring of ids.
type refTraceIndex struct {
	m         map[string]*traceInfo
	ring      []string
	next      int
	evictions uint64
}

func (x *refTraceIndex) update(ev *schemas.Event, t int64, it *interner) *traceInfo {
	switch ev.Type {
	case schemas.TypeIntent:
	case schemas.TypeDecision:
		if ev.Decision == nil || ev.Decision.Outcome != schemas.OutcomeRequireApproval {
			return x.m[ev.TraceID]
		}
	case schemas.TypeApproval:
		if ev.Approval == nil || ev.Approval.Status != schemas.ApprovalRequested {
			return x.m[ev.TraceID]
		}
	default:
		return x.m[ev.TraceID]
	}
	ti := x.m[ev.TraceID]
	if ti == nil {
		ti = &traceInfo{}
		if old := x.ring[x.next]; old != "" {
			delete(x.m, old)
			x.evictions++
		}
		x.ring[x.next] = ev.TraceID
		x.next = (x.next + 1) % len(x.ring)
		x.m[ev.TraceID] = ti
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

// The slotted trace index answers every update as the map of pointers it
// replaced did, and evicts the same traces, on random events of a small
// pool of traces (the empty id among them) through a small ring, with the
// hash narrowed to 3 bits so that most traces share a chain.
func TestTraceIndexMatchesReference(t *testing.T) {
	defer func(m uint64) { traceHashMask = m }(traceHashMask)
	for _, mask := range []uint64{^uint64(0), 7} {
		traceHashMask = mask
		for seed := uint64(1); seed <= 50; seed++ {
			r := rand.New(rand.NewPCG(seed, 5))
			max := 1 + r.IntN(40)
			got := newTraceIndex(max)
			want := &refTraceIndex{m: map[string]*traceInfo{}, ring: make([]string, max)}
			it1, it2 := &interner{m: map[string]string{}, max: 100}, &interner{m: map[string]string{}, max: 100}
			for i := range 3000 {
				ev := &schemas.Event{TraceID: fmt.Sprintf("%032x", r.IntN(3*max))}
				if r.IntN(100) == 0 {
					ev.TraceID = ""
				}
				switch r.IntN(6) {
				case 0, 1:
					ev.Type = schemas.TypeIntent
					ev.Intent = &schemas.Intent{Tool: fmt.Sprint("tool", r.IntN(3)), Action: "act", Target: fmt.Sprint(i), ActionClass: "c", ActionDigest: fmt.Sprint("d", i)}
				case 2:
					ev.Type = schemas.TypeDecision
					ev.Decision = &schemas.Decision{Outcome: []string{schemas.OutcomeAllow, schemas.OutcomeRequireApproval}[r.IntN(2)]}
				case 3:
					ev.Type = schemas.TypeApproval
					ev.Approval = &schemas.Approval{Status: []string{schemas.ApprovalRequested, schemas.ApprovalGranted}[r.IntN(2)]}
				default:
					ev.Type = schemas.TypeResult
					ev.Result = &schemas.Result{Status: schemas.ResultSuccess}
				}
				at := int64(r.IntN(1000))
				g, w := got.update(ev, at, it1), want.update(ev, at, it2)
				if (g == nil) != (w == nil) || (g != nil && *g != *w) || got.evictions != want.evictions {
					t.Fatalf("mask %x seed %d event %d (%s %q): got %+v (%d evictions), want %+v (%d)", mask, seed, i, ev.Type, ev.TraceID, g, got.evictions, w, want.evictions)
				}
			}
			if got.evictions == 0 {
				t.Fatalf("seed %d: nothing evicted; the test proves little", seed)
			}
		}
	}
}
