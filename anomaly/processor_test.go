package anomaly

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/producers/simulate"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const partitions = 12

// harness plays ingest around the Processor: it places events on
// partitions by trace id with increasing offsets, and for each batch
// inserts the events into ClickHouse, calls Process, applies its inserts,
// and produces its records and "commits" in one Kafka transaction.
type harness struct {
	t    testing.TB
	conn driver.Conn
	db   string
	cl   *kgo.Client // transactional producer
	next [partitions]int64
}

func newHarness(t testing.TB) *harness {
	cfg, conn := testenv.ClickHouse(t)
	addr := testenv.Broker(t, "agentrail.alerts")
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("anomaly-test-"+cfg.Database))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &harness{t: t, conn: conn, db: cfg.Database, cl: cl}
}

func partitionOf(traceID string) int32 {
	h := fnv.New32a()
	h.Write([]byte(traceID))
	return int32(h.Sum32() % partitions)
}

// place gives deliveries their partition and offset.
func (h *harness) place(ds []delivery) []consumers.Accepted {
	out := make([]consumers.Accepted, len(ds))
	for i, d := range ds {
		p := partitionOf(d.ev.TraceID)
		out[i] = consumers.Accepted{Event: d.ev, Partition: p, Offset: h.next[p]}
		h.next[p]++
	}
	return out
}

// batch is what ingest hands the processors: each event id once.
func batch(recs []consumers.Accepted, now time.Time) *consumers.Batch {
	b := &consumers.Batch{FirstOffset: map[int32]int64{}, Now: now}
	seen := map[string]bool{}
	for _, a := range recs {
		if f, ok := b.FirstOffset[a.Partition]; !ok || a.Offset < f {
			b.FirstOffset[a.Partition] = a.Offset
		}
		if !seen[a.EventID] {
			seen[a.EventID] = true
			b.Events = append(b.Events, a)
		}
	}
	return b
}

// insertEvents writes events the way ingest does, column by column (the
// columns the rules read).
func (h *harness) insertEvents(evs []consumers.Accepted) {
	h.t.Helper()
	if len(evs) == 0 {
		return
	}
	n := len(evs)
	strs := func() []string { return make([]string, n) }
	var (
		id, trace, span, typ, agent, team, req               = strs(), strs(), strs(), strs(), strs(), strs(), strs()
		tool, action, target, class, digest, outcome, policy = strs(), strs(), strs(), strs(), strs(), strs(), strs()
		apID, apStatus, approver, apKind, resStatus          = strs(), strs(), strs(), strs(), strs()
		times                                                = make([]time.Time, n)
		tiers                                                = make([]uint8, n)
		labels                                               = make([]map[string]string, n)
		parts                                                = make([]int32, n)
		offsets                                              = make([]int64, n)
	)
	for i, a := range evs {
		e := a.Event
		id[i], trace[i], span[i], typ[i], times[i], tiers[i] = e.EventID, e.TraceID, e.SpanID, string(e.Type), e.Time, uint8(e.Tier)
		agent[i], team[i], req[i], parts[i], offsets[i] = e.Agent.ID, e.Agent.Team, e.RequestedBy, a.Partition, a.Offset
		labels[i] = e.Labels
		if labels[i] == nil {
			labels[i] = map[string]string{}
		}
		switch {
		case e.Intent != nil:
			in := e.Intent
			tool[i], action[i], target[i], class[i], digest[i] = in.Tool, in.Action, in.Target, in.ActionClass, in.ActionDigest
		case e.Decision != nil:
			outcome[i], policy[i] = e.Decision.Outcome, e.Decision.PolicyID
		case e.Approval != nil:
			ap := e.Approval
			apID[i], apStatus[i], approver[i], apKind[i], digest[i] = ap.ApprovalID, ap.Status, ap.Approver, ap.ApproverKind, ap.ActionDigest
		case e.Result != nil:
			resStatus[i], digest[i] = e.Result.Status, e.Result.ActionDigest
		}
	}
	applyInsert(h.t, h.conn, consumers.Insert{Table: h.db + ".events",
		Columns: []string{"event_id", "trace_id", "span_id", "event_type", "event_time", "tier", "agent_id", "team",
			"requested_by", "labels", "tool", "action", "target", "action_class", "action_digest", "outcome", "policy_id",
			"approval_id", "approval_status", "approver", "approver_kind", "result_status", "kafka_partition", "kafka_offset"},
		Values: []any{id, trace, span, typ, times, tiers, agent, team, req, labels, tool, action, target, class, digest,
			outcome, policy, apID, apStatus, approver, apKind, resStatus, parts, offsets},
	})
}

// step runs one batch as ingest does: events in ClickHouse first, then
// Process, its inserts, and its records with the offsets in one
// transaction.
func (h *harness) step(p *Processor, b *consumers.Batch) consumers.Output {
	h.t.Helper()
	ctx := context.Background()
	h.insertEvents(b.Events)
	out, err := p.Process(ctx, b)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, ins := range out.Inserts {
		applyInsert(h.t, h.conn, ins)
	}
	if len(out.Records) > 0 {
		if err := h.cl.BeginTransaction(); err != nil {
			h.t.Fatal(err)
		}
		if err := h.cl.ProduceSync(ctx, out.Records...).FirstErr(); err != nil {
			h.t.Fatal(err)
		}
		if err := h.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			h.t.Fatal(err)
		}
	}
	return out
}

func applyInsert(t testing.TB, conn driver.Conn, ins consumers.Insert) {
	t.Helper()
	b, err := conn.PrepareBatch(context.Background(), "INSERT INTO "+ins.Table+" ("+strings.Join(ins.Columns, ", ")+")")
	if err != nil {
		t.Fatal(err)
	}
	for i, col := range ins.Values {
		if err := b.Column(i).Append(col); err != nil {
			t.Fatalf("insert %s column %s: %v", ins.Table, ins.Columns[i], err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) processor(t testing.TB, cfg Config) (*Processor, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := New(cfg, h.conn, h.db, reg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return p, reg
}

// tableAlerts reads every alert (latest version) from v_alerts.
func tableAlerts(t testing.TB, conn driver.Conn, db string) []Alert {
	t.Helper()
	count := func() int {
		var n uint64
		if err := conn.QueryRow(context.Background(), "SELECT count() FROM "+db+".v_alerts").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return int(n)
	}
	// Ingest may still be writing alerts: compare the two reads only when
	// the count did not change around them.
	for range 50 {
		before := count()
		as, err := ReadAlerts(context.Background(), conn, db, time.Unix(0, 0), time.Now().AddDate(10, 0, 0))
		if err != nil {
			t.Fatal(err)
		}
		if after := count(); after != before {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if before != len(as) {
			t.Fatalf("v_alerts has %d rows, alerts FINAL %d", before, len(as))
		}
		return as
	}
	t.Fatal("alerts kept changing while read")
	return nil
}

// topicAlerts reads the alerts topic as a read_committed consumer: the
// latest version of each alert id.
func topicAlerts(t testing.TB, addr string, want int) map[string]Alert {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("agentrail.alerts"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[string]Alert{}
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			var a Alert
			if err := json.Unmarshal(r.Value, &a); err != nil {
				t.Fatalf("alert record: %v", err)
			}
			if string(r.Key) != a.ID {
				t.Fatalf("record key %s, alert %s", r.Key, a.ID)
			}
			if prev, ok := out[a.ID]; !ok || a.Version > prev.Version {
				out[a.ID] = a
			}
		})
	}
	return out
}

func counterSum(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

// indexOfPlanted finds the delivery index of the n-th planted trace's last
// event of an anomaly kind.
func indexOfPlanted(live []delivery, a *simulate.Anomaly, n int) int {
	last := a.Traces[n][len(a.Traces[n])-1].EventID
	for i := range live {
		if live[i].ev.EventID == last {
			return i
		}
	}
	return -1
}

// TestPlantedAnomalies runs the default rules inside a stand-in for ingest
// over a real ClickHouse and Kafka: two days of the simulated fleet's
// history already stored, then a day with one anomaly of each kind planted
// in the background. Every anomaly raises exactly one alert and the
// background none, in the alerts table and on the alerts topic, although
// the stage is restarted twice (in the middle of a burst that has not fired
// yet, and of one that has) and one batch is redone.
func TestPlantedAnomalies(t *testing.T) {
	s := fleetScenarioFor(t, 11)
	h := newHarness(t)
	h.insertEvents(h.place(s.history))

	live := h.place(s.live)
	find := func(kind string) *simulate.Anomaly {
		for _, a := range s.anomalies {
			if a.Kind == kind {
				return a
			}
		}
		t.Fatalf("no planted %s", kind)
		return nil
	}
	// Restart after the 4th retry (the rule fires at the 6th), after the
	// 15th denial (it fired at the 14th), and redo the batch holding the
	// 9th probing attempt (the rule fires at the 8th distinct target).
	retry, denial, probe := find(simulate.AnomalyRetryBurst), find(simulate.AnomalyDenialSpike), find(simulate.AnomalyProbing)
	restartAt := map[int]bool{indexOfPlanted(s.live, retry, 3) + 1: true, indexOfPlanted(s.live, denial, 14) + 1: true}
	redoAt := indexOfPlanted(s.live, probe, 9)

	var regs []*prometheus.Registry
	p, reg := h.processor(t, Config{})
	regs = append(regs, reg)
	const size = 3000
	start, redone := 0, false
	for start < len(live) {
		end := min(start+size, len(live))
		for i := start + 1; i < end; i++ {
			if restartAt[i] {
				end = i
				break
			}
		}
		b := batch(live[start:end], s.live[end-1].at)
		out := h.step(p, b)
		if !redone && redoAt >= start && redoAt < end {
			// The Kafka transaction failed: ingest redoes the batch.
			redone = true
			again := h.step(p, b)
			if got, want := alertIDs(again), alertIDs(out); !slices.Equal(got, want) || len(got) == 0 {
				t.Fatalf("the redone batch raised %v, the first attempt %v", got, want)
			}
		}
		start = end
		if restartAt[start] {
			p, reg = h.processor(t, Config{}) // the process died: a fresh one
			regs = append(regs, reg)
		}
	}
	if !redone || len(regs) != 3 {
		t.Fatalf("redone %v, processors %d: the scenario did not exercise restarts and redo", redone, len(regs))
	}

	alerts := tableAlerts(t, h.conn, h.db)
	checkAlerts(t, s, alerts)
	for _, a := range alerts {
		if a.Rule == "denial-spike" && (a.Version < 2 || a.Observed < 18) {
			t.Errorf("the denial spike alert did not go on after the restart: v%d observed %v", a.Version, a.Observed)
		}
	}
	// The topic holds the same alerts at the same versions.
	addr := h.cl.OptValue(kgo.SeedBrokers).([]string)[0]
	onTopic := topicAlerts(t, addr, len(alerts))
	if len(onTopic) != len(alerts) {
		t.Fatalf("%d alerts on the topic, %d in the table", len(onTopic), len(alerts))
	}
	for _, a := range alerts {
		if got := onTopic[a.ID]; got.Version != a.Version || got.Observed != a.Observed {
			t.Errorf("alert %s: topic v%d observed %v, table v%d observed %v", a.ID, got.Version, got.Observed, a.Version, a.Observed)
		}
	}
	// Each alert was counted once as raised, over the three processes.
	raised, restores := 0.0, 0.0
	for _, r := range regs {
		raised += counterSum(t, r, "agentrail_alerts_total", nil)
		restores += counterSum(t, r, "agentrail_anomaly_restores_total", nil)
	}
	if int(raised) != len(alerts) || restores != 4 {
		t.Fatalf("agentrail_alerts_total %v (want %d), restores %v (want 3 starts and a redo)", raised, len(alerts), restores)
	}

	// A backtest of the same day over the stored events, through the same
	// engine, finds the same alerts; one of the day before finds none.
	ctx := context.Background()
	day := s.liveFrom.Truncate(24 * time.Hour)
	bt, err := Backtest(ctx, h.conn, h.db, DefaultRules(), Config{}, day, day.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	checkAlerts(t, s, bt.Alerts)
	var out strings.Builder
	if err := bt.Print(&out, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), day.Format(time.DateOnly)) || bt.PerDay[day.Format(time.DateOnly)]["retry-burst"] != 1 || bt.Warmup == 0 {
		t.Fatalf("backtest report:\n%s", out.String())
	}
	t.Logf("backtest of the planted day:\n%s", out.String())
	checkDemoQueries(t, h.conn, h.db, s)
	quiet, err := Backtest(ctx, h.conn, h.db, DefaultRules(), Config{}, day.Add(-24*time.Hour), day)
	if err != nil {
		t.Fatal(err)
	}
	if len(quiet.Alerts) != 0 || quiet.Events == 0 {
		t.Fatalf("backtest of the day before: %d events, alerts:%s", quiet.Events, summaries(quiet.Alerts))
	}
}

func alertIDs(out consumers.Output) []string {
	var ids []string
	for _, r := range out.Records {
		ids = append(ids, string(r.Key))
	}
	slices.Sort(ids)
	return ids
}

// The queries suggested for `make demo` (docs/RULES.md) run on the real
// server and tell planted anomalies from the background.
const (
	demoAlertsByRule = `SELECT rule, severity, count() AS alerts, sum(version) - count() AS updates, max(observed) AS peak
FROM {db}.v_alerts GROUP BY rule, severity ORDER BY rule`
	demoAlertsAndPlanted = `SELECT rule, group_key, observed, threshold, version,
       if(planted = '', 'background', planted) AS source, summary
FROM (
    SELECT a.alert_id, any(a.rule) AS rule, any(a.group_key) AS group_key, any(a.observed) AS observed,
           any(a.threshold) AS threshold, any(a.version) AS version, any(a.summary) AS summary,
           any(a.raised_at) AS raised_at, max(p.kind) AS planted
    FROM {db}.v_alerts AS a
    ARRAY JOIN a.event_ids AS eid
    LEFT JOIN (SELECT event_id, labels['simulate.planted'] AS kind FROM {db}.v_events
               WHERE labels['simulate.planted'] != '') AS p ON p.event_id = eid
    GROUP BY a.alert_id
)
ORDER BY raised_at`
	demoAlertToTraces = `SELECT event_time, trace_id, event_type, agent_id, tool, action, target, outcome, result_status
FROM {db}.v_events
WHERE trace_id IN (SELECT trace_id FROM {db}.v_events WHERE event_id IN (
    SELECT arrayJoin(event_ids) FROM (SELECT event_ids FROM {db}.v_alerts WHERE rule = 'retry-burst'
                                      ORDER BY raised_at DESC LIMIT 1)))
ORDER BY event_time`
)

func checkDemoQueries(t *testing.T, conn driver.Conn, db string, s *fleetScenario) {
	t.Helper()
	ctx := context.Background()
	q := func(sql string) driver.Rows {
		rows, err := conn.Query(ctx, strings.ReplaceAll(sql, "{db}", db))
		if err != nil {
			t.Fatalf("%v\n%s", err, sql)
		}
		return rows
	}
	rows := q(demoAlertsByRule)
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	if n != len(expectedRule) {
		t.Fatalf("alerts by rule: %d rows", n)
	}
	rows = q(demoAlertsAndPlanted)
	sources := map[string]int{}
	for rows.Next() {
		var rule, key, source, summary string
		var obs, thr float64
		var version uint64
		if err := rows.Scan(&rule, &key, &obs, &thr, &version, &source, &summary); err != nil {
			t.Fatal(err)
		}
		sources[source]++
		if source != "background" && expectedRule[source] != rule {
			t.Errorf("alert of rule %s traced back to planted %s", rule, source)
		}
	}
	rows.Close()
	if sources["background"] != 0 || len(sources) != len(s.anomalies) {
		t.Fatalf("alerts by source %v", sources)
	}
	rows = q(demoAlertToTraces)
	intents := 0
	for rows.Next() {
		var at time.Time
		var trace, typ, agent, tool, action, target, outcome, result string
		if err := rows.Scan(&at, &trace, &typ, &agent, &tool, &action, &target, &outcome, &result); err != nil {
			t.Fatal(err)
		}
		if typ == "intent" {
			intents++
		}
	}
	rows.Close()
	if intents < 6 {
		t.Fatalf("the retry burst's alert leads to %d attempts", intents)
	}
}
