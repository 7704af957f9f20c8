package anomaly

import (
	"fmt"
	"slices"
	"sort"

	"github.com/agentrail/agentrail/schemas"
)

// base is what every kind shares: its rule, its bounded table of groups,
// and its counters.
type base[S any] struct {
	r       *rule
	lim     limits
	t       table[S]
	c       ruleCounters
	scratch [8]string
}

func (b *base[S]) init(r *rule, lim limits) {
	b.r, b.lim, b.t = r, lim, newTable[S](lim.maxGroups)
	b.c.groups = func() int { return b.t.n }
	b.c.evicted = func() uint64 { return b.t.evicted }
}

func (b *base[S]) rule() *rule             { return b.r }
func (b *base[S]) counters() *ruleCounters { return &b.c }

func (b *base[S]) vals(ev *schemas.Event, ti *traceInfo) []string {
	v := b.scratch[:len(b.r.dims)]
	for i, d := range b.r.dims {
		v[i] = dimValue(d, ev, ti)
	}
	return v
}

// group returns (creating) the event's group, marked used at t.
func (b *base[S]) group(en *Engine, ev *schemas.Event, ti *traceInfo, t int64) *entry[S] {
	vals := b.vals(ev, ti)
	return b.t.get(en.hash.sum(vals), vals, en.strs.get(ev.Agent.Team), ev.Agent.ID, t)
}

func (b *base[S]) late(e *entry[S]) {
	e.late++
	b.c.late++
}

// addStamp adds an event to a window after forgetting what the watermark
// has passed; it reports whether the event was new.
func (b *base[S]) addStamp(en *Engine, w *window, t int64, id string) bool {
	w.trim(en.watermark() - b.r.size)
	added, truncated := w.add(t, id, b.lim.maxEvents)
	if truncated {
		b.c.truncated++
	}
	return added
}

func (b *base[S]) firing(e *entry[S], at int64, sp span, w window, observed, threshold float64, summary string) *firing {
	return &firing{vals: e.vals, team: e.team, agent: e.agent, at: at, start: sp.start, end: sp.end,
		observed: observed, threshold: threshold, ids: w.ids(sp, b.lim.maxIDs), late: e.late, summary: summary}
}

func actionName(tool, action, target string) string {
	s := tool + "." + action
	if target != "" {
		s += " on " + target
	}
	return s
}

// action names an action for a summary; rendered (actionName) only when a
// rule fires, not for every event it counts.
type action struct{ tool, action, target string }

func (a action) String() string { return actionName(a.tool, a.action, a.target) }

func isFailure(ev *schemas.Event) bool {
	switch {
	case ev.Decision != nil:
		return ev.Decision.Outcome == schemas.OutcomeDeny
	case ev.Result != nil:
		switch ev.Result.Status {
		case schemas.ResultFailure, schemas.ResultError, schemas.ResultBlocked:
			return true
		}
	}
	return false
}

// ---- retry_burst: the same action repeated N times within a window.

type retryState struct {
	win   window
	fails []int64 // denials and failures of the group's attempts, µs
}

type retryBurst struct{ base[retryState] }

func newRetryBurst(r *rule, lim limits) *retryBurst {
	k := &retryBurst{}
	k.init(r, lim)
	return k
}

func (k *retryBurst) horizon() int64  { return k.r.size }
func (k *retryBurst) expire(wm int64) { k.t.expire(wm - k.r.size) }

func (k *retryBurst) observe(en *Engine, ev *schemas.Event, ti *traceInfo, late bool) {
	t := ev.Time.UnixMicro()
	if in := ev.Intent; in != nil {
		if !k.r.scope.match(ev, in.ActionClass) {
			return
		}
		e := k.group(en, ev, ti, t)
		if late {
			k.late(e)
			return
		}
		if k.addStamp(en, &e.s.win, t, ev.EventID) {
			k.eval(en, e, t, action{in.Tool, in.Action, in.Target})
		}
		return
	}
	if !isFailure(ev) || ti == nil || !ti.hasIntent || !k.r.scope.match(ev, ti.class) || late {
		return
	}
	vals := k.vals(ev, ti)
	e := k.t.lookup(en.hash.sum(vals), vals)
	if e == nil {
		return
	}
	i, _ := slices.BinarySearch(e.s.fails, t)
	e.s.fails = slices.Insert(e.s.fails, i, t)
	cut := sort.Search(len(e.s.fails), func(i int) bool { return e.s.fails[i] >= en.watermark()-k.r.size })
	e.s.fails = e.s.fails[cut:]
	if len(e.s.fails) > 64 {
		e.s.fails = e.s.fails[len(e.s.fails)-64:]
	}
	k.evalFailure(en, e, t, action{ti.tool, ti.action, ti.target})
}

func (k *retryBurst) eval(en *Engine, e *entry[retryState], t int64, what action) {
	k.evalSpan(en, e, e.s.win.at(t, k.r), t, what)
}

// evalFailure evaluates, when a denial or failure at ft arrives, the
// windows whose threshold it lowers: those holding ft and an attempt after
// it. Results come after their attempts, often batches later and after
// further attempts, so the window ending at the newest attempt may no
// longer hold ft; the alert still goes out with the batch that carries the
// failure.
func (k *retryBurst) evalFailure(en *Engine, e *entry[retryState], ft int64, what action) {
	w, size := e.s.win, k.r.size
	i := sort.Search(len(w), func(i int) bool { return w[i].t > ft }) // the first attempt after ft
	if i == len(w) {
		return
	}
	var best span
	if k.r.tumbling {
		if best = w.tumblingAt(ft, size); best.hi <= i {
			return // no attempt after ft in its slot
		}
	} else {
		// The windows (x-size, x] with x an attempt in (ft, ft+size); of
		// those ending at the same attempt time the one with all of them.
		lo := sort.Search(len(w), func(j int) bool { return w[j].t > w[i].t-size })
		for j := i; j < len(w) && w[j].t < ft+size; {
			end := w[j].t
			hi := j + 1
			for hi < len(w) && w[hi].t == end {
				hi++
			}
			for lo < len(w) && w[lo].t <= end-size {
				lo++
			}
			if hi-lo > best.count() {
				best = span{lo: lo, hi: hi, start: end - size, end: end}
			}
			j = hi
		}
	}
	if best.count() > 0 {
		k.evalSpan(en, e, best, w[best.hi-1].t, what)
	}
}

// evalSpan fires if the attempts of sp reach the threshold, or the lower
// one after a failure; at is the event time the firing is stamped with.
func (k *retryBurst) evalSpan(en *Engine, e *entry[retryState], sp span, at int64, what action) {
	n := sp.count()
	if n == 0 {
		return
	}
	thr, after := k.r.Threshold, ""
	if k.r.AfterFailureThreshold > 0 && n >= k.r.AfterFailureThreshold {
		// A denial or failure in the window that at least one attempt
		// followed: the agent is retrying, not just busy.
		lastAttempt := e.s.win[sp.hi-1].t
		for _, ft := range e.s.fails {
			if ft >= sp.start && ft < lastAttempt {
				thr, after = k.r.AfterFailureThreshold, " after a denial or failure"
				break
			}
		}
	}
	if n < thr {
		return
	}
	sum := fmt.Sprintf("%s attempted %s %d times in %s%s (threshold %d)", e.agent, what.String(), n, fmtDur(k.r.size), after, thr)
	en.fire(k.r, k.firing(e, at, sp, e.s.win, float64(n), float64(thr), sum))
}

// ---- out_of_hours: consequential actions outside business hours.

type oohState struct{ win window }

type outOfHours struct {
	base[oohState]
	unknownCalendar uint64
}

func newOutOfHours(r *rule, lim limits) *outOfHours {
	k := &outOfHours{}
	k.init(r, lim)
	return k
}

func (k *outOfHours) horizon() int64  { return k.r.size }
func (k *outOfHours) expire(wm int64) { k.t.expire(wm - k.r.size) }

func (k *outOfHours) observe(en *Engine, ev *schemas.Event, ti *traceInfo, late bool) {
	in := ev.Intent
	if in == nil || !k.r.scope.match(ev, in.ActionClass) {
		return
	}
	c := k.r.Consequential
	if !(c.MinTier > 0 && int(ev.Tier) >= c.MinTier) && !k.r.consClasses[in.ActionClass] {
		return
	}
	cal := k.r.rs.calendarFor(k.r.CalendarBy, ev.Agent.Team, ev.RequestedBy)
	if cal == nil {
		k.unknownCalendar++
		return
	}
	if cal.open(ev.Time) {
		return
	}
	t := ev.Time.UnixMicro()
	e := k.group(en, ev, ti, t)
	lt := ev.Time.In(cal.loc)
	who := ev.RequestedBy
	if who == "" {
		who = "no named requester"
	}
	sum := fmt.Sprintf("%s ran tier %d %s for %s at %s %s, outside %s hours", ev.Agent.ID, ev.Tier,
		actionName(in.Tool, in.Action, in.Target), who, lt.Format("Mon 2006-01-02 15:04"), cal.loc, cal.name)
	if late {
		k.late(e)
		if k.r.Threshold == 1 {
			// One action is the whole finding: lateness cannot change it.
			f := &firing{vals: e.vals, team: e.team, agent: e.agent, at: t, start: t, end: t, observed: 1, threshold: 1,
				ids: []string{ev.EventID}, late: e.late, summary: sum}
			en.fire(k.r, f)
		}
		return
	}
	if !k.addStamp(en, &e.s.win, t, ev.EventID) {
		return
	}
	sp := e.s.win.at(t, k.r)
	if n := sp.count(); n >= k.r.Threshold {
		if n > 1 {
			sum += fmt.Sprintf("; %d such actions in %s", n, fmtDur(k.r.size))
		}
		en.fire(k.r, k.firing(e, t, sp, e.s.win, float64(n), float64(k.r.Threshold), sum))
	}
}

// ---- denial_spike: denials above an absolute threshold and above k times
// the group's own trailing baseline.

type bucket struct {
	idx int64 // floor(t / window size)
	n   uint32
}

type denialState struct {
	win  window
	base []bucket // denials per window-sized bucket, sparse, ascending
}

type denialSpike struct{ base[denialState] }

func newDenialSpike(r *rule, lim limits) *denialSpike {
	k := &denialSpike{}
	k.init(r, lim)
	return k
}

func (k *denialSpike) horizon() int64  { return k.r.size * (k.r.baseBuckets + 2) }
func (k *denialSpike) expire(wm int64) { k.t.expire(wm - k.horizon()) }

func (k *denialSpike) observe(en *Engine, ev *schemas.Event, ti *traceInfo, late bool) {
	d := ev.Decision
	if d == nil || d.Outcome != schemas.OutcomeDeny || !k.r.scope.match(ev, classOf(ev, ti)) {
		return
	}
	t := ev.Time.UnixMicro()
	e := k.group(en, ev, ti, t)
	if late {
		k.late(e)
		return
	}
	if !k.addStamp(en, &e.s.win, t, ev.EventID) {
		return
	}
	size, nb := k.r.size, k.r.baseBuckets
	bi := floorDiv(t, size)
	i := sort.Search(len(e.s.base), func(i int) bool { return e.s.base[i].idx >= bi })
	if i < len(e.s.base) && e.s.base[i].idx == bi {
		e.s.base[i].n++
	} else {
		e.s.base = slices.Insert(e.s.base, i, bucket{bi, 1})
	}
	oldest := floorDiv(en.watermark(), size) - nb - 2
	cut := sort.Search(len(e.s.base), func(i int) bool { return e.s.base[i].idx >= oldest })
	e.s.base = e.s.base[cut:]

	sp := e.s.win.at(t, k.r)
	n := sp.count()
	k0 := floorDiv(sp.start, size)
	var sum uint64
	for _, b := range e.s.base {
		if b.idx >= k0-nb && b.idx < k0 {
			sum += uint64(b.n)
		}
	}
	mean := float64(sum) / float64(nb)
	rel := k.r.Factor * mean
	if n < k.r.Threshold || float64(n) < rel {
		return
	}
	thr := max(float64(k.r.Threshold), rel)
	s := fmt.Sprintf("%s was denied %d times in %s (threshold %d, and %.4g × its baseline of %.3g per %s over %s)",
		groupKey(k.r.dims, e.vals, ""), n, fmtDur(size), k.r.Threshold, k.r.Factor, mean, fmtDur(size), fmtDur(k.r.Baseline.Std().Microseconds()))
	en.fire(k.r, k.firing(e, t, sp, e.s.win, float64(n), thr, s))
}

// ---- first_use: an agent uses a tool or action it has not used within the
// history.

type fuItem struct {
	a, b string // tool; tool and action; or action class
	last int64  // µs
}

type fuState struct {
	first int64  // first event of the agent seen, µs
	n     uint64 // intents seen
	items []fuItem
}

type firstUse struct{ base[fuState] }

// maxItems bounds the items remembered per agent.
const maxItems = 1024

func newFirstUse(r *rule, lim limits) *firstUse {
	k := &firstUse{}
	k.init(r, lim)
	return k
}

func (k *firstUse) horizon() int64  { return k.r.History.Std().Microseconds() }
func (k *firstUse) expire(wm int64) { k.t.expire(wm - k.horizon()) }

func (k *firstUse) item(tool, action, class string) (string, string) {
	switch k.r.Item {
	case itemTool:
		return tool, ""
	case itemActionClass:
		return class, ""
	}
	return tool, action
}

func itemLabel(a, b string) string {
	if b == "" {
		return a
	}
	return a + "." + b
}

func (k *firstUse) observe(en *Engine, ev *schemas.Event, ti *traceInfo, late bool) {
	in := ev.Intent
	if in == nil || en.restoring || !k.r.scope.matchWho(ev) {
		return // a restore seeds first_use from an aggregate query instead
	}
	t := ev.Time.UnixMicro()
	e := k.group(en, ev, ti, t)
	if e.s.first == 0 || t < e.s.first {
		e.s.first = t
	}
	if !k.r.scope.matchWhat(ev, in.ActionClass) {
		e.s.n++ // out of scope, but part of the agent's track record
		return
	}
	a, b := k.item(en.strs.get(in.Tool), en.strs.get(in.Action), en.strs.get(in.ActionClass))
	hist := k.horizon()
	idx := -1
	for i := range e.s.items {
		if e.s.items[i].a == a && e.s.items[i].b == b {
			idx = i
			break
		}
	}
	isNew := idx < 0 || e.s.items[idx].last < t-hist
	eligible := e.s.n >= uint64(k.r.MinAgentEvents) && (k.r.MinAgentAge == 0 || t-e.s.first >= k.r.MinAgentAge.Std().Microseconds())
	if isNew && eligible {
		since := "never used before"
		if idx >= 0 {
			since = "last used " + usTime(e.s.items[idx].last).Format("2006-01-02")
		}
		sum := fmt.Sprintf("%s used %s for the first time in %s (%s; %d earlier actions seen)", e.agent,
			itemLabel(a, b), formatDuration(k.r.History.Std()), since, e.s.n)
		en.fire(k.r, &firing{vals: e.vals, extraKey: "item=" + quoteIfNeeded(itemLabel(a, b)), team: e.team, agent: e.agent,
			at: t, start: t - hist, end: t, observed: 1, threshold: 1, ids: []string{ev.EventID}, late: e.late, summary: sum})
	}
	k.record(e, a, b, t, 1)
	_ = late // history outlives the lateness: a late first use is still a first use
}

func (k *firstUse) record(e *entry[fuState], a, b string, last int64, n uint64) {
	e.s.n += n
	for i := range e.s.items {
		if it := &e.s.items[i]; it.a == a && it.b == b {
			it.last = max(it.last, last)
			return
		}
	}
	if len(e.s.items) >= maxItems {
		// Forget the least recently used item.
		oldest := 0
		for i := range e.s.items {
			if e.s.items[i].last < e.s.items[oldest].last {
				oldest = i
			}
		}
		e.s.items = slices.Delete(e.s.items, oldest, oldest+1)
		k.c.truncated++
	}
	e.s.items = append(e.s.items, fuItem{a: a, b: b, last: last})
}

// seed records an agent's use of an item from history (restore).
func (k *firstUse) seed(en *Engine, agent, team string, tier int32, tool, action, class string, first, last int64, n uint64) {
	ev := schemas.Event{Agent: schemas.Agent{ID: agent, Team: team}, Tier: tier}
	if !k.r.scope.matchWho(&ev) {
		return
	}
	vals := k.vals(&ev, nil)
	e := k.t.get(en.hash.sum(vals), vals, en.strs.get(team), agent, last)
	if e.s.first == 0 || first < e.s.first {
		e.s.first = first
	}
	if !k.r.scope.matchWhat(&ev, class) {
		e.s.n += n
		return
	}
	a, b := k.item(en.strs.get(tool), en.strs.get(action), en.strs.get(class))
	k.record(e, a, b, last, n)
}

// ---- probing_after_deny: many distinct tools or targets tried shortly
// after a denial.

type try struct {
	t   int64
	seq uint64 // arrival order, which orders tries of equal time
	h   uint64 // hash of the item
	id  string
}

type probeState struct {
	denies window
	tries  []try
	seq    uint64 // the next try's
	dc     distinctCache
}

// addTry inserts tr in time order, after the tries of equal time, keeping
// the cache current, unless it is a redelivery. At max tries it drops the
// oldest first, or drops tr itself when tr would be the oldest.
func (s *probeState) addTry(tr try, max int) (added, dropped bool) {
	i := sort.Search(len(s.tries), func(i int) bool { return s.tries[i].t > tr.t })
	for j := i - 1; j >= 0 && s.tries[j].t == tr.t; j-- {
		if s.tries[j].id == tr.id {
			return false, false // a redelivery
		}
	}
	if len(s.tries) >= max {
		if i == 0 {
			return false, true
		}
		if s.dc.in(s.tries[0].t) {
			s.dc.leave(s.tries, 0)
		}
		s.tries = s.tries[1:]
		i--
		dropped = true
	}
	tr.seq = s.seq
	s.seq++
	s.tries = slices.Insert(s.tries, i, tr)
	if s.dc.in(tr.t) {
		s.dc.add(tr)
	}
	return true, dropped
}

// probeCache turns distinctCache on; tests turn it off to compare.
var probeCache = true

type probing struct {
	base[probeState]
	seen  map[uint64]struct{}
	items [2]string
}

func newProbing(r *rule, lim limits) *probing {
	k := &probing{seen: map[uint64]struct{}{}}
	k.init(r, lim)
	return k
}

func (k *probing) horizon() int64  { return k.r.size }
func (k *probing) expire(wm int64) { k.t.expire(wm - 2*k.r.size) }

func (k *probing) itemHash(en *Engine, tool, action, target, class string) uint64 {
	v := k.items[:2]
	switch k.r.Item {
	case itemTool:
		v[0], v[1] = tool, ""
	case itemToolAction:
		v[0], v[1] = tool, action
	case itemActionClass:
		v[0], v[1] = class, ""
	default:
		v[0], v[1] = tool, target
	}
	return en.hash.sum(v)
}

func (k *probing) trim(en *Engine, s *probeState) {
	cutoff := en.watermark() - 2*k.r.size
	s.denies.trim(cutoff)
	s.trimTries(cutoff)
}

// trimTries drops the tries before cutoff.
func (s *probeState) trimTries(cutoff int64) {
	i := sort.Search(len(s.tries), func(i int) bool { return s.tries[i].t >= cutoff })
	if i > 0 {
		// A dropped try of the counted window leaves the cache stale:
		// count afresh next time. (That happens only once the counted
		// denial is older than the cutoff too, and was just trimmed.)
		if s.dc.valid && s.tries[i-1].t > s.dc.dt {
			s.dc.reset()
		}
		// Dropping the front by slicing, not copying the rest down on
		// every try: appends reallocate once the array's end is reached
		// and copy only the tries kept, so each try is copied O(1) times.
		// The dropped ones are cleared so their ids are not kept alive.
		clear(s.tries[:i])
		s.tries = s.tries[i:]
	}
}

func (k *probing) observe(en *Engine, ev *schemas.Event, ti *traceInfo, late bool) {
	t := ev.Time.UnixMicro()
	switch {
	case ev.Decision != nil && ev.Decision.Outcome == schemas.OutcomeDeny:
		if !k.r.scope.match(ev, classOf(ev, ti)) {
			return
		}
		e := k.group(en, ev, ti, t)
		if late {
			k.late(e)
			return
		}
		k.trim(en, &e.s)
		if added, _ := e.s.denies.add(t, ev.EventID, k.lim.maxEvents); added {
			k.eval(en, e, len(e.s.denies)-1-countAfter(e.s.denies, t), t)
		}
	case ev.Intent != nil:
		in := ev.Intent
		if !k.r.scope.match(ev, in.ActionClass) {
			return
		}
		e := k.group(en, ev, ti, t)
		if late {
			k.late(e)
			return
		}
		k.trim(en, &e.s)
		added, dropped := e.s.addTry(try{t: t, h: k.itemHash(en, in.Tool, in.Action, in.Target, in.ActionClass), id: ev.EventID}, k.lim.maxEvents)
		if dropped {
			k.c.truncated++
		}
		if !added {
			return
		}
		// Of the denials whose window holds t, the earliest one's window
		// holds every try the later ones' do up to its end: while no try
		// lies beyond that end it alone has the highest distinct count, so
		// only it is evaluated (evaluating each one cost O(denials x tries)
		// per event on a busy agent). Tries beyond it (arrived before this
		// one, out of order) may fill a later denial's window instead: then
		// each window holding t is counted, and the fullest fires, in this
		// event's batch.
		first := -1
		for di := range e.s.denies {
			if d := e.s.denies[di].t; d < t && t <= d+k.r.size {
				first = di
				break
			}
		}
		if first < 0 {
			return
		}
		best, n, ids := first, 0, []string(nil)
		if end := e.s.denies[first].t + k.r.size; e.s.tries[len(e.s.tries)-1].t <= end {
			n, ids = k.distinctLatest(e, first)
		} else {
			for di := first; di < len(e.s.denies) && e.s.denies[di].t < t; di++ {
				if c, cids := k.distinct(en, e, di); c > n {
					best, n, ids = di, c, cids
				}
			}
		}
		k.fire(en, e, best, n, ids, t)
	}
}

// countAfter counts window events after t.
func countAfter(w window, t int64) int {
	return len(w) - sort.Search(len(w), func(i int) bool { return w[i].t > t })
}

// eval counts the distinct items tried in (deny, deny+size] and fires
// at the threshold.
func (k *probing) eval(en *Engine, e *entry[probeState], di int, at int64) {
	n, ids := k.distinct(en, e, di)
	k.fire(en, e, di, n, ids, at)
}

// distinct counts the distinct items tried in (deny, deny+size], and lists
// the deny and the first try of each, up to max_event_ids.
func (k *probing) distinct(en *Engine, e *entry[probeState], di int) (int, []string) {
	clear(k.seen)
	ids := k.count(e, e.s.denies[di], k.seen)
	return len(k.seen), ids
}

// count adds the items tried in the window of denial d to seen, and
// returns the deny's id and the first try of each item, up to
// max_event_ids.
func (k *probing) count(e *entry[probeState], d stamp, seen map[uint64]struct{}) []string {
	ids := []string{d.id}
	tries := e.s.tries
	for _, tr := range tries[sort.Search(len(tries), func(i int) bool { return tries[i].t > d.t }):] {
		if tr.t > d.t+k.r.size {
			break
		}
		if _, ok := seen[tr.h]; !ok {
			seen[tr.h] = struct{}{}
			if len(ids) < k.lim.maxIDs {
				ids = append(ids, tr.id)
			}
		}
	}
	return ids
}

// distinctLatest is distinct for the denial di when no try lies beyond
// its window: from the cache, moved to that window.
func (k *probing) distinctLatest(e *entry[probeState], di int) (int, []string) {
	if !probeCache {
		return k.distinct(nil, e, di)
	}
	return e.s.dc.count(e.s.tries, e.s.denies[di], k.r.size, k.lim.maxIDs)
}

func (k *probing) fire(en *Engine, e *entry[probeState], di, n int, ids []string, at int64) {
	if n < k.r.Threshold {
		return
	}
	d := e.s.denies[di]
	sum := fmt.Sprintf("%s tried %d distinct %s within %s of a denial at %s (threshold %d)",
		e.agent, n, k.r.Item, fmtDur(k.r.size), usTime(d.t).Format("15:04:05"), k.r.Threshold)
	en.fire(k.r, &firing{vals: e.vals, team: e.team, agent: e.agent, at: at, start: d.t, end: d.t + k.r.size,
		observed: float64(n), threshold: float64(k.r.Threshold), ids: ids, late: e.late, summary: sum})
}

// ---- approval_fatigue: one approver deciding too many approvals in a
// window, or approving faster than a human can read.

type fatigueState struct{ win window }

type fatigue struct {
	base[fatigueState]
	speed   bool
	minRead int64
}

func newFatigue(r *rule, lim limits) *fatigue {
	k := &fatigue{speed: r.Measure == "speed", minRead: r.MinReadTime.Std().Microseconds()}
	k.init(r, lim)
	return k
}

func (k *fatigue) horizon() int64 {
	if k.speed {
		return k.r.size + 3600e6 // the request may be an hour older than the approval
	}
	return k.r.size
}
func (k *fatigue) expire(wm int64) { k.t.expire(wm - k.r.size) }

func (k *fatigue) observe(en *Engine, ev *schemas.Event, ti *traceInfo, late bool) {
	ap := ev.Approval
	if ap == nil || ap.Approver == "" {
		return
	}
	kind := ap.ApproverKind
	if kind == "" {
		kind = schemas.PrincipalHuman
	}
	if !k.r.approverKinds[kind] || !k.r.scope.match(ev, classOf(ev, ti)) {
		return
	}
	t := ev.Time.UnixMicro()
	var read int64
	if k.speed {
		if ap.Status != schemas.ApprovalGranted || ti == nil || ti.requestAt == 0 {
			return
		}
		if read = t - ti.requestAt; read < 0 || read >= k.minRead {
			return
		}
	} else if ap.Status != schemas.ApprovalGranted && ap.Status != schemas.ApprovalRejected {
		return
	}
	e := k.group(en, ev, ti, t)
	if late {
		k.late(e)
		return
	}
	if !k.addStamp(en, &e.s.win, t, ev.EventID) {
		return
	}
	sp := e.s.win.at(t, k.r)
	n := sp.count()
	if n < k.r.Threshold {
		return
	}
	var sum string
	if k.speed {
		sum = fmt.Sprintf("%s granted %d approvals less than %s after they were requested, within %s (latest after %s; threshold %d)",
			ap.Approver, n, fmtDur(k.minRead), fmtDur(k.r.size), fmtDur(read), k.r.Threshold)
	} else {
		sum = fmt.Sprintf("%s decided %d approvals within %s (threshold %d)", ap.Approver, n, fmtDur(k.r.size), k.r.Threshold)
	}
	en.fire(k.r, k.firing(e, t, sp, e.s.win, float64(n), float64(k.r.Threshold), sum))
}
