package anomaly

import (
	"slices"
	"sort"
)

// distinctCache keeps probing_after_deny's count for one denial's window
// (dt, end] up to date as tries enter and leave it, so that a try costs a
// few map operations instead of a pass over every try in the window.
//
// An agent trying thousands of actions a minute fills its tries to
// max_events_per_group; from then on every try pushes the oldest one out,
// usually out of the counted window too, and tries from other partitions
// arrive out of order. The count used to start over on both, so a busy agent
// paid a recount of up to max_events_per_group tries on every try, which
// under a steady load held whole batches in the anomaly stage
// (docs/PERFORMANCE-HISTORY.md, "Freshness inside `make bench`"). Now a try
// entering the window in any order is one add, a try leaving it from the
// front is one leave, and moving to a later denial's window leaves and adds
// the difference; only trimming past the denial, a denial earlier than the
// counted one, and a window that does not overlap start over.
//
// It reproduces exactly what probing.count returns for the same window:
// the number of distinct items, and the denial's id followed by the first
// try of each item in window order, up to max_event_ids in all. Window
// order is the tries' order: by time, then by arrival (seq), since a try is
// inserted after those of equal time.
type distinctCache struct {
	valid bool
	dt    int64 // the window is (dt, end]
	end   int64
	did   string // the denial's event id, the first evidence id
	max   int    // first tries listed, besides the denial's id
	items map[uint64]itemRun
	// listed holds the first try of the min(max, len(items)) items whose
	// first tries come first, in window order.
	listed []try
	ids    []string // did, then listed's ids, when idsOK
	idsOK  bool
}

// itemRun is one item's tries in the window: how many, and the earliest.
type itemRun struct {
	n      int
	first  try
	listed bool
}

// before is window order.
func before(a, b try) bool { return a.t < b.t || a.t == b.t && a.seq < b.seq }

func (c *distinctCache) reset() { c.valid = false }

// in reports whether a try at t lies in the counted window.
func (c *distinctCache) in(t int64) bool { return c.valid && t > c.dt && t <= c.end }

// count returns the window's distinct count and evidence ids for denial d,
// moving to d's window first (tries holds the group's tries, in order).
// The ids are the cache's own; callers copy what they keep.
func (c *distinctCache) count(tries []try, d stamp, size int64, maxIDs int) (int, []string) {
	switch {
	case c.valid && d.t == c.dt:
	case c.valid && d.t > c.dt && d.t < c.end:
		c.slide(tries, d, size)
	default:
		c.valid = false
	}
	if !c.valid {
		c.build(tries, d, size, max(maxIDs-1, 0))
	}
	if c.did != d.id {
		c.did, c.idsOK = d.id, false
	}
	if !c.idsOK {
		c.ids = append(c.ids[:0], c.did)
		for _, tr := range c.listed {
			c.ids = append(c.ids, tr.id)
		}
		c.idsOK = true
	}
	return len(c.items), c.ids
}

// build counts denial d's window afresh.
func (c *distinctCache) build(tries []try, d stamp, size int64, max int) {
	if c.items == nil {
		c.items = map[uint64]itemRun{}
	} else {
		clear(c.items)
	}
	c.listed = c.listed[:0]
	c.valid, c.dt, c.end, c.did, c.max, c.idsOK = true, d.t, d.t+size, d.id, max, false
	for _, tr := range tries[c.lo(tries):] {
		if tr.t > c.end {
			break
		}
		c.add(tr)
	}
}

// lo is the index of the first try in the window (or after it).
func (c *distinctCache) lo(tries []try) int {
	return sort.Search(len(tries), func(i int) bool { return tries[i].t > c.dt })
}

// slide moves the window to the later denial d, whose window overlaps it:
// the tries in (dt, d.t] leave, those in (end, d.t+size] enter.
func (c *distinctCache) slide(tries []try, d stamp, size int64) {
	for j := c.lo(tries); j < len(tries) && tries[j].t <= d.t && c.valid; j++ {
		c.leave(tries, j)
	}
	if !c.valid {
		return
	}
	from := sort.Search(len(tries), func(i int) bool { return tries[i].t > c.end })
	c.dt, c.end, c.did, c.idsOK = d.t, d.t+size, d.id, false
	for _, tr := range tries[from:] {
		if tr.t > c.end {
			break
		}
		c.add(tr)
	}
}

// add counts tr, which entered the window, in order or not.
func (c *distinctCache) add(tr try) {
	r, ok := c.items[tr.h]
	switch {
	case !ok:
		r = itemRun{n: 1, first: tr}
	case !before(tr, r.first):
		r.n++
		c.items[tr.h] = r
		return
	default: // an earlier try of a known item: it becomes the item's first
		r.n++
		if r.listed {
			c.unlist(r.first)
		}
		r.first = tr
	}
	r.listed = c.list(tr)
	c.items[tr.h] = r
}

// leave uncounts tries[j], the earliest try in the window, which leaves it;
// tries[j+1:] still hold the rest of the window.
func (c *distinctCache) leave(tries []try, j int) {
	x := tries[j]
	r, ok := c.items[x.h]
	if !ok || r.first.seq != x.seq {
		c.valid = false // not the state this cache keeps: count afresh
		return
	}
	if r.listed {
		c.unlist(x)
	}
	if r.n--; r.n == 0 {
		delete(c.items, x.h)
	} else {
		// Its next try may come after an unlisted item's first: fill
		// decides, in window order.
		r.first, r.listed = c.next(tries[j+1:], x.h), false
		if !c.valid {
			return
		}
		c.items[x.h] = r
	}
	c.fill(tries[j+1:])
}

// next is the first try of item h in tries (the window's rest); the item
// has one there, since it still counts tries.
func (c *distinctCache) next(tries []try, h uint64) try {
	for _, tr := range tries {
		if tr.h == h {
			return tr
		}
	}
	c.valid = false // unreachable while the counts are right
	return try{}
}

// fill lists the items whose first tries come next, after one was
// unlisted, so that listed again holds min(max, len(items)) of them.
// tries is the window's rest, in order.
func (c *distinctCache) fill(tries []try) {
	for _, tr := range tries {
		if len(c.listed) >= c.max || len(c.listed) >= len(c.items) || tr.t > c.end {
			return
		}
		if r := c.items[tr.h]; !r.listed && r.first.seq == tr.seq {
			r.listed = c.list(tr)
			c.items[tr.h] = r
		}
	}
}

// list inserts tr among the listed first tries if it falls within the
// first max, unlisting the one it pushes past max; it reports whether tr
// was listed.
func (c *distinctCache) list(tr try) bool {
	i := sort.Search(len(c.listed), func(i int) bool { return before(tr, c.listed[i]) })
	if i >= c.max {
		return false
	}
	if len(c.listed) == c.max {
		out := c.listed[c.max-1]
		r := c.items[out.h]
		r.listed = false
		c.items[out.h] = r
		c.listed = c.listed[:c.max-1]
	}
	c.listed = slices.Insert(c.listed, i, tr)
	c.idsOK = false
	return true
}

// unlist removes tr from the listed first tries.
func (c *distinctCache) unlist(tr try) {
	if i := slices.IndexFunc(c.listed, func(x try) bool { return x.seq == tr.seq }); i >= 0 {
		c.listed = slices.Delete(c.listed, i, i+1)
		c.idsOK = false
	}
}
