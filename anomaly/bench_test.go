package anomaly

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// benchStream is one trace (intent, decision, approval for tier 3, result)
// per agent for n distinct agents, spread over an hour of event time, with
// the outcomes and tools of a busy fleet: 8 tools per team, a few denials,
// approvals by 1,000 approvers.
func benchStream(n int) []schemas.Event {
	r := rand.New(rand.NewPCG(1, 2))
	teams := []string{"finance", "support", "devops", "sales", "legal", "data"}
	tools := []struct {
		tool, action, class string
		tier                int32
	}{{"ledger", "read", "read", 1}, {"tickets", "read", "read", 1}, {"docs", "draft", "draft", 1}, {"email", "send", "send", 2},
		{"crm", "update", "update", 2}, {"payments", "refund", "refund", 3}, {"iam", "grant", "access_grant", 3}, {"storage", "delete", "delete", 3}}
	start := time.Date(2026, 11, 18, 13, 0, 0, 0, time.UTC)
	step := time.Hour / time.Duration(n)
	out := make([]schemas.Event, 0, 4*n)
	for i := range n {
		agent := schemas.Agent{ID: fmt.Sprintf("agent-%06d", i), Team: teams[i%len(teams)]}
		tl := tools[r.IntN(len(tools))]
		at := start.Add(time.Duration(i) * step)
		trace := fmt.Sprintf("%032x", i+1)
		target := fmt.Sprintf("obj:%d", r.IntN(50))
		env := func(k int, typ schemas.EventType, t time.Time) schemas.Event {
			return schemas.Event{EventID: fmt.Sprintf("%s-%d", trace, k), TraceID: trace, Type: typ, Time: t, Agent: agent,
				RequestedBy: "human@acme.test", Tier: tl.tier}
		}
		in := env(0, schemas.TypeIntent, at)
		in.Intent = &schemas.Intent{Tool: tl.tool, Action: tl.action, Target: target, ActionClass: tl.class, Tier: tl.tier,
			ActionDigest: fmt.Sprintf("%064x", r.Uint64())}
		de := env(1, schemas.TypeDecision, at.Add(20*time.Millisecond))
		outcome := schemas.OutcomeAllow
		switch {
		case r.IntN(50) == 0:
			outcome = schemas.OutcomeDeny
		case tl.tier == 3:
			outcome = schemas.OutcomeRequireApproval
		}
		de.Decision = &schemas.Decision{Outcome: outcome, PolicyID: "p-" + tl.class, Tier: tl.tier}
		out = append(out, in, de)
		res := schemas.ResultSuccess
		if outcome == schemas.OutcomeRequireApproval {
			ap := env(2, schemas.TypeApproval, at.Add(2*time.Minute))
			ap.Approval = &schemas.Approval{ApprovalID: "apr-" + trace, Status: schemas.ApprovalGranted,
				Approver: fmt.Sprintf("approver-%d@acme.test", r.IntN(1000)), ApproverKind: schemas.PrincipalHuman}
			out = append(out, ap)
		}
		if outcome == schemas.OutcomeDeny {
			res = schemas.ResultBlocked
		}
		re := env(3, schemas.TypeResult, at.Add(3*time.Minute))
		re.Result = &schemas.Result{Status: res, ActionDigest: in.Intent.ActionDigest}
		out = append(out, re)
	}
	return out
}

var benchConfig = Config{}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkEngine100kAgents measures the default rules' cost per event and
// the memory their state takes with 100,000 distinct agents active within
// an hour (every agent has state in every rule that groups by agent).
func BenchmarkEngine100kAgents(b *testing.B) {
	const agents = 100_000
	evs := benchStream(agents)
	span := evs[len(evs)-1].Time.Sub(evs[0].Time) + time.Minute

	before := heapInUse()
	en, err := NewEngine(DefaultRules(), benchConfig)
	if err != nil {
		b.Fatal(err)
	}
	for i := range evs {
		en.Observe(&evs[i])
	}
	state := heapInUse() - before
	groups := 0
	for _, r := range en.Stats().Rules {
		groups += r.Groups
	}
	b.ReportAllocs()
	i, shift := 0, span
	for b.Loop() {
		if i == len(evs) {
			// Next hour: the same agents act again.
			b.StopTimer()
			for j := range evs {
				evs[j].Time = evs[j].Time.Add(shift)
			}
			i = 0
			b.StartTimer()
		}
		en.Observe(&evs[i])
		i++
	}
	b.ReportMetric(float64(state)/agents, "state-B/agent")
	b.ReportMetric(float64(state)/(1<<20), "state-MiB")
	b.ReportMetric(float64(groups), "groups")
}

// BenchmarkEngineFleet is the default rules over the simulated fleet's
// realistic stream (35 agents, mixed traces).
func BenchmarkEngineFleet(b *testing.B) {
	s := fleetScenarioFor(b, 11)
	evs := s.live
	en, err := NewEngine(DefaultRules(), Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(evs) {
			b.StopTimer()
			en, _ = NewEngine(DefaultRules(), Config{})
			i = 0
			b.StartTimer()
		}
		en.Observe(&evs[i].ev)
		i++
	}
}
