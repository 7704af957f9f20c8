package anomaly

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// TestProbingCacheMatchesRecount: probing_after_deny's cached distinct
// count (distinctCache) raises exactly the alerts a full recount of the
// window does, on random streams of tries and denials by a few agents with
// repeats, late and out-of-order events, redeliveries, a small max_events
// (tries dropped from a full window) and time jumps that trim the state.
func TestProbingCacheMatchesRecount(t *testing.T) {
	src := `
allowed_lateness: 2m
rules:
  - name: probe
    kind: probing_after_deny
    window: {size: 1m}
    threshold: 5
`
	defer func() { probeCache = true }()
	for seed := uint64(1); seed <= 40; seed++ {
		evs := probeStream(seed)
		run := func(cache bool) []Alert {
			probeCache = cache
			en, err := NewEngine(mustRules(t, src), Config{MaxEventsPerGroup: 40})
			if err != nil {
				t.Fatal(err)
			}
			return feed(en, evs...)
		}
		cached, recount := run(true), run(false)
		if len(recount) == 0 && seed <= 5 {
			t.Errorf("seed %d: the stream raised no alert; the test proves nothing", seed)
		}
		if !reflect.DeepEqual(cached, recount) {
			t.Fatalf("seed %d: cached count raised %d alerts, recount %d:\ncached:%s\nrecount:%s",
				seed, len(cached), len(recount), summaries(cached), summaries(recount))
		}
	}
}

func probeStream(seed uint64) []*schemas.Event {
	r := rand.New(rand.NewPCG(seed, 7))
	b := &evb{}
	at := wed
	var evs []*schemas.Event
	for i := 0; i < 3000; i++ {
		agent := fmt.Sprintf("bot-%d", r.IntN(3))
		switch x := r.IntN(100); {
		case x < 2: // a pause long enough to trim the window
			at = at.Add(3 * time.Minute)
		case x < 10: // a denial
			in := b.intent(agent, "devops", at, "iam", "grant", "role:admin", 3, "access_grant")
			evs = append(evs, in, b.decision(in, at.Add(time.Second), schemas.OutcomeDeny))
		case x < 14 && len(evs) > 0: // a redelivery
			evs = append(evs, evs[r.IntN(len(evs))])
		case x < 20: // out of order: up to 50 s in the past
			tgt := fmt.Sprintf("t%d", r.IntN(12))
			evs = append(evs, b.intent(agent, "devops", at.Add(-time.Duration(r.IntN(50))*time.Second), "iam", "grant", tgt, 3, "access_grant"))
		default: // in order, a few distinct targets, often repeated
			tgt := fmt.Sprintf("t%d", r.IntN(12))
			evs = append(evs, b.intent(agent, "devops", at, "iam", "grant", tgt, 3, "access_grant"))
		}
		at = at.Add(time.Duration(r.IntN(3000)) * time.Millisecond)
	}
	return evs
}

// TestDistinctCacheMatchesRecount drives one group's tries the way
// probing_after_deny does (tries in and out of order, redeliveries, the
// oldest dropped at max_events, trimming) and, after every step, checks the
// window the cache holds and then asks it for a denial's window, mostly a
// later one, sometimes an earlier: the count and evidence ids must equal a
// plain recount of the window, for evidence caps from none to more than the
// items tried.
func TestDistinctCacheMatchesRecount(t *testing.T) {
	const size, maxEvents = 60_000_000, 40 // a minute, µs
	recount := func(tries []try, d stamp, maxIDs int) (int, []string) {
		seen := map[uint64]bool{}
		ids := []string{d.id}
		for _, tr := range tries {
			if tr.t <= d.t || tr.t > d.t+size || seen[tr.h] {
				continue
			}
			seen[tr.h] = true
			if len(ids) < maxIDs {
				ids = append(ids, tr.id)
			}
		}
		return len(seen), ids
	}
	var checks, slides, leaves, disordered int
	for _, maxIDs := range []int{0, 1, 2, 4, 20} {
		for _, items := range []int{3, 12, 60} {
			for _, step := range []int64{20_000, 400_000, 3_000_000} { // µs between tries
				for seed := uint64(1); seed <= 4; seed++ {
					name := fmt.Sprintf("max_event_ids %d, %d items, step %dµs, seed %d", maxIDs, items, step, seed)
					r := rand.New(rand.NewPCG(seed, uint64(maxIDs*1000+items)))
					var s probeState
					var denies []stamp
					now := int64(1e12)
					for i := 0; i < 1500; i++ {
						now += r.Int64N(step)
						switch x := r.IntN(100); {
						case x < 3:
							denies = append(denies, stamp{t: now - r.Int64N(size/2), id: fmt.Sprintf("d%d", i)})
						case x < 5 && len(s.tries) > 0: // a redelivery
							s.addTry(s.tries[r.IntN(len(s.tries))], maxEvents)
						case x < 7: // a pause: trim
							now += r.Int64N(3 * size)
							s.trimTries(now - 2*size)
						default:
							at := now
							if x < 25 { // out of order, up to 50 s back
								at -= r.Int64N(50_000_000)
								if s.dc.in(at) {
									disordered++
								}
							}
							if len(s.tries) >= maxEvents && s.dc.in(s.tries[0].t) {
								leaves++
							}
							s.addTry(try{t: at, h: uint64(r.IntN(items)), id: fmt.Sprintf("e%d", i)}, maxEvents)
						}
						if c := &s.dc; c.valid {
							n, ids := recount(s.tries, stamp{t: c.dt, id: c.did}, maxIDs)
							got := []string{c.did}
							for _, tr := range c.listed {
								got = append(got, tr.id)
							}
							if n != len(c.items) || !slices.Equal(got, ids) {
								t.Fatalf("%s, step %d: the cache holds %d %v, a recount gives %d %v", name, i, len(c.items), got, n, ids)
							}
						}
						if len(denies) == 0 {
							continue
						}
						d := denies[len(denies)-1-min(r.IntN(3), len(denies)-1)]
						if r.IntN(10) == 0 {
							d = denies[r.IntN(len(denies))]
						}
						if c := s.dc; c.valid && d.t > c.dt && d.t < c.end {
							slides++
						}
						n, ids := s.dc.count(s.tries, d, size, maxIDs)
						if wn, wids := recount(s.tries, d, maxIDs); n != wn || !slices.Equal(ids, wids) {
							t.Fatalf("%s, step %d: the cache counts %d %v, a recount %d %v", name, i, n, ids, wn, wids)
						}
						checks++
					}
				}
			}
		}
	}
	if checks < 100_000 || slides < 1000 || leaves < 1000 || disordered < 1000 {
		t.Errorf("%d checks, %d slides, %d leaves, %d tries out of order: the streams do not exercise the cache", checks, slides, leaves, disordered)
	}
	t.Logf("%d checks, %d slides, %d leaves, %d tries out of order", checks, slides, leaves, disordered)
}

// BenchmarkDistinctCacheWorstCase prices a try on a full group whose
// denial's window holds every try, where each try pushes the oldest out:
// the item leaving tries again `period` tries later, and the cache's next
// and fill scan that far forward to find its new first try. A period near
// max_events_per_group (4,096 by default) is the worst an agent's stream
// can make it; the cost per try is O(period), bounded by the group's size.
func BenchmarkDistinctCacheWorstCase(b *testing.B) {
	const maxEvents, maxIDs = 4096, 20 // the defaults
	const size = int64(1) << 50        // one window over every try
	ids := make([]string, 2*maxEvents)
	for i := range ids {
		ids[i] = fmt.Sprintf("e%d", i)
	}
	for _, period := range []int{1, 16, 512, 4000} {
		b.Run(fmt.Sprintf("period=%d", period), func(b *testing.B) {
			var s probeState
			d := stamp{t: 0, id: "d"}
			at := int64(1)
			try1 := func(i int) {
				s.addTry(try{t: at, h: uint64(i % period), id: ids[i%len(ids)]}, maxEvents)
				at++
				s.dc.count(s.tries, d, size, maxIDs)
			}
			for i := range 2 * maxEvents { // fill the group
				try1(i)
			}
			if !s.dc.valid || len(s.tries) != maxEvents {
				b.Fatalf("the cache is not counting a full group: valid %v, %d tries", s.dc.valid, len(s.tries))
			}
			b.ResetTimer()
			for i := range b.N {
				try1(i)
			}
		})
	}
}
