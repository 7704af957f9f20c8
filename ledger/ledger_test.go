package ledger_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/ledger"
	"github.com/agentrail/agentrail/reports/retention"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const group = "agentrail-ingest"

// env is one pipeline's stores: a fresh database on the real ClickHouse,
// an embedded broker, and the pipeline key.
type env struct {
	t    *testing.T
	ctx  context.Context
	conn driver.Conn
	db   string
	kc   kafkacfg.Config
	priv ed25519.PrivateKey
	pub  string
	now  time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	chc, conn := testenv.ClickHouse(t)
	var kc kafkacfg.Config
	kc.Defaults()
	kc.Brokers = []string{testenv.Broker(t, kc.Topics.Events)}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: context.Background(), conn: conn, db: chc.Database, kc: kc, priv: priv,
		pub: ledger.EncodePublicKey(pub), now: time.Now().UTC()}
}

func (e *env) ledger(opts ...ledger.Option) *ledger.Ledger {
	e.t.Helper()
	l, err := ledger.New(ledger.Config{}, ledger.Deps{Kafka: e.kc, Conn: e.conn, Database: e.db, Group: group},
		prometheus.NewRegistry(), slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		append([]ledger.Option{ledger.WithKey(e.priv)}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

func (e *env) exec(q string) {
	e.t.Helper()
	if err := e.conn.Exec(e.ctx, strings.ReplaceAll(q, "{db}", e.db)); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
}

// ev is one stored event row.
type ev struct {
	p         int32
	off       int64
	id        string
	tier      uint8
	age       time.Duration // event_time = now - age
	rationale string
}

func (e *env) insert(evs ...ev) {
	e.t.Helper()
	b, err := e.conn.PrepareBatch(e.ctx, "INSERT INTO "+e.db+`.events (event_id, trace_id, event_type, event_time, tier, agent_id, team,
		rationale, kafka_partition, kafka_offset)`)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, x := range evs {
		if err := b.Append(x.id, "trace-"+x.id, "intent", e.now.Add(-x.age), x.tier, "agent-"+fmt.Sprint(len(x.id)%5),
			[]string{"finance", "support"}[len(x.id)%2], x.rationale, x.p, x.off); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		e.t.Fatal(err)
	}
}

// mk is the event fill stores at an offset: tiers and ages mixed.
func mk(p int32, off int64) ev {
	x := ev{p: p, off: off, id: fmt.Sprintf("ev-%d-%d", p, off), tier: uint8(1 + off%3), age: time.Hour, rationale: "because"}
	switch off % 10 {
	case 0, 1:
		x.tier, x.age = 1, 60*24*time.Hour // tier 1, past retention (30d)
	case 2, 3:
		x.tier, x.age = 1, 20*24*time.Hour // tier 1, past full fields (7d)
	}
	return x
}

// deadLetter reports whether fill leaves an offset empty, as a dead letter
// would: every 97th.
func deadLetter(off int64) bool { return off%97 == 13 }

// stored is how many rows fill stores per partition below offset n.
func stored(n int64) uint64 {
	c := uint64(0)
	for off := int64(0); off < n; off++ {
		if !deadLetter(off) {
			c++
		}
	}
	return c
}

// fill stores events at offsets [from, to) of partitions 0-2.
func (e *env) fill(from, to int64) {
	var evs []ev
	for p := int32(0); p < 3; p++ {
		for off := from; off < to; off++ {
			if !deadLetter(off) {
				evs = append(evs, mk(p, off))
			}
		}
	}
	e.insert(evs...)
}

// commit fills partitions 0-2 of the events topic up to off (records that
// stand for the stored events) and sets the ingest group's committed offset
// there, as ingest would once the rows are stored.
func (e *env) commit(off int64) {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kc.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(e.ctx, e.kc.Topics.Events)
	if err != nil {
		e.t.Fatal(err)
	}
	var recs []*kgo.Record
	for p := int32(0); p < 3; p++ {
		end, _ := ends.Lookup(e.kc.Topics.Events, p)
		for o := end.Offset; o < off; o++ {
			recs = append(recs, &kgo.Record{Topic: e.kc.Topics.Events, Partition: p, Value: []byte("x")})
		}
	}
	if err := cl.ProduceSync(e.ctx, recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
	var os kadm.Offsets
	for p := int32(0); p < 3; p++ {
		os.Add(kadm.Offset{Topic: e.kc.Topics.Events, Partition: p, At: off, LeaderEpoch: -1})
	}
	resp, err := adm.CommitOffsets(e.ctx, group, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) seal(l *ledger.Ledger) ledger.SealResult {
	e.t.Helper()
	res, err := l.Seal(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func (e *env) verify(withKafka bool) *ledger.Report {
	e.t.Helper()
	o := ledger.VerifyOptions{Conn: e.conn, Database: e.db, PublicKeys: []string{e.pub}}
	if withKafka {
		o.Kafka = &e.kc
	}
	rep, err := ledger.Verify(e.ctx, o)
	if err != nil {
		e.t.Fatal(err)
	}
	return rep
}

func (e *env) count(q string) uint64 {
	e.t.Helper()
	var n uint64
	if err := e.conn.QueryRow(e.ctx, strings.ReplaceAll(q, "{db}", e.db)).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// sealed builds the common start: 1,200 offsets per partition stored and
// sealed in two rounds, plus a producer duplicate and a re-delivered copy.
func sealed(t *testing.T) (*env, *ledger.Ledger) {
	e := newEnv(t)
	l := e.ledger()
	e.fill(0, 700)
	e.commit(700)
	if res := e.seal(l); res.Entries != 1 || res.Rows != 3*stored(700) {
		t.Fatalf("first seal: %+v, want 1 entry of %d rows", res, 3*stored(700))
	}
	e.fill(700, 1200)
	// A producer duplicate of ev-0-5 at a later offset (one a dead letter
	// left empty): FINAL keeps the first, so the seal must not count it,
	// nor the merge that removes it change anything.
	dup := mk(0, 5)
	dup.off = 1177
	e.insert(dup)
	// A re-delivered copy of ev-1-800: same offset, same row.
	e.insert(mk(1, 800))
	e.commit(1200)
	res := e.seal(l)
	if res.Entries != 1 {
		t.Fatalf("second seal: %+v", res)
	}
	return e, l
}

func (e *env) only(rep *ledger.Report) ledger.RangeProblem {
	e.t.Helper()
	if len(rep.Changed) != 1 {
		e.t.Fatalf("want one changed range, got %d: %v", len(rep.Changed), rep.Changed)
	}
	return rep.Changed[0]
}

func TestUntouchedVerifiesClean(t *testing.T) {
	e, _ := sealed(t)
	// Merging the parts collapses the duplicate and the re-delivered copy.
	e.exec("OPTIMIZE TABLE {db}.events FINAL")
	rep := e.verify(true)
	if !rep.OK {
		t.Fatalf("untouched store does not verify: chain %v topic %+v changed %v foreign %v", rep.Chain, rep.Topic, rep.Changed, rep.Foreign)
	}
	wantRows := 3 * stored(1200)
	if rep.Rows != wantRows || rep.Entries != 2 || rep.Seals != 2 || !rep.Topic.Checked || rep.Topic.Entries != 2 {
		t.Fatalf("verified %d rows in %d entries (topic %+v), want %d rows in 2", rep.Rows, rep.Entries, rep.Topic, wantRows)
	}
}

func TestTamperingIsLocated(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(e *env) string
		check  func(t *testing.T, e *env, rep *ledger.Report, arg string)
	}{
		{"alter one row", func(e *env) string {
			e.exec("ALTER TABLE {db}.events UPDATE rationale = 'nothing to see' WHERE event_id = 'ev-1-500' SETTINGS mutations_sync = 2")
			return ""
		}, func(t *testing.T, e *env, rep *ledger.Report, _ string) {
			p := e.only(rep)
			if p.Partition != 1 || p.From > 500 || p.To <= 500 || p.Altered != 1 || p.Removed+p.Added != 0 {
				t.Fatalf("got %s", p)
			}
			if len(p.Rows) != 1 || p.Rows[0] != (ledger.RowChange{Offset: 500, Kind: "altered", EventID: "ev-1-500"}) {
				t.Fatalf("rows: %+v", p.Rows)
			}
		}},
		{"delete one row", func(e *env) string {
			e.exec("ALTER TABLE {db}.events DELETE WHERE event_id = 'ev-2-1030' SETTINGS mutations_sync = 2")
			return ""
		}, func(t *testing.T, e *env, rep *ledger.Report, _ string) {
			p := e.only(rep)
			if p.Partition != 2 || p.Removed != 1 || p.Altered+p.Added != 0 || p.Expected != p.Found+1 || p.Seq != 2 {
				t.Fatalf("got %s", p)
			}
			if len(p.Rows) != 1 || p.Rows[0] != (ledger.RowChange{Offset: 1030, Kind: "removed"}) {
				t.Fatalf("rows: %+v", p.Rows)
			}
		}},
		{"insert a forged row", func(e *env) string {
			// Offset 110 of partition 0 held a dead letter: no row.
			e.insert(ev{p: 0, off: 110, id: "forged-1", tier: 2, age: time.Hour, rationale: "approved, honest"})
			return ""
		}, func(t *testing.T, e *env, rep *ledger.Report, _ string) {
			p := e.only(rep)
			if p.Partition != 0 || p.Added != 1 || p.Altered+p.Removed != 0 || p.Seq != 1 {
				t.Fatalf("got %s", p)
			}
			if len(p.Rows) != 1 || p.Rows[0] != (ledger.RowChange{Offset: 110, Kind: "added", EventID: "forged-1"}) {
				t.Fatalf("rows: %+v", p.Rows)
			}
		}},
		{"insert a row beyond the topic", func(e *env) string {
			e.insert(ev{p: 2, off: 5000, id: "forged-2", tier: 2, age: time.Hour})
			return ""
		}, func(t *testing.T, e *env, rep *ledger.Report, _ string) {
			if len(rep.Changed) != 0 || len(rep.Foreign) != 1 || !strings.Contains(rep.Foreign[0].What, "partition 2 at offsets 5000-5000") {
				t.Fatalf("changed %v foreign %v", rep.Changed, rep.Foreign)
			}
		}},
		{"drop a partition outside retention", func(e *env) string {
			var id string
			if err := e.conn.QueryRow(e.ctx, "SELECT _partition_id FROM "+e.db+".events WHERE event_id = 'ev-0-20'").Scan(&id); err != nil {
				t.Fatal(err)
			}
			n := e.count("SELECT count() FROM {db}.events FINAL WHERE _partition_id = '" + id + "'")
			e.exec("ALTER TABLE {db}.events DROP PARTITION ID '" + id + "'")
			return fmt.Sprint(n)
		}, func(t *testing.T, e *env, rep *ledger.Report, dropped string) {
			removed := 0
			for _, p := range rep.Changed {
				if p.Altered+p.Added != 0 || p.Removed == 0 || int(p.Expected-p.Found) != p.Removed {
					t.Fatalf("got %s", p)
				}
				removed += p.Removed
			}
			// Sealed [0,700), then [700,1024) and [1024,1200): three ranges
			// per partition, each with rows of the dropped week.
			if fmt.Sprint(removed) != dropped || len(rep.Changed) != 9 {
				t.Fatalf("%d ranges report %d rows removed, want 9 ranges and %s", len(rep.Changed), removed, dropped)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := sealed(t)
			arg := tc.tamper(e)
			rep := e.verify(true)
			for _, p := range rep.Changed {
				t.Log(p)
			}
			for _, p := range rep.Foreign {
				t.Log(p.What)
			}
			if rep.OK || len(rep.Chain) != 0 || len(rep.Topic.Problems) != 0 {
				t.Fatalf("ok=%v chain %v topic %v", rep.OK, rep.Chain, rep.Topic.Problems)
			}
			tc.check(t, e, rep, arg)
		})
	}
}

func TestRetentionIsNotTampering(t *testing.T) {
	e, l := sealed(t)
	before := e.count("SELECT count() FROM {db}.events FINAL")
	enf, err := retention.New(retention.Config{Tier1: retention.Age{N: 30, Unit: 'd'}, Tier2: retention.Age{N: 1, Unit: 'y'},
		Tier3: retention.Age{N: 7, Unit: 'y'}, Tier1FullFields: retention.Age{N: 7, Unit: 'd'}, Schedule: "off"},
		e.conn, e.db, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		retention.WithLedger(l))
	if err != nil {
		t.Fatal(err)
	}
	run, err := enf.Enforce(e.ctx, false, "test")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, a := range run.Actions {
		kinds[a.Kind] = true
	}
	if !kinds[retention.ActionDrop] || !kinds[retention.ActionStrip] || run.Deleted == 0 || run.Stripped == 0 {
		t.Fatalf("retention did %+v; the test needs a drop and a strip", run)
	}
	if after := e.count("SELECT count() FROM {db}.events FINAL"); after != before-run.Deleted {
		t.Fatalf("%d rows before, %d after, retention deleted %d", before, after, run.Deleted)
	}
	// New events after retention are sealed on top.
	e.fill(1200, 1300)
	e.commit(1300)
	e.seal(l)
	rep := e.verify(true)
	if !rep.OK || rep.Retention == 0 {
		t.Fatalf("after retention: ok=%v retention entries %d chain %v changed %v", rep.OK, rep.Retention, rep.Chain, rep.Changed)
	}
	// Retention does not launder: a row changed after the run is found.
	e.exec("ALTER TABLE {db}.events UPDATE rationale = 'x' WHERE event_id = 'ev-0-1202' SETTINGS mutations_sync = 2")
	if rep := e.verify(false); rep.OK || len(rep.Changed) != 1 || rep.Changed[0].Altered != 1 {
		t.Fatalf("after tampering: %v", rep.Changed)
	}
}

func TestRetentionDoesNotLaunderEarlierTampering(t *testing.T) {
	e, l := sealed(t)
	// Deleted before retention runs over the same range (a tier 3 event
	// retention keeps): the retention entry records what it found, and
	// verify compares that with the seal.
	e.exec("ALTER TABLE {db}.events DELETE WHERE event_id = 'ev-1-22' SETTINGS mutations_sync = 2")
	enf, err := retention.New(retention.Config{Tier1: retention.Age{N: 30, Unit: 'd'}, Tier2: retention.Age{N: 1, Unit: 'y'},
		Tier3: retention.Age{N: 7, Unit: 'y'}, Tier1FullFields: retention.Age{N: 7, Unit: 'd'}, Schedule: "off"},
		e.conn, e.db, nil, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), retention.WithLedger(l))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enf.Enforce(e.ctx, false, "test"); err != nil {
		t.Fatal(err)
	}
	rep := e.verify(true)
	p := e.only(rep)
	if rep.OK || p.Partition != 1 || p.From != 0 || !strings.Contains(p.Note, "changed before retention run") {
		t.Fatalf("got %s", p)
	}
}

func TestLedgerTamperingBreaksTheChain(t *testing.T) {
	t.Run("edit an entry", func(t *testing.T) {
		e, _ := sealed(t)
		e.exec("ALTER TABLE {db}.ledger UPDATE body = replaceOne(body, '\"rows\":', '\"rows\":1') WHERE seq = 1 SETTINGS mutations_sync = 2")
		rep := e.verify(false)
		if rep.OK || len(rep.Chain) == 0 || rep.Chain[0].Seq != 1 || !strings.Contains(rep.Chain[0].What, "does not match its contents") {
			t.Fatalf("chain %v", rep.Chain)
		}
		// The topic's copy is intact: verify names the difference and
		// checks the events against the sound copy.
		rep = e.verify(true)
		if rep.OK || len(rep.Topic.Problems) != 1 || rep.Topic.Problems[0].Seq != 1 || len(rep.Changed) != 0 {
			t.Fatalf("topic %v changed %v", rep.Topic.Problems, rep.Changed)
		}
	})
	t.Run("delete an entry", func(t *testing.T) {
		e, l := sealed(t)
		e.fill(1200, 1300)
		e.commit(1300)
		e.seal(l) // seq 3
		e.exec("ALTER TABLE {db}.ledger DELETE WHERE seq = 2 SETTINGS mutations_sync = 2")
		rep := e.verify(false)
		if rep.OK || len(rep.Chain) == 0 || rep.Chain[0].Seq != 2 || !strings.Contains(rep.Chain[0].What, "entry 2 is missing") {
			t.Fatalf("chain %v", rep.Chain)
		}
		rep = e.verify(true)
		if rep.OK || len(rep.Topic.Problems) != 1 || rep.Topic.Problems[0].Seq != 2 || !strings.Contains(rep.Topic.Problems[0].What, "not in the table") {
			t.Fatalf("topic %v", rep.Topic.Problems)
		}
	})
}

var errCrash = errors.New("crash")

func TestSealerRestartContinuesTheChain(t *testing.T) {
	e := newEnv(t)
	crash := false
	l := e.ledger(ledger.WithHook(func(point string) error {
		if crash && point == "committed" {
			return errCrash
		}
		return nil
	}))
	e.fill(0, 300)
	e.commit(300)
	e.seal(l)
	e.fill(300, 600)
	e.commit(600)
	crash = true
	if _, err := l.Seal(e.ctx); !errors.Is(err, errCrash) {
		t.Fatalf("seal with a crash after the topic: %v", err)
	}
	if n := e.count("SELECT count() FROM {db}.ledger"); n != 1 {
		t.Fatalf("the table holds %d entries after the crash, want 1", n)
	}
	_ = l.Close(e.ctx)
	// A new process: it completes entry 2 from the topic, then seals on.
	l2 := e.ledger()
	e.fill(600, 900)
	e.commit(900)
	if res := e.seal(l2); res.Entries != 1 || l2.Head() != 3 {
		t.Fatalf("after restart: %+v, head %d", res, l2.Head())
	}
	rows, err := e.conn.Query(e.ctx, "SELECT seq FROM "+e.db+".ledger ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for rows.Next() {
		var s uint64
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, s)
	}
	rows.Close()
	if fmt.Sprint(seqs) != "[1 2 3]" {
		t.Fatalf("table seqs %v", seqs)
	}
	rep := e.verify(true)
	if !rep.OK || rep.Topic.Entries != 3 || rep.Rows != 3*stored(900) {
		t.Fatalf("ok=%v topic %+v rows %d chain %v changed %v", rep.OK, rep.Topic, rep.Rows, rep.Chain, rep.Changed)
	}
}

func TestSealsNeedTheKey(t *testing.T) {
	e := newEnv(t)
	deps := ledger.Deps{Kafka: e.kc, Conn: e.conn, Database: e.db, Group: group}
	if _, err := ledger.New(ledger.Config{}, deps, nil, slog.Default()); err == nil || !strings.Contains(err.Error(), "no signing key") {
		t.Fatalf("New without a key: %v", err)
	}
	cfg := ledger.Config{Enabled: true}
	cfg.Defaults()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "private_key") {
		t.Fatalf("enabled without a key: %v", err)
	}
	t.Setenv("AGENTRAIL_TEST_LEDGER_KEY", "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXZhbHVl\n-----END PRIVATE KEY-----\n")
	_, err := (&ledger.Config{PrivateKeyEnv: "AGENTRAIL_TEST_LEDGER_KEY"}).PrivateKey()
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0") || !strings.Contains(err.Error(), "AGENTRAIL_TEST_LEDGER_KEY") {
		t.Fatalf("bad key: %v", err)
	}
}

// A retention run in another process (its own Ledger) takes over as the
// writer; the sealer, fenced, re-reads the head and goes on: one chain.
func TestTwoWritersDoNotFork(t *testing.T) {
	e, sealer := sealed(t)
	other := e.ledger()
	enf, err := retention.New(retention.Config{Tier1: retention.Age{N: 30, Unit: 'd'}, Tier2: retention.Age{N: 1, Unit: 'y'},
		Tier3: retention.Age{N: 7, Unit: 'y'}, Tier1FullFields: retention.Age{N: 7, Unit: 'd'}, Schedule: "off"},
		e.conn, e.db, nil, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), retention.WithLedger(other))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enf.Enforce(e.ctx, false, "test"); err != nil {
		t.Fatal(err)
	}
	retHead := other.Head()
	e.fill(1200, 1400)
	e.commit(1400)
	if res := e.seal(sealer); res.Entries != 1 || sealer.Head() != retHead+1 || retHead < 3 {
		t.Fatalf("sealer after the other writer: %+v head %d, the other's head %d", res, sealer.Head(), retHead)
	}
	n := e.count("SELECT count() FROM {db}.ledger")
	distinct := e.count("SELECT uniqExact(seq) FROM {db}.ledger")
	if n != sealer.Head() || distinct != n {
		t.Fatalf("table holds %d entries (%d seqs), head %d", n, distinct, sealer.Head())
	}
	if rep := e.verify(true); !rep.OK || rep.Topic.Entries != int(n) {
		t.Fatalf("ok=%v topic %+v chain %v changed %v", rep.OK, rep.Topic, rep.Chain, rep.Changed)
	}
}
