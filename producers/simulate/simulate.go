// Package simulate generates the evidence of a realistic agent fleet:
// several teams of agents calling tools of the three risk tiers on behalf of
// humans, with policy decisions, approvals by other humans minutes later,
// and results. Everything is deterministic from a seed.
//
// Real streams are messy, so a configurable share of traces is delivered
// out of order (the result before the approval) and of events twice (same
// event_id). Scenarios plant named patterns (governance violations,
// anomalies) at configured rates; the Trace they act on records what was
// planted, as ground truth for detectors.
//
// The package does no I/O: Run hands events to a caller-supplied function.
package simulate

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// Default rates of messiness.
const (
	DefaultReorderRate   = 0.01
	DefaultDuplicateRate = 0.005
)

// Config shapes a Fleet. Zero rates mean none.
type Config struct {
	Seed        uint64
	Teams       []Team // nil: DefaultTeams()
	Tenant      string // "": "acme"
	Environment string // "": "prod"
	// ReorderRate is the share of traces delivered with their result
	// before their approval (or, without an approval, their last two
	// events swapped).
	ReorderRate float64
	// DuplicateRate is the share of events delivered a second time.
	DuplicateRate float64
	// Scenarios plant patterns into traces, each at its own rate.
	Scenarios []Scenario
}

// Scenario plants a named pattern into a share of the traces.
type Scenario struct {
	Name string
	Rate float64 // chance per trace, 0..1
	// Plant changes t in place and reports whether it applied: a scenario
	// about approvals does not apply to a trace that has none.
	Plant func(r *rand.Rand, t *Trace) bool
}

// Trace is one action's events before delivery, in causal order, with
// what produced them.
type Trace struct {
	Team        string
	Agent       *Agent
	Tool        *Tool
	RequestedBy string
	Approvers   []Approver // the team's approvers
	Events      []schemas.Event
	Planted     []string // names of the scenarios planted
}

// Find returns the first event of type typ, or nil.
func (t *Trace) Find(typ schemas.EventType) *schemas.Event {
	for i := range t.Events {
		if t.Events[i].Type == typ {
			return &t.Events[i]
		}
	}
	return nil
}

// Agent is one simulated agent.
type Agent struct {
	Identity      schemas.Agent
	Producer      schemas.Producer
	Model         string
	PromptVersion string
	Tools         []*Tool
	team          *Team
	weights       int     // sum of the tools' weights
	quota         []int64 // used quota per tool, this day
}

// Stats counts what Run delivered.
type Stats struct {
	Traces     int
	Events     int
	ByType     map[schemas.EventType]int
	Duplicates int // events delivered a second time
	Reordered  int // traces delivered out of order
	Planted    map[string]int
	Retries    int // events offered again after backpressure
	Elapsed    time.Duration
}

// ErrStop may be returned by Run's emit function to end the run early, as a
// success.
var ErrStop = errors.New("simulate: stop")

// Fleet generates traces. It is not safe for concurrent use.
type Fleet struct {
	cfg      Config
	r        *rand.Rand
	agents   []*Agent
	quotaDay int64

	// counts of the traces generated so far, for Stats
	duplicates, reordered int
	planted               map[string]int
}

// New builds the fleet described by cfg. It panics on a Team that cannot
// produce valid events, since teams are code, not input.
func New(cfg Config) *Fleet {
	if cfg.Teams == nil {
		cfg.Teams = DefaultTeams()
	}
	if cfg.Tenant == "" {
		cfg.Tenant = "acme"
	}
	if cfg.Environment == "" {
		cfg.Environment = "prod"
	}
	f := &Fleet{
		cfg:     cfg,
		r:       rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		planted: map[string]int{},
	}
	for ti := range cfg.Teams {
		t := &cfg.Teams[ti]
		if err := t.check(); err != nil {
			panic(err)
		}
		for i := 0; i < t.Agents; i++ {
			f.agents = append(f.agents, f.newAgent(t, i))
		}
	}
	return f
}

func (f *Fleet) newAgent(t *Team, i int) *Agent {
	r := f.r
	role := t.Roles[i%len(t.Roles)]
	a := &Agent{
		Identity: schemas.Agent{
			ID:          fmt.Sprintf("%s-%s-%02d", t.Name, role, i+1),
			Version:     fmt.Sprintf("%d.%d.%d", 1+r.IntN(3), r.IntN(12), r.IntN(20)),
			Team:        t.Name,
			Environment: f.cfg.Environment,
			Tenant:      f.cfg.Tenant,
		},
		Producer:      schemas.Producer{Name: "agentrail-go", Version: "0.1.0", Host: fmt.Sprintf("%s-worker-%d", t.Name, 1+r.IntN(4))},
		Model:         pick(r, models),
		PromptVersion: fmt.Sprintf("%s-v%d", role, 1+r.IntN(9)),
		team:          t,
	}
	if r.IntN(4) == 0 {
		a.Producer = schemas.Producer{Name: "agentrail-py", Version: "0.3.1", Host: a.Producer.Host}
	}
	// Every agent can read; it gets a random subset of the other tools.
	for ti := range t.Tools {
		tl := &t.Tools[ti]
		if ti == 0 || r.Float64() < 0.7 {
			a.Tools = append(a.Tools, tl)
			a.weights += tl.Weight
		}
	}
	a.quota = make([]int64, len(a.Tools))
	return a
}

// Agents returns the fleet's agents.
func (f *Fleet) Agents() []*Agent { return f.agents }

// NextTrace returns the events of one more action, in delivery order
// (possibly out of causal order, possibly with a duplicate), with event
// times backdated so that the last is at or before now.
func (f *Fleet) NextTrace(now time.Time) []schemas.Event {
	return f.Next(now).Events
}

// Events returns at least n events from whole traces, for benchmarks and
// fixtures.
func (f *Fleet) Events(n int, now time.Time) []schemas.Event {
	out := make([]schemas.Event, 0, n+8)
	for len(out) < n {
		out = append(out, f.Next(now).Events...)
	}
	return out
}

// Next returns one more action's trace, with scenarios planted and the
// delivery mess applied.
func (f *Fleet) Next(now time.Time) *Trace {
	now = now.UTC()
	if day := now.Unix() / 86400; day != f.quotaDay {
		// Quotas are daily: a new day starts them afresh.
		f.quotaDay = day
		for _, a := range f.agents {
			clear(a.quota)
		}
	}
	t := f.generate(now)
	for _, sc := range f.cfg.Scenarios {
		if f.r.Float64() < sc.Rate && sc.Plant(f.r, t) {
			t.Planted = append(t.Planted, sc.Name)
			f.planted[sc.Name]++
		}
	}
	f.mess(t)
	return t
}

// generate builds one trace in causal order. Offsets are computed from zero
// and shifted at the end so the last event lands just before now.
func (f *Fleet) generate(now time.Time) *Trace {
	r := f.r
	a := f.agents[r.IntN(len(f.agents))]
	ti := a.pickTool(r)
	tl := a.Tools[ti]
	team := a.team
	t := &Trace{Team: team.Name, Agent: a, Tool: tl, RequestedBy: pick(r, team.Humans), Approvers: team.Approvers}

	traceID, spanID := hexID(r, 32), hexID(r, 16)
	session := "sess-" + hexID(r, 12)
	envelope := func(typ schemas.EventType, at time.Duration) schemas.Event {
		return schemas.Event{
			TraceID: traceID, SpanID: spanID, Type: typ, Time: time.Unix(0, int64(at)),
			Agent: a.Identity, RequestedBy: t.RequestedBy, Tier: tl.Tier, Producer: a.Producer, SessionID: session,
		}
	}

	// Intent.
	target, params := tl.Target(r), tl.Params(r)
	digest := schemas.ActionDigest(a.Identity.ID, tl.Tool, tl.Action, target, params)
	conf := math.Round((0.55+0.44*math.Sqrt(r.Float64()))*1000) / 1000
	in := envelope(schemas.TypeIntent, 0)
	in.Intent = &schemas.Intent{
		Tool: tl.Tool, Action: tl.Action, Target: target, ActionClass: tl.ActionClass, Tier: tl.Tier,
		Parameters: params, ActionDigest: digest, Rationale: pick(r, tl.Rationales),
		ModelID: a.Model, PromptVersion: a.PromptVersion, EvidenceIDs: evidence(r), Confidence: &conf,
	}
	if tl.Context != nil {
		in.Intent.Context = tl.Context(r)
	}
	t.Events = append(t.Events, in)

	// Policy decision, milliseconds later.
	at := time.Duration(3+r.IntN(60)) * time.Millisecond
	de := envelope(schemas.TypeDecision, at)
	d := &schemas.Decision{PolicyID: tl.PolicyID, PolicyVersion: policyVersion(tl.PolicyID), MatchedRule: tl.MatchedRule, Tier: tl.Tier}
	de.Decision = d
	switch {
	case tl.Quota > 0 && a.quota[ti] >= tl.Quota:
		d.Outcome, d.MatchedRule = schemas.OutcomeDeny, tl.MatchedRule+"_exhausted"
		d.Reason = fmt.Sprintf("daily quota of %d exhausted", tl.Quota)
		zero := int64(0)
		d.RemainingQuota = &zero
	case r.Float64() < tl.DenyRate && len(tl.DenyReasons) > 0:
		d.Outcome, d.Reason = schemas.OutcomeDeny, pick(r, tl.DenyReasons)
	case tl.Tier == schemas.TierHigh || r.Float64() < tl.ApprovalRate:
		d.Outcome = schemas.OutcomeRequireApproval
		d.Reason = fmt.Sprintf("tier %d %s needs a human approval", tl.Tier, tl.ActionClass)
	default:
		d.Outcome = schemas.OutcomeAllow
	}
	if tl.Quota > 0 && d.Outcome != schemas.OutcomeDeny {
		a.quota[ti]++
		left := tl.Quota - a.quota[ti]
		d.RemainingQuota = &left
	}
	t.Events = append(t.Events, de)

	// Approval, minutes later, by someone other than the requester.
	execute := d.Outcome == schemas.OutcomeAllow
	blockedBy := "policy_denied"
	if d.Outcome == schemas.OutcomeRequireApproval {
		ap := f.approval(t, digest)
		delay := minutes(r, 4, 45)
		if ap.Status == schemas.ApprovalExpired {
			delay = 30 * time.Minute
		}
		at += delay
		ev := envelope(schemas.TypeApproval, at)
		if ap.Status == schemas.ApprovalGranted {
			exp := time.Unix(0, int64(at+time.Hour))
			ap.ExpiresAt = &exp
		}
		ev.Approval = ap
		t.Events = append(t.Events, ev)
		execute = ap.Status == schemas.ApprovalGranted
		blockedBy = "approval_" + ap.Status
	}

	// Result: the action ran, or the agent reports it was blocked (most
	// agents do; some stay silent).
	switch {
	case execute:
		dur := lognormal(r, tl.Median)
		at += time.Duration(1+r.IntN(20))*time.Millisecond + dur
		ev := envelope(schemas.TypeResult, at)
		ev.Result = result(r, a, tl, target, digest, dur)
		t.Events = append(t.Events, ev)
	case r.Float64() < 0.8:
		at += time.Duration(1+r.IntN(20)) * time.Millisecond
		ev := envelope(schemas.TypeResult, at)
		ev.Result = &schemas.Result{Status: schemas.ResultBlocked, ActionDigest: digest, Executor: a.Identity.ID, ErrorClass: blockedBy}
		t.Events = append(t.Events, ev)
	}

	// Backdate: the last event lands up to two seconds before now.
	base := now.Add(-at - time.Duration(r.Int64N(int64(2*time.Second))))
	for i := range t.Events {
		e := &t.Events[i]
		e.Time = base.Add(time.Duration(e.Time.UnixNano())).Truncate(time.Microsecond)
		if ap := e.Approval; ap != nil && ap.ExpiresAt != nil {
			x := base.Add(time.Duration(ap.ExpiresAt.UnixNano())).Truncate(time.Microsecond)
			ap.ExpiresAt = &x
		}
		e.EventID = uuid7(r, e.Time)
	}
	return t
}

func (a *Agent) pickTool(r *rand.Rand) int {
	n := r.IntN(a.weights)
	for i, tl := range a.Tools {
		if n < tl.Weight {
			return i
		}
		n -= tl.Weight
	}
	return len(a.Tools) - 1
}

func (f *Fleet) approval(t *Trace, digest string) *schemas.Approval {
	r := f.r
	ap := &schemas.Approval{
		ApprovalID:   "apr-" + hexID(r, 16),
		ApproverKind: schemas.PrincipalHuman,
		ActionDigest: digest,
		Scope:        schemas.ScopeSingle,
		Channel:      pick(r, channels),
	}
	switch x := r.Float64(); {
	case x < 0.08:
		ap.Scope = schemas.ScopeBundle
	case x < 0.11:
		ap.Scope = schemas.ScopeTimeWindow
	}
	switch x := r.Float64(); {
	case x < 0.86:
		ap.Status = schemas.ApprovalGranted
		ap.Comment = pick(r, []string{"ok", "approved, matches the ticket", "fine for this customer", "go ahead", "checked against the contract"})
	case x < 0.95:
		ap.Status = schemas.ApprovalRejected
		ap.Comment = pick(r, []string{"amount not justified by the ticket", "wait for the customer's confirmation", "wrong account, please recheck", "not before quarter close"})
	default:
		ap.Status = schemas.ApprovalExpired
		ap.Comment = "no decision within 30m"
		ap.Channel = ""
		return ap
	}
	// The approver is never the requester (the approved_by_requester
	// scenario plants exactly that).
	for i := 0; i < 8; i++ {
		who := pick(r, t.Approvers)
		if who.Email != t.RequestedBy {
			ap.Approver, ap.ApproverRole = who.Email, who.Role
			return ap
		}
	}
	ap.Approver, ap.ApproverRole = "security-desk@acme.example", "security-desk"
	return ap
}

func result(r *rand.Rand, a *Agent, tl *Tool, target, digest string, dur time.Duration) *schemas.Result {
	res := &schemas.Result{Status: schemas.ResultSuccess, ActionDigest: digest, Executor: a.Identity.ID, DurationUS: dur.Microseconds()}
	switch x := r.Float64(); {
	case x < 0.04 && len(tl.Failures) > 0:
		res.Status, res.ErrorClass = schemas.ResultFailure, pick(r, tl.Failures)
		res.ErrorMessage = "target refused the action: " + res.ErrorClass
		return res
	case x < 0.07 && len(tl.Errors) > 0:
		res.Status, res.ErrorClass = schemas.ResultError, pick(r, tl.Errors)
		res.ErrorMessage = "tool call failed after 3 attempts: " + res.ErrorClass
		return res
	}
	if tl.Writes {
		res.ChangedResource = target
	}
	if tl.SideEffect != "" {
		res.SideEffects = []string{tl.SideEffect + hexID(r, 12)}
	}
	return res
}

func (f *Fleet) mess(t *Trace) {
	r := f.r
	if n := len(t.Events); n >= 2 && r.Float64() < f.cfg.ReorderRate {
		i, j := n-2, n-1
		if ap := indexOf(t.Events, schemas.TypeApproval); ap >= 0 {
			if re := indexOf(t.Events, schemas.TypeResult); re > ap {
				i, j = ap, re
			}
		}
		t.Events[i], t.Events[j] = t.Events[j], t.Events[i]
		f.reordered++
	}
	if f.cfg.DuplicateRate > 0 {
		for i := 0; i < len(t.Events); i++ {
			if r.Float64() < f.cfg.DuplicateRate {
				dup := t.Events[i]
				// A redelivery arrives a little later, after the next event
				// if there is one.
				at := min(i+1+r.IntN(2), len(t.Events))
				t.Events = append(t.Events[:at], append([]schemas.Event{dup}, t.Events[at:]...)...)
				f.duplicates++
				i = at // never duplicate the duplicate
			}
		}
	}
}

func indexOf(evs []schemas.Event, typ schemas.EventType) int {
	for i := range evs {
		if evs[i].Type == typ {
			return i
		}
	}
	return -1
}

// Run generates traces and hands their events to emit, rate events per
// second (0 or less: as fast as emit takes them), for duration (0 or less:
// until ctx ends or emit returns ErrStop). Event times come from now. An
// emit error with a Temporary method that reports true (the producer SDK's
// ErrBufferFull) is backpressure: the same event is offered again. Any
// other emit error but ErrStop ends the run with that error. Run returns
// what it delivered; events of a trace not yet delivered when it ends are
// not counted.
func (f *Fleet) Run(ctx context.Context, emit func(context.Context, *schemas.Event) error, rate float64, duration time.Duration, now func() time.Time) (Stats, error) {
	if now == nil {
		now = time.Now
	}
	st := Stats{ByType: map[schemas.EventType]int{}, Planted: map[string]int{}}
	dup0, reo0 := f.duplicates, f.reordered
	planted0 := make(map[string]int, len(f.planted))
	for k, v := range f.planted {
		planted0[k] = v
	}
	start := time.Now()
	var deadline <-chan time.Time
	if duration > 0 {
		t := time.NewTimer(duration)
		defer t.Stop()
		deadline = t.C
	}
	var pace *time.Timer
	defer func() {
		if pace != nil {
			pace.Stop()
		}
	}()
	finish := func(err error) (Stats, error) {
		st.Elapsed = time.Since(start)
		st.Duplicates, st.Reordered = f.duplicates-dup0, f.reordered-reo0
		for k, v := range f.planted {
			if n := v - planted0[k]; n > 0 {
				st.Planted[k] = n
			}
		}
		return st, err
	}
	var queue []schemas.Event
	for {
		select {
		case <-ctx.Done():
			return finish(nil)
		case <-deadline:
			return finish(nil)
		default:
		}
		if len(queue) == 0 {
			queue = f.Next(now()).Events
			st.Traces++
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(st.Events) / rate * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				if pace == nil {
					pace = time.NewTimer(wait)
				} else {
					pace.Reset(wait)
				}
				select {
				case <-ctx.Done():
					return finish(nil)
				case <-deadline:
					return finish(nil)
				case <-pace.C:
				}
			}
		}
		ev := &queue[0]
		err := emit(ctx, ev)
		for isTemporary(err) {
			// Backpressure: emit already waited its own limit, so
			// offering the event again paces the run.
			st.Retries++
			if ctx.Err() != nil {
				return finish(nil)
			}
			err = emit(ctx, ev)
		}
		if err != nil {
			if errors.Is(err, ErrStop) {
				return finish(nil)
			}
			return finish(fmt.Errorf("simulate: emit: %w", err))
		}
		st.Events++
		st.ByType[ev.Type]++
		queue = queue[1:]
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return err != nil && errors.As(err, &t) && t.Temporary()
}

const hexDigits = "0123456789abcdef"

// hexID returns n random lowercase hex characters, not all zeros.
func hexID(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for {
		nonzero := false
		for i := range b {
			c := r.IntN(16)
			nonzero = nonzero || c != 0
			b[i] = hexDigits[c]
		}
		if nonzero {
			return string(b)
		}
	}
}

// uuid7 returns a UUIDv7 for time at, with random bits from r.
func uuid7(r *rand.Rand, at time.Time) string {
	hi := uint64(at.UnixMilli())<<16 | 0x7000 | r.Uint64()&0x0fff
	lo := r.Uint64()&0x3fffffffffffffff | 0x8000000000000000
	var h [32]byte
	for i := 15; i >= 0; i-- {
		h[i], h[16+i] = hexDigits[hi&0xf], hexDigits[lo&0xf]
		hi >>= 4
		lo >>= 4
	}
	return string(h[0:8]) + "-" + string(h[8:12]) + "-" + string(h[12:16]) + "-" + string(h[16:20]) + "-" + string(h[20:32])
}

func evidence(r *rand.Rand) []string {
	kinds := []string{"kb-", "ticket-", "doc-", "policy-", "log-"}
	out := make([]string, 1+r.IntN(3))
	for i := range out {
		out[i] = pick(r, kinds) + digits(r, 5)
	}
	return out
}

// minutes draws a human's reaction time: log-normal with the given median
// in minutes, capped.
func minutes(r *rand.Rand, median, max float64) time.Duration {
	m := median * math.Exp(0.8*r.NormFloat64())
	m = math.Min(math.Max(m, 0.3), max)
	return time.Duration(m * float64(time.Minute)).Round(time.Millisecond)
}

// lognormal draws an execution time around median.
func lognormal(r *rand.Rand, median time.Duration) time.Duration {
	d := time.Duration(float64(median) * math.Exp(0.6*r.NormFloat64()))
	return max(d, time.Millisecond).Round(time.Microsecond)
}

// policyVersion is the revision of a policy the fleet runs under: fixed per
// policy, so that only the stale_policy scenario decides under an older one
// (a fleet that rolled policy versions at random would look stale all over).
func policyVersion(policyID string) int64 {
	h := fnv.New32a()
	h.Write([]byte(policyID))
	return 3 + int64(h.Sum32()%20)
}
