package anomaly

import (
	"fmt"
	"math/rand/v2"
	"reflect"
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
