package correlate

import (
	"fmt"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// The tests' trace: billing-bot refunds order:991 for alice; bob approves.
const (
	testTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpan  = "00f067aa0ba902b7"
	testAgent = "billing-bot"
	alice     = "alice@acme.test"
	bob       = "bob@acme.test"
)

var (
	t0      = time.Date(2026, 11, 16, 9, 30, 0, 0, time.UTC)
	params  = map[string]string{"amount": "120.00", "currency": "EUR"}
	digestA = schemas.ActionDigest(testAgent, "payments", "refund", "order:991", params)
	digestB = schemas.ActionDigest(testAgent, "payments", "refund", "order:991", map[string]string{"amount": "9120.00", "currency": "EUR"})
)

// at is t0 plus a duration written as a string ("6m12s").
func at(d string) time.Time {
	x, err := time.ParseDuration(d)
	if err != nil {
		panic(err)
	}
	return t0.Add(x)
}

func envelope(id string, typ schemas.EventType, when string, tier int32) schemas.Event {
	return schemas.Event{
		EventID: id, TraceID: testTrace, SpanID: testSpan, Type: typ, Time: at(when), Tier: tier,
		Agent:       schemas.Agent{ID: testAgent, Version: "1.4.2", Team: "finance", Environment: "prod", Tenant: "acme"},
		RequestedBy: alice, Producer: schemas.Producer{Name: "test", Host: "worker-7"},
	}
}

func intentEv(id, when string, tier int32, digest string) schemas.Event {
	e := envelope(id, schemas.TypeIntent, when, tier)
	e.Intent = &schemas.Intent{Tool: "payments", Action: "refund", Target: "order:991", ActionClass: "refund", Tier: tier,
		Parameters: params, ActionDigest: digest, Rationale: "customer charged twice"}
	return e
}

func decisionEv(id, when string, tier int32, outcome string, version int64) schemas.Event {
	e := envelope(id, schemas.TypeDecision, when, tier)
	e.Decision = &schemas.Decision{Outcome: outcome, PolicyID: "refunds", PolicyVersion: version, MatchedRule: "high_value_refund", Tier: tier}
	return e
}

type approvalOpt func(*schemas.Approval)

func approvalEv(id, when string, tier int32, status, approver string, opts ...approvalOpt) schemas.Event {
	e := envelope(id, schemas.TypeApproval, when, tier)
	e.Approval = &schemas.Approval{ApprovalID: "apr-1", Status: status, Approver: approver, ApproverKind: schemas.PrincipalHuman,
		ActionDigest: digestA, Scope: schemas.ScopeSingle}
	if status == schemas.ApprovalGranted {
		x := e.Time.Add(time.Hour)
		e.Approval.ExpiresAt = &x
	}
	for _, o := range opts {
		o(e.Approval)
	}
	return e
}

func withDigest(d string) approvalOpt { return func(a *schemas.Approval) { a.ActionDigest = d } }
func withScope(s string) approvalOpt  { return func(a *schemas.Approval) { a.Scope = s } }
func withKind(k string) approvalOpt   { return func(a *schemas.Approval) { a.ApproverKind = k } }
func withID(id string) approvalOpt    { return func(a *schemas.Approval) { a.ApprovalID = id } }
func expiring(when string) approvalOpt {
	return func(a *schemas.Approval) { x := at(when); a.ExpiresAt = &x }
}
func inSpan(e schemas.Event, span string) schemas.Event { e.SpanID = span; return e }

func resultEv(id, when string, tier int32, status, digest string) schemas.Event {
	e := envelope(id, schemas.TypeResult, when, tier)
	e.Result = &schemas.Result{Status: status, ActionDigest: digest, Executor: testAgent, ChangedResource: "order:991", DurationUS: 1200}
	return e
}

// approved is the clean tier-3 trace: intent, require_approval, granted
// approval by bob, success.
func approved() []schemas.Event {
	return []schemas.Event{
		intentEv("ev-1", "0s", 3, digestA),
		decisionEv("ev-2", "27ms", 3, schemas.OutcomeRequireApproval, 12),
		approvalEv("ev-3", "6m2s", 3, schemas.ApprovalGranted, bob),
		resultEv("ev-4", "6m12s", 3, schemas.ResultSuccess, digestA),
	}
}

// without returns evs without the events with the given ids.
func without(evs []schemas.Event, ids ...string) []schemas.Event {
	drop := map[string]bool{}
	for _, id := range ids {
		drop[id] = true
	}
	var out []schemas.Event
	for _, e := range evs {
		if !drop[e.EventID] {
			out = append(out, e)
		}
	}
	return out
}

// replace returns evs with the event of e's id replaced by e, or e added.
func replace(evs []schemas.Event, es ...schemas.Event) []schemas.Event {
	out := append([]schemas.Event(nil), evs...)
	for _, e := range es {
		found := false
		for i := range out {
			if out[i].EventID == e.EventID {
				out[i], found = e, true
			}
		}
		if !found {
			out = append(out, e)
		}
	}
	return out
}

// fixedPolicies is a Policies with given sightings.
type fixedPolicies map[string][]Sighting

func (f fixedPolicies) Newer(policyID string, version int64, at time.Time) (Sighting, bool) {
	v := newPolicyView()
	for _, s := range f[policyID] {
		v.observe(policyID, s.Version, s.FirstSeen, s.EventID)
	}
	return v.Newer(policyID, version, at)
}

func kindsOf(vs []Violation) []Kind {
	out := []Kind{}
	for _, v := range vs {
		out = append(out, v.Kind)
	}
	return out
}

func traceID(i int) string { return fmt.Sprintf("%032x", i+1) }

func ptime(t time.Time) *time.Time { return &t }
