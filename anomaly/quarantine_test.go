package anomaly

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// TestQuarantineAlertsThroughIngest runs signature enforcement and the
// anomaly stage inside the real ingest: genuine events are stored; each
// kind of forgery is quarantined and raises one high-severity alert per
// claimed agent, reason and hour, on v_alerts and the alerts topic; an
// alert grows (new version, not a new alert) when its group gets more
// events in a later batch; recomputing an alert gives the same id and
// version, so a redone batch changes nothing.
func TestQuarantineAlertsThroughIngest(t *testing.T) {
	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter, "agentrail.alerts")
	kc.Brokers = []string{addr}
	chCfg, conn := testenv.ClickHouse(t)
	db := chCfg.Database

	signer := func(agent, kid string, b byte) *signing.Signer {
		s, err := signing.NewSigner(agent, kid, signing.Ed25519, bytes.Repeat([]byte{b}, 32))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	kA, kB, rogue := signer("billing-bot", "billing-bot-1", 1), signer("support-bot", "support-bot-1", 2), signer("billing-bot", "billing-bot-9", 3)
	reg := filepath.Join(t.TempDir(), "registry.yaml")
	yaml := fmt.Sprintf("agents:\n  - id: billing-bot\n    keys:\n      - {id: billing-bot-1, alg: ed25519, public_key: %s}\n"+
		"  - id: support-bot\n    keys:\n      - {id: support-bot-1, alg: ed25519, public_key: %s}\n",
		signing.EncodePublicKey(kA.PublicKey()), signing.EncodePublicKey(kB.PublicKey()))
	if err := os.WriteFile(reg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}

	preg := prometheus.NewRegistry()
	p, err := New(Config{}, conn, db, preg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	icfg := consumers.Config{Kafka: kc, ClickHouse: chCfg, Signatures: consumers.SignatureConfig{RegistryFile: reg, DisableWatch: true}}
	in, err := consumers.New(ctx, icfg, prometheus.NewRegistry(), quiet, consumers.WithProcessors(p))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := in.Run(ctx); err != nil {
			t.Errorf("ingest: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = in.Close(context.Background())
	})

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	enc := schemas.NewSingleObjectEncoder()
	record := func(e *schemas.Event, s *signing.Signer) *kgo.Record {
		v, err := enc.AppendEncode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		r := &kgo.Record{Topic: kc.Topics.Events, Key: []byte(e.TraceID), Value: v}
		if s != nil {
			r.Headers = []kgo.RecordHeader{{Key: signing.HeaderKeyID, Value: []byte(s.KeyID())}, {Key: signing.HeaderSignature, Value: s.AppendSign(nil, v)}}
		}
		return r
	}
	produce := func(recs ...*kgo.Record) {
		t.Helper()
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// All in one hour of event time, ten minutes into the previous hour.
	base := time.Now().UTC().Truncate(time.Hour).Add(-50 * time.Minute)
	var b evb
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	genuine := []*kgo.Record{
		record(b.intent("billing-bot", "finance", at(1), "ledger", "read", "GL-1", 1, "read"), kA),
		record(b.intent("support-bot", "support", at(2), "tickets", "read", "SUP-1", 1, "read"), kB),
	}
	unsigned1 := b.intent("billing-bot", "finance", at(3), "payments", "refund", "ch_1", 3, "refund")
	unsigned2 := b.intent("billing-bot", "finance", at(4), "payments", "refund", "ch_2", 3, "refund")
	impostor := b.intent("billing-bot", "finance", at(5), "payments", "refund", "ch_3", 3, "refund") // signed by support-bot
	unknown := b.intent("billing-bot", "finance", at(6), "payments", "refund", "ch_4", 3, "refund")  // a key not registered
	altered := b.intent("billing-bot", "finance", at(7), "payments", "refund", "ch_5", 3, "refund")
	alteredRec := record(altered, kA)
	altered.Intent.Target = "ch_666"
	tampered := record(altered, nil)
	tampered.Headers = alteredRec.Headers
	produce(append(genuine, record(unsigned1, nil), record(unsigned2, nil), record(impostor, kB), record(unknown, rogue), tampered)...)

	sigAlerts := func() map[string]Alert {
		out := map[string]Alert{}
		for _, a := range tableAlerts(t, conn, db) {
			if a.Rule == QuarantineRule {
				out[a.GroupKey] = a
			}
		}
		return out
	}
	testenv.Eventually(t, 60*time.Second, "four signature alerts", func() (bool, error) {
		return len(sigAlerts()) == 4, fmt.Errorf("%d alerts", len(sigAlerts()))
	})
	// A later batch: one more unsigned event of the same agent and hour
	// updates its alert.
	unsigned3 := b.intent("billing-bot", "finance", at(8), "payments", "refund", "ch_6", 3, "refund")
	produce(record(unsigned3, nil))
	testenv.Eventually(t, 60*time.Second, "the unsigned alert at version 3", func() (bool, error) {
		a := sigAlerts()["agent=billing-bot, reason=unsigned"]
		return a.Version == 3, fmt.Errorf("version %d", a.Version)
	})

	alerts := sigAlerts()
	want := map[string]struct {
		version uint64
		ids     []string
		summary string
	}{
		"agent=billing-bot, reason=unsigned":          {3, []string{unsigned1.EventID, unsigned2.EventID, unsigned3.EventID}, "3 events claiming agent billing-bot quarantined: not signed"},
		"agent=billing-bot, reason=identity_mismatch": {1, []string{impostor.EventID}, "signed with another agent's key (key support-bot-1)"},
		"agent=billing-bot, reason=unknown_key":       {1, []string{unknown.EventID}, "not in the registry (key billing-bot-9)"},
		"agent=billing-bot, reason=bad_signature":     {1, []string{altered.EventID}, "forged or altered"},
	}
	for key, w := range want {
		a, ok := alerts[key]
		if !ok {
			t.Errorf("no alert %s", key)
			continue
		}
		if a.Version != w.version || !slices.Equal(a.EventIDs, w.ids) || !strings.Contains(a.Summary, w.summary) ||
			a.Severity != "high" || a.Team != "finance" || a.AgentID != "billing-bot" || !a.WindowStart.Equal(base.Truncate(time.Hour)) {
			t.Errorf("alert %s: %+v", key, a)
		}
	}
	// Alerts raised, not updates: four.
	if got := counterSum(t, preg, "agentrail_alerts_total", map[string]string{"rule": QuarantineRule, "severity": "high"}); got != 4 {
		t.Errorf("agentrail_alerts_total{rule=%s} = %v, want 4", QuarantineRule, got)
	}
	onTopic := topicAlerts(t, addr, len(tableAlerts(t, conn, db)))
	for _, a := range alerts {
		if got, ok := onTopic[a.ID]; !ok || got.Version != a.Version {
			t.Errorf("alert %s v%d: on the topic %v v%d", a.GroupKey, a.Version, ok, got.Version)
		}
	}
	// The genuine events are stored, the forged ones are not.
	var stored []string
	rows, err := conn.Query(context.Background(), "SELECT event_id FROM "+db+".v_events ORDER BY event_id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, id)
	}
	rows.Close()
	if len(stored) != 2 {
		t.Errorf("v_events holds %v, want the two genuine events", stored)
	}

	// Redo: a fresh stage given the last batch again computes the same
	// alert, same id and version, and does not call it new.
	p2, err := New(Config{}, conn, db, prometheus.NewRegistry(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	var part int32
	var off int64
	if err := conn.QueryRow(context.Background(), "SELECT partition, offset FROM "+db+".v_quarantine WHERE event_id = ?", unsigned3.EventID).Scan(&part, &off); err != nil {
		t.Fatal(err)
	}
	redo := &consumers.Batch{Quarantined: []consumers.Quarantined{{Event: *unsigned3, Topic: kc.Topics.Events, Partition: part, Offset: off,
		Verdict: signing.Verdict{Reason: signing.Unsigned}}}, FirstOffset: map[int32]int64{part: off}}
	again, isNew, err := p2.quarantineAlerts(context.Background(), redo)
	if err != nil {
		t.Fatal(err)
	}
	prev := alerts["agent=billing-bot, reason=unsigned"]
	if len(again) != 1 || again[0].ID != prev.ID || again[0].Version != prev.Version || isNew[prev.ID] {
		t.Fatalf("redo: %+v new=%v, stored %s v%d", again, isNew, prev.ID, prev.Version)
	}
}
