package reports

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/reports/internal/fixture"
	"github.com/agentrail/agentrail/reports/registry"
	"github.com/agentrail/agentrail/reports/retention"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// The fixed data set: ISO week 2026-W47 in Europe/Berlin (CET, UTC+1) runs
// from 2026-11-15T23:00Z to 2026-11-22T23:00Z.
var (
	w47      = Week{2026, 47}
	berlin   = mustZone("Europe/Berlin")
	reportAt = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC) // the fixed clock
	v1At     = time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	v2At     = time.Date(2026, 11, 18, 12, 0, 0, 0, time.UTC) // mid-week: a grant revoked, one added
)

func mustZone(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// action is one trace: intent, policy decision, the approval if any, and a
// result if any.
type action struct {
	name                     string
	team, agent              string
	tier                     int
	tool, act, class, target string
	when                     time.Time
	outcome, policy, reason  string
	approval                 string // granted, rejected, expired or ""
	approveAfter             time.Duration
	result, errClass         string // "" = no result event
	rationale                string
}

func traceID(name string) string {
	h := sha256.Sum256([]byte(name))
	return hex.EncodeToString(h[:16])
}

func (a action) events() []fixture.Event {
	tid := traceID(a.name)
	base := fixture.Event{TraceID: tid, Tier: a.tier, Team: a.team, AgentID: a.agent, RequestedBy: "maria.lopez@acme.example"}
	in := base
	in.EventID, in.Type, in.Time = a.name+"-intent", "intent", a.when
	in.Tool, in.Action, in.Target, in.ActionClass = a.tool, a.act, a.target, a.class
	in.Rationale = a.rationale
	if in.Rationale == "" {
		in.Rationale = "routine " + a.class
	}
	in.Parameters = map[string]string{"amount": "120.00"}
	de := base
	de.EventID, de.Type, de.Time = a.name+"-decision", "policy_decision", a.when.Add(20*time.Millisecond)
	de.Outcome, de.PolicyID, de.Reason = a.outcome, a.policy, a.reason
	evs := []fixture.Event{in, de}
	last := de.Time
	if a.approval != "" {
		ap := base
		ap.EventID, ap.Type, ap.Time = a.name+"-approval", "approval", de.Time.Add(a.approveAfter)
		ap.ApprovalID, ap.ApprovalStatus = "apr-"+a.name, a.approval
		if a.approval != "expired" {
			ap.Approver, ap.ApproverRole = "dana.reyes@acme.example", "finance-lead"
		}
		evs = append(evs, ap)
		last = ap.Time
	}
	if a.result != "" {
		re := base
		re.EventID, re.Type, re.Time = a.name+"-result", "result", last.Add(900*time.Millisecond)
		re.ResultStatus, re.ErrorClass, re.DurationUS = a.result, a.errClass, 850000
		evs = append(evs, re)
	}
	return evs
}

const (
	inv  = "finance-invoice-bot-01"
	ref  = "finance-refund-agent-02"
	clrk = "finance-ap-clerk-03" // not in the registry
)

// fixedActions is the data set the golden files pin.
func fixedActions() []action {
	read := func(name, agent, target, when string) action {
		return action{name: name, team: "finance", agent: agent, tier: 1, tool: "ledger", act: "read_balance", class: "read",
			target: target, when: at(when), outcome: "allow", policy: "tier1-internal-read", result: "success"}
	}
	send := func(name, agent, when, outcome, reason string) action {
		a := action{name: name, team: "finance", agent: agent, tier: 2, tool: "invoices", act: "send", class: "send",
			target: "invoice:INV-2026-00" + name[len(name)-2:], when: at(when), outcome: outcome, policy: "tier2-customer-comms", reason: reason}
		if outcome == "allow" {
			a.result = "success"
		} else {
			a.result = "blocked"
		}
		return a
	}
	refund := func(name, when, outcome, reason, approval string, after time.Duration, result, errClass string) action {
		return action{name: name, team: "finance", agent: ref, tier: 3, tool: "payments", act: "refund", class: "refund",
			target: "charge:ch_00" + name[len(name)-2:], when: at(when), outcome: outcome, policy: "tier3-money-movement", reason: reason,
			approval: approval, approveAfter: after, result: result, errClass: errClass}
	}
	quota := "daily quota of 200 exhausted"
	acts := []action{
		// Monday 00:30 in Berlin, still Sunday in UTC: inside W47 for the team.
		read("w47-boundary-in", inv, "account:GL-10001", "2026-11-15T23:30:00Z"),
		{name: "w47-draft-01", team: "finance", agent: inv, tier: 1, tool: "invoices", act: "draft", class: "draft",
			target: "invoice:INV-2026-00101", when: at("2026-11-16T10:00:00Z"), outcome: "allow", policy: "tier1-internal-write", result: "success"},
		send("w47-send-01", inv, "2026-11-17T09:00:00Z", "allow", ""),
		func() action {
			a := send("w47-send-02", inv, "2026-11-17T10:00:00Z", "require_approval", "tier 2 send needs a human approval")
			a.approval, a.approveAfter, a.result = "granted", 10*time.Minute, "success"
			return a
		}(),
		func() action {
			a := send("w47-send-03", inv, "2026-11-18T10:00:00Z", "require_approval", "tier 2 send needs a human approval")
			a.approval, a.approveAfter, a.result = "rejected", 5*time.Minute, "blocked"
			return a
		}(),
		send("w47-send-04", inv, "2026-11-19T15:00:00Z", "deny", quota),
		send("w47-send-05", inv, "2026-11-19T15:10:00Z", "deny", quota),
		send("w47-send-06", inv, "2026-11-19T15:20:00Z", "deny", quota),
		// A target outside the grant's account:GL-* pattern.
		read("w47-read-ar", inv, "account:AR-00123", "2026-11-20T08:00:00Z"),

		refund("w47-refund-01", "2026-11-16T09:00:00Z", "require_approval", "tier 3 refund needs a human approval", "granted", 20*time.Minute, "success", ""),
		refund("w47-refund-02", "2026-11-17T09:00:00Z", "require_approval", "tier 3 refund needs a human approval", "granted", 40*time.Minute, "failure", "insufficient_balance"),
		refund("w47-refund-03", "2026-11-18T09:00:00Z", "deny", "refund exceeds agent limit of 5000.00", "", 0, "blocked", "policy_denied"),
		refund("w47-refund-04", "2026-11-20T09:00:00Z", "require_approval", "tier 3 refund needs a human approval", "expired", 30*time.Minute, "blocked", "approval_expired"),
		// invoices.send before (covered) and after (not covered) its revocation.
		send("w47-refsend-01", ref, "2026-11-17T12:00:00Z", "allow", ""),
		send("w47-refsend-02", ref, "2026-11-19T12:00:00Z", "allow", ""),
		// Sunday 23:30 in Berlin: the week's last hour.
		read("w47-boundary-last", ref, "account:GL-10002", "2026-11-22T22:30:00Z"),
		// Monday 00:30 in Berlin: W48 for the team, though still Sunday in UTC.
		read("w48-boundary-out", ref, "account:GL-10003", "2026-11-22T23:30:00Z"),

		// An unregistered agent probing a tier 3 tool.
		{name: "w47-clerk-01", team: "finance", agent: clrk, tier: 3, tool: "payments", act: "transfer", class: "payment", target: "vendor:V-90001",
			when: at("2026-11-18T14:00:00Z"), outcome: "deny", policy: "tier3-money-movement", reason: "payee not in vendor master"},
		{name: "w47-clerk-02", team: "finance", agent: clrk, tier: 3, tool: "payments", act: "transfer", class: "payment", target: "vendor:V-90002",
			when: at("2026-11-18T14:05:00Z"), outcome: "deny", policy: "tier3-money-movement", reason: "payee not in vendor master"},
		{name: "w47-clerk-03", team: "finance", agent: clrk, tier: 3, tool: "payments", act: "transfer", class: "payment", target: "vendor:V-90003",
			when: at("2026-11-18T14:10:00Z"), outcome: "deny", policy: "tier3-money-movement", reason: "transfer above daily payment limit"},

		// The week before, for week-over-week change.
		read("w46-read-01", inv, "account:GL-10004", "2026-11-10T09:00:00Z"),
		read("w46-read-02", inv, "account:GL-10005", "2026-11-11T09:00:00Z"),
		send("w46-send-01", inv, "2026-11-12T09:00:00Z", "deny", quota),
		refund("w46-refund-01", "2026-11-12T11:00:00Z", "require_approval", "tier 3 refund needs a human approval", "granted", 30*time.Minute, "success", ""),

		// Outside the look-back window: does not count as a use.
		{name: "oct-transfer-01", team: "finance", agent: inv, tier: 3, tool: "payments", act: "transfer", class: "payment", target: "vendor:V-00001",
			when: at("2026-10-10T09:00:00Z"), outcome: "require_approval", policy: "tier3-money-movement", approval: "granted",
			approveAfter: 15 * time.Minute, result: "success"},

		// Another team in the same week: never in finance's report.
		{name: "w47-support-01", team: "support", agent: "support-triage-bot-01", tier: 1, tool: "tickets", act: "read", class: "read",
			target: "ticket:SUP-000001", when: at("2026-11-17T15:00:00Z"), outcome: "allow", policy: "tier1-internal-read", result: "success"},
		// Old tier 1 events, for the retention run of the week.
		read("sep-read-01", inv, "account:GL-10006", "2026-09-08T09:00:00Z"),
		read("sep-read-02", ref, "account:GL-10007", "2026-09-09T09:00:00Z"),
		{name: "sep-support-01", team: "support", agent: "support-triage-bot-01", tier: 1, tool: "tickets", act: "read", class: "read",
			target: "ticket:SUP-000002", when: at("2026-09-10T15:00:00Z"), outcome: "allow", policy: "tier1-internal-read", result: "success"},
	}
	return acts
}

// loadFixture fills a fresh test database with the fixed data set: the
// two registry versions, the events, violations and alerts, a legal hold
// and a retention run during the week.
func loadFixture(t *testing.T) (driver.Conn, string) {
	t.Helper()
	ctx := context.Background()
	cfg, conn := testenv.ClickHouse(t)
	db := cfg.Database
	for _, v := range []struct {
		file string
		at   time.Time
	}{{"testdata/registry_v1.yaml", v1At}, {"testdata/registry_v2.yaml", v2At}} {
		reg, err := registry.Load(v.file)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := registry.Apply(ctx, conn, db, reg, registry.ApplyOptions{AsOf: v.at, By: "test", Source: v.file,
			Now: func() time.Time { return v.at }}); err != nil {
			t.Fatal(err)
		}
	}
	var evs []fixture.Event
	for _, a := range fixedActions() {
		evs = append(evs, a.events()...)
	}
	if err := fixture.InsertEvents(ctx, conn, db, evs); err != nil {
		t.Fatal(err)
	}
	if err := fixture.EnsureFindingsTables(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	if err := fixture.InsertViolations(ctx, conn, db, []fixture.Violation{
		{ID: "vio-0001", Kind: "executed_despite_failure_review", TraceID: traceID("w47-refund-02"), Team: "finance", AgentID: ref,
			EventTime: at("2026-11-17T09:41:00Z"), DetectedAt: at("2026-11-17T09:41:05Z"), Evidence: []string{"w47-refund-02-result"},
			Explanation: "refund ran after approval but the result reports insufficient balance twice in a row", Severity: "medium"},
		{ID: "vio-0002", Kind: "approved_by_requester", TraceID: traceID("w46-refund-01"), Team: "finance", AgentID: ref,
			EventTime: at("2026-11-12T11:30:00Z"), DetectedAt: at("2026-11-12T11:30:02Z"), Evidence: []string{"w46-refund-01-approval"},
			Explanation: "the requester approved their own refund", Severity: "high"},
		{ID: "vio-0003", Kind: "approved_by_requester", TraceID: traceID("w47-support-01"), Team: "support", AgentID: "support-triage-bot-01",
			EventTime: at("2026-11-17T15:00:00Z"), DetectedAt: at("2026-11-17T15:00:01Z"), Explanation: "other team", Severity: "high"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := fixture.InsertAlerts(ctx, conn, db, []fixture.Alert{
		{ID: "alr-0001", Rule: "denial_burst", Kind: "rate", Severity: "warning", Team: "finance", AgentID: inv, GroupKey: inv,
			WindowStart: at("2026-11-19T15:00:00Z"), WindowEnd: at("2026-11-19T15:30:00Z"), Observed: 3, Threshold: 2,
			EventIDs: []string{"w47-send-04-decision", "w47-send-05-decision", "w47-send-06-decision"}, RaisedAt: at("2026-11-19T15:30:01Z")},
	}); err != nil {
		t.Fatal(err)
	}
	// A hold on the invoice bot, then the week's retention run.
	if _, err := retention.SetHold(ctx, conn, db, retention.Hold{ID: "hold-0001", Scope: retention.ScopeAgent, Value: inv,
		Reason: "dispute over invoice INV-2026-00101", SetBy: "general.counsel@acme.example"}, at("2026-11-02T10:00:00Z")); err != nil {
		t.Fatal(err)
	}
	var rc retention.Config
	rc.Defaults()
	enf, err := retention.New(rc, conn, db, prometheus.NewRegistry(), quiet, retention.WithClock(func() time.Time { return at("2026-11-18T03:30:00Z") }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enf.Enforce(ctx, false, "test"); err != nil {
		t.Fatal(err)
	}
	return conn, db
}

func testConfig() Config {
	var c Config
	c.Defaults()
	return c
}
