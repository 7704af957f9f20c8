package simulate

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// Team is one department's agents: who asks them for things, who approves,
// and the tools the agents may call.
type Team struct {
	Name      string
	Agents    int      // how many agents the team runs, 3..10
	Roles     []string // agent name stems, e.g. "invoice-bot"
	Humans    []string // people who request actions (requested_by)
	Approvers []Approver
	Tools     []Tool
}

// Approver is a person who may approve the team's tier 3 and some tier 2
// actions.
type Approver struct {
	Email string
	Role  string
}

// Tool is one action an agent can take, with what the policy engine makes of
// it.
type Tool struct {
	Tool, Action, ActionClass string
	Tier                      int32
	Weight                    int // relative frequency among the agent's tools

	PolicyID    string
	MatchedRule string
	// ApprovalRate is the chance the policy asks for a human approval (tier
	// 3 tools ask always unless they deny).
	ApprovalRate float64
	// DenyRate is the chance the policy denies outright.
	DenyRate    float64
	DenyReasons []string
	// Quota is the per-agent daily quota of a rate-limited tool; 0: none.
	Quota int64

	Median     time.Duration // typical execution time
	Writes     bool          // changes Target when it runs
	SideEffect string        // prefix of the side effect's id, e.g. "email:msg-"
	Failures   []string      // error classes of failures the target reports
	Errors     []string      // error classes of errors on the way

	Target     func(r *rand.Rand) string
	Params     func(r *rand.Rand) map[string]string
	Rationales []string
	Context    func(r *rand.Rand) map[string]string
}

// customerContacts are the customers support writes to: the same people
// recur, so their pseudonymised addresses join across events (the demo
// shows redaction at work; see consumers/redact).
var customerContacts = []string{"jane.doe@mail.example", "m.rossi@posteo.example", "kwame.asante@inbox.example", "li.na@mail.example"}

var (
	models   = []string{"claude-sonnet-4-5", "gpt-4.1-2025-04-14", "gemini-2.5-pro", "llama-3.3-70b-instruct", "mistral-large-2411"}
	channels = []string{"slack", "slack", "slack", "email", "web-console"}
	regions  = []string{"us-east-1", "eu-west-1", "ap-southeast-2"}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func digits(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b)
}

func money(r *rand.Rand, lo, hi float64) string {
	v := lo + (hi-lo)*r.Float64()*r.Float64() // skewed to small amounts
	return fmt.Sprintf("%.2f", v)
}

func ticketContext(r *rand.Rand) map[string]string {
	return map[string]string{
		"ticket":         "SUP-" + digits(r, 6),
		"customer_tier":  pick(r, []string{"free", "standard", "premium", "enterprise"}),
		"prior_contacts": fmt.Sprint(r.IntN(5)),
		"severity":       pick(r, []string{"low", "medium", "high"}),
	}
}

func requestContext(kind string) func(r *rand.Rand) map[string]string {
	return func(r *rand.Rand) map[string]string {
		return map[string]string{
			"request":       kind + "-" + digits(r, 5),
			"source":        pick(r, []string{"chat", "email", "scheduled-job", "ticket"}),
			"business_unit": pick(r, []string{"emea", "amer", "apac"}),
		}
	}
}

// DefaultTeams returns the fleet of a mid-sized company: six teams, 3 to 10
// agents each, tools across the three tiers.
func DefaultTeams() []Team {
	return []Team{
		{
			Name: "finance", Agents: 6,
			Roles:  []string{"invoice-bot", "refund-agent", "ap-clerk", "reconciler"},
			Humans: []string{"maria.lopez@acme.example", "tom.becker@acme.example", "aisha.khan@acme.example", "li.wei@acme.example"},
			Approvers: []Approver{
				{"dana.reyes@acme.example", "finance-lead"}, {"peter.olsen@acme.example", "controller"},
				{"aisha.khan@acme.example", "ap-manager"},
			},
			Tools: []Tool{
				{Tool: "ledger", Action: "read_balance", ActionClass: "read", Tier: 1, Weight: 30,
					PolicyID: "tier1-internal-read", MatchedRule: "internal_read", DenyRate: 0.005, DenyReasons: []string{"account outside the agent's entity scope"},
					Median: 80 * time.Millisecond, Errors: []string{"timeout", "upstream_unavailable"},
					Target: func(r *rand.Rand) string { return "account:GL-" + digits(r, 5) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"period": "2026-" + fmt.Sprintf("%02d", 1+r.IntN(12)), "currency": "USD"}
					},
					Rationales: []string{"reconcile month-end balance against bank statement", "check available budget before drafting purchase order", "answer controller's question on cost-center spend"},
					Context:    requestContext("FIN")},
				{Tool: "invoices", Action: "draft", ActionClass: "draft", Tier: 1, Weight: 20,
					PolicyID: "tier1-internal-write", MatchedRule: "draft_only", Median: 300 * time.Millisecond, Writes: true,
					Errors: []string{"timeout"},
					Target: func(r *rand.Rand) string { return "invoice:INV-2026-" + digits(r, 5) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"customer": "cus_" + digits(r, 7), "amount": money(r, 50, 20000), "currency": "USD", "due_days": "30"}
					},
					Rationales: []string{"monthly subscription renewal invoice due", "usage overage billed per contract schedule B"},
					Context:    requestContext("FIN")},
				{Tool: "invoices", Action: "send", ActionClass: "send", Tier: 2, Weight: 12,
					PolicyID: "tier2-customer-comms", MatchedRule: "customer_send_quota", ApprovalRate: 0.05, Quota: 200,
					Median: 450 * time.Millisecond, Writes: true, SideEffect: "email:msg-",
					Failures: []string{"recipient_rejected", "invalid_address"},
					Errors:   []string{"smtp_timeout", "rate_limited"},
					Target:   func(r *rand.Rand) string { return "invoice:INV-2026-" + digits(r, 5) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"to": "billing@customer-" + digits(r, 4) + ".example", "template": "invoice_v3"}
					},
					Rationales: []string{"invoice approved in draft review, sending to billing contact on file", "customer asked for a copy of the latest invoice"},
					Context:    ticketContext},
				{Tool: "payments", Action: "refund", ActionClass: "refund", Tier: 3, Weight: 8,
					PolicyID: "tier3-money-movement", MatchedRule: "refund_requires_approval", DenyRate: 0.04,
					DenyReasons: []string{"refund exceeds agent limit of 5000.00", "original charge older than 180 days"},
					Median:      900 * time.Millisecond, Writes: true, SideEffect: "refund:re_",
					Failures: []string{"charge_already_refunded", "insufficient_balance"},
					Errors:   []string{"psp_timeout", "upstream_5xx"},
					Target:   func(r *rand.Rand) string { return "charge:ch_" + digits(r, 10) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"amount": money(r, 5, 4000), "currency": "USD", "reason": "duplicate_charge"}
					},
					Rationales: []string{"customer charged twice for the same order, second charge matches first to the cent", "service outage credit per SLA section 4.2",
						"customer paid twice with card 4242 4242 4242 4242, second charge matches first to the cent"},
					Context: ticketContext},
				{Tool: "payments", Action: "transfer", ActionClass: "payment", Tier: 3, Weight: 3,
					PolicyID: "tier3-money-movement", MatchedRule: "payment_requires_approval", DenyRate: 0.06,
					DenyReasons: []string{"payee not in vendor master", "transfer above daily payment limit"},
					Median:      1500 * time.Millisecond, Writes: true, SideEffect: "transfer:tr_",
					Failures: []string{"insufficient_funds", "payee_account_closed"},
					Errors:   []string{"bank_api_timeout"},
					Target:   func(r *rand.Rand) string { return "vendor:V-" + digits(r, 5) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"amount": money(r, 100, 50000), "currency": "USD", "invoice": "BILL-" + digits(r, 6)}
					},
					Rationales: []string{"vendor invoice matched to purchase order and goods receipt", "scheduled payment run for approved payables"},
					Context:    requestContext("AP")},
			},
		},
		{
			Name: "support", Agents: 10,
			Roles:  []string{"triage-bot", "reply-assistant", "escalation-agent", "kb-helper"},
			Humans: []string{"sam.taylor@acme.example", "nina.patel@acme.example", "jorge.silva@acme.example", "emma.wright@acme.example", "kofi.mensah@acme.example"},
			Approvers: []Approver{
				{"rachel.green@acme.example", "support-manager"}, {"omar.haddad@acme.example", "support-lead"},
				{"privacy@acme.example", "privacy-officer"},
			},
			Tools: []Tool{
				{Tool: "tickets", Action: "read", ActionClass: "read", Tier: 1, Weight: 35,
					PolicyID: "tier1-internal-read", MatchedRule: "internal_read", Median: 60 * time.Millisecond,
					Errors: []string{"timeout"},
					Target: func(r *rand.Rand) string { return "ticket:SUP-" + digits(r, 6) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"include": "thread,customer", "limit": "50"}
					},
					Rationales: []string{"load ticket history before drafting a reply", "check whether the customer reported this issue before"},
					Context:    ticketContext},
				{Tool: "tickets", Action: "draft_reply", ActionClass: "draft", Tier: 1, Weight: 25,
					PolicyID: "tier1-internal-write", MatchedRule: "draft_only", Median: 1200 * time.Millisecond, Writes: true,
					Errors: []string{"model_timeout"},
					Target: func(r *rand.Rand) string { return "ticket:SUP-" + digits(r, 6) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"tone": "empathetic", "language": pick(r, []string{"en", "de", "es", "fr"})}
					},
					Rationales: []string{"customer reports a login loop after password reset, KB article 1042 applies", "shipping delay question, tracking shows the parcel in transit",
						"jane.doe@mail.example says she was charged twice, asks for a callback on +1 415 555 0134"},
					Context: ticketContext},
				{Tool: "email", Action: "send", ActionClass: "send", Tier: 2, Weight: 18,
					PolicyID: "tier2-customer-comms", MatchedRule: "customer_send_quota", ApprovalRate: 0.08, Quota: 150,
					Median: 400 * time.Millisecond, Writes: true, SideEffect: "email:msg-",
					Failures: []string{"recipient_rejected"},
					Errors:   []string{"smtp_timeout", "rate_limited"},
					Target:   func(r *rand.Rand) string { return "customer:cus_" + digits(r, 7) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"template": "support_reply", "thread": "SUP-" + digits(r, 6), "attachments": "0",
							"to": pick(r, customerContacts)}
					},
					Rationales: []string{"send approved draft resolving the customer's billing question", "follow up after fix deployed for the reported export bug"},
					Context:    ticketContext},
				{Tool: "tickets", Action: "update_status", ActionClass: "update", Tier: 2, Weight: 10,
					PolicyID: "tier2-customer-records", MatchedRule: "status_update", Quota: 400, Median: 120 * time.Millisecond, Writes: true,
					Failures: []string{"ticket_locked"},
					Errors:   []string{"timeout"},
					Target:   func(r *rand.Rand) string { return "ticket:SUP-" + digits(r, 6) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"status": pick(r, []string{"pending", "solved", "on_hold"})}
					},
					Rationales: []string{"customer confirmed the fix works", "waiting on customer logs"},
					Context:    ticketContext},
				{Tool: "billing", Action: "issue_credit", ActionClass: "refund", Tier: 3, Weight: 5,
					PolicyID: "tier3-money-movement", MatchedRule: "credit_requires_approval", DenyRate: 0.05,
					DenyReasons: []string{"credit exceeds support limit of 250.00", "customer already credited this month"},
					Median:      700 * time.Millisecond, Writes: true, SideEffect: "credit:cn_",
					Failures: []string{"account_suspended"},
					Errors:   []string{"upstream_5xx"},
					Target:   func(r *rand.Rand) string { return "customer:cus_" + digits(r, 7) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"amount": money(r, 5, 500), "currency": "USD", "reason": "service_outage"}
					},
					Rationales: []string{"goodwill credit for a 6 hour outage affecting the customer's region", "compensate a missed SLA response time"},
					Context:    ticketContext},
				{Tool: "accounts", Action: "delete_personal_data", ActionClass: "delete", Tier: 3, Weight: 2,
					PolicyID: "tier3-privacy", MatchedRule: "erasure_requires_approval", DenyRate: 0.03,
					DenyReasons: []string{"account has an open legal hold"},
					Median:      4 * time.Second, Writes: true, SideEffect: "erasure:job-",
					Failures:   []string{"legal_hold"},
					Errors:     []string{"timeout"},
					Target:     func(r *rand.Rand) string { return "customer:cus_" + digits(r, 7) },
					Params:     func(r *rand.Rand) map[string]string { return map[string]string{"scope": "all", "basis": "gdpr_art17"} },
					Rationales: []string{"verified erasure request received through the privacy portal"},
					Context:    ticketContext},
			},
		},
		{
			Name: "devops", Agents: 5,
			Roles:  []string{"oncall-assistant", "deploy-bot", "cost-optimizer"},
			Humans: []string{"alex.kim@acme.example", "priya.nair@acme.example", "lukas.meyer@acme.example"},
			Approvers: []Approver{
				{"sre-oncall@acme.example", "sre-oncall"}, {"ines.costa@acme.example", "security-admin"},
				{"priya.nair@acme.example", "platform-lead"},
			},
			Tools: []Tool{
				{Tool: "logs", Action: "query", ActionClass: "read", Tier: 1, Weight: 35,
					PolicyID: "tier1-internal-read", MatchedRule: "internal_read", Median: 900 * time.Millisecond,
					Errors: []string{"query_timeout"},
					Target: func(r *rand.Rand) string {
						return "service:" + pick(r, []string{"checkout", "auth", "search", "billing-api"})
					},
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"window": "15m", "level": "error", "region": pick(r, regions)}
					},
					Rationales: []string{"error rate alert fired, look for the first failing request", "latency regression after the last deploy",
						"401s since the key rotation, failing request sent api_key=sk_live_4eC39HqLyjWDarjtT1zdp7dc"},
					Context: func(r *rand.Rand) map[string]string {
						return map[string]string{"alert": "ALR-" + digits(r, 5), "severity": pick(r, []string{"sev2", "sev3"}), "runbook": "rb-" + digits(r, 3)}
					}},
				{Tool: "statuspage", Action: "post_update", ActionClass: "send", Tier: 2, Weight: 6,
					PolicyID: "tier2-customer-comms", MatchedRule: "public_status", ApprovalRate: 0.3, Quota: 20,
					Median: 300 * time.Millisecond, Writes: true, SideEffect: "incident:inc_",
					Errors: []string{"upstream_5xx"},
					Target: func(r *rand.Rand) string { return "incident:INC-" + digits(r, 4) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"status": "investigating", "components": "api"}
					},
					Rationales: []string{"customer-facing errors above 2% for 10 minutes"},
					Context: func(r *rand.Rand) map[string]string {
						return map[string]string{"alert": "ALR-" + digits(r, 5), "severity": "sev1"}
					}},
				{Tool: "deploy", Action: "restart_service", ActionClass: "update", Tier: 2, Weight: 8,
					PolicyID: "tier2-production-change", MatchedRule: "restart_quota", ApprovalRate: 0.15, Quota: 30,
					Median: 25 * time.Second, Writes: true,
					Failures: []string{"health_check_failed"},
					Errors:   []string{"orchestrator_timeout"},
					Target: func(r *rand.Rand) string {
						return "deployment:" + pick(r, []string{"checkout", "auth", "search"}) + "/" + pick(r, regions)
					},
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"strategy": "rolling", "max_unavailable": "25%"}
					},
					Rationales: []string{"memory leak pattern matches runbook rb-112, rolling restart clears it"},
					Context: func(r *rand.Rand) map[string]string {
						return map[string]string{"alert": "ALR-" + digits(r, 5), "severity": "sev2"}
					}},
				{Tool: "iam", Action: "grant_access", ActionClass: "access_grant", Tier: 3, Weight: 4,
					PolicyID: "tier3-access", MatchedRule: "grant_requires_approval", DenyRate: 0.08,
					DenyReasons: []string{"role grants production write access", "requester is not in the owning team"},
					Median:      800 * time.Millisecond, Writes: true, SideEffect: "grant:gr-",
					Failures: []string{"role_not_found"},
					Errors:   []string{"idp_timeout"},
					Target: func(r *rand.Rand) string {
						return "role:" + pick(r, []string{"prod-readonly", "db-admin", "billing-viewer"})
					},
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"principal": "user:" + digits(r, 5), "duration": "8h"}
					},
					Rationales: []string{"engineer on call needs temporary read access to debug the incident"},
					Context: func(r *rand.Rand) map[string]string {
						return map[string]string{"incident": "INC-" + digits(r, 4), "severity": "sev2"}
					}},
				{Tool: "storage", Action: "delete_bucket", ActionClass: "delete", Tier: 3, Weight: 2,
					PolicyID: "tier3-destructive", MatchedRule: "delete_requires_approval", DenyRate: 0.1,
					DenyReasons: []string{"bucket is not tagged for deletion", "bucket holds data under retention"},
					Median:      2 * time.Second, Writes: true,
					Failures: []string{"bucket_not_empty"},
					Errors:   []string{"cloud_api_throttled"},
					Target:   func(r *rand.Rand) string { return "bucket:tmp-export-" + digits(r, 6) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"region": pick(r, regions), "force": "false"}
					},
					Rationales: []string{"unused temporary export bucket older than 90 days, flagged by cost report"},
					Context:    requestContext("OPS")},
			},
		},
		{
			Name: "sales", Agents: 7,
			Roles:  []string{"sdr-assistant", "crm-updater", "proposal-writer"},
			Humans: []string{"chris.evans@acme.example", "yuki.tanaka@acme.example", "fatima.zahra@acme.example", "ben.carter@acme.example"},
			Approvers: []Approver{
				{"olivia.brown@acme.example", "sales-director"}, {"deal-desk@acme.example", "deal-desk"},
			},
			Tools: []Tool{
				{Tool: "crm", Action: "read_account", ActionClass: "read", Tier: 1, Weight: 30,
					PolicyID: "tier1-internal-read", MatchedRule: "internal_read", Median: 150 * time.Millisecond,
					Errors:     []string{"timeout"},
					Target:     func(r *rand.Rand) string { return "account:001" + digits(r, 12) },
					Params:     func(r *rand.Rand) map[string]string { return map[string]string{"fields": "owner,stage,arr,contacts"} },
					Rationales: []string{"prepare call notes for renewal meeting", "check open opportunities before outreach"},
					Context:    requestContext("SLS")},
				{Tool: "email", Action: "send_prospect", ActionClass: "send", Tier: 2, Weight: 15,
					PolicyID: "tier2-customer-comms", MatchedRule: "outbound_quota", ApprovalRate: 0.05, Quota: 100,
					Median: 350 * time.Millisecond, Writes: true, SideEffect: "email:msg-",
					Failures: []string{"recipient_unsubscribed", "invalid_address"},
					Errors:   []string{"smtp_timeout"},
					Target:   func(r *rand.Rand) string { return "contact:003" + digits(r, 12) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"template": "follow_up_" + fmt.Sprint(1+r.IntN(4)), "sequence": "q4-renewals"}
					},
					Rationales: []string{"prospect opened pricing page twice this week, follow-up step 2 due"},
					Context:    requestContext("SLS")},
				{Tool: "crm", Action: "update_opportunity", ActionClass: "update", Tier: 2, Weight: 12,
					PolicyID: "tier2-customer-records", MatchedRule: "crm_update", Quota: 300, Median: 200 * time.Millisecond, Writes: true,
					Failures: []string{"validation_rule_failed"},
					Errors:   []string{"timeout"},
					Target:   func(r *rand.Rand) string { return "opportunity:006" + digits(r, 12) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"stage": pick(r, []string{"discovery", "proposal", "negotiation"}), "close_date": "2026-12-15"}
					},
					Rationales: []string{"call notes say legal review started, move stage to negotiation"},
					Context:    requestContext("SLS")},
				{Tool: "billing", Action: "apply_discount", ActionClass: "payment", Tier: 3, Weight: 4,
					PolicyID: "tier3-pricing", MatchedRule: "discount_over_15pct", DenyRate: 0.1,
					DenyReasons: []string{"discount above 30% needs deal desk review outside the agent", "account has overdue invoices"},
					Median:      300 * time.Millisecond, Writes: true,
					Failures: []string{"price_book_locked"},
					Errors:   []string{"upstream_5xx"},
					Target:   func(r *rand.Rand) string { return "quote:Q-" + digits(r, 6) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"discount_pct": fmt.Sprint(10 + r.IntN(30)), "term_months": "24"}
					},
					Rationales: []string{"multi-year commitment qualifies for the standard enterprise discount band"},
					Context:    requestContext("SLS")},
			},
		},
		{
			Name: "legal", Agents: 3,
			Roles:  []string{"contract-reviewer", "notice-drafter"},
			Humans: []string{"hannah.schmidt@acme.example", "david.cohen@acme.example"},
			Approvers: []Approver{
				{"general.counsel@acme.example", "general-counsel"}, {"mei.ling@acme.example", "senior-counsel"},
			},
			Tools: []Tool{
				{Tool: "contracts", Action: "read", ActionClass: "read", Tier: 1, Weight: 30,
					PolicyID: "tier1-internal-read", MatchedRule: "internal_read", Median: 200 * time.Millisecond,
					Errors: []string{"timeout"},
					Target: func(r *rand.Rand) string { return "contract:MSA-" + digits(r, 5) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"sections": "term,termination,liability"}
					},
					Rationales: []string{"compare renewal terms with the playbook", "find the notice period before the renewal date"},
					Context:    requestContext("LGL")},
				{Tool: "docs", Action: "draft_redline", ActionClass: "draft", Tier: 1, Weight: 15,
					PolicyID: "tier1-internal-write", MatchedRule: "draft_only", Median: 6 * time.Second, Writes: true,
					Errors: []string{"model_timeout"},
					Target: func(r *rand.Rand) string { return "contract:MSA-" + digits(r, 5) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"playbook": "saas-v7", "clauses": "liability,indemnity"}
					},
					Rationales: []string{"counterparty's liability cap is below the playbook minimum"},
					Context:    requestContext("LGL")},
				{Tool: "email", Action: "send_legal_notice", ActionClass: "legal_email", Tier: 3, Weight: 5,
					PolicyID: "tier3-legal", MatchedRule: "external_legal_email", DenyRate: 0.05,
					DenyReasons: []string{"recipient domain is not a known counterparty"},
					Median:      400 * time.Millisecond, Writes: true, SideEffect: "email:msg-",
					Failures: []string{"recipient_rejected"},
					Errors:   []string{"smtp_timeout"},
					Target:   func(r *rand.Rand) string { return "counterparty:CP-" + digits(r, 4) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"template": "non_renewal_notice", "contract": "MSA-" + digits(r, 5)}
					},
					Rationales: []string{"non-renewal notice must reach the counterparty 60 days before the renewal date"},
					Context:    requestContext("LGL")},
			},
		},
		{
			Name: "data", Agents: 4,
			Roles:  []string{"analyst-bot", "pipeline-agent", "report-sender"},
			Humans: []string{"noah.fischer@acme.example", "sofia.rossi@acme.example", "arjun.mehta@acme.example"},
			Approvers: []Approver{
				{"data.governance@acme.example", "data-steward"}, {"ines.costa@acme.example", "security-admin"},
			},
			Tools: []Tool{
				{Tool: "warehouse", Action: "query", ActionClass: "read", Tier: 1, Weight: 35,
					PolicyID: "tier1-internal-read", MatchedRule: "internal_read", DenyRate: 0.01, DenyReasons: []string{"query touches a restricted PII column"},
					Median: 3 * time.Second, Errors: []string{"query_timeout", "warehouse_busy"},
					Target: func(r *rand.Rand) string {
						return "table:analytics." + pick(r, []string{"orders", "sessions", "invoices", "churn_scores"})
					},
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"rows_limit": "10000", "date_from": "2026-10-01"}
					},
					Rationales: []string{"weekly revenue dashboard refresh", "answer product team's question on activation rate"},
					Context:    requestContext("DAT")},
				{Tool: "reports", Action: "send_customer_report", ActionClass: "send", Tier: 2, Weight: 6,
					PolicyID: "tier2-customer-comms", MatchedRule: "customer_send_quota", ApprovalRate: 0.1, Quota: 50,
					Median: 2 * time.Second, Writes: true, SideEffect: "email:msg-",
					Failures: []string{"recipient_rejected"},
					Errors:   []string{"render_timeout"},
					Target:   func(r *rand.Rand) string { return "customer:cus_" + digits(r, 7) },
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"report": "usage_monthly", "format": "pdf"}
					},
					Rationales: []string{"monthly usage report scheduled for enterprise customers"},
					Context:    requestContext("DAT")},
				{Tool: "warehouse", Action: "grant_access", ActionClass: "access_grant", Tier: 3, Weight: 3,
					PolicyID: "tier3-access", MatchedRule: "grant_requires_approval", DenyRate: 0.1,
					DenyReasons: []string{"dataset is classified restricted"},
					Median:      500 * time.Millisecond, Writes: true, SideEffect: "grant:gr-",
					Failures: []string{"principal_unknown"},
					Errors:   []string{"timeout"},
					Target: func(r *rand.Rand) string {
						return "dataset:" + pick(r, []string{"finance_mart", "customer_360", "hr_people"})
					},
					Params: func(r *rand.Rand) map[string]string {
						return map[string]string{"principal": "group:" + pick(r, []string{"analysts", "ml-team"}), "level": "read"}
					},
					Rationales: []string{"new analyst onboarding ticket lists this dataset"},
					Context:    requestContext("DAT")},
				{Tool: "warehouse", Action: "drop_table", ActionClass: "delete", Tier: 3, Weight: 1,
					PolicyID: "tier3-destructive", MatchedRule: "delete_requires_approval", DenyRate: 0.15,
					DenyReasons: []string{"table has downstream dependencies"},
					Median:      700 * time.Millisecond, Writes: true,
					Failures:   []string{"table_locked"},
					Errors:     []string{"warehouse_busy"},
					Target:     func(r *rand.Rand) string { return "table:scratch.tmp_" + digits(r, 6) },
					Params:     func(r *rand.Rand) map[string]string { return map[string]string{"if_exists": "true"} },
					Rationales: []string{"scratch table unused for 120 days"},
					Context:    requestContext("DAT")},
			},
		},
	}
}

// check reports a team that cannot generate valid events.
func (t *Team) check() error {
	switch {
	case t.Name == "":
		return fmt.Errorf("simulate: team with no name")
	case t.Agents < 1:
		return fmt.Errorf("simulate: team %s: agents %d must be >= 1", t.Name, t.Agents)
	case len(t.Roles) == 0 || len(t.Humans) == 0 || len(t.Approvers) == 0 || len(t.Tools) == 0:
		return fmt.Errorf("simulate: team %s: needs roles, humans, approvers and tools", t.Name)
	}
	for _, tl := range t.Tools {
		if tl.Tier < schemas.TierLow || tl.Tier > schemas.TierHigh || tl.Weight < 1 || tl.Target == nil || tl.Params == nil || len(tl.Rationales) == 0 {
			return fmt.Errorf("simulate: team %s: tool %s.%s needs tier 1..3, weight >= 1, Target, Params and Rationales", t.Name, tl.Tool, tl.Action)
		}
	}
	return nil
}
