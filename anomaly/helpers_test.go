package anomaly

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// wed is a Wednesday afternoon in November (CET, EST): business hours in
// Berlin and New York.
var wed = time.Date(2026, 11, 18, 14, 0, 0, 0, time.UTC)

// testCalendars is prepended to rule snippets that need business hours.
const testCalendars = `
calendars:
  berlin:
    time_zone: Europe/Berlin
    hours: "08:00-18:00"
    holidays: [2026-12-24]
  new-york:
    time_zone: America/New_York
    hours: "08:00-18:00"
business_hours:
  teams:
    finance: berlin
    support: new-york
  humans:
    nina@acme.test: new-york
`

// mustRules parses a rule file for a test.
func mustRules(t testing.TB, src string) *RuleSet {
	t.Helper()
	rs, err := ParseRules("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("rules do not parse:\n%v\n%s", err, src)
	}
	return rs
}

func mustEngine(t testing.TB, src string) *Engine {
	t.Helper()
	en, err := NewEngine(mustRules(t, src), Config{})
	if err != nil {
		t.Fatal(err)
	}
	return en
}

// evb builds test events; ids and trace ids are generated.
type evb struct{ n int }

func (b *evb) next() int { b.n++; return b.n }

func (b *evb) base(typ schemas.EventType, agent, team string, at time.Time, trace string) schemas.Event {
	n := b.next()
	if trace == "" {
		trace = fmt.Sprintf("%032x", n)
	}
	return schemas.Event{EventID: fmt.Sprintf("ev-%d", n), TraceID: trace, Type: typ, Time: at.UTC(),
		Agent: schemas.Agent{ID: agent, Team: team}, RequestedBy: "alice@acme.test", Tier: 2}
}

// intent is an action of agent on tool.action target; the digest depends on
// all of them.
func (b *evb) intent(agent, team string, at time.Time, tool, action, target string, tier int32, class string) *schemas.Event {
	e := b.base(schemas.TypeIntent, agent, team, at, "")
	e.Tier = tier
	e.Intent = &schemas.Intent{Tool: tool, Action: action, Target: target, ActionClass: class, Tier: tier,
		ActionDigest: schemas.ActionDigest(agent, tool, action, target, nil)}
	return &e
}

func (b *evb) decision(of *schemas.Event, at time.Time, outcome string) *schemas.Event {
	e := b.base(schemas.TypeDecision, of.Agent.ID, of.Agent.Team, at, of.TraceID)
	e.Tier, e.RequestedBy = of.Tier, of.RequestedBy
	e.Decision = &schemas.Decision{Outcome: outcome, PolicyID: "p1", PolicyVersion: 1, Tier: of.Tier}
	return &e
}

func (b *evb) result(of *schemas.Event, at time.Time, status string) *schemas.Event {
	e := b.base(schemas.TypeResult, of.Agent.ID, of.Agent.Team, at, of.TraceID)
	e.Tier = of.Tier
	e.Result = &schemas.Result{Status: status, ActionDigest: of.Intent.ActionDigest}
	return &e
}

func (b *evb) approval(of *schemas.Event, at time.Time, status, approver, kind string) *schemas.Event {
	e := b.base(schemas.TypeApproval, of.Agent.ID, of.Agent.Team, at, of.TraceID)
	e.Tier = of.Tier
	e.Approval = &schemas.Approval{ApprovalID: "apr-" + e.EventID, Status: status, Approver: approver, ApproverKind: kind}
	return &e
}

// feed observes events in order and returns every alert raised or updated.
func feed(en *Engine, evs ...*schemas.Event) []Alert {
	var out []Alert
	for _, e := range evs {
		out = append(out, en.Observe(e)...)
	}
	return out
}

// distinctIDs counts distinct alert ids.
func distinctIDs(as []Alert) int {
	m := map[string]bool{}
	for _, a := range as {
		m[a.ID] = true
	}
	return len(m)
}

func summaries(as []Alert) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "\n  %s v%d %s: %s", a.Rule, a.Version, a.GroupKey, a.Summary)
	}
	return b.String()
}
