package correlate

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// randomTrace is a trace built to reach every branch of the model: up to
// maxSpans spans (some events span-less), each with a random subset of
// intent, decision, approval and result, fields from small pools so they
// collide (digests, approvers, requesters with case and space variants,
// identical times), and copies of events under the same id, some of them
// differing in time or type.
func randomTrace(r *rand.Rand, maxSpans int) []schemas.Event {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	spans := 1 + r.IntN(maxSpans)
	var evs []schemas.Event
	id := 0
	when := func() time.Time { return t0.Add(time.Duration(r.IntN(40)) * 15 * time.Second) }
	for s := 0; s < spans; s++ {
		span := fmt.Sprintf("span-%02d", s)
		if r.IntN(6) == 0 {
			span = ""
		}
		for k := 0; k < 4; k++ {
			for n := r.IntN(3); n > 0; n-- {
				id++
				e := envelope(fmt.Sprintf("ev-%03d", id), "", "0s", int32(r.IntN(4)))
				e.TraceID, e.SpanID, e.Time = testTrace, span, when()
				e.RequestedBy = pick(alice, "", " Alice@ACME.test ", bob)
				e.Agent.ID = pick(testAgent, "other-bot", "")
				digest := pick(digestA, digestB, "")
				switch k {
				case 0:
					e.Type = schemas.TypeIntent
					e.Intent = &schemas.Intent{Tool: "payments", Action: pick("refund", ""), Target: pick("order:991", ""), ActionDigest: digest}
				case 1:
					e.Type = schemas.TypeDecision
					e.Decision = &schemas.Decision{Outcome: pick(schemas.OutcomeAllow, schemas.OutcomeDeny, schemas.OutcomeRequireApproval),
						PolicyID: pick("refunds", "", "other"), PolicyVersion: int64(r.IntN(4)), MatchedRule: pick("", "high_value_refund")}
				case 2:
					e.Type = schemas.TypeApproval
					e.Approval = &schemas.Approval{ApprovalID: pick("apr-1", "apr-2", ""),
						Status:   pick(schemas.ApprovalGranted, schemas.ApprovalGranted, schemas.ApprovalRequested, schemas.ApprovalRejected, schemas.ApprovalExpired),
						Approver: pick(bob, alice, "ALICE@acme.test", testAgent, "", "  "), ApproverKind: pick(schemas.PrincipalHuman, schemas.PrincipalHuman, schemas.PrincipalAgent, schemas.PrincipalService),
						ActionDigest: digest, Scope: pick(schemas.ScopeSingle, schemas.ScopeTimeWindow, schemas.ScopeBundle, "")}
					if r.IntN(2) == 0 {
						x := when()
						e.Approval.ExpiresAt = &x
					}
				case 3:
					e.Type = schemas.TypeResult
					e.Result = &schemas.Result{Status: pick(schemas.ResultSuccess, schemas.ResultFailure, schemas.ResultBlocked, schemas.ResultError),
						ActionDigest: digest, Executor: testAgent, ChangedResource: pick("order:991", "")}
				}
				evs = append(evs, e)
			}
		}
	}
	// Copies under the same id: identical, later, or of another type.
	for n := r.IntN(4); n > 0 && len(evs) > 0; n-- {
		c := evs[r.IntN(len(evs))]
		switch r.IntN(3) {
		case 1:
			c.Time = c.Time.Add(time.Duration(r.IntN(3)-1) * time.Second)
		case 2:
			c.Type, c.Intent, c.Decision, c.Approval, c.Result = schemas.TypeResult, nil, nil, nil, &schemas.Result{Status: schemas.ResultSuccess}
		}
		evs = append(evs, c)
	}
	r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	return evs
}

// TestCorrelateMatchesReference: the model, with small traces scanned and
// with every trace through maps, gives exactly what the model before the
// allocation work (model_ref_test.go) gave, on the table cases, the
// simulated traces of the property test and random traces of one to forty
// spans.
func TestCorrelateMatchesReference(t *testing.T) {
	const seed = 20261122
	r := rand.New(rand.NewPCG(seed, seed))
	pol := fixedPolicies{"refunds": {{Version: 2, FirstSeen: t0.Add(time.Minute), EventID: "seen-2"}, {Version: 3, FirstSeen: t0.Add(5 * time.Minute)}}}
	cases := propertyTraces(t)
	for i := 0; i < 3000; i++ {
		maxSpans := 3
		if i%10 == 0 {
			maxSpans = 40 // past smallTrace: spans, digests and events through maps
		}
		cases = append(cases, kindCase{name: fmt.Sprintf("random %d", i), events: randomTrace(r, maxSpans), pol: pol})
	}
	defer func(n int) { smallTrace = n }(smallTrace)
	differ, violations := 0, 0
	for _, small := range []int{16, 0} {
		smallTrace = small
		for _, tc := range cases {
			want := refCorrelate(append([]schemas.Event(nil), tc.events...), tc.pol)
			got := Correlate(append([]schemas.Event(nil), tc.events...), tc.pol)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s (seed %d, smallTrace %d): differs from the reference\n got %+v\nwant %+v", tc.name, seed, small, got, want)
			}
			if len(want.Violations) > 0 {
				violations++
			}
			if want.Trace.Events != len(tc.events) {
				differ++ // duplicates were dropped
			}
		}
	}
	// The cases must reach what they are for.
	if violations < len(cases)/4 || differ < len(cases)/10 {
		t.Fatalf("weak cases: %d of %d with violations, %d with duplicates", violations, 2*len(cases), differ)
	}
	t.Logf("%d cases, twice: %d with violations, %d with duplicates", len(cases), violations, differ)
}

// TestProcessScannedMatchesMapped: Process gives the same transcript with
// small traces scanned and with every trace's duplicates found through a
// map (as before the allocation work).
func TestProcessScannedMatchesMapped(t *testing.T) {
	scanned := processTranscript(t, 3)
	defer func(n int) { smallTrace = n }(smallTrace)
	smallTrace = 0
	mapped := processTranscript(t, 3)
	if scanned != mapped {
		a, b := strings.Split(scanned, "\n"), strings.Split(mapped, "\n")
		for i := range min(len(a), len(b)) {
			if a[i] != b[i] {
				t.Fatalf("line %d differs:\nscanned %s\nmapped  %s", i+1, a[i], b[i])
			}
		}
		t.Fatalf("scanned %d lines, mapped %d", len(a), len(b))
	}
}
