package policy

import (
	"fmt"
	"sync"
	"time"
)

// Limit is one rate limit of a grant: at most Max uses per Window.
type Limit struct {
	Window time.Duration
	Max    int64
}

func (l Limit) String() string {
	switch l.Window {
	case time.Hour:
		return fmt.Sprintf("%d per hour", l.Max)
	case 24 * time.Hour:
		return fmt.Sprintf("%d per day", l.Max)
	}
	return fmt.Sprintf("%d per %s", l.Max, l.Window)
}

// Taken is what a Counter answered for one use.
type Taken struct {
	OK bool
	// Remaining is how many uses are left after this one in the tightest
	// window (0 when refused).
	Remaining int64
	// Limit is the limit that refused the use (when !OK), or the tightest.
	Limit Limit
	// Frees is when the refusing window ends (when !OK).
	Frees time.Time
}

// Quotas hands out the counters of rate-limited grants. The engine asks for
// one counter per grant when it is built and keeps it, so a Decide calls
// no map and no interface but the counter's Take. Passing the same Quotas
// to the engine of the next registry version carries the counts over.
type Quotas interface {
	// Counter returns the counter of the grant named rule (a stable id
	// across registry versions) with these limits.
	Counter(rule string, limits []Limit) Counter
}

// Counter counts one grant's uses.
type Counter interface {
	// Take counts one use at now if every limit has room, all or nothing.
	Take(now time.Time) Taken
}

// LocalQuotas counts in this process, in fixed windows aligned to the
// clock (UTC hours and days): deterministic, and a window frees up all at
// once at its end. With Instances > 1 each limit is cut to this instance's
// share, Max/Instances rounded down, so N instances together never exceed
// it, and none exceeds its share when another is gone.
type LocalQuotas struct {
	Instances int

	mu       sync.Mutex
	counters map[string]*localCounter
}

// NewLocalQuotas returns in-process quotas for one of instances gates
// sharing the limits (1 or less: this gate alone).
func NewLocalQuotas(instances int) *LocalQuotas {
	return &LocalQuotas{Instances: max(instances, 1)}
}

// Counter implements Quotas. A rule seen before keeps its counts for the
// windows whose length did not change.
func (q *LocalQuotas) Counter(rule string, limits []Limit) Counter {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.counters == nil {
		q.counters = map[string]*localCounter{}
	}
	n := int64(max(q.Instances, 1))
	c := q.counters[rule]
	if c == nil {
		c = &localCounter{}
		q.counters[rule] = c
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.windows
	c.windows = make([]window, len(limits))
	for i, l := range limits {
		c.windows[i] = window{Limit: Limit{Window: l.Window, Max: l.Max / n}, len: int64(l.Window)}
		for _, o := range old {
			if o.len == int64(l.Window) {
				c.windows[i].start, c.windows[i].used = o.start, o.used
			}
		}
	}
	return c
}

type localCounter struct {
	mu      sync.Mutex
	windows []window
}

type window struct {
	Limit
	len   int64 // nanoseconds
	start int64 // Unix nanoseconds of the current window's start
	used  int64
}

func (c *localCounter) Take(now time.Time) Taken {
	t := now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.windows {
		w := &c.windows[i]
		if start := t - t%w.len; start != w.start {
			w.start, w.used = start, 0
		}
		if w.used >= w.Max {
			return Taken{Limit: w.Limit, Frees: time.Unix(0, w.start+w.len).UTC()}
		}
	}
	out := Taken{OK: true, Remaining: -1}
	for i := range c.windows {
		w := &c.windows[i]
		w.used++
		if r := w.Max - w.used; out.Remaining < 0 || r < out.Remaining {
			out.Remaining, out.Limit = r, w.Limit
		}
	}
	return out
}
