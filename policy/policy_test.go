package policy

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentrail/agentrail/reports/registry"
	"github.com/agentrail/agentrail/schemas"
)

const testRegistry = `
teams:
  - name: finance
  - name: support
agents:
  - id: fin-bot
    team: finance
    owner: maria@acme.example
    grants:
      - {tool: ledger, action: read_balance, resource: "account:GL-*", tier: 1}
      - {tool: ledger, action: read_balance, resource: "account:GL-9*", tier: 2, rate_limit: {per_hour: 5}}
      - {tool: ledger, action: read_balance, resource: "account:GL-42", tier: 1, action_classes: [read]}
      - {tool: docs, action: edit, resource: "doc:*:draft", tier: 1, action_classes: [draft, write]}
      - {tool: invoices, action: send, resource: "invoice:*", tier: 2, rate_limit: {per_hour: 3, per_day: 4}}
      - {tool: payments, action: refund, resource: "charge:ch_*", tier: 3, approval: {required: true, approver_roles: [finance-lead, controller]}}
      - {tool: crm, action: export, resource: "*", tier: 1, approval: {required: true, approver_roles: [dpo]}}
  - id: sup-bot
    team: support
    owner: omar@acme.example
    grants:
      - {tool: email, action: send, resource: "customer:*", tier: 2, rate_limit: {per_day: 100}}
      - {tool: email, action: send, resource: "customer:*", tier: 2, rate_limit: {per_day: 2}, shadow: true}
      - {tool: tickets, action: close, resource: "ticket:*", tier: 1}
      - {tool: tickets, action: close, resource: "ticket:T-*", tier: 1, approval: {required: true, approver_roles: [support-lead]}, shadow: true}
      - {tool: kb, action: publish, resource: "kb:*", tier: 1, shadow: true}
`

// clock is a settable clock for quota windows.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func testEngine(t testing.TB, opts ...Option) (*Engine, *clock) {
	t.Helper()
	reg, err := registry.Parse([]byte(testRegistry), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 11, 17, 10, 15, 0, 0, time.UTC)}
	e, err := New(reg, 7, append([]Option{WithClock(c.now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return e, c
}

func TestDecide(t *testing.T) {
	key := registry.GrantKey
	for _, tc := range []struct {
		name    string
		req     Request
		outcome string
		rule    string // "" for none
		tier    int
		reason  string // a fragment of the reason
		roles   []string
		remain  int64
	}{
		{"allowed by tool, action and pattern",
			Request{AgentID: "fin-bot", Team: "finance", Tool: "ledger", Action: "read_balance", Target: "account:GL-100", ActionClass: "read", Tier: 1},
			schemas.OutcomeAllow, key("fin-bot", "ledger", "read_balance", "account:GL-*"), 1, "allowed by grant ledger.read_balance on account:GL-*", nil, -1},
		{"unknown tool",
			Request{AgentID: "fin-bot", Tool: "ledgerx", Action: "read_balance", Target: "account:GL-100", Tier: 1},
			schemas.OutcomeDeny, "", 1, `no grant of agent fin-bot for ledgerx.read_balance on "account:GL-100"`, nil, -1},
		{"unknown action",
			Request{AgentID: "fin-bot", Tool: "ledger", Action: "post", Target: "account:GL-100", Tier: 1},
			schemas.OutcomeDeny, "", 1, `no grant of agent fin-bot for ledger.post on "account:GL-100"`, nil, -1},
		{"target outside every pattern",
			Request{AgentID: "fin-bot", Tool: "ledger", Action: "read_balance", Target: "account:AR-1", Tier: 1},
			schemas.OutcomeDeny, "", 1, `no grant of agent fin-bot for ledger.read_balance on "account:AR-1" (granted on account:GL-42, account:GL-9*, account:GL-*)`, nil, -1},
		{"empty target is not a pattern's prefix",
			Request{AgentID: "fin-bot", Tool: "ledger", Action: "read_balance", Tier: 1},
			schemas.OutcomeDeny, "", 1, "no grant of agent fin-bot", nil, -1},
		{"pattern with a middle part",
			Request{AgentID: "fin-bot", Tool: "docs", Action: "edit", Target: "doc:q4-plan:draft", ActionClass: "draft"},
			schemas.OutcomeAllow, key("fin-bot", "docs", "edit", "doc:*:draft"), 1, "allowed", nil, -1},
		{"pattern with a middle part, wrong suffix",
			Request{AgentID: "fin-bot", Tool: "docs", Action: "edit", Target: "doc:q4-plan:final", ActionClass: "draft"},
			schemas.OutcomeDeny, "", 1, "no grant", nil, -1},
		{"action class outside the grant's",
			Request{AgentID: "fin-bot", Tool: "docs", Action: "edit", Target: "doc:x:draft", ActionClass: "delete"},
			schemas.OutcomeDeny, key("fin-bot", "docs", "edit", "doc:*:draft"), 1, `action class "delete" is not one the grant docs.edit on doc:*:draft covers (draft, write)`, nil, -1},
		{"most specific grant wins: exact",
			Request{AgentID: "fin-bot", Tool: "ledger", Action: "read_balance", Target: "account:GL-42", ActionClass: "read"},
			schemas.OutcomeAllow, key("fin-bot", "ledger", "read_balance", "account:GL-42"), 1, "account:GL-42", nil, -1},
		{"exact grant refuses the class, a broader one admits it",
			Request{AgentID: "fin-bot", Tool: "ledger", Action: "read_balance", Target: "account:GL-42", ActionClass: "export"},
			schemas.OutcomeAllow, key("fin-bot", "ledger", "read_balance", "account:GL-*"), 1, "account:GL-*", nil, -1},
		{"most specific grant wins: rate-limited tier 2",
			Request{AgentID: "fin-bot", Tool: "ledger", Action: "read_balance", Target: "account:GL-900", Tier: 2},
			schemas.OutcomeAllow, key("fin-bot", "ledger", "read_balance", "account:GL-9*"), 2, "account:GL-9*", nil, 4},
		{"tier claimed above the grant's",
			Request{AgentID: "fin-bot", Tool: "ledger", Action: "read_balance", Target: "account:GL-100", Tier: 2},
			schemas.OutcomeDeny, key("fin-bot", "ledger", "read_balance", "account:GL-*"), 2, "intent asks tier 2; grant ledger.read_balance on account:GL-* is tier 1", nil, -1},
		{"tier claimed below the grant's is raised",
			Request{AgentID: "fin-bot", Tool: "invoices", Action: "send", Target: "invoice:1", Tier: 1},
			schemas.OutcomeAllow, key("fin-bot", "invoices", "send", "invoice:*"), 2, "allowed", nil, 2},
		{"tier 3 needs approval with roles",
			Request{AgentID: "fin-bot", Tool: "payments", Action: "refund", Target: "charge:ch_1", ActionClass: "refund", Tier: 3},
			schemas.OutcomeRequireApproval, key("fin-bot", "payments", "refund", "charge:ch_*"), 3, "tier 3 grant payments.refund on charge:ch_* needs approval by finance-lead or controller", []string{"finance-lead", "controller"}, -1},
		{"tier 3 claimed as tier 1 still needs approval",
			Request{AgentID: "fin-bot", Tool: "payments", Action: "refund", Target: "charge:ch_1", Tier: 1},
			schemas.OutcomeRequireApproval, key("fin-bot", "payments", "refund", "charge:ch_*"), 3, "needs approval", []string{"finance-lead", "controller"}, -1},
		{"tier 1 grant marked approval.required",
			Request{AgentID: "fin-bot", Tool: "crm", Action: "export", Target: "contacts", Tier: 1},
			schemas.OutcomeRequireApproval, key("fin-bot", "crm", "export", "*"), 1, "tier 1 grant crm.export on * needs approval by dpo", []string{"dpo"}, -1},
		{"unregistered agent",
			Request{AgentID: "ghost", Tool: "ledger", Action: "read_balance", Target: "account:GL-1", Tier: 2},
			schemas.OutcomeDeny, "", 2, `agent "ghost" is not registered`, nil, -1},
		{"another team's claim",
			Request{AgentID: "fin-bot", Team: "support", Tool: "ledger", Action: "read_balance", Target: "account:GL-1"},
			schemas.OutcomeDeny, "", 1, "agent fin-bot is registered to team finance, not support", nil, -1},
		{"grant of another agent",
			Request{AgentID: "sup-bot", Tool: "ledger", Action: "read_balance", Target: "account:GL-1"},
			schemas.OutcomeDeny, "", 1, "no grant of agent sup-bot for ledger.read_balance", nil, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := testEngine(t)
			d := e.Decide(tc.req)
			if d.Outcome != tc.outcome || d.MatchedRule != tc.rule || d.Tier != tc.tier || d.Remaining != tc.remain {
				t.Errorf("got outcome %s rule %q tier %d remaining %d (%s), want %s %q %d %d",
					d.Outcome, d.MatchedRule, d.Tier, d.Remaining, d.Reason, tc.outcome, tc.rule, tc.tier, tc.remain)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q, want it to contain %q", d.Reason, tc.reason)
			}
			if strings.Join(d.ApproverRoles, ",") != strings.Join(tc.roles, ",") {
				t.Errorf("approver roles %v, want %v", d.ApproverRoles, tc.roles)
			}
			if d.PolicyID != "registry" || d.PolicyVersion != 7 || d.Shadow != "" {
				t.Errorf("policy %s v%d shadow %q, want registry v7 and no shadow", d.PolicyID, d.PolicyVersion, d.Shadow)
			}
			s := d.Schema()
			if err := schemas.Validate(decisionEvent(s), time.Date(2026, 11, 17, 10, 0, 0, 0, time.UTC), schemas.DefaultLimits); err != nil {
				t.Errorf("schema decision invalid: %v", err)
			}
		})
	}
}

// decisionEvent wraps a decision body in a minimal valid event.
func decisionEvent(d schemas.Decision) *schemas.Event {
	return &schemas.Event{EventID: "ev-1", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
		Type: schemas.TypeDecision, Time: time.Date(2026, 11, 17, 10, 0, 0, 0, time.UTC),
		Agent: schemas.Agent{ID: "fin-bot", Team: "finance"}, Tier: d.Tier,
		Producer: schemas.Producer{Name: "policy-test", Version: "0"}, Decision: &d}
}

func TestQuotaBoundary(t *testing.T) {
	e, c := testEngine(t)
	req := Request{AgentID: "fin-bot", Tool: "invoices", Action: "send", Target: "invoice:9", Tier: 2}
	at := func(s string) {
		ts, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		c.set(ts)
	}
	type step struct {
		at      string
		outcome string
		remain  int64
		reason  string
	}
	// per_hour 3 and per_day 4: the hour runs out first, then the day.
	for i, s := range []step{
		{"2026-11-17T10:15:00Z", schemas.OutcomeAllow, 2, "allowed"},
		{"2026-11-17T10:30:00Z", schemas.OutcomeAllow, 1, "allowed"},
		{"2026-11-17T10:59:59Z", schemas.OutcomeAllow, 0, "allowed"},
		{"2026-11-17T10:59:59Z", schemas.OutcomeDeny, 0, "rate limit 3 per hour of grant invoices.send on invoice:* used up; the window frees up at 2026-11-17T11:00:00Z"},
		{"2026-11-17T11:00:00Z", schemas.OutcomeAllow, 0, "allowed"}, // the hour rolled over; the day has 1 left, now 0
		{"2026-11-17T11:00:01Z", schemas.OutcomeDeny, 0, "rate limit 4 per day of grant invoices.send on invoice:* used up; the window frees up at 2026-11-18T00:00:00Z"},
		{"2026-11-17T23:59:59Z", schemas.OutcomeDeny, 0, "4 per day"},
		{"2026-11-18T00:00:00Z", schemas.OutcomeAllow, 2, "allowed"}, // both windows rolled over
	} {
		at(s.at)
		d := e.Decide(req)
		if d.Outcome != s.outcome || d.Remaining != s.remain || !strings.Contains(d.Reason, s.reason) {
			t.Errorf("step %d at %s: %s remaining %d (%s), want %s remaining %d (%s)", i, s.at, d.Outcome, d.Remaining, d.Reason, s.outcome, s.remain, s.reason)
		}
		if q := d.Schema().RemainingQuota; q == nil || *q != s.remain {
			t.Errorf("step %d: schema remaining_quota %v, want %d", i, q, s.remain)
		}
	}
}

func TestQuotaAcrossEngines(t *testing.T) {
	q := NewLocalQuotas(1)
	e1, c := testEngine(t, WithQuotas(q))
	req := Request{AgentID: "fin-bot", Tool: "invoices", Action: "send", Target: "invoice:9"}
	for range 3 {
		e1.Decide(req)
	}
	reg, err := registry.Parse([]byte(testRegistry), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e2, err := New(reg, 8, WithClock(c.now), WithQuotas(q))
	if err != nil {
		t.Fatal(err)
	}
	if d := e2.Decide(req); d.Outcome != schemas.OutcomeDeny || d.PolicyVersion != 8 {
		t.Errorf("next version's engine: %s v%d (%s), want the hour's quota still used up", d.Outcome, d.PolicyVersion, d.Reason)
	}
	// A fresh engine with its own quotas starts from zero.
	e3, _ := testEngine(t)
	if d := e3.Decide(req); d.Outcome != schemas.OutcomeAllow || d.Remaining != 2 {
		t.Errorf("fresh engine: %s remaining %d, want allow 2", d.Outcome, d.Remaining)
	}
}

func TestQuotaShares(t *testing.T) {
	// per_hour 3, per_day 4 across 2 instances: shares 1 and 2.
	e, _ := testEngine(t, WithQuotas(NewLocalQuotas(2)))
	req := Request{AgentID: "fin-bot", Tool: "invoices", Action: "send", Target: "invoice:9"}
	if d := e.Decide(req); d.Outcome != schemas.OutcomeAllow || d.Remaining != 0 {
		t.Errorf("first use: %s remaining %d, want allow 0", d.Outcome, d.Remaining)
	}
	if d := e.Decide(req); d.Outcome != schemas.OutcomeDeny || !strings.Contains(d.Reason, "rate limit 1 per hour") {
		t.Errorf("second use: %s (%s), want deny naming the share 1 per hour", d.Outcome, d.Reason)
	}
}

func TestQuotaConcurrent(t *testing.T) {
	reg := &registry.Registry{Agents: []registry.Agent{{ID: "a", Team: "t", Owner: "o@acme.example",
		Grants: []registry.Grant{{Tool: "x", Action: "y", Resource: "*", Tier: 2, RateLimit: &registry.RateLimit{PerDay: 1000}}}}}}
	c := &clock{t: time.Date(2026, 11, 17, 10, 0, 0, 0, time.UTC)}
	e, err := New(reg, 1, WithClock(c.now))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			n := 0
			for range 200 {
				if e.Decide(Request{AgentID: "a", Tool: "x", Action: "y", Target: "z"}).Outcome == schemas.OutcomeAllow {
					n++
				}
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if allowed != 1000 {
		t.Errorf("%d of 1600 concurrent uses allowed, want exactly the limit 1000", allowed)
	}
}

func TestShadow(t *testing.T) {
	e, _ := testEngine(t)
	send := Request{AgentID: "sup-bot", Tool: "email", Action: "send", Target: "customer:42", Tier: 2}
	// The shadow grant allows 2 a day where the enforced one allows 100.
	for i, want := range []string{"", "", schemas.OutcomeDeny, schemas.OutcomeDeny} {
		d := e.Decide(send)
		if d.Outcome != schemas.OutcomeAllow || d.Shadow != want {
			t.Errorf("send %d: %s shadow %q (%s), want allow, shadow %q", i, d.Outcome, d.Shadow, d.ShadowReason, want)
		}
		if want == "" {
			continue
		}
		if d.ShadowRule != ShadowRulePrefix+registry.GrantKey("sup-bot", "email", "send", "customer:*") ||
			!strings.Contains(d.ShadowReason, "rate limit 2 per day") || d.Remaining != 100-int64(i)-1 {
			t.Errorf("send %d: shadow rule %q reason %q remaining %d", i, d.ShadowRule, d.ShadowReason, d.Remaining)
		}
		if r := d.Schema().Reason; !strings.HasPrefix(r, "allowed by grant email.send on customer:*; shadow deny: rate limit 2 per day") {
			t.Errorf("send %d: schema reason %q", i, r)
		}
	}
	// A narrower shadow pattern with approval: outside it, shadow denies;
	// inside, shadow asks for approval.
	closeReq := Request{AgentID: "sup-bot", Tool: "tickets", Action: "close", Target: "ticket:X-1"}
	if d := e.Decide(closeReq); d.Outcome != schemas.OutcomeAllow || d.Shadow != schemas.OutcomeDeny || !strings.Contains(d.ShadowReason, "no grant") {
		t.Errorf("close outside the shadow pattern: %s shadow %q (%s)", d.Outcome, d.Shadow, d.ShadowReason)
	}
	closeReq.Target = "ticket:T-1"
	if d := e.Decide(closeReq); d.Outcome != schemas.OutcomeAllow || d.Shadow != schemas.OutcomeRequireApproval || !strings.Contains(d.ShadowReason, "support-lead") {
		t.Errorf("close inside the shadow pattern: %s shadow %q (%s)", d.Outcome, d.Shadow, d.ShadowReason)
	}
	// A shadow-only grant is not enforced: deny, and shadow would allow.
	pub := Request{AgentID: "sup-bot", Tool: "kb", Action: "publish", Target: "kb:faq"}
	if d := e.Decide(pub); d.Outcome != schemas.OutcomeDeny || d.Shadow != schemas.OutcomeAllow || d.MatchedRule != "" {
		t.Errorf("shadow-only grant: %s shadow %q rule %q", d.Outcome, d.Shadow, d.MatchedRule)
	}
}

func TestNewErrors(t *testing.T) {
	good, err := registry.Parse([]byte(testRegistry), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad, err := registry.Parse([]byte(strings.Replace(testRegistry, "tier: 3,", "tier: 4,", 1)), "bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		reg  *registry.Registry
		ver  int64
		opts []Option
		want string
	}{
		{"no registry", nil, 1, nil, "policy: no registry"},
		{"negative version", good, -1, nil, "policy: registry version -1"},
		{"invalid registry", bad, 1, nil, "4 out of range 1..3"},
		{"empty policy id", good, 1, []Option{WithPolicyID("")}, "policy: empty policy id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.reg, tc.ver, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	e, err := New(good, 3, WithPolicyID("finance-gate"))
	if err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(Request{AgentID: "fin-bot"}); d.PolicyID != "finance-gate" || d.PolicyVersion != 3 || e.PolicyID() != "finance-gate" || e.Version() != 3 {
		t.Errorf("policy %s v%d, want finance-gate v3", d.PolicyID, d.PolicyVersion)
	}
}

// TestShippedRegistry decides against deployments/registry.yaml.
func TestShippedRegistry(t *testing.T) {
	reg, err := registry.Load("../deployments/registry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(reg, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		req     Request
		outcome string
		reason  string
	}{
		{Request{AgentID: "finance-invoice-bot-01", Team: "finance", Tool: "ledger", Action: "read_balance", Target: "account:GL-4000", ActionClass: "read", Tier: 1},
			schemas.OutcomeAllow, "allowed by grant ledger.read_balance on account:GL-*"},
		{Request{AgentID: "finance-invoice-bot-01", Tool: "invoices", Action: "send", Target: "invoice:INV-2026-0042", ActionClass: "send", Tier: 2},
			schemas.OutcomeAllow, "allowed by grant invoices.send on invoice:INV-2026-*"},
		{Request{AgentID: "finance-invoice-bot-01", Tool: "invoices", Action: "send", Target: "invoice:INV-2025-0042", Tier: 2},
			schemas.OutcomeDeny, `no grant of agent finance-invoice-bot-01 for invoices.send on "invoice:INV-2025-0042"`},
		{Request{AgentID: "finance-refund-agent-02", Tool: "payments", Action: "refund", Target: "charge:ch_991", ActionClass: "refund", Tier: 3},
			schemas.OutcomeRequireApproval, "needs approval by finance-lead or controller"},
		{Request{AgentID: "finance-invoice-bot-01", Tool: "ledger", Action: "read_balance", Target: "account:GL-4000", Tier: 3},
			schemas.OutcomeDeny, "intent asks tier 3"},
	} {
		d := e.Decide(tc.req)
		if d.Outcome != tc.outcome || !strings.Contains(d.Reason, tc.reason) {
			t.Errorf("%s %s.%s on %s: %s (%s), want %s (%s)", tc.req.AgentID, tc.req.Tool, tc.req.Action, tc.req.Target, d.Outcome, d.Reason, tc.outcome, tc.reason)
		}
	}
	// Every grant of every agent allows (or asks approval for) a target its
	// own pattern produces, at its own tier.
	n := 0
	for _, a := range reg.Agents {
		for _, g := range a.Grants {
			target := strings.ReplaceAll(g.Resource, "*", "x")
			d := e.Decide(Request{AgentID: a.ID, Team: a.Team, Tool: g.Tool, Action: g.Action, Target: target, Tier: g.Tier})
			want := schemas.OutcomeAllow
			if g.Tier == 3 || g.Approval != nil && g.Approval.Required {
				want = schemas.OutcomeRequireApproval
			}
			if d.Outcome != want || d.MatchedRule != registry.GrantKey(a.ID, g.Tool, g.Action, g.Resource) {
				t.Errorf("%s %s.%s on %s: %s rule %s (%s), want %s by its own grant", a.ID, g.Tool, g.Action, target, d.Outcome, d.MatchedRule, d.Reason, want)
			}
			n++
		}
	}
	if n < 100 {
		t.Errorf("only %d grants in the shipped registry", n)
	}
}
