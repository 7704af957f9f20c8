package registry

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/producers/simulate"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const valid = `
teams:
  - name: finance
    timezone: Europe/Berlin
    schedule: "0 8 * * MON"
    recipients: [dana.reyes@acme.example]
agents:
  - id: finance-invoice-bot-01
    team: finance
    owner: maria.lopez@acme.example
    grants:
      - {tool: ledger, action: read_balance, resource: "account:GL-*", tier: 1}
      - {tool: invoices, action: send, resource: "invoice:*", tier: 2, rate_limit: {per_day: 200}}
      - {tool: payments, action: refund, resource: "charge:*", tier: 3, approval: {required: true, approver_roles: [finance-lead]}}
`

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want []string // every error expected, by "line: field: text" fragments
	}{
		{"valid", valid, nil},
		{"unknown key", strings.Replace(valid, "owner:", "ownr:", 1), []string{"line 10: field ownr not found in type registry.Agent"}},
		{"every mistake at once", `
teams:
  - name: Finance
    timezone: Europe/Berln
    schedule: "every monday"
    recipients: [not-an-address, dana@acme.example, dana@acme.example]
  - name: ops
agents:
  - id: ""
    team: finance
    owner: maria
    grants:
      - {tool: ledger, action: "", resource: "", tier: 4}
      - {tool: invoices, action: send, resource: "invoice:*", tier: 2}
      - {tool: payments, action: refund, resource: "charge:*", tier: 3}
      - {tool: payments, action: refund, resource: "charge:*", tier: 3, approval: {required: true}}
  - id: bot-2
    team: sales
    owner: x@acme.example
`, []string{
			`r.yaml:3: teams[0].name: "Finance" must match`,
			`r.yaml:4: teams[0].timezone: "Europe/Berln" is not an IANA time zone name`,
			`r.yaml:5: teams[0].schedule: "every monday" is not a cron expression`,
			`r.yaml:6: teams[0].recipients[0]: "not-an-address" is not an email address`,
			`r.yaml:6: teams[0].recipients[2]: "dana@acme.example" is listed twice`,
			`r.yaml:9: agents[0].id: is required`,
			`r.yaml:10: agents[0].team: "finance" is not one of the teams (Finance, ops)`,
			`r.yaml:11: agents[0].owner: "maria" is not an email address`,
			`r.yaml:13: agents[0].grants[0].action: is required`,
			`r.yaml:13: agents[0].grants[0].resource: is required`,
			`r.yaml:13: agents[0].grants[0].tier: 4 out of range 1..3`,
			`r.yaml:14: agents[0].grants[1].rate_limit: tier 2 grants need per_hour or per_day > 0`,
			`r.yaml:15: agents[0].grants[2].approval.required: tier 3 grants need required: true`,
			`r.yaml:16: agents[0].grants[3].approval.approver_roles: tier 3 grants need at least one approver role`,
			`r.yaml:16: agents[0].grants[3]: grants payments.refund on "charge:*" again (first at grants[2])`,
			`r.yaml:18: agents[1].team: "sales" is not one of the teams (Finance, ops)`,
		}},
		{"no agents", "teams: []\n", []string{"agents: at least one agent is required"}},
		{"shadow grant beside its enforced one", valid + `      - {tool: invoices, action: send, resource: "invoice:*", tier: 2, rate_limit: {per_day: 50}, shadow: true}
      - {tool: ledger, action: read_balance, resource: "account:GL-*", tier: 1, action_classes: [read], shadow: true}
`, nil},
		{"shadow grant twice, bad action classes", valid + `      - {tool: invoices, action: send, resource: "invoice:*", tier: 2, rate_limit: {per_day: 50}, shadow: true}
      - {tool: invoices, action: send, resource: "invoice:*", tier: 2, rate_limit: {per_day: 40}, shadow: true}
      - {tool: ledger, action: post, resource: "*", tier: 1, action_classes: [write, Write, write]}
`, []string{
			`r.yaml:16: agents[0].grants[4]: shadow-grants invoices.send on "invoice:*" again (first at grants[3])`,
			`r.yaml:17: agents[0].grants[5].action_classes[1]: "Write" must match`,
			`r.yaml:17: agents[0].grants[5].action_classes[2]: "write" is listed twice`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse([]byte(tc.yaml), "r.yaml")
			if err == nil {
				err = r.Validate()
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(err.Error(), "\n")
			for _, w := range tc.want {
				found := false
				for _, l := range lines {
					if strings.Contains(l, w) {
						found = true
					}
				}
				if !found {
					t.Errorf("missing error %q in:\n%v", w, err)
				}
			}
			if tc.name == "every mistake at once" {
				if len(lines) != len(tc.want) {
					t.Errorf("%d errors, want %d:\n%v", len(lines), len(tc.want), err)
				}
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field == "" {
					t.Errorf("errors are not *FieldError: %T", err)
				}
			}
		})
	}
}

func TestMatchResource(t *testing.T) {
	for _, tc := range []struct {
		pattern, resource string
		want              bool
	}{
		{"*", "anything", true},
		{"invoice:*", "invoice:INV-1", true},
		{"invoice:*", "charge:1", false},
		{"account:GL-*", "account:AR-1", false},
		{"vendor:V-1*", "vendor:V-10001", true},
		{"a*b*c", "a-x-b-y-c", true},
		{"a*b*c", "a-x-c", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"50%_off", "50%_off", true},
	} {
		if got := MatchResource(tc.pattern, tc.resource); got != tc.want {
			t.Errorf("MatchResource(%q, %q) = %v", tc.pattern, tc.resource, got)
		}
	}
	if got := ResourceLike(`50%_off\*`); got != `50\%\_off\\%` {
		t.Errorf("ResourceLike = %q", got)
	}
}

func mustParse(t *testing.T, y string) *Registry {
	t.Helper()
	r, err := Parse([]byte(y), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestApplyVersions(t *testing.T) {
	ctx := context.Background()
	cfg, conn := testenv.ClickHouse(t)
	db := cfg.Database
	t1 := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	t2 := time.Date(2026, 11, 18, 12, 0, 0, 0, time.UTC)
	s1, err := Apply(ctx, conn, db, mustParse(t, valid), ApplyOptions{AsOf: t1, By: "alice", Source: "v1.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if s1.Version != 1 || s1.Opened != 5 || s1.Closed != 0 || s1.Grants != 3 {
		t.Fatalf("first apply: %+v", s1)
	}
	// Applying the same file again changes nothing.
	same, err := Apply(ctx, conn, db, mustParse(t, valid), ApplyOptions{AsOf: t1.Add(time.Hour), By: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if same.Version != 2 || same.Opened != 0 || same.Closed != 0 {
		t.Fatalf("re-apply: %+v", same)
	}
	// Version 3: refund revoked, transfer added, the send limit changed,
	// the team's recipients changed.
	v3 := strings.NewReplacer(
		`      - {tool: payments, action: refund, resource: "charge:*", tier: 3, approval: {required: true, approver_roles: [finance-lead]}}`,
		`      - {tool: payments, action: transfer, resource: "vendor:*", tier: 3, approval: {required: true, approver_roles: [controller]}}`,
		"per_day: 200", "per_day: 100",
		"recipients: [dana.reyes@acme.example]", "recipients: [dana.reyes@acme.example, peter.olsen@acme.example]",
	).Replace(valid)
	s3, err := Apply(ctx, conn, db, mustParse(t, v3), ApplyOptions{AsOf: t2, By: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if s3.Version != 3 || strings.Join(s3.Added, ";") != "grant finance-invoice-bot-01 payments.transfer on vendor:*" ||
		strings.Join(s3.Revoked, ";") != "grant finance-invoice-bot-01 payments.refund on charge:*" ||
		strings.Join(s3.Change, ";") != "grant finance-invoice-bot-01 invoices.send on invoice:*;team finance" {
		t.Fatalf("third apply: %+v", s3)
	}
	// History stays answerable.
	at := func(ts time.Time) string {
		gs, err := Grants(ctx, conn, db, "finance", ts, ts.Add(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, g := range gs {
			lim := ""
			if g.PerDay > 0 {
				lim = "/" + strings.TrimSpace(strings.Repeat(" ", 0)) + itoa(g.PerDay)
			}
			out = append(out, g.Tool+"."+g.Action+lim)
		}
		return strings.Join(out, ",")
	}
	if got := at(t1.Add(-time.Second)); got != "" {
		t.Errorf("before the first version: %q", got)
	}
	if got := at(t2.Add(-time.Second)); got != "invoices.send/200,ledger.read_balance,payments.refund" {
		t.Errorf("just before version 3: %q", got)
	}
	if got := at(t2); got != "invoices.send/100,ledger.read_balance,payments.transfer" {
		t.Errorf("at version 3: %q", got)
	}
	teams, err := TeamsAt(ctx, conn, db, t2.Add(-time.Millisecond))
	if err != nil || len(teams) != 1 || len(teams[0].Recipients) != 1 {
		t.Errorf("team before version 3: %+v %v", teams, err)
	}
	teams, err = TeamsAt(ctx, conn, db, t2)
	if err != nil || len(teams) != 1 || len(teams[0].Recipients) != 2 || teams[0].TimeZone != "Europe/Berlin" {
		t.Errorf("team at version 3: %+v %v", teams, err)
	}
	// History is never rewritten.
	if _, err := Apply(ctx, conn, db, mustParse(t, valid), ApplyOptions{AsOf: t2.Add(-time.Hour)}); err == nil ||
		!strings.Contains(err.Error(), "not after the last change") {
		t.Errorf("backdated apply: %v", err)
	}
	var versions uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".registry_versions").Scan(&versions); err != nil || versions != 3 {
		t.Errorf("registry_versions rows %d %v", versions, err)
	}
}

func itoa(n int) string {
	const digits = "0123456789"
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{digits[n%10]}, b...)
	}
	return string(b)
}

// The example registry in deployments/ describes the simulated fleet: every
// agent the simulator creates is registered in its team, with grants only
// for tools its team has, at the tool's tier.
func TestDeploymentRegistryMatchesSimulatedFleet(t *testing.T) {
	r, err := Load("../../deployments/registry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fleet := simulate.New(simulate.Config{Seed: 7})
	type toolKey struct{ team, tool, action string }
	tiers := map[toolKey]int32{}
	targets := map[toolKey][]string{}
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, tm := range simulate.DefaultTeams() {
		for _, tl := range tm.Tools {
			k := toolKey{tm.Name, tl.Tool, tl.Action}
			tiers[k] = tl.Tier
			for i := 0; i < 20; i++ {
				targets[k] = append(targets[k], tl.Target(rnd))
			}
		}
	}
	reg := map[string]Agent{}
	for _, a := range r.Agents {
		reg[a.ID] = a
	}
	teams := map[string]bool{}
	for _, tm := range r.Teams {
		teams[tm.Name] = true
		if len(tm.Recipients) == 0 {
			t.Errorf("team %s has no recipients", tm.Name)
		}
	}
	for _, a := range fleet.Agents() {
		ra, ok := reg[a.Identity.ID]
		if !ok {
			t.Errorf("simulated agent %s is not registered", a.Identity.ID)
			continue
		}
		if ra.Team != a.Identity.Team || !teams[ra.Team] {
			t.Errorf("agent %s: team %s, simulated %s", ra.ID, ra.Team, a.Identity.Team)
		}
	}
	if len(reg) != len(fleet.Agents()) {
		t.Errorf("%d registered agents, the fleet has %d", len(reg), len(fleet.Agents()))
	}
	for _, a := range r.Agents {
		for _, g := range a.Grants {
			tier, ok := tiers[toolKey{a.Team, g.Tool, g.Action}]
			if !ok {
				t.Errorf("agent %s: grant %s.%s is no tool of team %s", a.ID, g.Tool, g.Action, a.Team)
			} else if int(tier) != g.Tier {
				t.Errorf("agent %s: grant %s.%s at tier %d, the tool is tier %d", a.ID, g.Tool, g.Action, g.Tier, tier)
			}
			matched := 0
			for _, target := range targets[toolKey{a.Team, g.Tool, g.Action}] {
				if MatchResource(g.Resource, target) {
					matched++
				}
			}
			if matched == 0 {
				t.Errorf("agent %s: grant %s.%s on %q matches none of the simulated targets %v", a.ID, g.Tool, g.Action, g.Resource,
					targets[toolKey{a.Team, g.Tool, g.Action}][:3])
			}
		}
	}
}
