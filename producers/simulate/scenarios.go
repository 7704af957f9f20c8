package simulate

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	"github.com/agentrail/agentrail/schemas"
)

// builtins are the governance violations the simulator knows how to plant.
// Detecting them is the consumers' job; these only make the ground truth.
var builtins = map[string]func(r *rand.Rand, t *Trace) bool{
	// The action ran although its approval was never given: the approval
	// event is gone and the result reports success.
	"executed_without_approval": func(r *rand.Rand, t *Trace) bool {
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
	},
	// The human who asked for the action also approved it.
	"approved_by_requester": func(r *rand.Rand, t *Trace) bool {
		ap := t.Find(schemas.TypeApproval)
		if ap == nil || ap.Approval.Status != schemas.ApprovalGranted {
			return false
		}
		ap.Approval.Approver = t.RequestedBy
		return true
	},
	// What ran differs from what was approved: the result's digest is that
	// of other parameters.
	"payload_differs": func(r *rand.Rand, t *Trace) bool {
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
	},
	// The policy denied the action and it ran anyway.
	"executed_despite_deny": func(r *rand.Rand, t *Trace) bool {
		de, res := t.Find(schemas.TypeDecision), t.Find(schemas.TypeResult)
		if de == nil || res == nil || de.Decision.Outcome != schemas.OutcomeDeny {
			return false
		}
		res.Result.Status, res.Result.ErrorClass = schemas.ResultSuccess, ""
		res.Result.DurationUS = lognormal(r, t.Tool.Median).Microseconds()
		return true
	},
}

// BuiltinNames lists the scenarios Builtin knows, sorted.
func BuiltinNames() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Builtin returns the named built-in scenario at the given rate.
func Builtin(name string, rate float64) (Scenario, error) {
	plant, ok := builtins[name]
	if !ok {
		return Scenario{}, fmt.Errorf("simulate: unknown scenario %q (known: %s)", name, strings.Join(BuiltinNames(), ", "))
	}
	if !(rate >= 0 && rate <= 1) {
		return Scenario{}, fmt.Errorf("simulate: scenario %s: rate %v out of range 0..1", name, rate)
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
