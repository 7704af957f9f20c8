package simulate

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// Behavioural anomalies the simulator plants. Unlike scenarios, which bend
// one trace, each spans several traces: the pattern is in how an agent or
// an approver behaves over minutes. Each is what one rule of anomaly/
// (deployments/rules.yaml) looks for, and is built from the fleet's own
// agents, tools and people so that only the planted pattern is unusual.
const (
	// An agent repeats the same action (same digest) eight times in 80s,
	// each attempt failing.
	AnomalyRetryBurst = "retry_burst"
	// A tier 3 action at a time the caller chose outside business hours.
	AnomalyOutOfHours = "out_of_hours"
	// An agent is denied eighteen times in seven minutes.
	AnomalyDenialSpike = "denial_spike"
	// An agent calls a tier 3 tool of another team.
	AnomalyFirstUse = "first_use"
	// Right after a denial, an agent tries ten different targets in 40s.
	AnomalyProbing = "probing_after_deny"
	// One approver decides 66 approvals in half an hour, one every 27s.
	AnomalyApprovalFlood = "approval_flood"
	// One approver grants four approvals 2-5 seconds after each request.
	AnomalyRubberStamp = "approval_rubber_stamp"
)

// AnomalyKinds lists the anomalies Plant knows, in a stable order.
func AnomalyKinds() []string {
	return []string{AnomalyRetryBurst, AnomalyOutOfHours, AnomalyDenialSpike, AnomalyFirstUse,
		AnomalyProbing, AnomalyApprovalFlood, AnomalyRubberStamp}
}

// PlantedLabel is the label (schemas v2 labels) that marks every planted
// event with its anomaly kind: ground truth visible in ClickHouse.
const PlantedLabel = "simulate.planted"

// AnomalySpec says what to plant.
type AnomalySpec struct {
	Kind string
	// At is the event time of the first planted event.
	At time.Time
	// Team whose agent (or approver) acts; "" lets the fleet choose.
	Team string
	// Avoid lists agents and approvers not to use (those of other planted
	// anomalies), so that patterns do not add up.
	Avoid []string
}

// Anomaly is one planted pattern, with the ground truth a detector should
// report.
type Anomaly struct {
	Kind     string
	Team     string
	Agent    string // the acting agent; "" for the approver kinds
	Approver string // the approver, for the approver kinds
	// Start and End span the planted events' times.
	Start, End time.Time
	// Traces are the planted traces, each in causal order, ordered by
	// their first event.
	Traces [][]schemas.Event
}

// Events returns every planted event, trace after trace.
func (a *Anomaly) Events() []schemas.Event {
	var out []schemas.Event
	for _, tr := range a.Traces {
		out = append(out, tr...)
	}
	return out
}

// Plant builds one anomaly. It draws from the fleet's random source, so a
// fleet plants the same anomalies for the same seed and calls.
func (f *Fleet) Plant(spec AnomalySpec) (*Anomaly, error) {
	if spec.At.IsZero() {
		return nil, errors.New("simulate: plant: At is required")
	}
	at := spec.At.UTC()
	a := &Anomaly{Kind: spec.Kind}
	switch spec.Kind {
	case AnomalyRetryBurst:
		ag, tl := f.pickActor(spec, func(t *Tool) bool { return t.Tier == schemas.TierMedium })
		if ag == nil {
			return nil, f.noActor(spec)
		}
		target, params := tl.Target(f.r), tl.Params(f.r)
		for i := range 8 {
			tr := f.plantTrace(plan{kind: spec.Kind, agent: ag, tool: tl, start: at.Add(time.Duration(i) * 10 * time.Second),
				target: target, params: params, outcome: schemas.OutcomeAllow, result: schemas.ResultError})
			a.Traces = append(a.Traces, tr)
		}
		a.Agent, a.Team = ag.Identity.ID, ag.Identity.Team
	case AnomalyOutOfHours:
		ag, tl := f.pickActor(spec, func(t *Tool) bool { return t.Tier == schemas.TierHigh })
		if ag == nil {
			return nil, f.noActor(spec)
		}
		a.Traces = append(a.Traces, f.plantTrace(plan{kind: spec.Kind, agent: ag, tool: tl, start: at,
			outcome: schemas.OutcomeRequireApproval, approval: schemas.ApprovalGranted, approvalDelay: minutes(f.r, 3, 20),
			result: schemas.ResultSuccess}))
		a.Agent, a.Team = ag.Identity.ID, ag.Identity.Team
	case AnomalyDenialSpike:
		ag, _ := f.pickActor(spec, func(t *Tool) bool { return t.Tier >= schemas.TierMedium })
		if ag == nil {
			return nil, f.noActor(spec)
		}
		tools := topTools(ag, func(t *Tool) bool { return t.Tier >= schemas.TierMedium }, 2)
		for i := range 18 {
			a.Traces = append(a.Traces, f.plantTrace(plan{kind: spec.Kind, agent: ag, tool: tools[i%len(tools)],
				start: at.Add(time.Duration(i) * 25 * time.Second), outcome: schemas.OutcomeDeny, result: schemas.ResultBlocked}))
		}
		a.Agent, a.Team = ag.Identity.ID, ag.Identity.Team
	case AnomalyFirstUse:
		ag, _ := f.pickActor(spec, func(*Tool) bool { return true })
		if ag == nil {
			return nil, f.noActor(spec)
		}
		foreign := f.foreignTool(ag)
		if foreign == nil {
			return nil, fmt.Errorf("simulate: plant %s: no other team has a tier 3 tool", spec.Kind)
		}
		a.Traces = append(a.Traces, f.plantTrace(plan{kind: spec.Kind, agent: ag, tool: foreign, start: at,
			outcome: schemas.OutcomeRequireApproval, approval: schemas.ApprovalRejected, approvalDelay: minutes(f.r, 3, 20),
			result: schemas.ResultBlocked}))
		a.Agent, a.Team = ag.Identity.ID, ag.Identity.Team
	case AnomalyProbing:
		// A denial, then ten distinct tool/targets within 40s, the agent's
		// most used tools first (what needs an approval is denied too).
		high := func(t *Tool) bool { return t.Tier == schemas.TierHigh }
		cands := f.teamAgents(spec.Team, spec.Avoid, high)
		for _, ci := range f.r.Perm(len(cands)) {
			ag := cands[ci]
			tries := f.probes(ag, 10)
			if len(tries) < 10 {
				continue // too few tools and targets to probe with
			}
			a.Traces = append(a.Traces, f.plantTrace(plan{kind: spec.Kind, agent: ag, tool: topTools(ag, high, 1)[0], start: at,
				outcome: schemas.OutcomeDeny, result: schemas.ResultBlocked}))
			for i, p := range tries {
				p.kind, p.start = spec.Kind, at.Add(time.Duration(i+1)*4*time.Second)
				a.Traces = append(a.Traces, f.plantTrace(p))
			}
			a.Agent, a.Team = ag.Identity.ID, ag.Identity.Team
			break
		}
		if a.Agent == "" {
			return nil, f.noActor(spec)
		}
	case AnomalyApprovalFlood, AnomalyRubberStamp:
		team, approver := f.pickApprover(spec)
		if team == nil {
			return nil, f.noActor(spec)
		}
		n, every := 66, 27*time.Second
		if spec.Kind == AnomalyRubberStamp {
			n, every = 4, 2*time.Minute
		}
		agents := f.teamAgents(team.Name, spec.Avoid, func(t *Tool) bool { return t.Tier == schemas.TierHigh })
		if len(agents) == 0 {
			return nil, f.noActor(spec)
		}
		for i := range n {
			ag := agents[i%len(agents)]
			tl := topTools(ag, func(t *Tool) bool { return t.Tier == schemas.TierHigh }, 1)[0]
			delay := time.Duration(20+f.r.IntN(160)) * time.Second
			if spec.Kind == AnomalyRubberStamp {
				delay = time.Duration(2000+f.r.IntN(3000)) * time.Millisecond
			}
			a.Traces = append(a.Traces, f.plantTrace(plan{kind: spec.Kind, agent: ag, tool: tl, start: at.Add(time.Duration(i) * every),
				outcome: schemas.OutcomeRequireApproval, approval: schemas.ApprovalGranted, approver: &approver,
				approvalDelay: delay, result: schemas.ResultSuccess}))
		}
		a.Team, a.Approver = team.Name, approver.Email
	default:
		return nil, fmt.Errorf("simulate: unknown anomaly %q (known: %v)", spec.Kind, AnomalyKinds())
	}
	a.Start, a.End = a.Traces[0][0].Time, a.Traces[0][0].Time
	for _, tr := range a.Traces {
		for _, e := range tr {
			a.Start = minTime(a.Start, e.Time)
			if e.Time.After(a.End) {
				a.End = e.Time
			}
		}
	}
	return a, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (f *Fleet) noActor(spec AnomalySpec) error {
	return fmt.Errorf("simulate: plant %s: no agent of team %q has the tools it needs", spec.Kind, spec.Team)
}

// PlantAll plants one anomaly of every kind, the first at start and each
// next gap later, each by a different agent or approver. Its events span
// from start to about start + 6*gap + 35 minutes (the approval flood lasts
// half an hour): a demo that plants into a live stream with an hour of
// allowed lateness starts them 50 minutes back with a gap of 2 minutes. outOfHours is the
// time of the out-of-hours action: the caller knows the business hours
// (anomaly.RuleSet.OutOfHours), the fleet does not; outOfHoursTeam is the
// team whose hours it is outside of ("" any).
func (f *Fleet) PlantAll(start time.Time, gap time.Duration, outOfHours time.Time, outOfHoursTeam string) ([]*Anomaly, error) {
	var out []*Anomaly
	var avoid []string
	at := start
	for _, kind := range AnomalyKinds() {
		spec := AnomalySpec{Kind: kind, At: at, Avoid: avoid}
		if kind == AnomalyOutOfHours {
			spec.At, spec.Team = outOfHours, outOfHoursTeam
		} else {
			at = at.Add(gap)
		}
		a, err := f.Plant(spec)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
		for _, tr := range a.Traces {
			for _, e := range tr {
				if !slices.Contains(avoid, e.Agent.ID) {
					avoid = append(avoid, e.Agent.ID)
				}
			}
		}
		if a.Approver != "" {
			avoid = append(avoid, a.Approver)
		}
	}
	return out, nil
}

// probes plans n actions of ag on distinct tool/targets, or fewer if its
// tools do not have that many targets.
func (f *Fleet) probes(ag *Agent, n int) []plan {
	tools := topTools(ag, func(*Tool) bool { return true }, len(ag.Tools))
	tried := map[string]bool{}
	var out []plan
	for i := 0; len(out) < n && i < 10*n; i++ {
		tl := tools[i%len(tools)]
		target := tl.Target(f.r)
		for j := 0; j < 20 && tried[tl.Tool+" "+target]; j++ {
			target = tl.Target(f.r)
		}
		if tried[tl.Tool+" "+target] {
			continue
		}
		tried[tl.Tool+" "+target] = true
		p := plan{agent: ag, tool: tl, target: target, outcome: schemas.OutcomeAllow, result: schemas.ResultSuccess}
		if tl.Tier == schemas.TierHigh {
			p.outcome, p.result = schemas.OutcomeDeny, schemas.ResultBlocked
		}
		out = append(out, p)
	}
	return out
}

// pickActor picks an agent (of spec.Team, not avoided) that has a tool
// matching want, and its most used such tool.
func (f *Fleet) pickActor(spec AnomalySpec, want func(*Tool) bool) (*Agent, *Tool) {
	cands := f.teamAgents(spec.Team, spec.Avoid, want)
	if len(cands) == 0 {
		return nil, nil
	}
	ag := cands[f.r.IntN(len(cands))]
	return ag, topTools(ag, want, 1)[0]
}

// teamAgents lists the agents of team ("" all) not avoided with a tool
// matching want.
func (f *Fleet) teamAgents(team string, avoid []string, want func(*Tool) bool) []*Agent {
	var out []*Agent
	for _, ag := range f.agents {
		if (team != "" && ag.Identity.Team != team) || slices.Contains(avoid, ag.Identity.ID) {
			continue
		}
		if len(topTools(ag, want, 1)) > 0 {
			out = append(out, ag)
		}
	}
	return out
}

// topTools returns up to n of the agent's tools matching want, the most
// used first: planted actions use tools the agent has a history with.
func topTools(ag *Agent, want func(*Tool) bool, n int) []*Tool {
	var ts []*Tool
	for _, t := range ag.Tools {
		if want(t) {
			ts = append(ts, t)
		}
	}
	slices.SortStableFunc(ts, func(a, b *Tool) int { return b.Weight - a.Weight })
	return ts[:min(n, len(ts))]
}

// foreignTool returns a tier 3 tool of another team that the agent's own
// team does not have.
func (f *Fleet) foreignTool(ag *Agent) *Tool {
	own := map[string]bool{}
	for _, t := range ag.team.Tools {
		own[t.Tool+"."+t.Action] = true
	}
	var cands []*Tool
	for ti := range f.cfg.Teams {
		tm := &f.cfg.Teams[ti]
		if tm.Name == ag.team.Name {
			continue
		}
		for i := range tm.Tools {
			if t := &tm.Tools[i]; t.Tier == schemas.TierHigh && !own[t.Tool+"."+t.Action] {
				cands = append(cands, t)
			}
		}
	}
	if len(cands) == 0 {
		return nil
	}
	return cands[f.r.IntN(len(cands))]
}

// pickApprover picks a team (spec.Team, or one at random) with agents
// that have tier 3 tools, and one of its approvers who is not avoided and
// not one of its requesters.
func (f *Fleet) pickApprover(spec AnomalySpec) (*Team, Approver) {
	order := f.r.Perm(len(f.cfg.Teams))
	for _, ti := range order {
		tm := &f.cfg.Teams[ti]
		if spec.Team != "" && tm.Name != spec.Team {
			continue
		}
		if len(f.teamAgents(tm.Name, spec.Avoid, func(t *Tool) bool { return t.Tier == schemas.TierHigh })) == 0 {
			continue
		}
		for _, ap := range tm.Approvers {
			if !slices.Contains(spec.Avoid, ap.Email) && !slices.Contains(tm.Humans, ap.Email) {
				return tm, ap
			}
		}
	}
	return nil, Approver{}
}

// plan is one planted trace.
type plan struct {
	kind          string
	agent         *Agent
	tool          *Tool
	start         time.Time
	target        string            // "" draws one
	params        map[string]string // nil draws them
	outcome       string            // policy decision
	approval      string            // approval status when the outcome asks for one
	approver      *Approver         // nil: one of the team's
	approvalDelay time.Duration
	result        string // result status ("" none)
}

// plantTrace builds one trace the way the fleet's own traces look, with
// absolute times from p.start and the planted label on every event.
func (f *Fleet) plantTrace(p plan) []schemas.Event {
	r, a, tl := f.r, p.agent, p.tool
	team := a.team
	requester := pick(r, team.Humans)
	traceID, spanID, session := hexID(r, 32), hexID(r, 16), "sess-"+hexID(r, 12)
	labels := map[string]string{PlantedLabel: p.kind}
	at := p.start.UTC().Truncate(time.Microsecond)
	envelope := func(typ schemas.EventType, t time.Time) schemas.Event {
		t = t.Truncate(time.Microsecond)
		return schemas.Event{
			EventID: uuid7(r, t), TraceID: traceID, SpanID: spanID, Type: typ, Time: t,
			Agent: a.Identity, RequestedBy: requester, Tier: tl.Tier, Producer: a.Producer, SessionID: session,
			Labels: labels,
		}
	}
	target, params := p.target, p.params
	if target == "" {
		target = tl.Target(r)
	}
	if params == nil {
		params = tl.Params(r)
	}
	digest := schemas.ActionDigest(a.Identity.ID, tl.Tool, tl.Action, target, params)
	conf := 0.7
	in := envelope(schemas.TypeIntent, at)
	in.Intent = &schemas.Intent{
		Tool: tl.Tool, Action: tl.Action, Target: target, ActionClass: tl.ActionClass, Tier: tl.Tier,
		Parameters: params, ActionDigest: digest, Rationale: pick(r, tl.Rationales),
		ModelID: a.Model, PromptVersion: a.PromptVersion, EvidenceIDs: evidence(r), Confidence: &conf,
	}
	evs := []schemas.Event{in}

	at = at.Add(time.Duration(3+r.IntN(60)) * time.Millisecond)
	de := envelope(schemas.TypeDecision, at)
	d := &schemas.Decision{Outcome: p.outcome, PolicyID: tl.PolicyID, PolicyVersion: policyVersion(tl.PolicyID), MatchedRule: tl.MatchedRule, Tier: tl.Tier}
	switch p.outcome {
	case schemas.OutcomeDeny:
		d.Reason = "denied by policy"
		if len(tl.DenyReasons) > 0 {
			d.Reason = pick(r, tl.DenyReasons)
		}
	case schemas.OutcomeRequireApproval:
		d.Reason = fmt.Sprintf("tier %d %s needs a human approval", tl.Tier, tl.ActionClass)
	}
	de.Decision = d
	evs = append(evs, de)

	blockedBy := "policy_denied"
	execute := p.outcome == schemas.OutcomeAllow
	if p.outcome == schemas.OutcomeRequireApproval {
		at = at.Add(p.approvalDelay)
		ev := envelope(schemas.TypeApproval, at)
		ap := &schemas.Approval{ApprovalID: "apr-" + hexID(r, 16), Status: p.approval, ApproverKind: schemas.PrincipalHuman,
			ActionDigest: digest, Scope: schemas.ScopeSingle, Channel: pick(r, channels)}
		who := p.approver
		if who == nil {
			for i := 0; i < 8; i++ {
				if c := pick(r, team.Approvers); c.Email != requester {
					who = &c
					break
				}
			}
			if who == nil {
				who = &Approver{"security-desk@acme.example", "security-desk"}
			}
		}
		if who.Email == requester {
			// The approver must not be the requester: that is another
			// violation (approved_by_requester).
			for _, h := range team.Humans {
				if h != who.Email {
					requester = h
					break
				}
			}
			for i := range evs {
				evs[i].RequestedBy = requester
			}
			ev.RequestedBy = requester
		}
		ap.Approver, ap.ApproverRole = who.Email, who.Role
		if p.approval == schemas.ApprovalGranted {
			exp := at.Add(time.Hour).Truncate(time.Microsecond)
			ap.ExpiresAt = &exp
			ap.Comment = "ok"
		} else {
			ap.Comment = "not justified"
		}
		ev.Approval = ap
		evs = append(evs, ev)
		execute = p.approval == schemas.ApprovalGranted
		blockedBy = "approval_" + p.approval
	}

	if p.result != "" {
		dur := lognormal(r, tl.Median)
		at = at.Add(time.Duration(1+r.IntN(20))*time.Millisecond + dur)
		ev := envelope(schemas.TypeResult, at)
		res := &schemas.Result{Status: p.result, ActionDigest: digest, Executor: a.Identity.ID}
		switch {
		case p.result == schemas.ResultBlocked || !execute:
			res.Status, res.ErrorClass = schemas.ResultBlocked, blockedBy
		case p.result == schemas.ResultError:
			res.ErrorClass = "upstream_5xx"
			if len(tl.Errors) > 0 {
				res.ErrorClass = tl.Errors[0]
			}
			res.ErrorMessage = "tool call failed: " + res.ErrorClass
			res.DurationUS = dur.Microseconds()
		case p.result == schemas.ResultSuccess:
			res.DurationUS = dur.Microseconds()
			if tl.Writes {
				res.ChangedResource = target
			}
			if tl.SideEffect != "" {
				res.SideEffects = []string{tl.SideEffect + hexID(r, 12)}
			}
		}
		ev.Result = res
		evs = append(evs, ev)
	}
	return evs
}
