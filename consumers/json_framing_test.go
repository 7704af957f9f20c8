package consumers_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// TestJSONFramingSignedByPython: records of the JSON framing (first byte
// '{', the event's exact JSON bytes), signed by an independent producer
// (anomaly/testdata/sign_publish.py: Python's `cryptography` and
// librdkafka) with the same two headers as Avro records, go through the
// real ingest into the real ClickHouse:
//
//	a. a validly signed JSON event is stored, with its key;
//	b. one altered after signing (still a valid event) and
//	c. one altered so it no longer decodes are quarantined as
//	   bad_signature;
//	d. a validly signed JSON event that fails validation is dead-lettered
//	   as validation, naming the field.
func TestJSONFramingSignedByPython(t *testing.T) {
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import cryptography, confluent_kafka").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("%s cannot import cryptography, confluent_kafka (apt-get install python3-cryptography python3-confluent-kafka): %v\n%s", python, err, out)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter)
	kc.Brokers = []string{addr}
	chCfg, conn := testenv.ClickHouse(t)
	db := chCfg.Database
	bg := context.Background()

	seed := bytes.Repeat([]byte{3}, ed25519.SeedSize)
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	reg := filepath.Join(t.TempDir(), "registry.yaml")
	if err := os.WriteFile(reg, []byte("agents:\n  - id: billing-bot\n    team: finance\n    keys:\n      - {id: billing-bot-1, alg: ed25519, public_key: "+signing.EncodePublicKey(pub)+"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lines, err := os.ReadFile(filepath.Join("..", "schemas", "testdata", "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	event := func(id string, mutate func(*schemas.Event)) []byte {
		e, err := schemas.ParseJSON(bytes.SplitN(lines, []byte("\n"), 2)[0])
		if err != nil {
			t.Fatal(err)
		}
		e.EventID, e.TraceID = id, fmt.Sprintf("%032x", 0xfeed0000+len(id)*7+int(id[len(id)-1]))
		e.Time = time.Now().UTC().Add(-time.Minute).Truncate(time.Microsecond)
		if mutate != nil {
			mutate(e)
		}
		b, err := schemas.AppendJSON(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := event("json-a", nil)
	origB := event("json-b", nil)
	alteredB := bytes.Replace(origB, []byte(`"120.00"`), []byte(`"920.00"`), 1)
	origC := event("json-c", nil)
	undecodable := append(bytes.Clone(origC[:len(origC)-1]), ',')
	invalidD := event("json-d", func(e *schemas.Event) { e.Intent.ActionDigest = "not-a-digest" })
	type rec struct {
		KeyID   string `json:"key_id"`
		Alg     string `json:"alg"`
		KeyHex  string `json:"key_hex"`
		SignHex string `json:"sign_hex"`
		SendHex string `json:"send_hex"`
		Key     string `json:"key"`
	}
	mk := func(sign, send []byte) rec {
		return rec{KeyID: "billing-bot-1", Alg: "ed25519", KeyHex: hex.EncodeToString(seed), SignHex: hex.EncodeToString(sign), SendHex: hex.EncodeToString(send), Key: "k"}
	}
	records := []rec{mk(good, good), mk(origB, alteredB), mk(origC, undecodable), mk(invalidD, invalidD)}
	if bytes.Equal(alteredB, origB) {
		t.Fatal("the alteration did not change the value")
	}

	ctx, cancel := context.WithCancel(bg)
	icfg := consumers.Config{Kafka: kc, ClickHouse: chCfg, Signatures: consumers.SignatureConfig{RegistryFile: reg, DisableWatch: true}}
	icfg.Defaults()
	icfg.Ingest.BatchInterval = 50 * time.Millisecond
	in, err := consumers.New(ctx, icfg, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
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

	req, _ := json.Marshal(map[string]any{"brokers": addr, "topic": kc.Topics.Events, "records": records})
	cmd := exec.Command(python, filepath.Join("..", "anomaly", "testdata", "sign_publish.py"))
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sign_publish.py: %v\n%s", err, stderr.String())
	}
	type pos struct {
		Partition int32 `json:"partition"`
		Offset    int64 `json:"offset"`
	}
	var ps []pos
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var p pos
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("sign_publish.py printed %q", l)
		}
		ps = append(ps, p)
	}
	if len(ps) != len(records) {
		t.Fatalf("%d of %d records delivered", len(ps), len(records))
	}
	count := func(q string) uint64 {
		var n uint64
		if err := conn.QueryRow(bg, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	testenv.Eventually(t, time.Minute, "every record accounted for", func() (bool, error) {
		n := count("SELECT count() FROM " + db + ".v_events")
		q := count("SELECT count() FROM " + db + ".v_quarantine")
		d := count("SELECT count() FROM " + db + ".dead_letters FINAL")
		return n == 1 && q == 2 && d == 1, fmt.Errorf("events %d/1, quarantined %d/2, dead letters %d/1", n, q, d)
	})
	var id, kid string
	if err := conn.QueryRow(bg, "SELECT event_id, signer_key_id FROM "+db+".v_events").Scan(&id, &kid); err != nil || id != "json-a" || kid != "billing-bot-1" {
		t.Errorf("stored %q signed by %q (%v)", id, kid, err)
	}
	for _, i := range []int{1, 2} {
		var reason string
		if err := conn.QueryRow(bg, "SELECT reason FROM "+db+".v_quarantine WHERE partition = ? AND offset = ?", ps[i].Partition, ps[i].Offset).Scan(&reason); err != nil || reason != string(signing.BadSignature) {
			t.Errorf("record %d: quarantined as %q (%v), want bad_signature", i, reason, err)
		}
	}
	var class, field string
	if err := conn.QueryRow(bg, "SELECT reason_class, field FROM "+db+".dead_letters FINAL WHERE partition = ? AND offset = ?", ps[3].Partition, ps[3].Offset).Scan(&class, &field); err != nil ||
		class != "validation" || field != "intent.action_digest" {
		t.Errorf("record 3: dead letter %q field %q (%v), want validation of intent.action_digest", class, field, err)
	}
}
