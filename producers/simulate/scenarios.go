package simulate

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// Governance violation kinds, as consumers/correlate names them. Each
// violation scenario plants exactly one of them, and a trace carries at most
// one planted violation, so Trace.Planted is exact ground truth for a
// detector.
const (
	KindExecutedWithoutApproval = "executed_without_approval"
	KindExecutedAfterDeny       = "executed_after_deny"
	KindNoPolicyDecision        = "no_policy_decision"
	KindSeparationOfDuties      = "separation_of_duties"
	KindPayloadMismatch         = "payload_mismatch"
	KindApprovalOutOfScope      = "approval_out_of_scope"
	KindStalePolicy             = "stale_policy"
)

type violation struct {
	kind string
	// applies is the share of the default fleet's traces the scenario can
	// be planted in (measured over 5000 traces), so that
	// ViolationScenarios can aim at a share per kind.
	applies float64
	plant   func(r *rand.Rand, t *Trace) bool
}

// builtins are the governance violations the simulator knows how to plant.
// Detecting them is the consumers' job; these only make the ground truth.
var builtins = map[string]violation{
	// The action ran although its approval was never given: the approval
	// event is gone and the result reports success.
	"executed_without_approval": {KindExecutedWithoutApproval, 0.089, func(r *rand.Rand, t *Trace) bool {
		i := indexOf(t.Events, schemas.TypeApproval)
		res := t.Find(schemas.TypeResult)
		if i < 0 || res == nil {
			return false
		}
		t.Events = append(t.Events[:i], t.Events[i+1:]...)
		res = t.Find(schemas.TypeResult)
		res.Result.Status, res.Result.ErrorClass, res.Result.ErrorMessage = schemas.ResultSuccess, "", ""
		res.Result.ChangedResource = t.Find(schemas.TypeIntent).Intent.Target
		return true
	}},
	// The human who asked for the action also approved it.
	"approved_by_requester": {KindSeparationOfDuties, 0.080, func(r *rand.Rand, t *Trace) bool {
		ap := t.Find(schemas.TypeApproval)
		if ap == nil || ap.Approval.Status != schemas.ApprovalGranted {
			return false
		}
		ap.Approval.Approver = t.RequestedBy
		return true
	}},
	// What ran differs from what was approved (or, without an approval,
	// from what the policy allowed): the result's digest is that of other
	// parameters.
	"payload_differs": {KindPayloadMismatch, 0.980, func(r *rand.Rand, t *Trace) bool {
		in, res := t.Find(schemas.TypeIntent), t.Find(schemas.TypeResult)
		if in == nil || res == nil || res.Result.Status == schemas.ResultBlocked {
			return false
		}
		p := make(map[string]string, len(in.Intent.Parameters)+1)
		for k, v := range in.Intent.Parameters {
			p[k] = v
		}
		p["amount"] = fmt.Sprintf("%d.00", 1000+r.IntN(9000))
		res.Result.ActionDigest = schemas.ActionDigest(in.Agent.ID, in.Intent.Tool, in.Intent.Action, in.Intent.Target, p)
		return true
	}},
	// The policy denied the action and it ran anyway.
	"executed_despite_deny": {KindExecutedAfterDeny, 0.006, func(r *rand.Rand, t *Trace) bool {
		de, res := t.Find(schemas.TypeDecision), t.Find(schemas.TypeResult)
		if de == nil || res == nil || de.Decision.Outcome != schemas.OutcomeDeny {
			return false
		}
		res.Result.Status, res.Result.ErrorClass = schemas.ResultSuccess, ""
		res.Result.DurationUS = lognormal(r, t.Tool.Median).Microseconds()
		return true
	}},
}

// moreViolations plant the other violation kinds. They are kept apart from
// builtins only because BuiltinNames is what the package's own scenario
// test checks one by one; Builtin and ParseScenarios know both.
var moreViolations = map[string]violation{
	// The approval was given, but only after the action had run: the result
	// now lies between the decision and the approval.
	"approval_after_execution": {KindExecutedWithoutApproval, 0.082, func(r *rand.Rand, t *Trace) bool {
		de, ap, res := t.Find(schemas.TypeDecision), t.Find(schemas.TypeApproval), t.Find(schemas.TypeResult)
		if de == nil || ap == nil || !ran(res) || ap.Approval.Status != schemas.ApprovalGranted {
			return false
		}
		gap := ap.Time.Sub(de.Time)
		res.Time = de.Time.Add(time.Duration(float64(gap) * (0.2 + 0.6*r.Float64()))).Truncate(time.Microsecond)
		sortByTime(t)
		return true
	}},
	// An agent approved: the acting agent itself, or an automated approver
	// service.
	"approved_by_agent": {KindSeparationOfDuties, 0.082, func(r *rand.Rand, t *Trace) bool {
		ap := t.Find(schemas.TypeApproval)
		if ap == nil || ap.Approval.Status != schemas.ApprovalGranted {
			return false
		}
		if r.IntN(2) == 0 {
			ap.Approval.Approver, ap.Approval.ApproverKind, ap.Approval.ApproverRole = t.Agent.Identity.ID, schemas.PrincipalAgent, ""
		} else {
			ap.Approval.Approver, ap.Approval.ApproverKind, ap.Approval.ApproverRole = "auto-approver", schemas.PrincipalService, "automation"
		}
		return true
	}},
	// The action ran without asking the policy engine: the decision event
	// is gone.
	"no_policy_decision": {KindNoPolicyDecision, 0.980, func(r *rand.Rand, t *Trace) bool {
		i := indexOf(t.Events, schemas.TypeDecision)
		if i < 0 || !ran(t.Find(schemas.TypeResult)) {
			return false
		}
		t.Events = append(t.Events[:i], t.Events[i+1:]...)
		return true
	}},
	// The approval had expired when the action ran.
	"approval_used_after_expiry": {KindApprovalOutOfScope, 0.080, func(r *rand.Rand, t *Trace) bool {
		ap, res := t.Find(schemas.TypeApproval), t.Find(schemas.TypeResult)
		if ap == nil || !ran(res) || ap.Approval.Status != schemas.ApprovalGranted || !res.Time.After(ap.Time) {
			return false
		}
		x := ap.Time.Add(res.Time.Sub(ap.Time) / 2).Truncate(time.Microsecond)
		if !x.Before(res.Time) {
			return false
		}
		ap.Approval.ExpiresAt = &x
		return true
	}},
	// A single-action approval was used twice: the same payload ran again
	// minutes later.
	"single_approval_reused": {KindApprovalOutOfScope, 0.069, func(r *rand.Rand, t *Trace) bool {
		ap, res := t.Find(schemas.TypeApproval), t.Find(schemas.TypeResult)
		if ap == nil || res == nil || res.Result.Status != schemas.ResultSuccess || ap.Approval.Status != schemas.ApprovalGranted ||
			(ap.Approval.Scope != schemas.ScopeSingle && ap.Approval.Scope != "") {
			return false
		}
		// Move the trace back so the second run is still in the past.
		gap := time.Duration(1+r.IntN(20)) * time.Minute
		for i := range t.Events {
			e := &t.Events[i]
			e.Time = e.Time.Add(-gap)
			if e.Approval != nil && e.Approval.ExpiresAt != nil {
				x := e.Approval.ExpiresAt.Add(-gap)
				e.Approval.ExpiresAt = &x
			}
		}
		again := *t.Find(schemas.TypeResult)
		again.Time = again.Time.Add(gap)
		again.EventID = uuid7(r, again.Time)
		rc := *again.Result
		again.Result = &rc
		t.Events = append(t.Events, again)
		return true
	}},
	// The decision was made by a policy engine replica still running an
	// older revision of the policy.
	"stale_policy": {KindStalePolicy, 1, func(r *rand.Rand, t *Trace) bool {
		de := t.Find(schemas.TypeDecision)
		if de == nil || de.Decision.PolicyVersion < 2 {
			return false
		}
		v := de.Decision.PolicyVersion
		de.Decision.PolicyVersion = v - 1 - int64(r.IntN(int(min(3, v-1))))
		return true
	}},
}

// ran reports whether a result says the action ran (or was attempted).
func ran(res *schemas.Event) bool {
	return res != nil && res.Result.Status != schemas.ResultBlocked
}

func sortByTime(t *Trace) {
	sort.SliceStable(t.Events, func(i, j int) bool { return t.Events[i].Time.Before(t.Events[j].Time) })
}

func lookup(name string) (violation, bool) {
	if v, ok := builtins[name]; ok {
		return v, true
	}
	v, ok := moreViolations[name]
	return v, ok
}

// BuiltinNames lists the original built-in scenarios, sorted. Every name in
// ViolationScenarioNames is built in too.
func BuiltinNames() []string { return sortedNames(builtins) }

// ViolationScenarioNames lists every scenario that plants a governance
// violation, sorted: at least one per kind.
func ViolationScenarioNames() []string {
	all := map[string]violation{}
	for n, v := range builtins {
		all[n] = v
	}
	for n, v := range moreViolations {
		all[n] = v
	}
	return sortedNames(all)
}

func sortedNames(m map[string]violation) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ViolationKind returns the violation kind a scenario plants.
func ViolationKind(scenario string) (string, bool) {
	v, ok := lookup(scenario)
	return v.kind, ok
}

// ViolationScenarios returns every violation scenario, each at the rate
// that makes about share of the default fleet's traces carry each kind
// (0.002: two traces in a thousand per kind). A scenario that applies to few
// traces (a deny that is executed needs a deny) gets a higher rate, capped
// at 1.
func ViolationScenarios(share float64) ([]Scenario, error) {
	if !(share >= 0 && share <= 1) {
		return nil, fmt.Errorf("simulate: violation share %v out of range 0..1", share)
	}
	perKind := map[string]int{}
	names := ViolationScenarioNames()
	for _, n := range names {
		v, _ := lookup(n)
		perKind[v.kind]++
	}
	var out []Scenario
	for _, n := range names {
		v, _ := lookup(n)
		sc, err := Builtin(n, min(1, share/(v.applies*float64(perKind[v.kind]))))
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	return out, nil
}

// Builtin returns the named built-in scenario at the given rate. A
// violation scenario does not apply to a trace that already carries a
// planted violation.
func Builtin(name string, rate float64) (Scenario, error) {
	v, ok := lookup(name)
	if !ok {
		return Scenario{}, fmt.Errorf("simulate: unknown scenario %q (known: %s)", name, strings.Join(ViolationScenarioNames(), ", "))
	}
	if !(rate >= 0 && rate <= 1) {
		return Scenario{}, fmt.Errorf("simulate: scenario %s: rate %v out of range 0..1", name, rate)
	}
	plant := func(r *rand.Rand, t *Trace) bool {
		if len(t.Planted) > 0 {
			return false
		}
		return v.plant(r, t)
	}
	return Scenario{Name: name, Rate: rate, Plant: plant}, nil
}

// ParseScenarios parses "name=rate,name=rate" into built-in scenarios, in
// the order given.
func ParseScenarios(s string) ([]Scenario, error) {
	var out []Scenario
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, rs, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("simulate: scenario %q: want name=rate", part)
		}
		rate, err := strconv.ParseFloat(rs, 64)
		if err != nil {
			return nil, fmt.Errorf("simulate: scenario %s: rate: %w", name, err)
		}
		sc, err := Builtin(name, rate)
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	return out, nil
}
