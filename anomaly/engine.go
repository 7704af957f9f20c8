package anomaly

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// Alert is a rule's finding about one group (an agent, an approver, ...).
// While the group keeps firing within the rule's suppression period the
// alert is updated, keeping its ID and raising its Version.
type Alert struct {
	ID       string `json:"alert_id"`
	Version  uint64 `json:"version"`
	Rule     string `json:"rule"`
	Kind     string `json:"kind"`
	Severity string `json:"severity"`
	Team     string `json:"team"`     // the group's team, or that of the event that raised it
	AgentID  string `json:"agent_id"` // the group's agent, or that of the event that raised it
	// GroupKey names the group: "agent=billing-bot, action_digest=…".
	GroupKey    string    `json:"group_key"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	// Observed is the peak value (events in the window, distinct items,
	// ...); Threshold is what it was compared with at that peak.
	Observed  float64 `json:"observed"`
	Threshold float64 `json:"threshold"`
	// EventIDs are the events that made the alert, at most
	// Config.MaxEventIDs, oldest first.
	EventIDs      []string  `json:"event_ids"`
	FirstSeen     time.Time `json:"first_seen"`     // event time of the first firing
	LastSeen      time.Time `json:"last_seen"`      // event time of the latest firing
	RaisedAt      time.Time `json:"raised_at"`      // stream time (watermark clock) when raised
	SuppressUntil time.Time `json:"suppress_until"` // firings before this update the alert
	LateEvents    uint64    `json:"late_events"`    // the group's events that came too late to count
	Summary       string    `json:"summary"`
}

// firing is one rule evaluation that met its threshold.
type firing struct {
	vals                []string // group values, in the rule's dims order
	extraKey            string   // appended to the group key (first_use: the item)
	team, agent         string
	at                  int64 // event time of the event that fired it, µs
	start, end          int64 // window, µs
	observed, threshold float64
	ids                 []string
	late                uint32
	summary             string
}

// evaluator is one compiled rule with its state.
type evaluator interface {
	rule() *rule
	// observe evaluates one event; ti is what the engine knows of its
	// trace (nil when nothing), late whether it is behind the watermark.
	observe(en *Engine, ev *schemas.Event, ti *traceInfo, late bool)
	// expire forgets state older than the watermark can reach.
	expire(wm int64)
	// horizon is how far behind the watermark the rule's state reaches.
	horizon() int64
	counters() *ruleCounters
}

// ruleCounters are a rule's running totals, read by the Processor for its
// metrics.
type ruleCounters struct {
	late, truncated uint64
	groups          func() int
	evicted         func() uint64
}

// rule is a compiled, enabled rule.
type rule struct {
	Rule
	rs            *RuleSet
	idx           int
	dims          []string
	size          int64 // window, µs
	tumbling      bool
	suppress      int64 // µs
	scope         scope
	consClasses   map[string]bool
	baseBuckets   int64
	approverKinds map[string]bool
}

// Engine evaluates a rule set over events in event time. It is not safe
// for concurrent use.
type Engine struct {
	rs       *RuleSet
	lim      limits
	lateness int64
	maxSeen  int64 // newest event time seen, µs, clamped by ceiling
	ceiling  int64 // the host's clock, µs (0: none)
	traces   *traceIndex
	strs     *interner
	hash     hasher
	evals    []evaluator
	open     []map[string]*Alert // per rule: open alerts by group key
	pending  []Alert             // raised or updated by the event being observed
	observed uint64

	restoring  bool
	restoreRef int64
}

// NewEngine builds an engine for rs with the bounds of cfg (Defaults are
// applied to a copy).
func NewEngine(rs *RuleSet, cfg Config) (*Engine, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("anomaly: %w", err)
	}
	return newEngine(rs, cfg.limits())
}

func newEngine(rs *RuleSet, lim limits) (*Engine, error) {
	en := &Engine{
		rs: rs, lim: lim, lateness: rs.Lateness().Microseconds(),
		traces: newTraceIndex(lim.maxTraces),
		strs:   &interner{m: map[string]string{}, max: 10_000},
	}
	for _, r := range rs.compiled {
		if r.Threshold > lim.maxEvents || r.AfterFailureThreshold > lim.maxEvents {
			return nil, fmt.Errorf("anomaly: rule %s: threshold %d exceeds max_events_per_group %d", r.Name, r.Threshold, lim.maxEvents)
		}
		en.evals = append(en.evals, newEvaluator(r, lim))
		en.open = append(en.open, map[string]*Alert{})
	}
	return en, nil
}

func newEvaluator(r *rule, lim limits) evaluator {
	switch r.Kind {
	case KindRetryBurst:
		return newRetryBurst(r, lim)
	case KindOutOfHours:
		return newOutOfHours(r, lim)
	case KindDenialSpike:
		return newDenialSpike(r, lim)
	case KindFirstUse:
		return newFirstUse(r, lim)
	case KindProbingAfterDeny:
		return newProbing(r, lim)
	case KindApprovalFatigue:
		return newFatigue(r, lim)
	}
	panic("anomaly: unknown kind " + r.Kind)
}

// Rules returns the engine's rule set.
func (en *Engine) Rules() *RuleSet { return en.rs }

// Watermark is the newest event time seen minus the allowed lateness:
// events before it are late.
func (en *Engine) Watermark() time.Time {
	if en.maxSeen == 0 {
		return time.Time{}
	}
	return time.UnixMicro(en.maxSeen - en.lateness).UTC()
}

func (en *Engine) watermark() int64 {
	if en.maxSeen == 0 {
		return minTime
	}
	return en.maxSeen - en.lateness
}

const minTime = -1 << 62

// Observe evaluates one event and returns the alerts it raised or updated
// (nil, mostly).
func (en *Engine) Observe(ev *schemas.Event) []Alert {
	t := ev.Time.UnixMicro()
	clamped := t
	if en.ceiling != 0 && clamped > en.ceiling {
		clamped = en.ceiling // a producer's clock ahead of ours does not move time
	}
	if clamped > en.maxSeen {
		en.maxSeen = clamped
	}
	late := t < en.watermark()
	ti := en.traces.update(ev, t, en.strs)
	var out []Alert
	for _, k := range en.evals {
		if en.restoring && t < en.restoreRef-en.lateness-k.horizon() {
			continue
		}
		k.observe(en, ev, ti, late)
	}
	if len(en.pending) > 0 {
		out = slices.Clone(en.pending)
		en.pending = en.pending[:0]
	}
	en.observed++
	if en.observed%4096 == 0 {
		en.expire()
	}
	return out
}

// Advance tells the engine the host's clock: event times after now do not
// move the watermark. It also forgets state the watermark has passed.
func (en *Engine) Advance(now time.Time) {
	if c := now.UnixMicro(); c > en.ceiling {
		en.ceiling = c
	}
	en.expire()
}

func (en *Engine) expire() {
	wm := en.watermark()
	if wm == minTime {
		return
	}
	for i, k := range en.evals {
		k.expire(wm)
		for key, a := range en.open[i] {
			if a.SuppressUntil.UnixMicro() < wm {
				delete(en.open[i], key)
			}
		}
	}
}

// groupKey renders group values as "dim=value, dim=value".
func groupKey(dims, vals []string, extra string) string {
	var b strings.Builder
	for i, d := range dims {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(d)
		b.WriteByte('=')
		b.WriteString(quoteIfNeeded(vals[i]))
	}
	if extra != "" {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(extra)
	}
	return b.String()
}

func quoteIfNeeded(v string) string {
	if v == "" || strings.ContainsAny(v, ",=\" \t\n") {
		return strconv.Quote(v)
	}
	return v
}

// fire raises or updates the alert of a rule and group.
func (en *Engine) fire(r *rule, f *firing) {
	if en.restoring {
		return
	}
	key := groupKey(r.dims, f.vals, f.extraKey)
	open := en.open[r.idx]
	a := open[key]
	if a != nil && f.at <= a.SuppressUntil.UnixMicro() {
		a.Version++
		if f.observed > a.Observed {
			a.Observed, a.Threshold, a.Summary = f.observed, f.threshold, f.summary
		}
		if s := time.UnixMicro(f.start).UTC(); s.Before(a.WindowStart) {
			a.WindowStart = s
		}
		if e := time.UnixMicro(f.end).UTC(); e.After(a.WindowEnd) {
			a.WindowEnd = e
		}
		if at := time.UnixMicro(f.at).UTC(); at.After(a.LastSeen) {
			a.LastSeen = at
		} else if at.Before(a.FirstSeen) {
			a.FirstSeen = at
		}
		for _, id := range f.ids {
			if len(a.EventIDs) >= en.lim.maxIDs {
				break
			}
			if !slices.Contains(a.EventIDs, id) {
				a.EventIDs = append(a.EventIDs, id)
			}
		}
		if until := time.UnixMicro(f.at + r.suppress).UTC(); until.After(a.SuppressUntil) {
			a.SuppressUntil = until
		}
		a.LateEvents = uint64(f.late)
	} else {
		at := time.UnixMicro(f.at).UTC()
		ids := f.ids
		if len(ids) > en.lim.maxIDs {
			ids = ids[:en.lim.maxIDs]
		}
		a = &Alert{
			ID:      alertID(r.Name, key, f.at, ids),
			Version: 1, Rule: r.Name, Kind: r.Kind, Severity: r.Severity,
			Team: f.team, AgentID: f.agent, GroupKey: key,
			WindowStart: time.UnixMicro(f.start).UTC(), WindowEnd: time.UnixMicro(f.end).UTC(),
			Observed: f.observed, Threshold: f.threshold, EventIDs: slices.Clone(ids),
			FirstSeen: at, LastSeen: at, RaisedAt: usTime(en.maxSeen),
			SuppressUntil: time.UnixMicro(f.at + r.suppress).UTC(),
			LateEvents:    uint64(f.late), Summary: f.summary,
		}
		open[key] = a
	}
	out := *a
	out.EventIDs = slices.Clone(a.EventIDs)
	en.pending = append(en.pending, out)
}

// alertID is deterministic: the same events raise the same alert id, so a
// redone batch updates its alert instead of raising a second one.
func alertID(rule, key string, at int64, ids []string) string {
	h := sha256.New()
	h.Write([]byte(rule))
	h.Write([]byte{0})
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(at, 10)))
	for _, id := range ids {
		h.Write([]byte{0})
		h.Write([]byte(id))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// OpenAlerts returns the alerts still open (within their suppression
// period), for tests and the restart path.
func (en *Engine) OpenAlerts() []Alert {
	var out []Alert
	for _, m := range en.open {
		for _, a := range m {
			out = append(out, *a)
		}
	}
	slices.SortFunc(out, func(a, b Alert) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// restoreAlert puts an alert read back from the alerts table among the open
// ones, so that the group's next firing updates it.
func (en *Engine) restoreAlert(a Alert) bool {
	for i, k := range en.evals {
		if k.rule().Name == a.Rule {
			if cur := en.open[i][a.GroupKey]; cur == nil || cur.Version < a.Version {
				en.open[i][a.GroupKey] = &a
			}
			return true
		}
	}
	return false
}

// Stats are the engine's running totals.
type Stats struct {
	Observed        uint64
	TraceEvictions  uint64
	Rules           []RuleStats
	WatermarkMicros int64
}

// RuleStats are one rule's running totals and state size.
type RuleStats struct {
	Rule                     string
	Groups                   int
	Late, Evicted, Truncated uint64
	OpenAlerts               int
}

// Stats returns the running totals.
func (en *Engine) Stats() Stats {
	st := Stats{Observed: en.observed, TraceEvictions: en.traces.evictions, WatermarkMicros: en.watermark()}
	for i, k := range en.evals {
		c := k.counters()
		st.Rules = append(st.Rules, RuleStats{Rule: k.rule().Name, Groups: c.groups(), Late: c.late,
			Evicted: c.evicted(), Truncated: c.truncated, OpenAlerts: len(en.open[i])})
	}
	return st
}

// dim values of an event; intent fields of a non-intent event come from its
// trace.
func dimValue(dim string, ev *schemas.Event, ti *traceInfo) string {
	switch dim {
	case dimAgent:
		return ev.Agent.ID
	case dimTeam:
		return ev.Agent.Team
	case dimRequestedBy:
		return ev.RequestedBy
	case dimTier:
		return tierString(ev.Tier)
	case dimPolicyID:
		if ev.Decision != nil {
			return ev.Decision.PolicyID
		}
		return ""
	case dimApprover:
		if ev.Approval != nil {
			return ev.Approval.Approver
		}
		return ""
	}
	in := ev.Intent
	if in == nil {
		if ti == nil {
			return ""
		}
		switch dim {
		case dimTool:
			return ti.tool
		case dimAction:
			return ti.action
		case dimTarget:
			return ti.target
		case dimActionDigest:
			return ti.digest
		case dimActionClass:
			return ti.class
		}
		return ""
	}
	switch dim {
	case dimTool:
		return in.Tool
	case dimAction:
		return in.Action
	case dimTarget:
		return in.Target
	case dimActionDigest:
		return in.ActionDigest
	case dimActionClass:
		return in.ActionClass
	}
	return ""
}

var tierStrings = [...]string{"0", "1", "2", "3"}

func tierString(t int32) string {
	if t >= 0 && int(t) < len(tierStrings) {
		return tierStrings[t]
	}
	return strconv.Itoa(int(t))
}

// classOf is the action class of the event's action, "" when unknown.
func classOf(ev *schemas.Event, ti *traceInfo) string {
	if ev.Intent != nil {
		return ev.Intent.ActionClass
	}
	if ti != nil {
		return ti.class
	}
	return ""
}

func usTime(us int64) time.Time { return time.UnixMicro(us).UTC() }

func fmtDur(us int64) string { return formatDuration(time.Duration(us) * time.Microsecond) }
