package policy

import (
	"math/rand/v2"
	"testing"

	"github.com/agentrail/agentrail/reports/registry"
)

// TestPatternMatchesRegistry holds the compiled matcher to
// registry.MatchResource, which the weekly report's LIKE agrees with, so the
// gate and the report judge a target alike.
func TestPatternMatchesRegistry(t *testing.T) {
	cases := [][2]string{
		{"*", ""}, {"*", "x"}, {"a*", "a"}, {"*a", "a"}, {"a*a", "a"}, {"a*a", "aa"},
		{"*ab*b", "ab"}, {"*ab*b", "abb"}, {"x**y", "xy"}, {"account:GL-*", "account:GL-"},
		{"doc:*:draft", "doc::draft"}, {"doc:*:draft", "doc:draft"}, {"exact", "exact"}, {"exact", "exacT"},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab*"
	gen := func(n int, stars bool) string {
		b := make([]byte, rng.IntN(n))
		for i := range b {
			k := 2
			if stars {
				k = 3
			}
			b[i] = alphabet[rng.IntN(k)]
		}
		return string(b)
	}
	for range 20000 {
		cases = append(cases, [2]string{gen(7, true), gen(8, false)})
	}
	for _, c := range cases {
		p := compilePattern(c[0])
		if got, want := p.match(c[1]), registry.MatchResource(c[0], c[1]); got != want {
			t.Errorf("pattern %q on %q: %t, registry.MatchResource says %t", c[0], c[1], got, want)
		}
	}
}
