package correlate

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

// propertyTraces are the traces the property test permutes: every table
// case, and simulated traces with every planted violation.
func propertyTraces(t *testing.T) []kindCase {
	cases := kindCases()
	var scs []simulate.Scenario
	for _, name := range simulate.ViolationScenarioNames() {
		sc, err := simulate.Builtin(name, 0.08)
		if err != nil {
			t.Fatal(err)
		}
		scs = append(scs, sc)
	}
	f := simulate.New(simulate.Config{Seed: 11, ReorderRate: 0.2, DuplicateRate: 0.1, Scenarios: scs})
	pol := fixedPolicies{}
	for i := 0; i < 300; i++ {
		tr := f.Next(t0.Add(time.Duration(i) * time.Minute))
		cases = append(cases, kindCase{name: fmt.Sprintf("simulated %d %v", i, tr.Planted), events: tr.Events, pol: pol})
	}
	return cases
}

// TestPermutationsAndDuplicates: every order of a trace's events, and every
// repetition of them, yields the same record and the same violations.
func TestPermutationsAndDuplicates(t *testing.T) {
	const seed = 20261116
	r := rand.New(rand.NewPCG(seed, seed))
	exhaustive, sampled := 0, 0
	for _, tc := range propertyTraces(t) {
		want := Correlate(tc.events, tc.pol)
		check := func(how string, evs []schemas.Event) {
			t.Helper()
			if got := Correlate(evs, tc.pol); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s (seed %d): %s changed the answer\n got %+v\nwant %+v", tc.name, seed, how, got, want)
			}
		}
		n := len(tc.events)
		if n <= 7 {
			permute(append([]schemas.Event(nil), tc.events...), 0, func(p []schemas.Event) {
				exhaustive++
				check(fmt.Sprintf("order %v", ids(p)), p)
			})
		}
		for i := 0; i < 50; i++ {
			p := append([]schemas.Event(nil), tc.events...)
			r.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
			check(fmt.Sprintf("order %v", ids(p)), p)
			// Duplicate a random subset one to three times, anywhere.
			d := append([]schemas.Event(nil), p...)
			for _, e := range p {
				if r.IntN(2) == 0 {
					for k := 0; k <= r.IntN(3); k++ {
						d = append(d, e)
					}
				}
			}
			r.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
			check(fmt.Sprintf("duplicated order %v", ids(d)), d)
			sampled += 2
		}
	}
	t.Logf("%d exhaustive permutations, %d sampled orders and duplications", exhaustive, sampled)
}

// permute calls fn with every permutation of evs (Heap's algorithm, in place).
func permute(evs []schemas.Event, k int, fn func([]schemas.Event)) {
	if k == len(evs) {
		fn(evs)
		return
	}
	for i := k; i < len(evs); i++ {
		evs[k], evs[i] = evs[i], evs[k]
		permute(evs, k+1, fn)
		evs[k], evs[i] = evs[i], evs[k]
	}
}

func ids(evs []schemas.Event) []string {
	out := make([]string, len(evs))
	for i := range evs {
		out[i] = evs[i].EventID
		if len(out[i]) > 8 {
			out[i] = out[i][len(out[i])-4:]
		}
	}
	return out
}
