package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	chgo "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/consumers/correlate"
	"github.com/agentrail/agentrail/internal/chserver"
	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/pipeline"
	"github.com/agentrail/agentrail/producers"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/reports"
	"github.com/agentrail/agentrail/reports/registry"
	"github.com/agentrail/agentrail/schemas"
)

type freshness struct {
	rate     float64
	events   int
	p50, p99 time.Duration
	// alerts is, per planted anomaly kind in plantKinds order, how many
	// were planted and, for each whose alert appeared, the time from
	// producing its events to the alert row in ClickHouse.
	alerts []kindLatency
}

type kindLatency struct {
	kind    string
	plants  int
	latency []time.Duration
}

// plantEvery is the gap between two anomalies planted into the steady
// load, and plantKinds what is planted, in turn: patterns of a minute or
// two whose alerts fire on one of the planted events.
const plantEvery = 2 * time.Second

var plantKinds = []string{simulate.AnomalyRetryBurst, simulate.AnomalyProbing}

// plantRole prefixes the roles of the planting fleet's agents, so that no
// agent the steady load drives is planted on. The steady load runs the
// fleet's 35 agents at thousands of actions a minute each, far above the
// pace the rules are tuned for (about one a minute), so it raises alerts of
// its own for most agents; a pattern planted on such an agent only updates
// that agent's open alert, whose evidence list is full by then, and could
// not be told apart from the background.
const plantRole = "planted-"

func plantTeams() []simulate.Team {
	teams := simulate.DefaultTeams()
	for i := range teams {
		roles := slices.Clone(teams[i].Roles)
		for j := range roles {
			roles[j] = plantRole + roles[j]
		}
		teams[i].Roles = roles
	}
	return teams
}

type plant struct {
	kind     string
	agent    string
	ids      []string
	produced time.Time
}

// freshness runs ingest against a steady load at rate events/s through the
// producer SDK, each event stamped when emitted, and measures the time from
// emission to insertion in ClickHouse (the row's ingested_at). Meanwhile it
// plants an anomaly every plantEvery and measures the time from producing
// its events to the first row of its alert in ClickHouse (its inserted_at).
func (e *env) freshness(ctx context.Context, rate float64) (freshness, error) {
	const topic, db = "bench.fresh", "bench_fresh"
	kc := e.kc
	kc.Topics.Events = topic
	if err := kafkacfg.EnsureTopics(ctx, e.cl, 12, topic); err != nil {
		return freshness{}, err
	}
	if _, err := chstore.Migrate(ctx, e.conn, db); err != nil {
		return freshness{}, err
	}
	// Every version of an alert is a row; a merge keeps only the latest,
	// and with it the latest inserted_at. Without merges the first row of
	// each alert stays, and with it the time the alert became visible.
	if err := e.conn.Exec(ctx, "SYSTEM STOP MERGES "+db+".alerts"); err != nil {
		return freshness{}, err
	}
	cfg := consumers.Config{Kafka: kc, ClickHouse: chstore.Config{Addr: []string{e.ch.Addr()}, Database: db},
		Signatures: consumers.SignatureConfig{Mode: consumers.SignaturesOff}} // the fleet here is unsigned
	cfg.Ingest.BatchRows = e.cfg.BatchRows
	cfg.Defaults()
	cfg.Ingest.Group = "bench-fresh"
	reg := prometheus.NewRegistry()
	// The in-ingest stages (correlation, anomaly rules) with their
	// defaults, wired as `agentrail ingest` wires them.
	in, err := pipeline.NewIngest(ctx, pipeline.Config{Config: cfg}, reg, e.cfg.Log)
	if err != nil {
		return freshness{}, err
	}
	defer in.Close(context.Background())
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- in.Run(runCtx) }()

	em, err := producers.New(producers.Config{Kafka: kc}, prometheus.NewRegistry(), e.cfg.Log)
	if err != nil {
		return freshness{}, err
	}
	fleet := simulate.New(simulate.Config{Seed: 11})
	stamp := func(ctx context.Context, ev *schemas.Event) error {
		ev.Time = time.Now().UTC().Truncate(time.Microsecond)
		return em.Emit(ctx, ev)
	}
	plantCtx, stopPlanting := context.WithCancel(ctx)
	planted := make(chan []plant, 1)
	go func() { planted <- e.plant(plantCtx, em) }()
	st, runErr := fleet.Run(ctx, stamp, rate, e.cfg.Steady, time.Now)
	stopPlanting()
	plants := <-planted
	closeErr := em.Close(ctx)
	if err := errors.Join(runErr, closeErr); err != nil {
		return freshness{}, err
	}
	if err := e.waitCommitted(ctx, cfg.Ingest.Group, topic, done); err != nil {
		return freshness{}, err
	}
	var qs []float64
	// Planted events carry event times up to two minutes old: they measure
	// the alerts, not freshness.
	if err := e.conn.QueryRow(ctx, `SELECT quantilesExact(0.5, 0.99)(dateDiff('microsecond', event_time, ingested_at)) FROM `+db+
		`.events WHERE NOT mapContains(labels, ?)`, simulate.PlantedLabel).Scan(&qs); err != nil {
		return freshness{}, err
	}
	f := freshness{rate: rate, events: st.Events,
		p50: time.Duration(qs[0]) * time.Microsecond, p99: time.Duration(qs[1]) * time.Microsecond}
	for _, k := range plantKinds {
		f.alerts = append(f.alerts, kindLatency{kind: k})
	}
	// Ingest inserts a batch's alerts before it commits the batch, and
	// every batch is committed now: an alert not there was not raised. Only
	// an alert of the planted kind counts: the planted events may also be,
	// say, out of hours.
	for _, p := range plants {
		kl := &f.alerts[slices.Index(plantKinds, p.kind)]
		kl.plants++
		var first time.Time
		var n uint64
		if err := e.conn.QueryRow(ctx, `SELECT count(), min(inserted_at) FROM `+db+`.alerts
			WHERE kind = ? AND agent_id = ? AND hasAny(event_ids, ?)`, p.kind, p.agent, p.ids).Scan(&n, &first); err != nil {
			return freshness{}, err
		}
		if n == 0 {
			e.cfg.Log.Warn("planted anomaly raised no alert", "kind", p.kind, "agent", p.agent, "produced", p.produced)
			continue
		}
		kl.latency = append(kl.latency, first.Sub(p.produced))
	}
	return f, nil
}

// plant plants an anomaly every plantEvery until ctx ends, each by another
// of the agents the steady load does not drive, with event times ending
// about now.
func (e *env) plant(ctx context.Context, em *producers.Emitter) []plant {
	fleet := simulate.New(simulate.Config{Seed: 12, Teams: plantTeams()})
	var out []plant
	var avoid []string
	t := time.NewTicker(plantEvery)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return out
		case <-t.C:
		}
		kind := plantKinds[i%len(plantKinds)]
		a, err := fleet.Plant(simulate.AnomalySpec{Kind: kind, At: time.Now().Add(-2 * time.Minute), Avoid: avoid})
		if err != nil {
			e.cfg.Log.Warn("plant anomaly", "kind", kind, "err", err)
			continue
		}
		avoid = append(avoid, a.Agent, a.Approver)
		p := plant{kind: kind, agent: a.Agent, produced: time.Now()}
		for _, ev := range a.Events() {
			p.ids = append(p.ids, ev.EventID)
			for {
				// Not ctx: a plant begun is emitted whole.
				err := em.Emit(context.Background(), &ev)
				if err == nil || !errors.Is(err, producers.ErrBufferFull) {
					break
				}
			}
		}
		out = append(out, p)
	}
}

type blocking struct {
	calls, refused int
	max, p99       time.Duration
	limit          time.Duration
}

// producerBlock emits into a broker address nobody listens on and records
// how long each call blocks: never longer than the configured limit.
func producerBlock(ctx context.Context) (blocking, error) {
	port, err := chserver.FreePort()
	if err != nil {
		return blocking{}, err
	}
	cfg := producers.Config{Kafka: kafkacfg.Config{Brokers: []string{fmt.Sprintf("127.0.0.1:%d", port)}},
		MaxBufferedRecords: 1000, DeliveryTimeout: 2 * time.Second}
	cfg.Defaults()
	em, err := producers.New(cfg, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		return blocking{}, err
	}
	defer func() {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = em.Close(c)
	}()
	b := blocking{limit: cfg.BlockLimit}
	fleet := simulate.New(simulate.Config{Seed: 5})
	var took []float64
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && b.calls < 3000 {
		for _, ev := range fleet.NextTrace(time.Now()) {
			start := time.Now()
			if err := em.Emit(ctx, &ev); err != nil {
				b.refused++
			}
			d := time.Since(start)
			took = append(took, float64(d))
			b.max = max(b.max, d)
			b.calls++
		}
	}
	slices.Sort(took)
	b.p99 = time.Duration(took[len(took)*99/100])
	return b, nil
}

type query struct {
	name   string
	ms     stats
	rows   int
	report bool // a report build, not one query
}

// analystQueries fills a table with QueryEvents synthetic events (traces of
// four events across 6 teams, 3,000 agents and four weeks) and times the
// analysts' questions over it.
func (e *env) analystQueries(ctx context.Context) ([]query, error) {
	const db = "bench_q"
	if _, err := chstore.Migrate(ctx, e.conn, db); err != nil {
		return nil, err
	}
	ins := strings.ReplaceAll(`INSERT INTO {db}.events (event_id, trace_id, span_id, event_type, event_time, tier,
		agent_id, team, environment, requested_by, tool, action, target, action_class, action_digest, rationale,
		outcome, policy_id, policy_version, approval_id, approval_status, approver, result_status, duration_us,
		kafka_partition, kafka_offset)
	SELECT
		toString(generateUUIDv4(number)) AS event_id,
		lower(hex(reinterpretAsFixedString(cityHash64(t, 1)))) || lower(hex(reinterpretAsFixedString(cityHash64(t, 2)))) AS trace_id,
		lower(hex(reinterpretAsFixedString(cityHash64(t, 3)))) AS span_id,
		['intent', 'policy_decision', 'approval', 'result'][s + 1] AS event_type,
		now64(6) - toIntervalSecond(t % 2419200) + toIntervalMillisecond(s * 700) AS event_time,
		toUInt8(1 + (cityHash64(t, 4) % 10 >= 7) + (cityHash64(t, 4) % 10 >= 9)) AS tier,
		concat(team, '-agent-', toString(a)) AS agent_id,
		['finance', 'support', 'devops', 'sales', 'legal', 'data'][a % 6 + 1] AS team,
		'prod' AS environment,
		concat('user', toString(cityHash64(t, 5) % 400), '@acme.example') AS requested_by,
		if(s = 0, ['email', 'crm', 'payments', 'tickets', 'kb'][cityHash64(t, 6) % 5 + 1], '') AS tool,
		if(s = 0, ['send', 'update', 'refund', 'close', 'search'][cityHash64(t, 6) % 5 + 1], '') AS action,
		if(s = 0, concat('res:', toString(cityHash64(t, 7) % 100000)), '') AS target,
		if(s = 0, ['send', 'write', 'refund', 'write', 'read'][cityHash64(t, 6) % 5 + 1], '') AS action_class,
		lower(hex(SHA256(toString(t)))) AS action_digest,
		if(s = 0, 'customer asked for it in ticket', '') AS rationale,
		if(s = 1, ['allow', 'allow', 'allow', 'deny', 'require_approval'][cityHash64(t, 8) % 5 + 1], '') AS outcome,
		if(s = 1, 'policy-' || toString(cityHash64(t, 6) % 5), '') AS policy_id,
		if(s = 1, 7, 0) AS policy_version,
		if(s = 2, 'apr-' || toString(t), '') AS approval_id,
		if(s = 2, 'granted', '') AS approval_status,
		if(s = 2, 'lead@acme.example', '') AS approver,
		if(s = 3, ['success', 'success', 'success', 'failure'][cityHash64(t, 9) % 4 + 1], '') AS result_status,
		if(s = 3, 1000 + cityHash64(t, 10) % 500000, 0) AS duration_us,
		toInt32(t % 12) AS kafka_partition, toInt64(number) AS kafka_offset
	FROM (SELECT number, intDiv(number, 4) AS t, number % 4 AS s, cityHash64(intDiv(number, 4), 0) % 3000 AS a
	      FROM numbers({n}))`, "{db}", db)
	ins = strings.ReplaceAll(ins, "{n}", fmt.Sprint(e.cfg.QueryEvents))
	start := time.Now()
	// Without the insert-time deduplication, as ingest inserts: the rows
	// are unique, so deduplicating them would only spend the setup time
	// that counts against make bench's 15 minutes.
	noDedup := chgo.Context(ctx, chgo.WithSettings(chgo.Settings{"optimize_on_insert": 0}))
	if err := e.conn.Exec(noDedup, ins); err != nil {
		return nil, fmt.Errorf("populate: %w", err)
	}
	e.cfg.Log.Info("populated analyst table", "rows", e.cfg.QueryEvents, "took", time.Since(start).Round(time.Millisecond))

	var trace, team, agent string
	if err := e.conn.QueryRow(ctx, "SELECT trace_id, team, agent_id FROM "+db+".events WHERE kafka_offset = ?",
		int64(e.cfg.QueryEvents/2)).Scan(&trace, &team, &agent); err != nil {
		return nil, err
	}
	week := time.Now().UTC().AddDate(0, 0, -7)
	qs := []struct {
		name, sql string
		args      []any
	}{
		{"one trace (all its events)", "SELECT * FROM " + db + ".v_events WHERE trace_id = ? ORDER BY event_time", []any{trace}},
		{"one agent's week (counts by type, tier, outcome)", "SELECT event_type, tier, outcome, result_status, count() FROM " + db +
			".v_events WHERE team = ? AND agent_id = ? AND event_time >= ? GROUP BY ALL", []any{team, agent, week}},
		{"one team's week (actions, denials, approvals by agent)", "SELECT agent_id, countIf(event_type = 'intent'), countIf(outcome = 'deny'), " +
			"countIf(approval_status = 'granted'), countIf(result_status = 'failure') FROM " + db +
			".v_events WHERE team = ? AND event_time >= ? GROUP BY agent_id", []any{team, week}},
	}
	var out []query
	for _, q := range qs {
		ms, rows, err := timeRuns(7, func() (int, error) {
			rs, err := e.conn.Query(ctx, q.sql, q.args...)
			if err != nil {
				return 0, err
			}
			rows := 0
			for rs.Next() {
				rows++
			}
			err = rs.Err()
			rs.Close()
			return rows, err
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q.name, err)
		}
		out = append(out, query{name: q.name, ms: ms, rows: rows})
	}
	// The same trace as an analyst reads it: `agentrail trace` (correlate.Lookup)
	// reads the trace's row, which names its team, agent and time (a prefix
	// of the events sort key), then its events and its violations. The
	// correlator writes that row in production; here it is derived from the
	// trace's events.
	if err := e.conn.Exec(ctx, `INSERT INTO `+db+`.traces (trace_id, kafka_partition, team, agent_id, tier,
		first_event_time, last_event_time, events, abandon_at, updated_at, version)
		SELECT trace_id, any(kafka_partition), any(team), any(agent_id), max(tier), min(event_time), max(event_time),
			count(), max(event_time) + INTERVAL 1 DAY, now64(6), 1
		FROM `+db+`.events WHERE trace_id = ? GROUP BY trace_id`, trace); err != nil {
		return nil, fmt.Errorf("one trace's row: %w", err)
	}
	ms, rows, err := timeRuns(7, func() (int, error) {
		rep, err := correlate.Lookup(ctx, e.conn, db, trace, time.Now(), correlate.DefaultAbandonAfter)
		if err != nil {
			return 0, err
		}
		return len(rep.Events), nil
	})
	if err != nil {
		return nil, fmt.Errorf("agentrail trace: %w", err)
	}
	out = append(out, query{name: "one trace through `agentrail trace` (correlate.Lookup: its row, events, violations)", ms: ms, rows: rows})
	// The weekly report as `agentrail report weekly` builds and renders it
	// (HTML and chart, without sending), for the
	// last complete week (the table spans four).
	var rcfg reports.Config
	rcfg.Defaults()
	b := reports.NewBuilder(rcfg, e.conn, db, nil)
	info, err := b.Team(ctx, team)
	if err != nil {
		return nil, err
	}
	wk := reports.LastComplete(time.Now(), info.Location)
	timeReport := func(what string) error {
		actions, ungranted := 0, 0
		ms, _, err := timeRuns(4, func() (int, error) {
			r, err := b.Build(ctx, info, wk)
			if err != nil {
				return 0, err
			}
			if _, err := reports.Render(r, "bench.invalid"); err != nil {
				return 0, err
			}
			actions, ungranted = r.Figures.Actions, len(r.Permissions.Ungranted)
			return 1, nil
		})
		if err != nil {
			return fmt.Errorf("weekly report: %w", err)
		}
		name := fmt.Sprintf("team %s's weekly report %s (reports.Builder, %d actions%s)", team, wk, actions, what)
		if ungranted > 0 {
			name = fmt.Sprintf("%s, %d ungranted", strings.TrimSuffix(name, ")"), ungranted) + ")"
		}
		out = append(out, query{name: name, ms: ms, rows: 1, report: true})
		return nil
	}
	if err := timeReport(", no registry"); err != nil {
		return nil, err
	}
	// The same with the fleet registered, so the permission findings
	// (grant use over the look-back, ungranted actions) are computed too.
	reg := benchRegistry()
	if err := reg.Validate(); err != nil {
		return nil, fmt.Errorf("weekly report: bench registry: %w", err)
	}
	if _, err := registry.Apply(ctx, e.conn, db, reg, registry.ApplyOptions{
		AsOf: time.Now().AddDate(0, 0, -60), By: "bench", Source: "bench"}); err != nil {
		return nil, fmt.Errorf("weekly report: apply registry: %w", err)
	}
	if err := timeReport(", 3,000 agents registered"); err != nil {
		return nil, err
	}
	return out, nil
}

// benchRegistry registers the analyst table's fleet: every agent with
// three or four of the five tool actions it uses (some on a narrower
// resource pattern), a grant it never uses, and for every fifth agent one
// more; so some grants go unused and some actions are ungranted.
func benchRegistry() *registry.Registry {
	teams := []string{"finance", "support", "devops", "sales", "legal", "data"}
	tools := [][2]string{{"email", "send"}, {"crm", "update"}, {"payments", "refund"}, {"tickets", "close"}, {"kb", "search"}}
	r := &registry.Registry{}
	for _, t := range teams {
		r.Teams = append(r.Teams, registry.Team{Name: t, Recipients: []string{t + "-lead@acme.example"}})
	}
	for a := range 3000 {
		t := teams[a%6]
		ag := registry.Agent{ID: fmt.Sprintf("%s-agent-%d", t, a), Team: t, Owner: "owner@acme.example"}
		for k, ta := range tools {
			if (a+k)%3 == 0 {
				continue
			}
			res := "res:*"
			if (a+k)%4 == 0 {
				res = "res:1*"
			}
			ag.Grants = append(ag.Grants, registry.Grant{Tool: ta[0], Action: ta[1], Resource: res, Tier: 1})
		}
		ag.Grants = append(ag.Grants, registry.Grant{Tool: "email", Action: "delete", Resource: "*", Tier: 1})
		if a%5 == 0 {
			ag.Grants = append(ag.Grants, registry.Grant{Tool: "crm", Action: "export", Resource: "*", Tier: 1})
		}
		r.Agents = append(r.Agents, ag)
	}
	return r
}

type tierBytes struct {
	tier          int
	rows          uint64
	bytesPerEvent float64
}

// storage reports compressed bytes on disk per event, by tier, from the
// active parts of a run's events table (the partition key starts with tier).
func (e *env) storage(ctx context.Context, db string) ([]tierBytes, error) {
	if err := e.conn.Exec(ctx, "OPTIMIZE TABLE "+db+".events FINAL"); err != nil {
		return nil, err
	}
	rs, err := e.conn.Query(ctx, `SELECT toUInt8(splitByChar(',', trim(BOTH '()' FROM partition))[1]) AS tier,
		sum(rows), sum(bytes_on_disk) FROM system.parts
		WHERE database = ? AND table = 'events' AND active GROUP BY tier ORDER BY tier`, db)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []tierBytes
	for rs.Next() {
		var tier uint8
		var rows, bytes uint64
		if err := rs.Scan(&tier, &rows, &bytes); err != nil {
			return nil, err
		}
		out = append(out, tierBytes{tier: int(tier), rows: rows, bytesPerEvent: float64(bytes) / float64(rows)})
	}
	return out, rs.Err()
}

// timeRuns calls f runs times and summarizes its wall time in ms over all
// but the first call, which warms the caches; rows is what the last call
// returned.
func timeRuns(runs int, f func() (rows int, err error)) (ms stats, rows int, err error) {
	var xs []float64
	for range runs {
		start := time.Now()
		if rows, err = f(); err != nil {
			return stats{}, 0, err
		}
		xs = append(xs, float64(time.Since(start).Microseconds())/1000)
	}
	return summarize(xs[1:]), rows, nil
}
