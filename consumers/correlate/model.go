package correlate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// Policies answers the one question that needs more than the trace itself:
// was a newer version of a policy already in use when a decision was made?
type Policies interface {
	// Newer returns the highest version of policyID above version that was
	// first seen strictly before at, if any.
	Newer(policyID string, version int64, at time.Time) (Sighting, bool)
}

// Sighting is a policy version's first appearance in a decision.
type Sighting struct {
	Version   int64
	FirstSeen time.Time
	EventID   string
}

// Correlation is what Correlate derives from a trace's events.
type Correlation struct {
	Trace      Trace
	Violations []Violation // at most one per kind, in Kinds() order
}

// Correlate computes the trace record and violations of one trace from its
// events. The events may come in any order and repeat (same event_id); the
// answer is the same for every order and every repetition. pol may be nil:
// stale-policy violations are then not looked for.
//
// Actions within a trace are told apart by span_id: the intent, decision and
// result of one action share it; events without a span_id belong to the
// whole trace and stand in for a span's missing intent or decision. An
// approval covers a result when its action_digest equals the result's, or
// when its scope is time_window; a bundle approval is several approval
// events sharing one approval_id, one per covered digest.
func Correlate(events []schemas.Event, pol Policies) Correlation {
	ptrs := make([]*schemas.Event, len(events))
	for i := range events {
		ptrs[i] = &events[i]
	}
	return correlate(ptrs, pol)
}

// correlate is Correlate over pointers to the events, which it reorders
// (not the events) and does not keep; the events are only read.
func correlate(ptrs []*schemas.Event, pol Policies) Correlation {
	evs := canonical(ptrs)
	if len(evs) == 0 {
		return Correlation{}
	}
	m := newModel(evs)
	var c Correlation
	c.Trace = m.record()
	c.Violations = m.violations(pol)
	return c
}

// smallTrace bounds the traces whose few events, spans and digests are
// looked up by scanning rather than through a map; the answers are the
// same (a variable so the tests can force either way).
var smallTrace = 16

// canonical returns the events each once (by event_id), ordered by
// (event_time, event_id), reordering ptrs in place. Copies of one event_id
// are meant to be identical; if they are not, the one first in
// (event_time, type) order is kept, so the choice does not depend on
// delivery order either.
func canonical(ptrs []*schemas.Event) []*schemas.Event {
	out := ptrs
	if !distinctIDs(ptrs) {
		slices.SortStableFunc(ptrs, func(a, b *schemas.Event) int {
			if c := strings.Compare(a.EventID, b.EventID); c != 0 {
				return c
			}
			if c := a.Time.Compare(b.Time); c != 0 {
				return c
			}
			return strings.Compare(string(a.Type), string(b.Type))
		})
		out = ptrs[:0]
		for i, e := range ptrs {
			if i > 0 && e.EventID == ptrs[i-1].EventID {
				continue
			}
			out = append(out, e)
		}
	}
	// The event ids are distinct now: (event_time, event_id) is a total
	// order, so an unstable sort gives the one answer.
	if !slices.IsSortedFunc(out, compareEvents) {
		slices.SortFunc(out, compareEvents)
	}
	return out
}

// distinctIDs reports, for a small trace, that no two events share an
// event_id; false means "maybe not".
func distinctIDs(evs []*schemas.Event) bool {
	if len(evs) > smallTrace {
		return false
	}
	for i := 1; i < len(evs); i++ {
		for j := 0; j < i; j++ {
			if evs[i].EventID == evs[j].EventID {
				return false
			}
		}
	}
	return true
}

// before orders events by (event_time, event_id).
func before(a, b *schemas.Event) bool { return compareEvents(a, b) < 0 }

func compareEvents(a, b *schemas.Event) int {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c
	}
	return strings.Compare(a.EventID, b.EventID)
}

// action is one span's events, each list in (event_time, event_id) order.
type action struct {
	span                                   string
	intents, decisions, approvals, results []*schemas.Event
	first                                  *schemas.Event
	n                                      [4]int32 // while the model is built: events per list
}

type model struct {
	evs     []*schemas.Event
	spans   []action         // every span, ordered by its first event
	spanIdx map[string]int32 // index into spans; nil for a small trace (scanned)
	actions []*action        // spans that are actions, ordered by their first event
	grants  []*schemas.Event
	// requests (lower-cased requested_by values of the trace) and agents
	// (its agent ids) are built on first use, for a large trace only.
	requests map[string]bool
	agents   map[string]bool
}

// span returns the action of a span id, or nil.
func (m *model) span(id string) *action {
	if m.spanIdx != nil {
		if i, ok := m.spanIdx[id]; ok {
			return &m.spans[i]
		}
		return nil
	}
	for i := range m.spans {
		if m.spans[i].span == id {
			return &m.spans[i]
		}
	}
	return nil
}

// list is the index of the per-action list an event goes to, or -1.
func list(e *schemas.Event) int {
	switch {
	case e.Intent != nil:
		return 0
	case e.Decision != nil:
		return 1
	case e.Approval != nil:
		return 2
	case e.Result != nil:
		return 3
	}
	return -1
}

func newModel(evs []*schemas.Event) *model {
	m := &model{evs: evs}
	// First pass: each event's span, and the length of each list, so the
	// lists are cut from one array.
	var buf [32]int32
	idx := buf[:0]
	if len(evs) > len(buf) {
		idx = make([]int32, 0, len(evs))
	}
	grants := 0
	m.spans = make([]action, 0, 1)
	for _, e := range evs {
		k := int32(-1)
		if m.spanIdx != nil {
			if i, ok := m.spanIdx[e.SpanID]; ok {
				k = i
			}
		} else {
			for i := range m.spans {
				if m.spans[i].span == e.SpanID {
					k = int32(i)
					break
				}
			}
		}
		if k < 0 {
			k = int32(len(m.spans))
			m.spans = append(m.spans, action{span: e.SpanID, first: e})
			if m.spanIdx != nil {
				m.spanIdx[e.SpanID] = k
			} else if len(m.spans) > smallTrace {
				m.spanIdx = make(map[string]int32, len(m.spans))
				for i := range m.spans {
					m.spanIdx[m.spans[i].span] = int32(i)
				}
			}
		}
		idx = append(idx, k)
		if l := list(e); l >= 0 {
			m.spans[k].n[l]++
		}
		if e.Approval != nil && e.Approval.Status == schemas.ApprovalGranted {
			grants++
		}
	}
	all := make([]*schemas.Event, len(evs)+grants)
	o := 0
	cut := func(n int32) []*schemas.Event {
		if n == 0 {
			return nil
		}
		s := all[o : o : o+int(n)]
		o += int(n)
		return s
	}
	m.grants = cut(int32(grants))
	for i := range m.spans {
		a := &m.spans[i]
		a.intents, a.decisions, a.approvals, a.results = cut(a.n[0]), cut(a.n[1]), cut(a.n[2]), cut(a.n[3])
	}
	for i, e := range evs {
		a := &m.spans[idx[i]]
		switch list(e) {
		case 0:
			a.intents = append(a.intents, e)
		case 1:
			a.decisions = append(a.decisions, e)
		case 2:
			a.approvals = append(a.approvals, e)
			if e.Approval.Status == schemas.ApprovalGranted {
				m.grants = append(m.grants, e)
			}
		case 3:
			a.results = append(a.results, e)
		}
	}
	// The span-less events are the trace's own: they are an action only if
	// they carry a result or nothing else is there.
	for i := range m.spans {
		a := &m.spans[i]
		hasBody := len(a.intents)+len(a.decisions)+len(a.results) > 0
		if a.span == "" && len(m.spans) > 1 && len(a.results) == 0 {
			hasBody = false
		}
		if hasBody {
			if m.actions == nil {
				m.actions = make([]*action, 0, len(m.spans))
			}
			m.actions = append(m.actions, a)
		}
	}
	return m
}

// isAgent reports whether id (not empty) is an agent id of the trace.
func (m *model) isAgent(id string) bool {
	if len(m.evs) <= smallTrace {
		for _, e := range m.evs {
			if e.Agent.ID == id {
				return true
			}
		}
		return false
	}
	if m.agents == nil {
		m.agents = map[string]bool{}
		for _, e := range m.evs {
			if e.Agent.ID != "" {
				m.agents[e.Agent.ID] = true
			}
		}
	}
	return m.agents[id]
}

// requested reports whether who, lower-cased and trimmed, is a requested_by
// value of the trace, compared the same way.
func (m *model) requested(who string) bool {
	norm := strings.ToLower(strings.TrimSpace(who))
	if len(m.evs) <= smallTrace {
		for _, e := range m.evs {
			if e.RequestedBy != "" && strings.ToLower(strings.TrimSpace(e.RequestedBy)) == norm {
				return true
			}
		}
		return false
	}
	if m.requests == nil {
		m.requests = map[string]bool{}
		for _, e := range m.evs {
			if e.RequestedBy != "" {
				m.requests[strings.ToLower(strings.TrimSpace(e.RequestedBy))] = true
			}
		}
	}
	return m.requests[norm]
}

// intents returns the action's intents, or the trace-level ones.
func (m *model) intents(a *action) []*schemas.Event {
	if len(a.intents) == 0 && a.span != "" {
		if t := m.span(""); t != nil {
			return t.intents
		}
	}
	return a.intents
}

func (m *model) decisions(a *action) []*schemas.Event {
	if len(a.decisions) == 0 && a.span != "" {
		if t := m.span(""); t != nil {
			return t.decisions
		}
	}
	return a.decisions
}

// governing returns the decision in force when r ran: the latest one at or
// before it, else (clocks disagree) the earliest one.
func (m *model) governing(a *action, r *schemas.Event) *schemas.Event {
	ds := m.decisions(a)
	var d *schemas.Event
	for _, x := range ds {
		if !x.Time.After(r.Time) {
			d = x
		}
	}
	if d == nil && len(ds) > 0 {
		d = ds[0]
	}
	return d
}

func (m *model) latestDecision(a *action) *schemas.Event {
	ds := m.decisions(a)
	if len(ds) == 0 {
		return nil
	}
	return ds[len(ds)-1]
}

func (m *model) intent(a *action) *schemas.Event {
	if is := m.intents(a); len(is) > 0 {
		return is[0]
	}
	return nil
}

// tier is the highest tier an action's events carry. It reads the
// envelope's tier only: the events table keeps that one, so a trace rebuilt
// from ClickHouse is judged exactly as one held in memory.
func (m *model) tier(a *action) int32 {
	t := int32(0)
	for _, list := range [][]*schemas.Event{m.intents(a), m.decisions(a), a.approvals, a.results} {
		for _, e := range list {
			t = max(t, e.Tier)
		}
	}
	return t
}

// approvalsAbout returns the trace's approval events about action a: in its
// span, or naming its intent's or a result's digest.
func (m *model) approvalsAbout(a *action) []*schemas.Event {
	var buf [8]string
	digests := buf[:0] // a set; a map when it grows past buf
	var large map[string]bool
	addDigest := func(d string) {
		switch {
		case large != nil:
			large[d] = true
		case len(digests) < len(buf):
			digests = append(digests, d)
		default:
			large = map[string]bool{d: true}
			for _, x := range digests {
				large[x] = true
			}
		}
	}
	if in := m.intent(a); in != nil && in.Intent.ActionDigest != "" {
		addDigest(in.Intent.ActionDigest)
	}
	for _, r := range a.results {
		if r.Result.ActionDigest != "" {
			addDigest(r.Result.ActionDigest)
		}
	}
	about := func(d string) bool {
		if large != nil {
			return large[d]
		}
		return slices.Contains(digests, d)
	}
	var out []*schemas.Event
	for _, e := range m.evs {
		if e.Approval == nil {
			continue
		}
		if (a.span != "" && e.SpanID == a.span) || about(e.Approval.ActionDigest) ||
			(a.span == "" && len(m.actions) == 1) {
			out = append(out, e)
		}
	}
	return out
}

// covers says how grant g covers result r: 2 by the same digest, 1 by a
// time window, 0 not at all.
func covers(g, r *schemas.Event) int {
	switch {
	case g.Approval.ActionDigest != "" && g.Approval.ActionDigest == r.Result.ActionDigest:
		return 2
	case g.Approval.Scope == schemas.ScopeTimeWindow:
		return 1
	}
	return 0
}

// usable returns the grant r ran under: one given at or before r that covers
// it, preferring the same digest, then the latest.
func (m *model) usable(r *schemas.Event) *schemas.Event {
	var best *schemas.Event
	bestHow := 0
	for _, g := range m.grants {
		if g.Time.After(r.Time) {
			continue
		}
		how := covers(g, r)
		if how == 0 {
			continue
		}
		if how > bestHow || (how == bestHow && before(best, g)) {
			best, bestHow = g, how
		}
	}
	return best
}

func approvalKey(g *schemas.Event) string {
	if g.Approval.ApprovalID != "" {
		return g.Approval.ApprovalID
	}
	return g.EventID
}

// instance is one occurrence of a violation, before one per kind is chosen.
type instance struct {
	kind     Kind
	deciding *schemas.Event
	evidence []*schemas.Event // the deciding event is appended last
	decision *schemas.Event   // for policy id and version, if any
	act      *action
	text     string
	absent   bool // rests on missing evidence
}

func (m *model) violations(pol Policies) []Violation {
	var ins []instance
	add := func(in instance) { ins = append(ins, in) }
	used := map[string][]*schemas.Event{} // approval key → executed results it covered
	scopes := map[string]string{}
	for _, a := range m.actions {
		in := m.intent(a)
		tier := m.tier(a)
		for _, r := range a.results {
			if !executed(r.Result) {
				continue
			}
			d := m.governing(a, r)
			if d == nil {
				add(instance{kind: KindNoPolicyDecision, deciding: r, evidence: opt(in), act: a, absent: true,
					text: fmt.Sprintf("%s executed at %s with no policy decision on record", describe(in, r), clock(r.Time))})
			}
			if d != nil && d.Decision.Outcome == schemas.OutcomeDeny {
				add(instance{kind: KindExecutedAfterDeny, deciding: r, evidence: append(opt(in), d), decision: d, act: a,
					text: fmt.Sprintf("%s executed at %s although %s denied it at %s%s", describe(in, r), clock(r.Time),
						policyName(d), clock(d.Time), reasonSuffix(d))})
				continue
			}
			required := tier >= schemas.TierHigh || (d != nil && d.Decision.Outcome == schemas.OutcomeRequireApproval)
			if g := m.usable(r); g != nil {
				key := approvalKey(g)
				used[key] = append(used[key], r)
				scopes[key] = g.Approval.Scope
				if x := g.Approval.ExpiresAt; x != nil && x.Before(r.Time) {
					add(instance{kind: KindApprovalOutOfScope, deciding: r, evidence: []*schemas.Event{g}, decision: d, act: a,
						text: fmt.Sprintf("%s executed at %s under approval %s that expired at %s", describe(in, r), clock(r.Time), key, clock(*x))})
				}
				continue
			}
			about := m.approvalsAbout(a)
			var grantedBefore, grantedAfter, refused []*schemas.Event
			for _, e := range about {
				switch {
				case e.Approval.Status == schemas.ApprovalGranted && !e.Time.After(r.Time):
					grantedBefore = append(grantedBefore, e)
				case e.Approval.Status == schemas.ApprovalGranted:
					grantedAfter = append(grantedAfter, e)
				case e.Approval.Status == schemas.ApprovalRejected || e.Approval.Status == schemas.ApprovalExpired:
					refused = append(refused, e)
				}
			}
			switch {
			case len(grantedBefore) > 0:
				g := grantedBefore[len(grantedBefore)-1]
				add(instance{kind: KindPayloadMismatch, deciding: r, evidence: append(opt(in), g), decision: d, act: a,
					text: fmt.Sprintf("%s executed at %s with a payload other than the one %s approved (approval %s)",
						describe(in, r), clock(r.Time), who(g), approvalKey(g))})
			case required:
				need := "the approval tier 3 requires"
				if d != nil && d.Decision.Outcome == schemas.OutcomeRequireApproval {
					need = fmt.Sprintf("the approval %s requires", policyName(d))
					if tier >= schemas.TierHigh {
						need = fmt.Sprintf("the approval tier %d requires (decision require_approval by %s)", tier, policyName(d))
					}
				}
				ev := append(opt(in), opt(d)...)
				switch {
				case len(grantedAfter) > 0:
					g := grantedAfter[0]
					add(instance{kind: KindExecutedWithoutApproval, deciding: r, evidence: append(ev, g), decision: d, act: a,
						text: fmt.Sprintf("%s executed at %s before %s: approval by %s came only at %s", describe(in, r), clock(r.Time), need, who(g), clock(g.Time))})
				case len(refused) > 0:
					x := refused[len(refused)-1]
					add(instance{kind: KindExecutedWithoutApproval, deciding: r, evidence: append(ev, x), decision: d, act: a,
						text: fmt.Sprintf("%s executed at %s without %s: the approval was %s at %s", describe(in, r), clock(r.Time), need, x.Approval.Status, clock(x.Time))})
				default:
					add(instance{kind: KindExecutedWithoutApproval, deciding: r, evidence: ev, decision: d, act: a, absent: true,
						text: fmt.Sprintf("%s executed at %s without %s", describe(in, r), clock(r.Time), need)})
				}
			case in != nil && in.Intent.ActionDigest != "" && r.Result.ActionDigest != in.Intent.ActionDigest:
				add(instance{kind: KindPayloadMismatch, deciding: r, evidence: append(opt(in), opt(d)...), decision: d, act: a,
					text: fmt.Sprintf("%s executed at %s with a payload other than the intent %s", describe(in, r), clock(r.Time), allowedBy(d))})
			}
		}
	}
	// A single-action approval covers one execution.
	for key, rs := range used {
		if len(rs) < 2 || (scopes[key] != schemas.ScopeSingle && scopes[key] != "") {
			continue
		}
		sort.Slice(rs, func(i, j int) bool { return before(rs[i], rs[j]) })
		second := rs[1]
		a := m.span(second.SpanID)
		add(instance{kind: KindApprovalOutOfScope, deciding: second, evidence: []*schemas.Event{rs[0]}, act: a, decision: m.governing(a, second),
			text: fmt.Sprintf("single-action approval %s used for %d executions; the second at %s", key, len(rs), clock(second.Time))})
	}
	// Separation of duties, on every grant.
	for _, g := range m.grants {
		ap := g.Approval
		var why string
		switch {
		case ap.ApproverKind == schemas.PrincipalAgent || ap.ApproverKind == schemas.PrincipalService:
			why = fmt.Sprintf("by %s identity %s", ap.ApproverKind, nameOr(ap.Approver, "(unnamed)"))
		case ap.Approver != "" && m.isAgent(ap.Approver):
			why = fmt.Sprintf("by the acting agent %s itself", ap.Approver)
		case ap.Approver != "" && m.requested(ap.Approver):
			why = fmt.Sprintf("by %s, who requested the action", ap.Approver)
		default:
			continue
		}
		a := m.span(g.SpanID)
		in := m.intent(a)
		add(instance{kind: KindSeparationOfDuties, deciding: g, evidence: opt(in), act: a,
			text: fmt.Sprintf("%s approved at %s %s (approval %s)", describe(in, nil), clock(g.Time), why, approvalKey(g))})
	}
	// Stale policy versions.
	if pol != nil {
		for _, e := range m.evs {
			d := e.Decision
			if d == nil || d.PolicyID == "" {
				continue
			}
			s, ok := pol.Newer(d.PolicyID, d.PolicyVersion, e.Time)
			if !ok {
				continue
			}
			a := m.span(e.SpanID)
			var ev []*schemas.Event
			if s.EventID != "" {
				ev = append(ev, &schemas.Event{EventID: s.EventID})
			}
			add(instance{kind: KindStalePolicy, deciding: e, evidence: ev, decision: e, act: a,
				text: fmt.Sprintf("decision %s at %s by %s v%d although v%d was in use since %s", d.Outcome, clock(e.Time),
					d.PolicyID, d.PolicyVersion, s.Version, stamp(s.FirstSeen))})
		}
	}
	return m.pick(ins)
}

// pick keeps one instance per kind: proven by evidence before resting on
// missing evidence, then the earliest deciding event.
func (m *model) pick(ins []instance) []Violation {
	best := map[Kind]*instance{}
	for i := range ins {
		in := &ins[i]
		b := best[in.kind]
		switch {
		case b == nil:
		case b.absent != in.absent:
			if in.absent {
				continue
			}
		case !before(in.deciding, b.deciding):
			continue
		}
		best[in.kind] = in
	}
	var out []Violation
	for _, k := range Kinds() {
		in := best[k]
		if in == nil {
			continue
		}
		out = append(out, m.violation(in))
	}
	return out
}

func (m *model) violation(in *instance) Violation {
	d := in.deciding
	head := m.evs[0]
	var intent *schemas.Event
	if in.act != nil {
		intent = m.intent(in.act)
	}
	if intent != nil {
		head = intent
	}
	v := Violation{
		ViolationID: ViolationID(d.TraceID, in.kind), Kind: in.kind, Severity: in.kind.Severity(),
		TraceID: d.TraceID, SpanID: d.SpanID, Team: head.Agent.Team, AgentID: head.Agent.ID,
		RequestedBy: head.RequestedBy, EventTime: d.Time, DecidingEventID: d.EventID,
		Explanation: in.text, Unconfirmed: in.absent,
	}
	if v.RequestedBy == "" {
		v.RequestedBy = d.RequestedBy
	}
	if intent != nil {
		v.Tool, v.Action = intent.Intent.Tool, intent.Intent.Action
	}
	if in.act != nil {
		v.Tier = m.tier(in.act)
	}
	v.Tier = max(v.Tier, d.Tier)
	if in.decision != nil {
		v.PolicyID, v.PolicyVersion = in.decision.Decision.PolicyID, in.decision.Decision.PolicyVersion
	}
	seen := map[string]bool{}
	for _, e := range append(in.evidence, d) {
		if e != nil && !seen[e.EventID] {
			seen[e.EventID] = true
			v.Evidence = append(v.Evidence, e.EventID)
		}
	}
	// The deciding event is last.
	if n := len(v.Evidence); n > 0 && v.Evidence[n-1] != d.EventID {
		for i, id := range v.Evidence {
			if id == d.EventID {
				v.Evidence = append(append(v.Evidence[:i:i], v.Evidence[i+1:]...), id)
				break
			}
		}
	}
	return v
}

// ViolationID is the deterministic id of a trace's violation of a kind: the
// first 32 hex digits of SHA-256("trace_id/kind").
func ViolationID(traceID string, k Kind) string {
	sum := sha256.Sum256([]byte(traceID + "/" + string(k)))
	return hex.EncodeToString(sum[:16])
}

func opt(e *schemas.Event) []*schemas.Event {
	if e == nil {
		return nil
	}
	return []*schemas.Event{e}
}

// describe names an action for an explanation: "refund of order:991" from
// the intent, never its parameters.
func describe(in, r *schemas.Event) string {
	if in != nil && in.Intent != nil {
		s := in.Intent.Action
		if s == "" {
			s = in.Intent.Tool
		}
		if in.Intent.Target != "" {
			s += " of " + in.Intent.Target
		}
		return s
	}
	if r != nil && r.Result != nil && r.Result.ChangedResource != "" {
		return "action on " + r.Result.ChangedResource + " (intent not on record)"
	}
	return "action (intent not on record)"
}

func policyName(d *schemas.Event) string {
	return fmt.Sprintf("%s v%d", nameOr(d.Decision.PolicyID, "(unnamed policy)"), d.Decision.PolicyVersion)
}

func reasonSuffix(d *schemas.Event) string {
	if d.Decision.MatchedRule != "" {
		return " (rule " + d.Decision.MatchedRule + ")"
	}
	return ""
}

func allowedBy(d *schemas.Event) string {
	if d == nil {
		return "declared"
	}
	return fmt.Sprintf("that %s allowed", policyName(d))
}

func who(g *schemas.Event) string { return nameOr(g.Approval.Approver, "an unnamed approver") }

func nameOr(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// clock prints a time of day, as an analyst reads it next to the date
// column: 09:36:12 (UTC).
func clock(t time.Time) string { return t.UTC().Format("15:04:05") }

// stamp prints a date and time, for times that may be days away.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

// record builds the trace record from the primary action.
func (m *model) record() Trace {
	evs := m.evs
	first, last := evs[0], evs[len(evs)-1]
	var t Trace
	t.TraceID = first.TraceID
	t.FirstEventTime, t.LastEventTime = first.Time, last.Time
	t.Events = len(evs)
	for _, e := range evs {
		switch {
		case e.Intent != nil:
			t.Intents++
		case e.Decision != nil:
			t.Decisions++
		case e.Approval != nil:
			t.Approvals++
		case e.Result != nil:
			t.Results++
		}
		t.Tier = max(t.Tier, e.Tier)
	}
	t.Actions = len(m.actions)

	// The primary action: the one with the earliest intent, else the first.
	var primary *action
	for _, a := range m.actions {
		if len(a.intents) > 0 && (primary == nil || len(primary.intents) == 0 || before(a.intents[0], primary.intents[0])) {
			primary = a
		}
	}
	if primary == nil && len(m.actions) > 0 {
		primary = m.actions[0]
	}

	head := first
	if primary != nil {
		if in := m.intent(primary); in != nil {
			head = in
		}
	}
	t.Team, t.AgentID, t.AgentVersion = head.Agent.Team, head.Agent.ID, head.Agent.Version
	t.Environment, t.Tenant, t.SessionID = head.Agent.Environment, head.Agent.Tenant, head.SessionID
	t.RequestedBy = head.RequestedBy
	for _, e := range evs {
		if t.RequestedBy != "" {
			break
		}
		t.RequestedBy = e.RequestedBy
	}

	for _, a := range m.actions {
		pending, orphan := m.status(a)
		if pending {
			t.PendingActions++
		}
		if orphan {
			t.OrphanActions++
		}
	}
	if primary == nil {
		return t
	}

	// The record's times and latencies point into two arrays, not five and
	// four allocations.
	times := new([5]time.Time)
	ptime := func(i int, at time.Time) *time.Time { times[i] = at; return &times[i] }
	in := m.intent(primary)
	if in != nil {
		t.Tool, t.Action, t.Target, t.ActionClass = in.Intent.Tool, in.Intent.Action, in.Intent.Target, in.Intent.ActionClass
		t.IntentTime = ptime(0, in.Time)
	}
	var res *schemas.Event
	if n := len(primary.results); n > 0 {
		res = primary.results[n-1]
		t.ResultStatus, t.Executor = res.Result.Status, res.Result.Executor
		t.ChangedResource, t.ErrorClass = res.Result.ChangedResource, res.Result.ErrorClass
		t.ResultTime = ptime(1, res.Time)
	}
	var d *schemas.Event
	if res != nil {
		d = m.governing(primary, res)
	} else {
		d = m.latestDecision(primary)
	}
	if d != nil {
		t.Outcome, t.PolicyID, t.PolicyVersion, t.MatchedRule = d.Decision.Outcome, d.Decision.PolicyID, d.Decision.PolicyVersion, d.Decision.MatchedRule
		t.DecisionTime = ptime(2, d.Time)
	}
	var ap *schemas.Event
	if res != nil && executed(res.Result) {
		ap = m.usable(res)
	}
	if ap == nil {
		// The latest word on the action: granted beats requested.
		for _, e := range m.approvalsAbout(primary) {
			if ap == nil || e.Approval.Status != schemas.ApprovalRequested || ap.Approval.Status == schemas.ApprovalRequested {
				ap = e
			}
		}
	}
	if ap != nil {
		a := ap.Approval
		t.ApprovalID, t.ApprovalStatus, t.Approver, t.ApproverKind = approvalKey(ap), a.Status, a.Approver, a.ApproverKind
		t.ApprovalScope = a.Scope
		if t.ApprovalScope == "" {
			t.ApprovalScope = schemas.ScopeSingle
		}
		if a.ExpiresAt != nil {
			t.ApprovalExpiresAt = ptime(3, *a.ExpiresAt)
		}
		t.ApprovalTime = ptime(4, ap.Time)
	}
	ms := new([4]int64)
	t.DecisionMS = between(&ms[0], t.IntentTime, t.DecisionTime)
	t.ApprovalWaitMS = between(&ms[1], t.DecisionTime, t.ApprovalTime)
	if t.ApprovalTime != nil {
		t.ExecutionMS = between(&ms[2], t.ApprovalTime, t.ResultTime)
	} else {
		t.ExecutionMS = between(&ms[2], t.DecisionTime, t.ResultTime)
	}
	t.TotalMS = between(&ms[3], t.IntentTime, t.ResultTime)
	return t
}

// status says whether an action still waits for its end (a result, a deny,
// a rejected or expired approval) and whether it is an orphan (a result
// without its intent or decision).
func (m *model) status(a *action) (pending, orphan bool) {
	if len(a.results) > 0 {
		return false, len(m.intents(a)) == 0 || len(m.decisions(a)) == 0
	}
	if d := m.latestDecision(a); d != nil && d.Decision.Outcome == schemas.OutcomeDeny {
		return false, false
	}
	var last *schemas.Event
	for _, e := range m.approvalsAbout(a) {
		last = e
	}
	if last != nil && (last.Approval.Status == schemas.ApprovalRejected || last.Approval.Status == schemas.ApprovalExpired) {
		return false, false
	}
	return true, false
}

// between sets *ms to the milliseconds from a to b and returns ms, or nil
// when either is missing.
func between(ms *int64, a, b *time.Time) *int64 {
	if a == nil || b == nil {
		return nil
	}
	*ms = b.Sub(*a).Milliseconds()
	return ms
}
