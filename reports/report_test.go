package reports

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/reports/internal/fixture"
	"github.com/agentrail/agentrail/reports/registry"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s differs from the golden file at line %d:\n got: %s\nwant: %s\n(run go test -update if the change is intended)", name, i+1, g, w)
			}
		}
	}
}

func TestWeekBounds(t *testing.T) {
	for _, tc := range []struct {
		name     string
		week     string
		zone     string
		from, to string
		hours    float64
	}{
		{"berlin in winter", "2026-W47", "Europe/Berlin", "2026-11-15T23:00:00Z", "2026-11-22T23:00:00Z", 168},
		{"utc", "2026-W47", "UTC", "2026-11-16T00:00:00Z", "2026-11-23T00:00:00Z", 168},
		{"new york", "2026-W47", "America/New_York", "2026-11-16T05:00:00Z", "2026-11-23T05:00:00Z", 168},
		{"tokyo", "2026-W47", "Asia/Tokyo", "2026-11-15T15:00:00Z", "2026-11-22T15:00:00Z", 168},
		{"berlin spring forward", "2026-W13", "Europe/Berlin", "2026-03-22T23:00:00Z", "2026-03-29T22:00:00Z", 167},
		{"week 1 starts in the year before", "2026-W01", "UTC", "2025-12-29T00:00:00Z", "2026-01-05T00:00:00Z", 168},
		{"week 53", "2026-W53", "UTC", "2026-12-28T00:00:00Z", "2027-01-04T00:00:00Z", 168},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := ParseWeek(tc.week)
			if err != nil {
				t.Fatal(err)
			}
			from, to := w.Bounds(mustZone(tc.zone))
			if !from.Equal(at(tc.from)) || !to.Equal(at(tc.to)) {
				t.Fatalf("%s in %s = [%s, %s), want [%s, %s)", tc.week, tc.zone, from.UTC(), to.UTC(), tc.from, tc.to)
			}
			if h := to.Sub(from).Hours(); h != tc.hours {
				t.Fatalf("%s in %s lasts %vh, want %v", tc.week, tc.zone, h, tc.hours)
			}
			if got := WeekOf(from, mustZone(tc.zone)); got != w {
				t.Fatalf("WeekOf(first instant) = %s", got)
			}
			if got := WeekOf(to.Add(-time.Nanosecond), mustZone(tc.zone)); got != w {
				t.Fatalf("WeekOf(last instant) = %s", got)
			}
		})
	}
	for _, bad := range []string{"2025-W53", "2026-W00", "2026-47", "26-W47", "2026-W54"} {
		if _, err := ParseWeek(bad); err == nil {
			t.Errorf("ParseWeek(%q): no error", bad)
		}
	}
	// A schedule firing at Monday 00:30 in Berlin is still Sunday in UTC:
	// the week that just ended there is W47, though in UTC W47 still runs.
	fire := at("2026-11-22T23:30:00Z")
	if got := LastComplete(fire, berlin); got != w47 {
		t.Errorf("LastComplete in Berlin = %s, want 2026-W47", got)
	}
	if got := LastComplete(fire, time.UTC); got != (Week{2026, 46}) {
		t.Errorf("LastComplete in UTC = %s, want 2026-W46", got)
	}
	if got := (Week{2026, 1}).Prev(); got != (Week{2025, 52}) {
		t.Errorf("2026-W01.Prev() = %s", got)
	}
}

func TestWeeklyReportGolden(t *testing.T) {
	ctx := context.Background()
	conn, db := loadFixture(t)
	b := NewBuilder(testConfig(), conn, db, func() time.Time { return reportAt })
	team, err := b.Team(ctx, "finance")
	if err != nil {
		t.Fatal(err)
	}
	if team.Location.String() != "Europe/Berlin" || len(team.Recipients) != 2 {
		t.Fatalf("team from the registry: %+v", team)
	}
	r, err := b.Build(ctx, team, w47)
	if err != nil {
		t.Fatal(err)
	}

	// Facts the golden files also pin, stated here so a wrong -update
	// cannot bless them.
	if r.Figures.Actions != 19 {
		t.Errorf("actions = %d, want 19 (both Berlin week boundaries, not the W48 one, not support's)", r.Figures.Actions)
	}
	byDay := map[string]int{}
	for _, d := range r.Daily {
		byDay[d.Date] += d.Actions
	}
	if byDay["2026-11-16"] != 3 || byDay["2026-11-22"] != 1 || len(byDay) != 7 {
		t.Errorf("daily actions by Berlin date: %v", byDay)
	}
	var unused, tooNew []string
	for _, g := range r.Permissions.Unused {
		unused = append(unused, g.AgentID+" "+g.Tool+"."+g.Action)
	}
	for _, g := range r.Permissions.TooNew {
		tooNew = append(tooNew, g.AgentID+" "+g.Tool+"."+g.Action)
	}
	if strings.Join(unused, ",") != inv+" payments.transfer" {
		t.Errorf("unused grants %v, want only the invoice bot's payments.transfer (its October use is outside the look-back)", unused)
	}
	if strings.Join(tooNew, ",") != ref+" payments.transfer" {
		t.Errorf("too-new grants %v, want the refund agent's transfer granted mid-week", tooNew)
	}
	rep := map[string]string{}
	for _, d := range r.Permissions.Repeated {
		rep[d.AgentID+" "+d.Tool+"."+d.Action] = d.Assessment
	}
	if !strings.HasPrefix(rep[inv+" invoices.send"], "under-scoped") || !strings.HasPrefix(rep[clrk+" payments.transfer"], "probing") || len(rep) != 2 {
		t.Errorf("repeatedly denied: %v", rep)
	}
	ung := map[string]int{}
	for _, u := range r.Permissions.Ungranted {
		ung[u.AgentID+" "+u.Tool+"."+u.Action] = u.Attempts
	}
	want := map[string]int{inv + " ledger.read_balance": 1, ref + " invoices.send": 1, clrk + " payments.transfer": 3}
	if len(ung) != len(want) || ung[inv+" ledger.read_balance"] != 1 || ung[ref+" invoices.send"] != 1 || ung[clrk+" payments.transfer"] != 3 {
		t.Errorf("ungranted: %v, want %v (the AR account, the send after its revocation, the unregistered clerk)", ung, want)
	}
	f := r.Figures
	if f.Granted != 3 || f.Rejected != 1 || f.Expired != 1 || f.MedianApproveSeconds == nil || *f.MedianApproveSeconds != 1200 {
		t.Errorf("approvals: %+v (median %v)", f, f.MedianApproveSeconds)
	}
	if f.OverrideRate == nil || *f.OverrideRate != 0.25 || r.Violations.Total != 1 || r.Alerts.Total != 1 || r.Previous.Violations != 1 {
		t.Errorf("override %v, violations %d (previous %d), alerts %d", f.OverrideRate, r.Violations.Total, r.Previous.Violations, r.Alerts.Total)
	}
	if len(r.Alerts.Items) != 1 || len(r.Alerts.Items[0].Traces) != 3 {
		t.Errorf("alert traces: %+v", r.Alerts.Items)
	}
	rt := r.Retention.Tiers[0]
	if r.Retention.Runs != 1 || rt.Deleted != 6 || rt.DeletedTeam != 3 || rt.Held != 3 || len(r.Retention.ActiveHolds) != 1 {
		t.Errorf("retention: runs %d, tier 1 %+v, holds %v", r.Retention.Runs, rt, r.Retention.ActiveHolds)
	}

	js, err := JSON(r)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "finance-2026-W47.json", js)
	cs, err := CSV(r)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "finance-2026-W47.csv", cs)
	html, err := HTML(r, "cid:chart.finance.2026-W47@acme.example")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "finance-2026-W47.html", html)
	golden(t, "finance-2026-W47.txt", Text(r))

	// The chart: what it draws, and its pixels (docs/report-chart.png is
	// a copy of the golden PNG).
	data, err := chartPanels(r)
	if err != nil {
		t.Fatal(err)
	}
	cj, err := json.MarshalIndent(data, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "finance-2026-W47.chart.json", append(cj, '\n'))
	if len(data.Days) != 7 || len(data.Panels) != 6 || len(data.Panels[0].Values) != 7 {
		t.Errorf("chart of a final week: %d days, %d panels, %d points", len(data.Days), len(data.Panels), len(data.Panels[0].Values))
	}
	p1, err := Chart(r)
	if err != nil {
		t.Fatal(err)
	}
	goldenPNG(t, "finance-2026-W47.png", p1)
	doc, err := os.ReadFile(filepath.Join("..", "docs", "report-chart.png"))
	if err == nil {
		var want image.Image
		if want, err = png.Decode(bytes.NewReader(doc)); err == nil {
			img, _ := png.Decode(bytes.NewReader(p1))
			if n := pixelDiff(img, want); n != 0 {
				err = fmt.Errorf("%d pixels differ", n)
			}
		}
	}
	if err != nil {
		t.Errorf("docs/report-chart.png is not this chart (%v): cp reports/testdata/golden/finance-2026-W47.png docs/", err)
	}

	// The files the demo and `agentrail report weekly` write.
	dir := t.TempDir()
	paths, err := b.Write(ctx, "2026-W47", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	if got := strings.Join(names, " "); !strings.Contains(got, "agentrail-report-finance-2026-W47.html") ||
		!strings.Contains(got, "agentrail-report-support-2026-W47.csv") || !strings.Contains(got, "agentrail-report-legal-2026-W47.json") {
		t.Errorf("written: %s", got)
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, "agentrail-report-finance-2026-W47.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, js) {
		t.Error("the JSON written to disk differs from the one built directly")
	}

	// What the demo calls: the HTML first, pointing at the chart beside it.
	demo, err := WriteWeekly(ctx, conn, db, "2026-W47", "finance", filepath.Join(dir, "demo"))
	if err != nil {
		t.Fatal(err)
	}
	if len(demo) != 4 || filepath.Ext(demo[0]) != ".html" {
		t.Fatalf("WriteWeekly paths %v", demo)
	}
	page, err := os.ReadFile(demo[0])
	if err != nil || !bytes.Contains(page, []byte(`src="agentrail-report-finance-2026-W47.png"`)) {
		t.Errorf("demo HTML does not show the chart file beside it (%v)", err)
	}
}

// The chart renders (and returns) for empty, tiny and huge weeks; go-chart,
// the library before, looped forever on some ranges, so each case runs
// against a deadline.
func TestChartEdgeCases(t *testing.T) {
	for _, tc := range []struct {
		name             string
		actions, denials int
	}{
		{"empty week", 0, 0},
		{"one action", 1, 0},
		{"denials only", 0, 7},
		{"large", 2_500_000, 40_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Weekly{}
			for i, d := range w47.Days(berlin) {
				for tier := 1; tier <= 3; tier++ {
					r.Daily = append(r.Daily, DailyRow{Date: d.Format("2006-01-02"), Tier: tier, Actions: tc.actions * i / 6 / tier, Denials: tc.denials * i / 6})
				}
			}
			done := make(chan error, 1)
			go func() {
				b, err := Chart(r)
				if err == nil {
					_, err = png.Decode(bytes.NewReader(b))
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("chart rendering did not finish")
			}
		})
	}
}

// A batch re-delivered after a crash is stored a second time (other Kafka
// offsets) until a merge collapses the copies; the report reads the events
// without FINAL and must still count each event once.
func TestWeeklyReportCountsRedeliveredEventsOnce(t *testing.T) {
	ctx := context.Background()
	conn, db := loadFixture(t)
	b := NewBuilder(testConfig(), conn, db, func() time.Time { return reportAt })
	team, err := b.Team(ctx, "finance")
	if err != nil {
		t.Fatal(err)
	}
	build := func() []byte {
		t.Helper()
		r, err := b.Build(ctx, team, w47)
		if err != nil {
			t.Fatal(err)
		}
		js, err := JSON(r)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	once := build()

	// Keep the copies apart, as before a merge.
	if err := conn.Exec(ctx, "SYSTEM STOP MERGES "+db+".events"); err != nil {
		t.Fatal(err)
	}
	var again []fixture.Event
	for _, a := range fixedActions() {
		if a.when.Before(at("2026-10-01T00:00:00Z")) {
			continue // removed by the fixture's retention run
		}
		for _, e := range a.events() {
			e.Offset = 1000 + int64(len(again))
			again = append(again, e)
		}
	}
	if err := fixture.InsertEvents(ctx, conn, db, again); err != nil {
		t.Fatal(err)
	}
	var stored, distinct uint64
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM "+db+".events").Scan(&stored, &distinct); err != nil {
		t.Fatal(err)
	}
	if stored < distinct+uint64(len(again)) {
		t.Fatalf("%d rows for %d events after re-delivering %d: the copies were merged already, the test proves nothing", stored, distinct, len(again))
	}

	twice := build()
	if !bytes.Equal(once, twice) {
		gl, wl := strings.Split(string(twice), "\n"), strings.Split(string(once), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("report changed after re-delivery at line %d:\n got: %s\nwant: %s", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("report changed after re-delivery (%d lines, was %d)", len(gl), len(wl))
	}
}

// The README's order, registry apply then simulate, puts intents a little
// before the first registry version (the simulator back-dates traces).
// Those are "before any registry version", not "attempted without a
// grant"; an intent without a grant after it still is.
func TestActionsBeforeTheFirstRegistryVersionAreNotUngranted(t *testing.T) {
	ctx := context.Background()
	cfg, conn := testenv.ClickHouse(t)
	db := cfg.Database
	applied := at("2026-11-18T12:00:00Z")
	reg, err := registry.Load("testdata/registry_v1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Apply(ctx, conn, db, reg, registry.ApplyOptions{By: "test", Source: "v1", Now: func() time.Time { return applied }}); err != nil {
		t.Fatal(err)
	}
	read := func(name, agent, when string) action {
		return action{name: name, team: "finance", agent: agent, tier: 1, tool: "ledger", act: "read_balance", class: "read",
			target: "account:GL-10001", when: at(when), outcome: "allow", policy: "tier1-internal-read", result: "success"}
	}
	var evs []fixture.Event
	for _, a := range []action{
		read("early-1", inv, "2026-11-18T11:30:00Z"),  // held grant, before the registry
		read("early-2", clrk, "2026-11-18T11:40:00Z"), // unregistered, before the registry
		read("late-1", inv, "2026-11-18T12:30:00Z"),   // held grant, covered
		read("late-2", clrk, "2026-11-18T12:40:00Z"),  // unregistered: ungranted
	} {
		evs = append(evs, a.events()...)
	}
	if err := fixture.InsertEvents(ctx, conn, db, evs); err != nil {
		t.Fatal(err)
	}
	b := NewBuilder(testConfig(), conn, db, func() time.Time { return reportAt })
	team, err := b.Team(ctx, "finance")
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.Build(ctx, team, w47)
	if err != nil {
		t.Fatal(err)
	}
	p := r.Permissions
	if len(p.Ungranted) != 1 || p.Ungranted[0].AgentID != clrk || p.Ungranted[0].Attempts != 1 {
		t.Errorf("ungranted %+v, want only the unregistered clerk's read after the registry", p.Ungranted)
	}
	if p.BeforeRegistry != 2 || !p.RegistryFrom.Equal(applied) {
		t.Errorf("before registry %d from %s, want 2 from %s", p.BeforeRegistry, p.RegistryFrom, applied)
	}
	if txt := string(Text(r)); !strings.Contains(txt, "Before any registry version: 2 actions") {
		t.Errorf("text lacks the before-registry note:\n%s", txt)
	}
}
