package anomaly

import (
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/agentrail/agentrail/consumers"
)

// evalOrder puts a batch's events in the order sort.SliceStable on (time,
// partition, offset) did before it, on random batches full of ties: equal
// times, equal partitions, repeated offsets, times a nanosecond apart, and
// times beyond UnixNano's range.
func TestEvalOrderMatchesStableSort(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		r := rand.New(rand.NewPCG(seed, 3))
		evs := make([]consumers.Accepted, r.IntN(300))
		base := wed
		if seed%10 == 0 {
			base = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) // past 2262: the fallback
		}
		for i := range evs {
			at := base.Add(time.Duration(r.IntN(20)) * time.Second).Add(time.Duration(r.IntN(3)) * time.Nanosecond)
			if seed%7 == 0 && r.IntN(50) == 0 {
				at = time.Date(1500+r.IntN(1000), 1, 1, 0, 0, 0, 0, time.UTC)
			}
			evs[i] = consumers.Accepted{Partition: int32(r.IntN(4)), Offset: int64(r.IntN(40))}
			evs[i].Time = at
			evs[i].EventID = string(rune('a' + i%26))
		}
		want := make([]int, len(evs))
		for i := range want {
			want[i] = i
		}
		sort.SliceStable(want, func(i, j int) bool {
			a, c := &evs[want[i]], &evs[want[j]]
			if !a.Time.Equal(c.Time) {
				return a.Time.Before(c.Time)
			}
			if a.Partition != c.Partition {
				return a.Partition < c.Partition
			}
			return a.Offset < c.Offset
		})
		if got := evalOrder(evs); !slices.Equal(got, want) {
			t.Fatalf("seed %d: order differs from the stable sort:\n got %v\nwant %v", seed, got, want)
		}
	}
}
