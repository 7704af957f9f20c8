package correlate

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

type kindCase struct {
	name   string
	events []schemas.Event
	pol    Policies
	want   []Kind
	// unconfirmed: the violation rests on missing evidence
	unconfirmed bool
	// explain, if set, must be the first violation's explanation
	explain string
	// evidence, if set, must be the first violation's evidence
	evidence []string
}

// kindCases are the violation table: each kind, and the near-misses that
// must not be flagged.
func kindCases() []kindCase {
	stale := fixedPolicies{"refunds": {{Version: 13, FirstSeen: at("-1h"), EventID: "other-trace-decision"}}}
	return []kindCase{
		{name: "clean tier 3 approved", events: approved(), want: []Kind{}},

		// 1. executed without the approval its tier or decision requires.
		{name: "tier 3 executed, no approval at all", events: without(approved(), "ev-3"),
			want: []Kind{KindExecutedWithoutApproval}, unconfirmed: true,
			explain:  "refund of order:991 executed at 09:36:12 without the approval tier 3 requires (decision require_approval by refunds v12)",
			evidence: []string{"ev-1", "ev-2", "ev-4"}},
		{name: "approval arrives only after the execution", events: replace(approved(), approvalEv("ev-3", "6m40s", 3, schemas.ApprovalGranted, bob)),
			want:    []Kind{KindExecutedWithoutApproval},
			explain: "refund of order:991 executed at 09:36:12 before the approval tier 3 requires (decision require_approval by refunds v12): approval by bob@acme.test came only at 09:36:40"},
		{name: "executed after the approval was rejected", events: replace(approved(), approvalEv("ev-3", "6m2s", 3, schemas.ApprovalRejected, bob)),
			want: []Kind{KindExecutedWithoutApproval}},
		{name: "tier 2 decision require_approval, no approval", events: []schemas.Event{
			intentEv("ev-1", "0s", 2, digestA), decisionEv("ev-2", "27ms", 2, schemas.OutcomeRequireApproval, 12),
			resultEv("ev-4", "10s", 2, schemas.ResultFailure, digestA)},
			want: []Kind{KindExecutedWithoutApproval}, unconfirmed: true},
		{name: "tier 3 allowed by the policy still needs an approval", events: []schemas.Event{
			intentEv("ev-1", "0s", 3, digestA), decisionEv("ev-2", "27ms", 3, schemas.OutcomeAllow, 12),
			resultEv("ev-4", "10s", 3, schemas.ResultSuccess, digestA)},
			want: []Kind{KindExecutedWithoutApproval}, unconfirmed: true},
		{name: "near miss: approval before execution, listed after it", events: []schemas.Event{
			resultEv("ev-4", "6m12s", 3, schemas.ResultSuccess, digestA), intentEv("ev-1", "0s", 3, digestA),
			decisionEv("ev-2", "27ms", 3, schemas.OutcomeRequireApproval, 12), approvalEv("ev-3", "6m2s", 3, schemas.ApprovalGranted, bob)},
			want: []Kind{}},
		{name: "near miss: tier 1 allowed, no approval", events: []schemas.Event{
			intentEv("ev-1", "0s", 1, digestA), decisionEv("ev-2", "27ms", 1, schemas.OutcomeAllow, 12),
			resultEv("ev-4", "1s", 1, schemas.ResultSuccess, digestA)},
			want: []Kind{}},
		{name: "near miss: rejected and blocked", events: replace(approved(), approvalEv("ev-3", "6m2s", 3, schemas.ApprovalRejected, bob),
			resultEv("ev-4", "6m3s", 3, schemas.ResultBlocked, digestA)),
			want: []Kind{}},
		{name: "near miss: time-window approval", events: replace(approved(),
			approvalEv("ev-3", "6m2s", 3, schemas.ApprovalGranted, bob, withScope(schemas.ScopeTimeWindow), withDigest(""))),
			want: []Kind{}},

		// 2. executed after a deny.
		{name: "executed after deny", events: []schemas.Event{
			intentEv("ev-1", "0s", 2, digestA), decisionEv("ev-2", "27ms", 2, schemas.OutcomeDeny, 12),
			resultEv("ev-4", "2s", 2, schemas.ResultSuccess, digestA)},
			want:    []Kind{KindExecutedAfterDeny},
			explain: "refund of order:991 executed at 09:30:02 although refunds v12 denied it at 09:30:00 (rule high_value_refund)"},
		{name: "near miss: deny, then blocked", events: []schemas.Event{
			intentEv("ev-1", "0s", 2, digestA), decisionEv("ev-2", "27ms", 2, schemas.OutcomeDeny, 12),
			resultEv("ev-4", "2s", 2, schemas.ResultBlocked, digestA)},
			want: []Kind{}},
		{name: "near miss: deny re-evaluated to allow before execution", events: []schemas.Event{
			intentEv("ev-1", "0s", 2, digestA), decisionEv("ev-2", "27ms", 2, schemas.OutcomeDeny, 12),
			decisionEv("ev-2b", "1s", 2, schemas.OutcomeAllow, 12), resultEv("ev-4", "2s", 2, schemas.ResultSuccess, digestA)},
			want: []Kind{}},

		// 3. no policy decision at all.
		{name: "result without any decision", events: []schemas.Event{
			intentEv("ev-1", "0s", 1, digestA), resultEv("ev-4", "1s", 1, schemas.ResultSuccess, digestA)},
			want: []Kind{KindNoPolicyDecision}, unconfirmed: true,
			explain: "refund of order:991 executed at 09:30:01 with no policy decision on record"},
		{name: "near miss: decision stamped just after the result (clock skew)", events: []schemas.Event{
			intentEv("ev-1", "0s", 1, digestA), resultEv("ev-4", "1s", 1, schemas.ResultSuccess, digestA),
			decisionEv("ev-2", "1.2s", 1, schemas.OutcomeAllow, 12)},
			want: []Kind{}},
		{name: "near miss: blocked without a decision", events: []schemas.Event{
			intentEv("ev-1", "0s", 1, digestA), resultEv("ev-4", "1s", 1, schemas.ResultBlocked, digestA)},
			want: []Kind{}},

		// 4. separation of duties.
		{name: "approved by the requester", events: replace(approved(), approvalEv("ev-3", "6m2s", 3, schemas.ApprovalGranted, "Alice@Acme.test")),
			want:    []Kind{KindSeparationOfDuties},
			explain: "refund of order:991 approved at 09:36:02 by Alice@Acme.test, who requested the action (approval apr-1)"},
		{name: "approved by an agent identity", events: replace(approved(), approvalEv("ev-3", "6m2s", 3, schemas.ApprovalGranted, "triage-bot", withKind(schemas.PrincipalAgent))),
			want: []Kind{KindSeparationOfDuties}},
		{name: "approved by the acting agent itself", events: replace(approved(), approvalEv("ev-3", "6m2s", 3, schemas.ApprovalGranted, testAgent, withKind(""))),
			want: []Kind{KindSeparationOfDuties}},
		{name: "near miss: approved by a different human", events: replace(approved(), approvalEv("ev-3", "6m2s", 3, schemas.ApprovalGranted, "carol@acme.test")),
			want: []Kind{}},
		{name: "near miss: requester rejected it, and it was blocked", events: replace(approved(), approvalEv("ev-3", "6m2s", 3, schemas.ApprovalRejected, alice),
			resultEv("ev-4", "6m3s", 3, schemas.ResultBlocked, digestA)),
			want: []Kind{}},

		// 5. payload differs.
		{name: "executed payload differs from the approved one", events: replace(approved(), resultEv("ev-4", "6m12s", 3, schemas.ResultSuccess, digestB)),
			want:    []Kind{KindPayloadMismatch},
			explain: "refund of order:991 executed at 09:36:12 with a payload other than the one bob@acme.test approved (approval apr-1)"},
		{name: "allowed action executed with another payload than its intent", events: []schemas.Event{
			intentEv("ev-1", "0s", 1, digestA), decisionEv("ev-2", "27ms", 1, schemas.OutcomeAllow, 12),
			resultEv("ev-4", "1s", 1, schemas.ResultSuccess, digestB)},
			want: []Kind{KindPayloadMismatch}},
		{name: "near miss: the approver approved the amended payload that ran", events: replace(approved(),
			approvalEv("ev-3", "6m2s", 3, schemas.ApprovalGranted, bob, withDigest(digestB)), resultEv("ev-4", "6m12s", 3, schemas.ResultSuccess, digestB)),
			want: []Kind{}},

		// 6. approval out of scope.
		{name: "approval expired before the execution", events: replace(approved(), approvalEv("ev-3", "6m2s", 3, schemas.ApprovalGranted, bob, expiring("6m5s"))),
			want:    []Kind{KindApprovalOutOfScope},
			explain: "refund of order:991 executed at 09:36:12 under approval apr-1 that expired at 09:36:05"},
		{name: "single-action approval used twice", events: replace(approved(), resultEv("ev-5", "9m", 3, schemas.ResultSuccess, digestA)),
			want:    []Kind{KindApprovalOutOfScope},
			explain: "single-action approval apr-1 used for 2 executions; the second at 09:39:00", evidence: []string{"ev-4", "ev-5"}},
		{name: "near miss: bundle approval covering two actions", events: []schemas.Event{
			intentEv("ev-1", "0s", 3, digestA), decisionEv("ev-2", "27ms", 3, schemas.OutcomeRequireApproval, 12),
			inSpan(intentEv("ev-11", "1s", 3, digestB), "1111111111111111"),
			inSpan(decisionEv("ev-12", "1s", 3, schemas.OutcomeRequireApproval, 12), "1111111111111111"),
			inSpan(approvalEv("ev-3", "6m", 3, schemas.ApprovalGranted, bob, withScope(schemas.ScopeBundle), withID("apr-b")), "2222222222222222"),
			inSpan(approvalEv("ev-13", "6m", 3, schemas.ApprovalGranted, bob, withScope(schemas.ScopeBundle), withID("apr-b"), withDigest(digestB)), "2222222222222222"),
			resultEv("ev-4", "7m", 3, schemas.ResultSuccess, digestA),
			inSpan(resultEv("ev-14", "7m1s", 3, schemas.ResultSuccess, digestB), "1111111111111111")},
			want: []Kind{}},
		{name: "near miss: time-window approval used twice before it expires", events: replace(approved(),
			approvalEv("ev-3", "6m2s", 3, schemas.ApprovalGranted, bob, withScope(schemas.ScopeTimeWindow), withDigest("")),
			resultEv("ev-5", "9m", 3, schemas.ResultSuccess, digestA)),
			want: []Kind{}},

		// 7. stale policy version.
		{name: "decision under an older version than one already in use", events: approved(), pol: stale,
			want:    []Kind{KindStalePolicy},
			explain: "decision require_approval at 09:30:00 by refunds v12 although v13 was in use since 2026-11-16 08:30:00", evidence: []string{"other-trace-decision", "ev-2"}},
		{name: "near miss: the newer version appears only after the decision", events: approved(),
			pol:  fixedPolicies{"refunds": {{Version: 13, FirstSeen: at("1m"), EventID: "x"}}},
			want: []Kind{}},
		{name: "near miss: same version", events: approved(),
			pol:  fixedPolicies{"refunds": {{Version: 12, FirstSeen: at("-1h"), EventID: "x"}}},
			want: []Kind{}},

		// Several at once: each kind once per trace.
		{name: "deny and self-approval and a second execution", events: []schemas.Event{
			intentEv("ev-1", "0s", 2, digestA), decisionEv("ev-2", "27ms", 2, schemas.OutcomeDeny, 12),
			approvalEv("ev-3", "1m", 2, schemas.ApprovalGranted, alice),
			resultEv("ev-4", "2m", 2, schemas.ResultSuccess, digestA), resultEv("ev-5", "3m", 2, schemas.ResultSuccess, digestA)},
			want: []Kind{KindExecutedAfterDeny, KindSeparationOfDuties}},
	}
}

func TestViolationKinds(t *testing.T) {
	for _, tc := range kindCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := Correlate(tc.events, tc.pol)
			if got := kindsOf(c.Violations); !reflect.DeepEqual(got, tc.want) {
				for _, v := range c.Violations {
					t.Logf("%s: %s", v.Kind, v.Explanation)
				}
				t.Fatalf("kinds = %v, want %v", got, tc.want)
			}
			for _, v := range c.Violations {
				if v.TraceID != testTrace || v.ViolationID != ViolationID(testTrace, v.Kind) || v.Severity != v.Kind.Severity() {
					t.Errorf("%s: identity fields %q %q %q", v.Kind, v.TraceID, v.ViolationID, v.Severity)
				}
				if v.Team != "finance" || v.AgentID != testAgent || v.RequestedBy != alice {
					t.Errorf("%s: who = %s/%s/%s", v.Kind, v.Team, v.AgentID, v.RequestedBy)
				}
				if n := len(v.Evidence); n == 0 || v.Evidence[n-1] != v.DecidingEventID {
					t.Errorf("%s: evidence %v does not end with the deciding event %s", v.Kind, v.Evidence, v.DecidingEventID)
				}
				for _, secret := range []string{"120.00", "9120.00", "EUR"} {
					if strings.Contains(v.Explanation, secret) {
						t.Errorf("%s: explanation leaks a parameter value: %s", v.Kind, v.Explanation)
					}
				}
				if strings.Contains(v.Explanation, "\n") {
					t.Errorf("%s: explanation is not one line", v.Kind)
				}
			}
			if len(tc.want) == 0 {
				return
			}
			v := c.Violations[0]
			if v.Unconfirmed != tc.unconfirmed {
				t.Errorf("unconfirmed = %v, want %v", v.Unconfirmed, tc.unconfirmed)
			}
			if tc.explain != "" && v.Explanation != tc.explain {
				t.Errorf("explanation\n got %q\nwant %q", v.Explanation, tc.explain)
			}
			if tc.evidence != nil && !reflect.DeepEqual(v.Evidence, tc.evidence) {
				t.Errorf("evidence = %v, want %v", v.Evidence, tc.evidence)
			}
		})
	}
}

func TestTraceRecord(t *testing.T) {
	c := Correlate(approved(), nil)
	tr := c.Trace
	ms := func(v int64) *int64 { return &v }
	want := Trace{
		TraceID: testTrace, Team: "finance", AgentID: testAgent, AgentVersion: "1.4.2", Environment: "prod", Tenant: "acme",
		RequestedBy: alice, Tool: "payments", Action: "refund", Target: "order:991", ActionClass: "refund", Tier: 3,
		Outcome: schemas.OutcomeRequireApproval, PolicyID: "refunds", PolicyVersion: 12, MatchedRule: "high_value_refund",
		ApprovalID: "apr-1", ApprovalStatus: schemas.ApprovalGranted, Approver: bob, ApproverKind: schemas.PrincipalHuman,
		ApprovalScope: schemas.ScopeSingle, ApprovalExpiresAt: ptime(at("1h6m2s")),
		ResultStatus: schemas.ResultSuccess, Executor: testAgent, ChangedResource: "order:991",
		IntentTime: ptime(at("0s")), DecisionTime: ptime(at("27ms")), ApprovalTime: ptime(at("6m2s")), ResultTime: ptime(at("6m12s")),
		FirstEventTime: at("0s"), LastEventTime: at("6m12s"),
		DecisionMS: ms(27), ApprovalWaitMS: ms(361973), ExecutionMS: ms(10000), TotalMS: ms(372000),
		Events: 4, Intents: 1, Decisions: 1, Approvals: 1, Results: 1, Actions: 1,
	}
	if !reflect.DeepEqual(tr, want) {
		t.Fatalf("record\n got %+v\nwant %+v", tr, want)
	}
	abandon := tr.LastEventTime.Add(time.Hour)
	if s := tr.State(abandon.Add(time.Hour), abandon); s != StateCompleted {
		t.Errorf("state = %s, want completed", s)
	}
}

func TestTraceState(t *testing.T) {
	abandonAt := at("24h")
	tests := []struct {
		name   string
		events []schemas.Event
		now    time.Time
		want   string
	}{
		{"waiting for approval", without(approved(), "ev-3", "ev-4"), at("1h"), StateOpen},
		{"approved, not run yet", without(approved(), "ev-4"), at("1h"), StateOpen},
		{"nothing ran for a day", without(approved(), "ev-3", "ev-4"), at("25h"), StateAbandoned},
		{"denied, agent silent", []schemas.Event{intentEv("ev-1", "0s", 2, digestA), decisionEv("ev-2", "27ms", 2, schemas.OutcomeDeny, 1)}, at("25h"), StateCompleted},
		{"approval expired, agent silent", replace(without(approved(), "ev-4"), approvalEv("ev-3", "30m", 3, schemas.ApprovalExpired, "")), at("1h"), StateCompleted},
		{"result without its intent", without(approved(), "ev-1"), at("1h"), StateIncomplete},
		{"result without its decision", without(approved(), "ev-2"), at("1h"), StateIncomplete},
		{"completed", approved(), at("1h"), StateCompleted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := Correlate(tc.events, nil).Trace
			if got := tr.State(tc.now, abandonAt); got != tc.want {
				t.Fatalf("state = %s, want %s (pending %d, orphan %d)", got, tc.want, tr.PendingActions, tr.OrphanActions)
			}
		})
	}
}

func TestPolicyView(t *testing.T) {
	v := newPolicyView()
	v.observe("p", 3, at("10m"), "c")
	v.observe("p", 5, at("20m"), "e")
	v.observe("p", 4, at("15m"), "d")
	v.observe("p", 5, at("18m"), "e2") // earlier sighting of v5 wins
	tests := []struct {
		version int64
		when    string
		want    int64 // 0: not stale
	}{
		{3, "12m", 0}, {3, "16m", 4}, {3, "19m", 5}, {4, "17m", 0}, {4, "18m1s", 5}, {5, "1h", 0}, {2, "11m", 3},
	}
	for _, tc := range tests {
		s, ok := v.Newer("p", tc.version, at(tc.when))
		if got := map[bool]int64{true: s.Version}[ok]; got != tc.want {
			t.Errorf("Newer(v%d at %s) = v%d, want v%d", tc.version, tc.when, got, tc.want)
		}
	}
	if s, _ := v.Newer("p", 4, at("1h")); s.EventID != "e2" || !s.FirstSeen.Equal(at("18m")) {
		t.Errorf("sighting of v5 = %+v, want e2 at 18m", s)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"defaults", func(*Config) {}, ""},
		{"max traces", func(c *Config) { c.MaxTraces = 10 }, "correlation.max_traces"},
		{"events per trace", func(c *Config) { c.MaxEventsPerTrace = 1 }, "correlation.max_events_per_trace"},
		{"abandon", func(c *Config) { c.AbandonAfter = time.Second }, "correlation.abandon_after"},
		{"settle", func(c *Config) { c.SettleAfter = 2 * time.Hour }, "correlation.settle_after"},
		{"lookback", func(c *Config) { c.Lookback = time.Minute }, "correlation.lookback"},
		{"refresh", func(c *Config) { c.PolicyRefresh = time.Millisecond }, "correlation.policy_refresh"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			c.Defaults()
			tc.edit(&c)
			err := c.Validate()
			if (err == nil) != (tc.field == "") || (err != nil && !strings.HasPrefix(err.Error(), tc.field+":")) {
				t.Fatalf("Validate() = %v, want error on %q", err, tc.field)
			}
		})
	}
}
