package correlate

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// stream assigns events partitions (by trace id, as producers key them)
// and offsets, in delivery order.
type stream struct {
	partitions int32
	evs        []consumers.Accepted
	next       map[int32]int64
}

func newStream(partitions int32) *stream {
	return &stream{partitions: partitions, next: map[int32]int64{}}
}

func (s *stream) partitionOf(traceID string) int32 {
	h := fnv.New32a()
	h.Write([]byte(traceID))
	return int32(h.Sum32() % uint32(s.partitions))
}

func (s *stream) add(evs ...schemas.Event) {
	for _, e := range evs {
		p := s.partitionOf(e.TraceID)
		s.evs = append(s.evs, consumers.Accepted{Event: e, Partition: p, Offset: s.next[p]})
		s.next[p]++
	}
}

// batches cuts the stream into batches of size records, the first at now,
// each step later. Like ingest, a batch holds an event id once.
func (s *stream) batches(size int, now time.Time, step time.Duration) []*consumers.Batch {
	var out []*consumers.Batch
	for i := 0; i < len(s.evs); i += size {
		out = append(out, makeBatch(s.evs[i:min(i+size, len(s.evs))], now))
		now = now.Add(step)
	}
	return out
}

func makeBatch(recs []consumers.Accepted, now time.Time) *consumers.Batch {
	b := &consumers.Batch{FirstOffset: map[int32]int64{}, Now: now}
	seen := map[string]bool{}
	for _, a := range recs {
		if f, ok := b.FirstOffset[a.Partition]; !ok || a.Offset < f {
			b.FirstOffset[a.Partition] = a.Offset
		}
		if seen[a.EventID] {
			continue
		}
		seen[a.EventID] = true
		b.Events = append(b.Events, a)
	}
	return b
}

// harness plays ingest's part around a Correlator: insert the batch's
// events, Process, apply the inserts, and keep the records of committed
// batches.
type harness struct {
	t         testing.TB
	conn      driver.Conn
	db        string
	committed []*kgo.Record
	insertEvs bool // insert each batch's events first (false: already ingested)
}

func newHarness(t testing.TB) *harness {
	cfg, conn := testenv.ClickHouse(t)
	return &harness{t: t, conn: conn, db: cfg.Database, insertEvs: true}
}

func (h *harness) correlator(cfg Config) *Correlator {
	h.t.Helper()
	c, err := New(cfg, h.conn, h.db, prometheus.NewRegistry(), quiet)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// step runs one batch; commit=false plays a crash after the inserts and
// before the Kafka transaction, so the records are lost.
func (h *harness) step(c *Correlator, b *consumers.Batch, commit bool) consumers.Output {
	h.t.Helper()
	ctx := context.Background()
	if h.insertEvs {
		h.insertEvents(b.Events)
	}
	out, err := c.Process(ctx, b)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, ins := range out.Inserts {
		applyInsert(h.t, h.conn, ins)
	}
	if commit {
		h.committed = append(h.committed, out.Records...)
	}
	return out
}

func applyInsert(t testing.TB, conn driver.Conn, ins consumers.Insert) {
	t.Helper()
	q := "INSERT INTO " + ins.Table + " ("
	for i, c := range ins.Columns {
		if i > 0 {
			q += ", "
		}
		q += c
	}
	b, err := conn.PrepareBatch(context.Background(), q+")")
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

// insertEvents writes events the way ingest does (the columns correlation
// reads).
func (h *harness) insertEvents(evs []consumers.Accepted) {
	h.t.Helper()
	if len(evs) == 0 {
		return
	}
	b, err := h.conn.PrepareBatch(context.Background(), "INSERT INTO "+h.db+`.events (event_id, trace_id, span_id, event_type,
		event_time, tier, agent_id, agent_version, team, environment, tenant, requested_by, session_id, tool, action, target,
		action_class, action_digest, outcome, policy_id, policy_version, matched_rule, approval_id, approval_status, approver,
		approver_role, approver_kind, scope, expires_at, result_status, executor, changed_resource, error_class, rationale,
		model_id, prompt_version, confidence, reason, channel, comment, side_effects, duration_us, producer_host,
		kafka_partition, kafka_offset)`)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, a := range evs {
		e := a.Event
		var in schemas.Intent
		var d schemas.Decision
		var ap schemas.Approval
		var r schemas.Result
		digest := ""
		if e.Intent != nil {
			in, digest = *e.Intent, e.Intent.ActionDigest
		}
		if e.Decision != nil {
			d = *e.Decision
		}
		if e.Approval != nil {
			ap, digest = *e.Approval, e.Approval.ActionDigest
		}
		if e.Result != nil {
			r, digest = *e.Result, e.Result.ActionDigest
		}
		if err := b.Append(e.EventID, e.TraceID, e.SpanID, string(e.Type), e.Time, uint8(e.Tier), e.Agent.ID, e.Agent.Version,
			e.Agent.Team, e.Agent.Environment, e.Agent.Tenant, e.RequestedBy, e.SessionID, in.Tool, in.Action, in.Target,
			in.ActionClass, digest, d.Outcome, d.PolicyID, d.PolicyVersion, d.MatchedRule, ap.ApprovalID, ap.Status, ap.Approver,
			ap.ApproverRole, ap.ApproverKind, ap.Scope, ap.ExpiresAt, r.Status, r.Executor, r.ChangedResource, r.ErrorClass,
			in.Rationale, in.ModelID, in.PromptVersion, in.Confidence, d.Reason, ap.Channel, ap.Comment, nonNil(r.SideEffects),
			r.DurationUS, e.Producer.Host, a.Partition, a.Offset); err != nil {
			h.t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		h.t.Fatal(err)
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// found is a (trace, kind) pair.
type found struct {
	trace string
	kind  Kind
}

// recordsByViolation decodes violation records and counts each pair.
func recordsByViolation(t testing.TB, recs []*kgo.Record) map[found]int {
	t.Helper()
	out := map[found]int{}
	for _, r := range recs {
		var v ViolationRecord
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatalf("violation record: %v", err)
		}
		if string(r.Key) != v.TraceID || v.ViolationID != ViolationID(v.TraceID, v.Kind) || v.Explanation == "" ||
			len(v.Evidence) == 0 || v.EventTime.IsZero() || v.DetectedAt.IsZero() || v.Severity != v.Kind.Severity() {
			t.Fatalf("violation record incomplete: key %s %+v", r.Key, v)
		}
		out[found{v.TraceID, v.Kind}]++
	}
	return out
}

// tableViolations reads v_violations.
func tableViolations(t testing.TB, conn driver.Conn, db string) map[found]int {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT trace_id, kind FROM "+db+".v_violations")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[found]int{}
	for rows.Next() {
		var id, kind string
		if err := rows.Scan(&id, &kind); err != nil {
			t.Fatal(err)
		}
		out[found{id, Kind(kind)}]++
	}
	return out
}

// fixture is a simulated fleet's stream with violations planted, and what
// was planted.
type fixture struct {
	events  []schemas.Event // delivery order
	planted map[found]bool
	traces  map[string]bool
}

// fleetVersion is the policy version the fixture's fleet runs everywhere.
const fleetVersion = 30

// newFixture simulates n traces with every violation kind planted at about
// share of the traces each, messy delivery (reordered traces, duplicated
// events), then tail clean tier-1 traces. It pins every policy to
// fleetVersion, so the ground truth does not hang on how the simulator
// numbers versions, and keeps a stale_policy plant only where an
// earlier-delivered decision of the policy, earlier in event time, shows the
// newer version (otherwise there is nothing to compare with); other stale
// plants are undone.
func newFixture(t testing.TB, seed uint64, n, tail int, share float64, base time.Time) *fixture {
	t.Helper()
	scs, err := simulate.ViolationScenarios(share)
	if err != nil {
		t.Fatal(err)
	}
	f := simulate.New(simulate.Config{Seed: seed, ReorderRate: 0.05, DuplicateRate: 0.02, Scenarios: scs})
	fx := &fixture{planted: map[found]bool{}, traces: map[string]bool{}}
	firstSeen := map[string]time.Time{} // policy → earliest pinned decision so far
	for i := 0; i < n; i++ {
		tr := f.Next(base.Add(time.Duration(i) * time.Second))
		stale := len(tr.Planted) > 0 && tr.Planted[0] == "stale_policy"
		for j := range tr.Events {
			d := tr.Events[j].Decision
			if d == nil {
				continue
			}
			if stale {
				if fs, ok := firstSeen[d.PolicyID]; ok && fs.Before(tr.Events[j].Time) {
					continue // detectable: keep the stale version
				}
				stale = false
				tr.Planted = nil
			}
			d.PolicyVersion = fleetVersion
			if fs, ok := firstSeen[d.PolicyID]; !ok || tr.Events[j].Time.Before(fs) {
				firstSeen[d.PolicyID] = tr.Events[j].Time
			}
		}
		fx.add(tr)
	}
	clean := simulate.New(simulate.Config{Seed: seed + 1, Teams: tier1Only()})
	end := base.Add(time.Duration(n) * time.Second)
	for i := 0; i < tail; i++ {
		tr := clean.Next(end.Add(time.Duration(i) * time.Millisecond))
		for j := range tr.Events {
			if d := tr.Events[j].Decision; d != nil {
				d.PolicyVersion = fleetVersion
			}
		}
		fx.add(tr)
	}
	return fx
}

func (fx *fixture) add(tr *simulate.Trace) {
	id := tr.Events[0].TraceID
	fx.traces[id] = true
	for _, name := range tr.Planted {
		kind, _ := simulate.ViolationKind(name)
		fx.planted[found{id, Kind(kind)}] = true
	}
	fx.events = append(fx.events, tr.Events...)
}

// tier1Only is the default fleet with only its tier-1 tools that are never
// denied: a tail of traces that settles everything before it.
func tier1Only() []simulate.Team {
	teams := simulate.DefaultTeams()
	for i := range teams {
		var keep []simulate.Tool
		for _, tl := range teams[i].Tools {
			if tl.Tier == schemas.TierLow {
				tl.DenyRate, tl.Quota, tl.ApprovalRate = 0, 0, 0
				keep = append(keep, tl)
			}
		}
		teams[i].Tools = keep
	}
	return teams
}

func sortedFound(m map[found]int) []found {
	out := make([]found, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].trace != out[j].trace {
			return out[i].trace < out[j].trace
		}
		return out[i].kind < out[j].kind
	})
	return out
}

// compare reports the difference between what was found and what was
// planted, each pair expected exactly once.
func compare(t testing.TB, what string, got map[found]int, planted map[found]bool) {
	t.Helper()
	bad := 0
	for _, f := range sortedFound(got) {
		switch {
		case !planted[f]:
			t.Errorf("%s: %s %s found but not planted", what, f.trace, f.kind)
			bad++
		case got[f] != 1:
			t.Errorf("%s: %s %s reported %d times", what, f.trace, f.kind, got[f])
			bad++
		}
	}
	for f := range planted {
		if got[f] == 0 {
			t.Errorf("%s: %s %s planted but not found", what, f.trace, f.kind)
			bad++
		}
	}
	if bad > 0 {
		t.FailNow()
	}
}
