package correlate

// The correlation model as it was before the allocation work (2026-11-22),
// kept verbatim but for names: TestCorrelateMatchesReference checks the
// current one against it.

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

func refCorrelate(events []schemas.Event, pol Policies) Correlation {
	evs := refCanonical(events)
	if len(evs) == 0 {
		return Correlation{}
	}
	m := refNewModel(evs)
	var c Correlation
	c.Trace = m.record()
	c.Violations = m.violations(pol)
	return c
}

// canonical returns the events each once (by event_id), ordered by
// (event_time, event_id). Copies of one event_id are meant to be identical;
// if they are not, the one first in (event_time, type) order is kept, so
// the choice does not depend on delivery order either.
func refCanonical(events []schemas.Event) []*schemas.Event {
	ptrs := make([]*schemas.Event, len(events))
	for i := range events {
		ptrs[i] = &events[i]
	}
	sort.SliceStable(ptrs, func(i, j int) bool {
		a, b := ptrs[i], ptrs[j]
		if a.EventID != b.EventID {
			return a.EventID < b.EventID
		}
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		return a.Type < b.Type
	})
	out := ptrs[:0]
	for i, e := range ptrs {
		if i > 0 && e.EventID == ptrs[i-1].EventID {
			continue
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return refBefore(out[i], out[j]) })
	return out
}

// before orders events by (event_time, event_id).
func refBefore(a, b *schemas.Event) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.Before(b.Time)
	}
	return a.EventID < b.EventID
}

// action is one span's events, each list in (event_time, event_id) order.
type refAction struct {
	span                                   string
	intents, decisions, approvals, results []*schemas.Event
	first                                  *schemas.Event
}

type refModel struct {
	evs      []*schemas.Event
	spans    map[string]*refAction
	actions  []*refAction // spans that are actions, ordered by their first event
	grants   []*schemas.Event
	requests map[string]bool // lower-cased requested_by values of the trace
	agents   map[string]bool // agent ids of the trace
}

func refNewModel(evs []*schemas.Event) *refModel {
	m := &refModel{evs: evs, spans: map[string]*refAction{}, requests: map[string]bool{}, agents: map[string]bool{}}
	var order []*refAction
	for _, e := range evs {
		a := m.spans[e.SpanID]
		if a == nil {
			a = &refAction{span: e.SpanID, first: e}
			m.spans[e.SpanID] = a
			order = append(order, a)
		}
		switch {
		case e.Intent != nil:
			a.intents = append(a.intents, e)
		case e.Decision != nil:
			a.decisions = append(a.decisions, e)
		case e.Approval != nil:
			a.approvals = append(a.approvals, e)
			if e.Approval.Status == schemas.ApprovalGranted {
				m.grants = append(m.grants, e)
			}
		case e.Result != nil:
			a.results = append(a.results, e)
		}
		if e.RequestedBy != "" {
			m.requests[strings.ToLower(strings.TrimSpace(e.RequestedBy))] = true
		}
		if e.Agent.ID != "" {
			m.agents[e.Agent.ID] = true
		}
	}
	// The span-less events are the trace's own: they are an action only if
	// they carry a result or nothing else is there.
	for _, a := range order {
		hasBody := len(a.intents)+len(a.decisions)+len(a.results) > 0
		if a.span == "" && len(order) > 1 && len(a.results) == 0 {
			hasBody = false
		}
		if hasBody {
			m.actions = append(m.actions, a)
		}
	}
	return m
}

// intents returns the action's intents, or the trace-level ones.
func (m *refModel) intents(a *refAction) []*schemas.Event {
	if len(a.intents) == 0 && a.span != "" {
		if t := m.spans[""]; t != nil {
			return t.intents
		}
	}
	return a.intents
}

func (m *refModel) decisions(a *refAction) []*schemas.Event {
	if len(a.decisions) == 0 && a.span != "" {
		if t := m.spans[""]; t != nil {
			return t.decisions
		}
	}
	return a.decisions
}

// governing returns the decision in force when r ran: the latest one at or
// before it, else (clocks disagree) the earliest one.
func (m *refModel) governing(a *refAction, r *schemas.Event) *schemas.Event {
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

func (m *refModel) latestDecision(a *refAction) *schemas.Event {
	ds := m.decisions(a)
	if len(ds) == 0 {
		return nil
	}
	return ds[len(ds)-1]
}

func (m *refModel) intent(a *refAction) *schemas.Event {
	if is := m.intents(a); len(is) > 0 {
		return is[0]
	}
	return nil
}

// tier is the highest tier an action's events carry. It reads the
// envelope's tier only: the events table keeps that one, so a trace rebuilt
// from ClickHouse is judged exactly as one held in memory.
func (m *refModel) tier(a *refAction) int32 {
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
func (m *refModel) approvalsAbout(a *refAction) []*schemas.Event {
	digests := map[string]bool{}
	if in := m.intent(a); in != nil && in.Intent.ActionDigest != "" {
		digests[in.Intent.ActionDigest] = true
	}
	for _, r := range a.results {
		if r.Result.ActionDigest != "" {
			digests[r.Result.ActionDigest] = true
		}
	}
	var out []*schemas.Event
	for _, e := range m.evs {
		if e.Approval == nil {
			continue
		}
		if (a.span != "" && e.SpanID == a.span) || digests[e.Approval.ActionDigest] ||
			(a.span == "" && len(m.actions) == 1) {
			out = append(out, e)
		}
	}
	return out
}

// usable returns the grant r ran under: one given at or before r that covers
// it, preferring the same digest, then the latest.
func (m *refModel) usable(r *schemas.Event) *schemas.Event {
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
		if how > bestHow || (how == bestHow && refBefore(best, g)) {
			best, bestHow = g, how
		}
	}
	return best
}

// refInstance is one occurrence of a violation, before one per kind is chosen.
type refInstance struct {
	kind     Kind
	deciding *schemas.Event
	evidence []*schemas.Event // the deciding event is appended last
	decision *schemas.Event   // for policy id and version, if any
	act      *refAction
	text     string
	absent   bool // rests on missing evidence
}

func (m *refModel) violations(pol Policies) []Violation {
	var ins []refInstance
	add := func(in refInstance) { ins = append(ins, in) }
	used := map[string][]*schemas.Event{} // approval key → executed results it covered
	scopes := map[string]string{}
	for _, a := range m.actions {
		in := m.intent(a)
		tier := m.tier(a)
		for _, r := range a.results {
			if !executed(r.Result) {
				continue
			}
			what := describe(in, r)
			d := m.governing(a, r)
			if d == nil {
				add(refInstance{kind: KindNoPolicyDecision, deciding: r, evidence: opt(in), act: a, absent: true,
					text: fmt.Sprintf("%s executed at %s with no policy decision on record", what, clock(r.Time))})
			}
			if d != nil && d.Decision.Outcome == schemas.OutcomeDeny {
				add(refInstance{kind: KindExecutedAfterDeny, deciding: r, evidence: append(opt(in), d), decision: d, act: a,
					text: fmt.Sprintf("%s executed at %s although %s denied it at %s%s", what, clock(r.Time),
						policyName(d), clock(d.Time), reasonSuffix(d))})
				continue
			}
			required := tier >= schemas.TierHigh || (d != nil && d.Decision.Outcome == schemas.OutcomeRequireApproval)
			if g := m.usable(r); g != nil {
				key := approvalKey(g)
				used[key] = append(used[key], r)
				scopes[key] = g.Approval.Scope
				if x := g.Approval.ExpiresAt; x != nil && x.Before(r.Time) {
					add(refInstance{kind: KindApprovalOutOfScope, deciding: r, evidence: []*schemas.Event{g}, decision: d, act: a,
						text: fmt.Sprintf("%s executed at %s under approval %s that expired at %s", what, clock(r.Time), key, clock(*x))})
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
				add(refInstance{kind: KindPayloadMismatch, deciding: r, evidence: append(opt(in), g), decision: d, act: a,
					text: fmt.Sprintf("%s executed at %s with a payload other than the one %s approved (approval %s)",
						what, clock(r.Time), who(g), approvalKey(g))})
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
					add(refInstance{kind: KindExecutedWithoutApproval, deciding: r, evidence: append(ev, g), decision: d, act: a,
						text: fmt.Sprintf("%s executed at %s before %s: approval by %s came only at %s", what, clock(r.Time), need, who(g), clock(g.Time))})
				case len(refused) > 0:
					x := refused[len(refused)-1]
					add(refInstance{kind: KindExecutedWithoutApproval, deciding: r, evidence: append(ev, x), decision: d, act: a,
						text: fmt.Sprintf("%s executed at %s without %s: the approval was %s at %s", what, clock(r.Time), need, x.Approval.Status, clock(x.Time))})
				default:
					add(refInstance{kind: KindExecutedWithoutApproval, deciding: r, evidence: ev, decision: d, act: a, absent: true,
						text: fmt.Sprintf("%s executed at %s without %s", what, clock(r.Time), need)})
				}
			case in != nil && in.Intent.ActionDigest != "" && r.Result.ActionDigest != in.Intent.ActionDigest:
				add(refInstance{kind: KindPayloadMismatch, deciding: r, evidence: append(opt(in), opt(d)...), decision: d, act: a,
					text: fmt.Sprintf("%s executed at %s with a payload other than the intent %s", what, clock(r.Time), allowedBy(d))})
			}
		}
	}
	// A single-action approval covers one execution.
	for key, rs := range used {
		if len(rs) < 2 || (scopes[key] != schemas.ScopeSingle && scopes[key] != "") {
			continue
		}
		sort.Slice(rs, func(i, j int) bool { return refBefore(rs[i], rs[j]) })
		second := rs[1]
		a := m.spans[second.SpanID]
		add(refInstance{kind: KindApprovalOutOfScope, deciding: second, evidence: []*schemas.Event{rs[0]}, act: a, decision: m.governing(a, second),
			text: fmt.Sprintf("single-action approval %s used for %d executions; the second at %s", key, len(rs), clock(second.Time))})
	}
	// Separation of duties, on every grant.
	for _, g := range m.grants {
		ap := g.Approval
		var why string
		switch {
		case ap.ApproverKind == schemas.PrincipalAgent || ap.ApproverKind == schemas.PrincipalService:
			why = fmt.Sprintf("by %s identity %s", ap.ApproverKind, nameOr(ap.Approver, "(unnamed)"))
		case ap.Approver != "" && m.agents[ap.Approver]:
			why = fmt.Sprintf("by the acting agent %s itself", ap.Approver)
		case ap.Approver != "" && m.requests[strings.ToLower(strings.TrimSpace(ap.Approver))]:
			why = fmt.Sprintf("by %s, who requested the action", ap.Approver)
		default:
			continue
		}
		a := m.spans[g.SpanID]
		in := m.intent(a)
		add(refInstance{kind: KindSeparationOfDuties, deciding: g, evidence: opt(in), act: a,
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
			a := m.spans[e.SpanID]
			var ev []*schemas.Event
			if s.EventID != "" {
				ev = append(ev, &schemas.Event{EventID: s.EventID})
			}
			add(refInstance{kind: KindStalePolicy, deciding: e, evidence: ev, decision: e, act: a,
				text: fmt.Sprintf("decision %s at %s by %s v%d although v%d was in use since %s", d.Outcome, clock(e.Time),
					d.PolicyID, d.PolicyVersion, s.Version, stamp(s.FirstSeen))})
		}
	}
	return m.pick(ins)
}

// pick keeps one refInstance per kind: proven by evidence before resting on
// missing evidence, then the earliest deciding event.
func (m *refModel) pick(ins []refInstance) []Violation {
	best := map[Kind]*refInstance{}
	for i := range ins {
		in := &ins[i]
		b := best[in.kind]
		switch {
		case b == nil:
		case b.absent != in.absent:
			if in.absent {
				continue
			}
		case !refBefore(in.deciding, b.deciding):
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

func (m *refModel) violation(in *refInstance) Violation {
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

// record builds the trace record from the primary action.
func (m *refModel) record() Trace {
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
	var primary *refAction
	for _, a := range m.actions {
		if len(a.intents) > 0 && (primary == nil || len(primary.intents) == 0 || refBefore(a.intents[0], primary.intents[0])) {
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

	in := m.intent(primary)
	if in != nil {
		t.Tool, t.Action, t.Target, t.ActionClass = in.Intent.Tool, in.Intent.Action, in.Intent.Target, in.Intent.ActionClass
		t.IntentTime = refPtime(in.Time)
	}
	var res *schemas.Event
	if n := len(primary.results); n > 0 {
		res = primary.results[n-1]
		t.ResultStatus, t.Executor = res.Result.Status, res.Result.Executor
		t.ChangedResource, t.ErrorClass = res.Result.ChangedResource, res.Result.ErrorClass
		t.ResultTime = refPtime(res.Time)
	}
	var d *schemas.Event
	if res != nil {
		d = m.governing(primary, res)
	} else {
		d = m.latestDecision(primary)
	}
	if d != nil {
		t.Outcome, t.PolicyID, t.PolicyVersion, t.MatchedRule = d.Decision.Outcome, d.Decision.PolicyID, d.Decision.PolicyVersion, d.Decision.MatchedRule
		t.DecisionTime = refPtime(d.Time)
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
			t.ApprovalExpiresAt = refPtime(*a.ExpiresAt)
		}
		t.ApprovalTime = refPtime(ap.Time)
	}
	t.DecisionMS = refBetween(t.IntentTime, t.DecisionTime)
	t.ApprovalWaitMS = refBetween(t.DecisionTime, t.ApprovalTime)
	if t.ApprovalTime != nil {
		t.ExecutionMS = refBetween(t.ApprovalTime, t.ResultTime)
	} else {
		t.ExecutionMS = refBetween(t.DecisionTime, t.ResultTime)
	}
	t.TotalMS = refBetween(t.IntentTime, t.ResultTime)
	return t
}

// status says whether an action still waits for its end (a result, a deny,
// a rejected or expired approval) and whether it is an orphan (a result
// without its intent or decision).
func (m *refModel) status(a *refAction) (pending, orphan bool) {
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

func refPtime(t time.Time) *time.Time { return &t }

func refBetween(a, b *time.Time) *int64 {
	if a == nil || b == nil {
		return nil
	}
	ms := b.Sub(*a).Milliseconds()
	return &ms
}
