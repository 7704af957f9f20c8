package policy

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/agentrail/agentrail/reports/registry"
)

// benchRegistry registers 3,000 agents in six teams, each with the shapes
// of grant the shipped registry uses: tier 1 on a pattern, tier 2 with a
// daily limit, tier 3 with approval, a narrower pattern, and for every
// tenth agent a shadow grant.
func benchRegistry() *registry.Registry {
	teams := []string{"finance", "support", "devops", "sales", "legal", "data"}
	r := &registry.Registry{}
	for _, t := range teams {
		r.Teams = append(r.Teams, registry.Team{Name: t})
	}
	for a := range 3000 {
		t := teams[a%6]
		ag := registry.Agent{ID: fmt.Sprintf("%s-agent-%d", t, a), Team: t, Owner: "owner@acme.example",
			Grants: []registry.Grant{
				{Tool: "kb", Action: "search", Resource: "kb:*", Tier: 1},
				{Tool: "crm", Action: "update", Resource: "res:*", Tier: 1},
				{Tool: "crm", Action: "update", Resource: "res:1*", Tier: 1, ActionClasses: []string{"write"}},
				{Tool: "email", Action: "send", Resource: "customer:*", Tier: 2, RateLimit: &registry.RateLimit{PerDay: 1_000_000}},
				{Tool: "payments", Action: "refund", Resource: "charge:ch_*", Tier: 3,
					Approval: &registry.Approval{Required: true, ApproverRoles: []string{"finance-lead"}}},
			}}
		if a%10 == 0 {
			ag.Grants = append(ag.Grants, registry.Grant{Tool: "email", Action: "send", Resource: "customer:*", Tier: 2,
				RateLimit: &registry.RateLimit{PerDay: 1_000_000}, Shadow: true})
		}
		r.Agents = append(r.Agents, ag)
	}
	return r
}

// benchRequests mixes what a gate sees: tier 1 allows, rate-limited tier 2,
// tier 3 approvals, a narrower pattern, denials without a grant.
func benchRequests(reg *registry.Registry) []Request {
	var out []Request
	for i, a := range reg.Agents {
		var r Request
		switch i % 6 {
		case 0:
			r = Request{Tool: "kb", Action: "search", Target: "kb:article-77", ActionClass: "read", Tier: 1}
		case 1:
			r = Request{Tool: "crm", Action: "update", Target: "res:1042", ActionClass: "write", Tier: 1}
		case 2, 3:
			r = Request{Tool: "email", Action: "send", Target: "customer:c-9917", ActionClass: "send", Tier: 2}
		case 4:
			r = Request{Tool: "payments", Action: "refund", Target: "charge:ch_3Nf", ActionClass: "refund", Tier: 3}
		case 5:
			r = Request{Tool: "crm", Action: "export", Target: "contacts", ActionClass: "read", Tier: 1}
		}
		r.AgentID, r.Team, r.Environment = a.ID, a.Team, "prod"
		out = append(out, r)
	}
	return out
}

func BenchmarkDecide(b *testing.B) {
	reg := benchRegistry()
	t0 := time.Now()
	e, err := New(reg, 1)
	if err != nil {
		b.Fatal(err)
	}
	build := time.Since(t0)
	reqs := benchRequests(reg)
	b.Run("throughput", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			_ = e.Decide(reqs[i%len(reqs)])
			i++
		}
		b.ReportMetric(float64(build.Microseconds())/1000, "build-ms")
	})
	b.Run("latency", func(b *testing.B) {
		const n = 100_000
		lat := make([]time.Duration, n)
		for b.Loop() {
			for i := range lat {
				r := reqs[i%len(reqs)]
				s := time.Now()
				_ = e.Decide(r)
				lat[i] = time.Since(s)
			}
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[n/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(lat[n*99/100].Nanoseconds()), "p99-ns")
		b.ReportMetric(float64(lat[n*999/1000].Nanoseconds()), "p99.9-ns")
	})
}
