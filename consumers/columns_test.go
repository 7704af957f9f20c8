package consumers

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentrail/agentrail/consumers/redact"
	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/schemas"
)

// storedRow is an events row as clickhouse-go reads it back.
type storedRow struct {
	EventID         string            `ch:"event_id"`
	TraceID         string            `ch:"trace_id"`
	SpanID          string            `ch:"span_id"`
	EventType       string            `ch:"event_type"`
	EventTime       time.Time         `ch:"event_time"`
	EventTimeUS     int64             `ch:"event_time_us"`
	Tier            uint8             `ch:"tier"`
	AgentID         string            `ch:"agent_id"`
	AgentVersion    string            `ch:"agent_version"`
	Team            string            `ch:"team"`
	Environment     string            `ch:"environment"`
	Tenant          string            `ch:"tenant"`
	RequestedBy     string            `ch:"requested_by"`
	ProducerName    string            `ch:"producer_name"`
	ProducerVersion string            `ch:"producer_version"`
	ProducerHost    string            `ch:"producer_host"`
	SessionID       string            `ch:"session_id"`
	Labels          map[string]string `ch:"labels"`
	Tool            string            `ch:"tool"`
	Action          string            `ch:"action"`
	Target          string            `ch:"target"`
	ActionClass     string            `ch:"action_class"`
	Parameters      map[string]string `ch:"parameters"`
	ActionDigest    string            `ch:"action_digest"`
	Rationale       string            `ch:"rationale"`
	Context         map[string]string `ch:"context"`
	ModelID         string            `ch:"model_id"`
	PromptVersion   string            `ch:"prompt_version"`
	EvidenceIDs     []string          `ch:"evidence_ids"`
	Confidence      *float64          `ch:"confidence"`
	Outcome         string            `ch:"outcome"`
	PolicyID        string            `ch:"policy_id"`
	PolicyVersion   int64             `ch:"policy_version"`
	MatchedRule     string            `ch:"matched_rule"`
	Reason          string            `ch:"reason"`
	RemainingQuota  *int64            `ch:"remaining_quota"`
	ApprovalID      string            `ch:"approval_id"`
	ApprovalStatus  string            `ch:"approval_status"`
	Approver        string            `ch:"approver"`
	ApproverRole    string            `ch:"approver_role"`
	ApproverKind    string            `ch:"approver_kind"`
	Scope           string            `ch:"scope"`
	ExpiresAt       *time.Time        `ch:"expires_at"`
	ExpiresAtUS     *int64            `ch:"expires_at_us"`
	Channel         string            `ch:"channel"`
	Comment         string            `ch:"comment"`
	ResultStatus    string            `ch:"result_status"`
	Executor        string            `ch:"executor"`
	ChangedResource string            `ch:"changed_resource"`
	SideEffects     []string          `ch:"side_effects"`
	ErrorClass      string            `ch:"error_class"`
	ErrorMessage    string            `ch:"error_message"`
	DurationUS      int64             `ch:"duration_us"`
	SignerKeyID     string            `ch:"signer_key_id"`
	KafkaPartition  int32             `ch:"kafka_partition"`
	KafkaOffset     int64             `ch:"kafka_offset"`
	RedPath         []string          `ch:"redactions.path"`
	RedAction       []string          `ch:"redactions.action"`
	RedRule         []string          `ch:"redactions.rule"`
}

const selectStored = `SELECT * EXCEPT (ingested_at), toUnixTimestamp64Micro(event_time) AS event_time_us,
	toUnixTimestamp64Micro(expires_at) AS expires_at_us
	FROM %s.events ORDER BY kafka_offset`

// TestEventColumnsRoundTrip inserts two batches through the reused ch-go
// columns, the second after a reset and smaller than the first, and reads
// every column back with clickhouse-go: a column out of order, of the wrong
// type, or left over from the previous batch shows as a differing field.
// It runs against the migrated table, with each compression, and against
// one whose LowCardinality(String) columns are plain String.
func TestEventColumnsRoundTrip(t *testing.T) {
	cfg, conn := testenv.ClickHouse(t)
	ctx := context.Background()

	// The same table with String instead of LowCardinality(String).
	plainDB := cfg.Database + "_plain"
	var ddl string
	if err := conn.QueryRow(ctx, "SHOW CREATE TABLE "+cfg.Database+".events").Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ddl, "LowCardinality(String)") {
		t.Log("events has no LowCardinality(String) column; the plain table is the same table")
	}
	ddl = strings.Replace(ddl, cfg.Database+".events", plainDB+".events", 1)
	ddl = strings.ReplaceAll(ddl, "LowCardinality(String)", "String")
	for _, q := range []string{"CREATE DATABASE " + plainDB, ddl} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+plainDB+" SYNC") })

	now := time.Now().UTC().Truncate(time.Microsecond)
	conf, zeroConf := 0.875, 0.0
	quota, zeroQuota := int64(41), int64(0)
	farFuture := time.Date(2290, 12, 31, 23, 59, 58, 123456000, time.UTC) // past UnixNano's 2262
	soon := now.Add(72 * time.Hour)

	full := schemas.Event{
		EventID: "ev-full", TraceID: "tr-1", SpanID: "sp-1", Type: schemas.TypeResult, Time: now,
		Agent:       schemas.Agent{ID: "agent-a", Version: "1.2.3", Team: "payments", Environment: "prod", Tenant: "acme"},
		RequestedBy: "jane", Tier: schemas.TierHigh,
		Producer:  schemas.Producer{Name: "sdk-go", Version: "0.9", Host: "host-1"},
		SessionID: "sess-1", Labels: map[string]string{"region": "eu", "k": ""},
		Intent: &schemas.Intent{Tool: "stripe", Action: "refund", Target: "ch_1", ActionClass: "money",
			Parameters: map[string]string{"amount": "42.00", "currency": "EUR"}, ActionDigest: "d-intent",
			Rationale: "customer asked", Context: map[string]string{"ticket": "SUP-1"}, ModelID: "m-1",
			PromptVersion: "p-7", EvidenceIDs: []string{"e1", "e2", "e3"}, Confidence: &conf},
		Decision: &schemas.Decision{Outcome: "allow", PolicyID: "pol-1", PolicyVersion: 7, MatchedRule: "r-9",
			Reason: "under limit", RemainingQuota: &quota},
		Approval: &schemas.Approval{ApprovalID: "ap-1", Status: "approved", Approver: "bob", ApproverRole: "lead",
			ApproverKind: "human", ActionDigest: "d-approval", Scope: "once", ExpiresAt: &farFuture,
			Channel: "slack", Comment: "ok"},
		Result: &schemas.Result{Status: "succeeded", ActionDigest: "d-result", Executor: "worker-2",
			ChangedResource: "re_1", SideEffects: []string{"email_sent", "ledger"}, ErrorClass: "none",
			ErrorMessage: "-", DurationUS: 1234},
	}
	bare := schemas.Event{EventID: "ev-bare", TraceID: "tr-2", Type: schemas.TypeIntent, Time: now.Add(-time.Minute),
		Agent: schemas.Agent{ID: "agent-b", Team: "support"}, Tier: schemas.TierLow}
	// Set-but-zero Nullables, an approval's digest, and no result.
	zeroes := schemas.Event{EventID: "ev-zero", TraceID: "tr-3", Type: schemas.TypeApproval, Time: now.Add(time.Second),
		Agent: schemas.Agent{ID: "agent-c", Team: "ops"}, Tier: schemas.TierMedium,
		Intent:   &schemas.Intent{ActionDigest: "d-intent-3", Confidence: &zeroConf},
		Decision: &schemas.Decision{RemainingQuota: &zeroQuota},
		Approval: &schemas.Approval{ApprovalID: "ap-3", ActionDigest: "d-approval-3", ExpiresAt: &soon}}
	fullReds := []redact.Redaction{{Path: "parameters.to", Action: "pseudonym", Rule: "email"},
		{Path: "rationale", Action: "mask", Rule: "card"}}

	us := func(t time.Time) *int64 { v := t.UnixMicro(); return &v }
	want := []storedRow{{
		EventID: "ev-full", TraceID: "tr-1", SpanID: "sp-1", EventType: "result", EventTime: now, EventTimeUS: now.UnixMicro(),
		Tier: 3, AgentID: "agent-a", AgentVersion: "1.2.3", Team: "payments", Environment: "prod", Tenant: "acme",
		RequestedBy: "jane", ProducerName: "sdk-go", ProducerVersion: "0.9", ProducerHost: "host-1", SessionID: "sess-1",
		Labels: map[string]string{"region": "eu", "k": ""}, Tool: "stripe", Action: "refund", Target: "ch_1",
		ActionClass: "money", Parameters: map[string]string{"amount": "42.00", "currency": "EUR"},
		ActionDigest: "d-result", Rationale: "customer asked", Context: map[string]string{"ticket": "SUP-1"},
		ModelID: "m-1", PromptVersion: "p-7", EvidenceIDs: []string{"e1", "e2", "e3"}, Confidence: &conf,
		Outcome: "allow", PolicyID: "pol-1", PolicyVersion: 7, MatchedRule: "r-9", Reason: "under limit",
		RemainingQuota: &quota, ApprovalID: "ap-1", ApprovalStatus: "approved", Approver: "bob", ApproverRole: "lead",
		ApproverKind: "human", Scope: "once", ExpiresAtUS: us(farFuture), Channel: "slack", Comment: "ok",
		ResultStatus: "succeeded", Executor: "worker-2", ChangedResource: "re_1", SideEffects: []string{"email_sent", "ledger"},
		ErrorClass: "none", ErrorMessage: "-", DurationUS: 1234, SignerKeyID: "key-1", KafkaPartition: 2, KafkaOffset: 10,
		RedPath: []string{"parameters.to", "rationale"}, RedAction: []string{"pseudonym", "mask"}, RedRule: []string{"email", "card"},
	}, {
		EventID: "ev-bare", TraceID: "tr-2", EventType: "intent", EventTime: now.Add(-time.Minute),
		EventTimeUS: now.Add(-time.Minute).UnixMicro(), Tier: 1, AgentID: "agent-b", Team: "support",
		Labels: map[string]string{}, Parameters: map[string]string{}, Context: map[string]string{},
		EvidenceIDs: []string{}, SideEffects: []string{}, KafkaPartition: 0, KafkaOffset: 11,
		RedPath: []string{}, RedAction: []string{}, RedRule: []string{},
	}, {
		EventID: "ev-zero", TraceID: "tr-3", EventType: "approval", EventTime: now.Add(time.Second),
		EventTimeUS: now.Add(time.Second).UnixMicro(), Tier: 2, AgentID: "agent-c", Team: "ops",
		Labels: map[string]string{}, Parameters: map[string]string{}, Context: map[string]string{},
		ActionDigest: "d-approval-3", EvidenceIDs: []string{}, Confidence: &zeroConf, RemainingQuota: &zeroQuota,
		ApprovalID: "ap-3", ExpiresAt: &soon, ExpiresAtUS: us(soon), SideEffects: []string{}, SignerKeyID: "key-3",
		KafkaPartition: 5, KafkaOffset: 12,
		RedPath: []string{"comment"}, RedAction: []string{"drop"}, RedRule: []string{"secret"},
	}}

	for _, tc := range []struct{ db, compression string }{
		{cfg.Database, "none"}, {cfg.Database, "lz4"}, {cfg.Database, "zstd"}, {plainDB, "none"},
	} {
		t.Run(tc.db+"/"+tc.compression, func(t *testing.T) {
			db, c := tc.db, cfg
			c.Compression = tc.compression
			opts, err := chstore.NativeOptions(c)
			if err != nil {
				t.Fatal(err)
			}
			if err := conn.Exec(ctx, "TRUNCATE TABLE "+db+".events"); err != nil {
				t.Fatal(err)
			}
			var n nativeConn
			if err := n.open(ctx, opts); err != nil {
				t.Fatal(err)
			}
			defer n.close()
			cols := newEventColumns()
			cols.add(&full, fullReds, 2, 10, "key-1")
			cols.add(&bare, nil, 0, 11, "")
			if err := n.do(ctx, cols.query(db+".events")); err != nil {
				t.Fatalf("first batch: %v", err)
			}
			cols.reset()
			if cols.len() != 0 {
				t.Fatalf("after reset: %d rows, want 0", cols.len())
			}
			cols.add(&zeroes, []redact.Redaction{{Path: "comment", Action: "drop", Rule: "secret"}}, 5, 12, "key-3")
			if err := n.do(ctx, cols.query(db+".events")); err != nil {
				t.Fatalf("second batch: %v", err)
			}
			got := readStored(t, conn, db)
			if len(got) != len(want) {
				t.Fatalf("read %d rows, want %d: %+v", len(got), len(want), got)
			}
			for i := range want {
				compareRows(t, got[i], want[i])
			}
		})
	}
}

func readStored(t *testing.T, conn driver.Conn, db string) []storedRow {
	t.Helper()
	var rows []storedRow
	if err := conn.Select(context.Background(), &rows, strings.Replace(selectStored, "%s", db, 1)); err != nil {
		t.Fatal(err)
	}
	return rows
}

// compareRows compares field by field, naming the column that differs.
// The far-future expires_at is compared by its microseconds only (the
// reading client's time conversion overflows there).
func compareRows(t *testing.T, got, want storedRow) {
	t.Helper()
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	ty := g.Type()
	for i := range ty.NumField() {
		f := ty.Field(i)
		gv, wv := g.Field(i).Interface(), w.Field(i).Interface()
		switch f.Name {
		case "EventTime":
			if !gv.(time.Time).Equal(wv.(time.Time)) {
				t.Errorf("%s %s = %v, want %v", want.EventID, f.Tag.Get("ch"), gv, wv)
			}
			continue
		case "ExpiresAt":
			gt, wt := gv.(*time.Time), wv.(*time.Time)
			if wt == nil {
				if want.ExpiresAtUS == nil && gt != nil {
					t.Errorf("%s expires_at = %v, want NULL", want.EventID, *gt)
				}
				continue
			}
			if gt == nil || !gt.Equal(*wt) {
				t.Errorf("%s expires_at = %v, want %v", want.EventID, gt, *wt)
			}
			continue
		}
		if !reflect.DeepEqual(gv, wv) {
			t.Errorf("%s %s = %#v, want %#v", want.EventID, f.Tag.Get("ch"), deref(gv), deref(wv))
		}
	}
}

func deref(v any) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		return rv.Elem().Interface()
	}
	return v
}

// TestNativeConnRedials checks that a connection a failed insert broke, or
// one closed under ingest, is replaced by the next insert.
func TestNativeConnRedials(t *testing.T) {
	cfg, conn := testenv.ClickHouse(t)
	ctx := context.Background()
	n := openNative(t, cfg)
	c := newEventColumns()
	c.add(&schemas.Event{EventID: "e1", TraceID: "t", Type: schemas.TypeIntent, Time: time.Now(), Tier: 1}, nil, 0, 1, "")

	if err := n.do(ctx, c.query(cfg.Database+".no_such_table")); err == nil {
		t.Fatal("insert into a missing table succeeded")
	}
	if n.c != nil {
		t.Fatal("connection kept after a failed insert")
	}
	if err := n.do(ctx, c.query(cfg.Database+".events")); err != nil {
		t.Fatalf("insert after a failed one: %v", err)
	}
	_ = n.c.Close() // e.g. the server went away in between
	c.reset()       // another block: an identical one would be deduplicated
	c.add(&schemas.Event{EventID: "e2", TraceID: "t", Type: schemas.TypeIntent, Time: time.Now(), Tier: 1}, nil, 0, 2, "")
	if err := n.do(ctx, c.query(cfg.Database+".events")); err != nil {
		t.Fatalf("insert on a closed connection: %v", err)
	}
	var rows uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".events").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 2 {
		t.Fatalf("%d rows, want 2 (one per successful insert)", rows)
	}
}

// TestDialNativeInOrder checks that the addresses are tried in order and the
// first that answers is used, and that an error names every address.
func TestDialNativeInOrder(t *testing.T) {
	cfg, _ := testenv.ClickHouse(t)
	ctx := context.Background()
	dead := "127.0.0.1:1" // nothing listens on port 1
	cfg.Addr = append([]string{dead}, cfg.Addr...)
	opts, err := chstore.NativeOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := chstore.DialNative(ctx, opts)
	if err != nil {
		t.Fatalf("dial with a dead first address: %v", err)
	}
	_ = c.Close()

	_, err = chstore.DialNative(ctx, []ch.Options{opts[0], opts[0]})
	if err == nil || len(strings.Split(err.Error(), "\n"+dead)) != 2 {
		t.Fatalf("dial of dead addresses: %v, want an error naming each", err)
	}
}

// TestInsertDeduplicationToken: a block sent again is dropped by the
// server, by its token; a block at the same coordinates with another event,
// or with one row more, is another block and is stored.
func TestInsertDeduplicationToken(t *testing.T) {
	cfg, conn := testenv.ClickHouse(t)
	ctx := context.Background()
	n := openNative(t, cfg)
	table := cfg.Database + ".events"
	count := func() uint64 {
		t.Helper()
		var rows uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+table).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		return rows
	}
	ev := func(id string) *schemas.Event {
		return &schemas.Event{EventID: id, TraceID: "t", Type: schemas.TypeIntent, Time: time.Now(), Tier: 1}
	}
	c := newEventColumns()
	fill := func(ids ...string) {
		c.reset()
		for i, id := range ids {
			c.add(ev(id), nil, 3, int64(100+i), "")
		}
	}
	steps := []struct {
		what string
		ids  []string
		want uint64
	}{
		{"first block", []string{"e1", "e2"}, 2},
		{"the same block again", []string{"e1", "e2"}, 2},
		{"the same coordinates, another event", []string{"e1", "e9"}, 4},
		{"one row more", []string{"e1", "e2", "e3"}, 7},
	}
	for _, s := range steps {
		fill(s.ids...)
		if err := n.do(ctx, c.query(table)); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		if got := count(); got != s.want {
			t.Fatalf("%s: %d rows stored, want %d", s.what, got, s.want)
		}
	}
	// Built again from nothing, the same rows make the same token.
	c = newEventColumns()
	fill("e1", "e2")
	if err := n.do(ctx, c.query(table)); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != 7 {
		t.Fatalf("a rebuilt copy of the first block: %d rows stored, want 7", got)
	}
}

// openNative opens ingest's native connection to the test server, closed
// when the test ends.
func openNative(t *testing.T, cfg chstore.Config) *nativeConn {
	t.Helper()
	opts, err := chstore.NativeOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := &nativeConn{}
	if err := n.open(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.close)
	return n
}
