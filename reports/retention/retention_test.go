package retention

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/reports/internal/fixture"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestAgeAndConfig(t *testing.T) {
	now := time.Date(2026, 2, 28, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"30d", time.Date(2026, 1, 29, 12, 0, 0, 0, time.UTC), false},
		{"2w", time.Date(2026, 2, 14, 12, 0, 0, 0, time.UTC), false},
		{"1m", time.Date(2026, 1, 28, 12, 0, 0, 0, time.UTC), false},
		{"7y", time.Date(2019, 2, 28, 12, 0, 0, 0, time.UTC), false},
		{"30", time.Time{}, true},
		{"-1d", time.Time{}, true},
		{"1h", time.Time{}, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			a, err := ParseAge(tc.in)
			if tc.err {
				if err == nil {
					t.Fatalf("ParseAge(%q) = %v, want an error", tc.in, a)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Before(now); !got.Equal(tc.want) {
				t.Fatalf("%s before %s = %s, want %s", tc.in, now, got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name   string
		mut    func(c *Config)
		errHas string
	}{
		{"defaults", func(c *Config) {}, ""},
		{"tier1 too short", func(c *Config) { c.Tier1 = Age{3, 'd'} }, "reports.retention.tier1: 3d out of range"},
		{"tier3 shorter than tier2", func(c *Config) { c.Tier3 = Age{6, 'm'} }, "reports.retention.tier3: 6mo is shorter than tier2 1y"},
		{"full fields longer than tier1", func(c *Config) { c.Tier1FullFields = Age{60, 'd'} }, "reports.retention.tier1_full_fields: 60d is longer than tier1 30d"},
		{"bad schedule", func(c *Config) { c.Schedule = "every day" }, "reports.retention.schedule"},
		{"schedule off", func(c *Config) { c.Schedule = "off" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			tc.mut(&c)
			c.Defaults()
			err := c.Validate()
			if tc.errHas == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.errHas)
			}
		})
	}
}

// synthetic is two years of events ending at now: a tier 1 trace every 9
// days for the last four months and every 45 days before (each tier 1 week
// is a partition: fewer keeps the test fast), tier 2 and 3 traces every 11
// days, two events per trace, across two
// teams; plus an agent whose tier 2 events fall under an agent hold, a team
// under a team hold, and a trace under a hold that was released.
func synthetic(now time.Time) []fixture.Event {
	var evs []fixture.Event
	n := 0
	trace := func(team, agent string, tier int, at time.Time) {
		n++
		tid := fmt.Sprintf("%032x", n)
		for i, typ := range []string{"intent", "result"} {
			e := fixture.Event{EventID: fmt.Sprintf("ev-%05d-%d", n, i), TraceID: tid, Type: typ, Time: at.Add(time.Duration(i) * time.Second),
				Tier: tier, Team: team, AgentID: agent, Tool: "tool", Action: "act", Target: "res:1", ActionClass: "read"}
			if typ == "intent" {
				e.Rationale = "because " + tid
				e.Parameters = map[string]string{"p": tid}
				e.Context = map[string]string{"ticket": "T-1"}
			} else {
				e.ResultStatus = "failure"
				e.ErrorClass, e.ErrorMessage = "timeout", "timed out for customer 42"
			}
			evs = append(evs, e)
		}
	}
	start := now.AddDate(-2, 0, 0)
	teams := []string{"finance", "support"}
	for d, i := start, 0; d.Before(now); i++ {
		trace(teams[i%2], teams[i%2]+"-bot-01", 1, d)
		if d.Before(now.AddDate(0, -4, 0)) {
			d = d.AddDate(0, 0, 45)
		} else {
			d = d.AddDate(0, 0, 9)
		}
	}
	for d, i := start.Add(5*time.Hour), 0; d.Before(now); d, i = d.AddDate(0, 0, 11), i+1 {
		trace(teams[i%2], teams[i%2]+"-bot-02", 2, d)
		trace(teams[(i+1)%2], teams[(i+1)%2]+"-bot-03", 3, d.Add(time.Hour))
	}
	// Under an agent hold: tier 2, 13 to 18 months old.
	for d := now.AddDate(0, -18, 0); d.Before(now.AddDate(0, -13, 0)); d = d.AddDate(0, 0, 20) {
		trace("finance", "finance-held-agent", 2, d)
	}
	// Under a team hold: tier 1, 50 to 90 days old.
	for d := now.AddDate(0, 0, -90); d.Before(now.AddDate(0, 0, -50)); d = d.AddDate(0, 0, 10) {
		trace("legal", "legal-bot-01", 1, d)
	}
	// A duplicated delivery: retention counts the event once.
	dup := evs[len(evs)-1]
	dup.Offset = 99
	evs = append(evs, dup)
	return evs
}

// expected computes, independently of the package, what must survive.
type expectation struct {
	kept     map[string]bool // event id -> fields still full
	deleted  map[int]uint64  // per tier
	stripped map[int]uint64
}

func expect(evs []fixture.Event, now time.Time, held func(e fixture.Event) bool) expectation {
	x := expectation{kept: map[string]bool{}, deleted: map[int]uint64{}, stripped: map[int]uint64{}}
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[e.EventID] {
			continue
		}
		seen[e.EventID] = true
		t := e.Time.UTC()
		var end time.Time
		var keep time.Time
		switch e.Tier {
		case 1:
			day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
			monday := day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
			end = monday.AddDate(0, 0, 7)
			keep = now.AddDate(0, 0, -30)
		case 2:
			end = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 1, 0)
			keep = now.AddDate(-1, 0, 0)
		case 3:
			end = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 1, 0)
			keep = now.AddDate(-7, 0, 0)
		}
		expired := !end.After(keep)
		switch {
		case expired && !held(e):
			x.deleted[e.Tier]++
		case e.Tier == 1 && !expired && !end.After(now.AddDate(0, 0, -7)) && !held(e):
			x.kept[e.EventID] = false
			x.stripped[e.Tier]++
		default:
			x.kept[e.EventID] = true
		}
	}
	return x
}

type row struct {
	id, rationale, params, context, errMsg string
}

func snapshotEvents(t *testing.T, conn driver.Conn, db string) []row {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT event_id, rationale, toString(parameters), toString(context), error_message
		FROM `+db+`.v_events ORDER BY event_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.rationale, &r.params, &r.context, &r.errMsg); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func tableDump(t *testing.T, conn driver.Conn, db string) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		"SELECT count(), sum(cityHash64(formatRow('TSV', *))) FROM " + db + ".events",
		"SELECT count(), sum(cityHash64(formatRow('TSV', *))) FROM " + db + ".retention_runs",
		"SELECT count(), sum(cityHash64(formatRow('TSV', *))) FROM " + db + ".retention_actions",
		"SELECT count(), sum(cityHash64(formatRow('TSV', *))) FROM " + db + ".legal_holds",
		"SELECT count(), sum(cityHash64(partition_id, rows, name)) FROM system.parts WHERE database = '" + db + "' AND active",
		"SELECT count() FROM system.tables WHERE database = '" + db + "'",
	} {
		var n, h uint64
		if strings.Contains(q, "system.tables") {
			if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
				t.Fatal(err)
			}
		} else if err := conn.QueryRow(context.Background(), q).Scan(&n, &h); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%d/%d ", n, h)
	}
	return b.String()
}

func TestRetentionTwoYearsWithHolds(t *testing.T) {
	ctx := context.Background()
	cfg, conn := testenv.ClickHouse(t)
	db := cfg.Database
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	evs := synthetic(now)
	if err := fixture.InsertEvents(ctx, conn, db, evs); err != nil {
		t.Fatal(err)
	}
	// The holds: one trace of tier 1 about 300 days old, one agent, one team,
	// and one trace hold that was released before the run.
	var heldTrace, releasedTrace string
	for _, e := range evs {
		if e.Tier == 1 && e.Time.Before(now.AddDate(0, 0, -300)) && heldTrace == "" && e.Team == "support" {
			heldTrace = e.TraceID
		}
		if e.Tier == 2 && e.Time.Before(now.AddDate(-1, -2, 0)) && releasedTrace == "" && e.AgentID == "support-bot-02" {
			releasedTrace = e.TraceID
		}
	}
	set := func(id, scope, value string, at time.Time) {
		if _, err := SetHold(ctx, conn, db, Hold{ID: id, Scope: scope, Value: value, Reason: "matter 2026-17", SetBy: "counsel@acme.example"}, at); err != nil {
			t.Fatal(err)
		}
	}
	set("hold-trace", ScopeTrace, heldTrace, now.AddDate(0, -1, 0))
	set("hold-agent", ScopeAgent, "finance-held-agent", now.AddDate(0, -1, 0))
	set("hold-team", ScopeTeam, "legal", now.AddDate(0, 0, -3))
	set("hold-released", ScopeTrace, releasedTrace, now.AddDate(0, -2, 0))
	if err := ReleaseHold(ctx, conn, db, "hold-released", "counsel@acme.example", now.AddDate(0, 0, -1)); err != nil {
		t.Fatal(err)
	}
	if err := ReleaseHold(ctx, conn, db, "hold-released", "counsel@acme.example", now); err == nil {
		t.Fatal("releasing a released hold: no error")
	}
	heldFn := func(e fixture.Event) bool {
		return e.TraceID == heldTrace || e.AgentID == "finance-held-agent" || e.Team == "legal"
	}
	want := expect(evs, now, heldFn)
	if want.deleted[1] == 0 || want.deleted[2] == 0 || want.stripped[1] == 0 || want.deleted[3] != 0 {
		t.Fatalf("synthetic data does not exercise the policy: %+v", want)
	}

	var rc Config
	rc.Defaults()
	reg := prometheus.NewRegistry()
	enf, err := New(rc, conn, db, reg, quiet, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}

	// A dry run changes nothing, and plans what the real run then does.
	before, beforeDump := snapshotEvents(t, conn, db), tableDump(t, conn, db)
	dry, err := enf.Enforce(ctx, true, "test")
	if err != nil {
		t.Fatal(err)
	}
	if after, afterDump := snapshotEvents(t, conn, db), tableDump(t, conn, db); !reflect.DeepEqual(before, after) || beforeDump != afterDump {
		t.Fatalf("dry run changed the tables:\nbefore %s\nafter  %s", beforeDump, afterDump)
	}
	if len(dry.Actions) == 0 || dry.Deleted != want.deleted[1]+want.deleted[2] {
		t.Fatalf("dry run planned %d actions deleting %d, want %d", len(dry.Actions), dry.Deleted, want.deleted[1]+want.deleted[2])
	}

	run, err := enf.Enforce(ctx, false, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(actionKeys(dry.Actions), actionKeys(run.Actions)) {
		t.Fatalf("the run did not do what the dry run planned:\ndry %v\nrun %v", actionKeys(dry.Actions), actionKeys(run.Actions))
	}

	// What survives is exactly what the policy and the holds say.
	got := map[string]bool{}
	for _, r := range snapshotEvents(t, conn, db) {
		full := r.rationale != "" || r.params != "{}" || r.context != "{}" || r.errMsg != ""
		if full != (r.rationale != "" || r.errMsg != "") || (r.rationale != "") != (r.params != "{}") {
			t.Fatalf("event %s is half stripped: %+v", r.id, r)
		}
		got[r.id] = full
	}
	for id, full := range want.kept {
		g, ok := got[id]
		if !ok {
			t.Errorf("event %s was deleted; it should be kept", id)
			continue
		}
		// Intents carry rationale/parameters; results carry an error
		// message: either way "full" must match.
		if g != full {
			t.Errorf("event %s: fields full = %v, want %v", id, g, full)
		}
	}
	for id := range got {
		if _, ok := want.kept[id]; !ok {
			t.Errorf("event %s survived; it should have been deleted", id)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The run is recorded: per tier, what was deleted, the date range, and
	// what the holds kept.
	type tierRec struct {
		deleted, stripped, held uint64
		from, to                time.Time
	}
	recs := map[uint8]tierRec{}
	rows, err := conn.Query(ctx, `SELECT tier, sum(rows_deleted), sum(rows_stripped), sum(rows_held), min(range_start), max(range_end)
		FROM `+db+`.retention_actions FINAL WHERE run_id = ? AND status = 'done' GROUP BY tier`, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var tier uint8
		var r tierRec
		if err := rows.Scan(&tier, &r.deleted, &r.stripped, &r.held, &r.from, &r.to); err != nil {
			t.Fatal(err)
		}
		recs[tier] = r
	}
	rows.Close()
	for tier := 1; tier <= 2; tier++ {
		if r := recs[uint8(tier)]; r.deleted != want.deleted[tier] || r.stripped != want.stripped[tier] {
			t.Errorf("tier %d recorded deleted %d stripped %d, want %d and %d", tier, r.deleted, r.stripped, want.deleted[tier], want.stripped[tier])
		}
	}
	if r := recs[1]; r.to.After(now.AddDate(0, 0, -7)) || r.from.After(now.AddDate(-1, -10, 0)) {
		t.Errorf("tier 1 range recorded %s..%s", r.from, r.to)
	}
	if _, ok := recs[3]; ok {
		t.Errorf("tier 3 (7 years) was touched: %+v", recs[3])
	}
	var status string
	var deleted, heldRows uint64
	if err := conn.QueryRow(ctx, `SELECT status, rows_deleted, rows_held FROM `+db+`.retention_runs FINAL WHERE run_id = ?`, run.ID).Scan(&status, &deleted, &heldRows); err != nil {
		t.Fatal(err)
	}
	if status != "ok" || deleted != want.deleted[1]+want.deleted[2] || heldRows == 0 {
		t.Errorf("run record: status %s deleted %d held %d", status, deleted, heldRows)
	}
	var holdsUsed []string
	if err := conn.QueryRow(ctx, `SELECT arraySort(groupUniqArrayArray(holds)) FROM `+db+`.retention_actions FINAL WHERE run_id = ?`, run.ID).Scan(&holdsUsed); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(holdsUsed, []string{"hold-agent", "hold-team", "hold-trace"}) {
		t.Errorf("holds recorded as keeping events: %v", holdsUsed)
	}
	var byTeam map[string]uint64
	if err := conn.QueryRow(ctx, `SELECT sumMap(deleted_by_team) FROM `+db+`.retention_actions FINAL WHERE run_id = ?`, run.ID).Scan(&byTeam); err != nil {
		t.Fatal(err)
	}
	if byTeam["finance"]+byTeam["support"] != deleted || byTeam["legal"] != 0 {
		t.Errorf("deleted by team %v, total %d", byTeam, deleted)
	}

	// Running again deletes nothing more; the held partitions are reported
	// as kept.
	again, err := enf.Enforce(ctx, false, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range again.Actions {
		if a.Kind != ActionHeld {
			t.Errorf("second run acted on %s: %s", a.PartitionID, a.Kind)
		}
	}
	if again.Deleted != 0 || again.Held == 0 {
		t.Errorf("second run deleted %d, held %d", again.Deleted, again.Held)
	}

	// Releasing the trace hold lets its events go at the next run.
	if err := ReleaseHold(ctx, conn, db, "hold-trace", "counsel@acme.example", now); err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Hour)
	enf.now = func() time.Time { return later }
	third, err := enf.Enforce(ctx, false, "test")
	if err != nil {
		t.Fatal(err)
	}
	var left uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".v_events WHERE trace_id = ?", heldTrace).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 || third.Deleted != 2 {
		t.Errorf("after release: %d events of the trace left, run deleted %d (want 0 and 2)", left, third.Deleted)
	}
	if n := testutilCount(t, reg, "agentrail_retention_runs_total"); n != 4 {
		t.Errorf("agentrail_retention_runs_total = %v, want 4 (1 dry, 3 ok)", n)
	}
}

func actionKeys(as []Action) []string {
	var out []string
	for _, a := range as {
		out = append(out, fmt.Sprintf("%d %s %s %d/%d/%d", a.Tier, a.PartitionID, a.Kind, a.Deleted, a.Stripped, a.Held))
	}
	sort.Strings(out)
	return out
}

func testutilCount(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}
