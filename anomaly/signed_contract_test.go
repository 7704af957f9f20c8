package anomaly

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// debianPython is the interpreter with Debian's python3-cryptography and
// python3-confluent-kafka (.ci/run installs them).
const debianPython = "/usr/bin/python3"

// requirePython returns debianPython if it imports modules; otherwise the
// test fails under CI (CI set, as .ci/run runs) and is skipped elsewhere, naming what to
// install.
func requirePython(t *testing.T, modules ...string) string {
	t.Helper()
	out, err := exec.Command(debianPython, "-c", "import "+strings.Join(modules, ", ")).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("%s cannot import %s (apt-get install python3-cryptography python3-confluent-kafka): %v\n%s",
			debianPython, strings.Join(modules, ", "), err, out)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return debianPython
}

// pyRecord is one record for testdata/sign_publish.py: signed over sign,
// sent as send.
type pyRecord struct {
	KeyID   string `json:"key_id"`
	Alg     string `json:"alg"`
	KeyHex  string `json:"key_hex"`
	SignHex string `json:"sign_hex"`
	SendHex string `json:"send_hex"`
	Key     string `json:"key"`
}

type kafkaPos struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// TestSignedByAnIndependentProducer speaks the signing contract
// (signing/doc.go) from the other end: a Python producer signs with the
// `cryptography` package and the standard library's hmac, sets the headers
// and publishes through librdkafka to the real broker, and the real ingest
// with the anomaly stage writes to the real ClickHouse. The signature is
// checked before anything is decoded:
//
//	a. validly signed records (ed25519 and hmac-sha256) are stored;
//	b. a record signed, then altered so it no longer decodes, and
//	c. one signed, then altered so it decodes but fails validation, are
//	   quarantined as bad_signature with their high-severity alert, their
//	   values withheld, and nothing of them is dead-lettered;
//	d. a validly signed record whose content fails validation is the
//	   agent's own bad event: dead-lettered as validation, not quarantined.
//
// A secret planted in every value reaches no table of ClickHouse.
func TestSignedByAnIndependentProducer(t *testing.T) {
	python := requirePython(t, "cryptography", "confluent_kafka")
	script, err := filepath.Abs("testdata/sign_publish.py")
	if err != nil {
		t.Fatal(err)
	}
	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter, "agentrail.alerts")
	kc.Brokers = []string{addr}
	chCfg, conn := testenv.ClickHouse(t)
	db := chCfg.Database
	bg := context.Background()

	// The keys: billing-bot signs with ed25519, support-bot with HMAC.
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	hmacSecret := bytes.Repeat([]byte{0x5a}, 32)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "support-bot.secret")
	if err := os.WriteFile(secretFile, []byte(base64.StdEncoding.EncodeToString(hmacSecret)), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := filepath.Join(dir, "registry.yaml")
	if err := os.WriteFile(reg, []byte(fmt.Sprintf("agents:\n"+
		"  - id: billing-bot\n    team: finance\n    keys:\n      - {id: billing-bot-1, alg: ed25519, public_key: %s}\n"+
		"  - id: support-bot\n    team: support\n    keys:\n      - {id: support-bot-h, alg: hmac-sha256, secret_file: %s}\n",
		signing.EncodePublicKey(pub), secretFile)), 0o644); err != nil {
		t.Fatal(err)
	}

	// The payloads, encoded by our encoder; the signatures are Python's.
	const secret = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789" // a GitHub token: the detectors redact it
	now := time.Now().UTC()
	var b evb
	withSecret := func(e *schemas.Event) *schemas.Event {
		e.Intent.Rationale = "deploy key " + secret
		return e
	}
	enc := schemas.NewSingleObjectEncoder()
	encode := func(e *schemas.Event) []byte {
		v, err := enc.AppendEncode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(v, []byte(secret)) {
			t.Fatal("the planted secret is not in the value")
		}
		return v
	}
	dec, err := schemas.NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	validity := func(v []byte) error {
		var e schemas.Event
		return dec.DecodeValid(bg, v, &e, time.Now(), schemas.DefaultLimits)
	}

	storedEd := withSecret(b.intent("billing-bot", "finance", now.Add(-3*time.Minute), "payments", "refund", "ch_1", 3, "refund"))
	storedMAC := withSecret(b.intent("support-bot", "support", now.Add(-3*time.Minute), "tickets", "read", "SUP-1", 1, "read"))
	// b: the first byte of the datum (event_id's length) set to zig-zag
	// -1, a negative length: the value no longer decodes.
	orig := encode(withSecret(b.intent("billing-bot", "finance", now.Add(-2*time.Minute), "payments", "refund", "ch_2", 3, "refund")))
	undecodable := append([]byte(nil), orig...)
	undecodable[10] = 0x01
	if err := validity(undecodable); !errors.Is(err, schemas.ErrMalformed) {
		t.Fatalf("altered value (b) decodes: %v", err)
	}
	// c: the same event with another trace id, which validation refuses.
	alteredEv := withSecret(b.intent("billing-bot", "finance", now.Add(-2*time.Minute), "payments", "refund", "ch_3", 3, "refund"))
	origC := encode(alteredEv)
	alteredEv.TraceID = "not-a-trace"
	invalidC := encode(alteredEv)
	var verr *schemas.ValidationError
	if err := validity(invalidC); !errors.As(err, &verr) {
		t.Fatalf("altered value (c) is valid: %v", err)
	}
	// d: billing-bot signs an event that fails validation.
	badEv := withSecret(b.intent("billing-bot", "finance", now.Add(-time.Minute), "payments", "refund", "ch_4", 3, "refund"))
	badEv.TraceID = "also-not-a-trace"
	invalidD := encode(badEv)
	if err := validity(invalidD); !errors.As(err, &verr) {
		t.Fatalf("value (d) is valid: %v", err)
	}

	edRec := func(sign, send []byte) pyRecord {
		return pyRecord{KeyID: "billing-bot-1", Alg: "ed25519", KeyHex: hex.EncodeToString(seed), SignHex: hex.EncodeToString(sign), SendHex: hex.EncodeToString(send)}
	}
	vEd, vMAC := encode(storedEd), encode(storedMAC)
	records := []pyRecord{
		edRec(vEd, vEd),
		{KeyID: "support-bot-h", Alg: "hmac-sha256", KeyHex: hex.EncodeToString(hmacSecret), SignHex: hex.EncodeToString(vMAC), SendHex: hex.EncodeToString(vMAC)},
		edRec(orig, undecodable),
		edRec(origC, invalidC),
		edRec(invalidD, invalidD),
	}

	preg := prometheus.NewRegistry()
	p, err := New(Config{}, conn, db, preg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	icfg := consumers.Config{Kafka: kc, ClickHouse: chCfg, Signatures: consumers.SignatureConfig{RegistryFile: reg, DisableWatch: true}}
	icfg.Defaults()
	icfg.Ingest.BatchInterval = 50 * time.Millisecond
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

	// Python signs and publishes.
	req, _ := json.Marshal(map[string]any{"brokers": addr, "topic": kc.Topics.Events, "records": records})
	pctx, pcancel := context.WithTimeout(bg, time.Minute)
	defer pcancel()
	cmd := exec.CommandContext(pctx, python, script)
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sign_publish.py: %v\n%s", err, stderr.String())
	}
	var pos []kafkaPos
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var kp kafkaPos
		if err := json.Unmarshal([]byte(line), &kp); err != nil {
			t.Fatalf("sign_publish.py printed %q: %v", line, err)
		}
		pos = append(pos, kp)
	}
	if len(pos) != len(records) {
		t.Fatalf("sign_publish.py delivered %d of %d records", len(pos), len(records))
	}

	count := func(query string) uint64 {
		t.Helper()
		var n uint64
		if err := conn.QueryRow(bg, query).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}
	sigAlerts := func() []Alert {
		var out []Alert
		for _, a := range tableAlerts(t, conn, db) {
			if a.Rule == QuarantineRule {
				out = append(out, a)
			}
		}
		return out
	}
	testenv.Eventually(t, 60*time.Second, "every record accounted for, and the alert", func() (bool, error) {
		n := count("SELECT count() FROM " + db + ".v_events")
		q := count("SELECT count() FROM " + db + ".v_quarantine")
		d := count("SELECT count() FROM " + db + ".dead_letters FINAL")
		var observed float64
		for _, a := range sigAlerts() {
			observed += a.Observed
		}
		return n == 2 && q == 2 && d == 1 && observed == 2, fmt.Errorf("events %d/2, quarantined %d/2, dead letters %d/1, alerted %v/2", n, q, d, observed)
	})

	// a: stored, with the key that signed each.
	for _, w := range []struct {
		id, kid string
	}{{storedEd.EventID, "billing-bot-1"}, {storedMAC.EventID, "support-bot-h"}} {
		var kid string
		if err := conn.QueryRow(bg, "SELECT signer_key_id FROM "+db+".v_events WHERE event_id = ?", w.id).Scan(&kid); err != nil || kid != w.kid {
			t.Errorf("event %s: signer_key_id %q (%v), want %q", w.id, kid, err, w.kid)
		}
	}
	// b, c: quarantined at their positions as bad_signature, values withheld.
	for i, sent := range map[int][]byte{2: undecodable, 3: invalidC} {
		var reason, kid, kagent, agent, eventID, detail, sum string
		var size uint32
		err := conn.QueryRow(bg, "SELECT reason, key_id, key_agent_id, agent_id, event_id, detail, raw_sha256, raw_bytes FROM "+db+".v_quarantine WHERE partition = ? AND offset = ?",
			pos[i].Partition, pos[i].Offset).Scan(&reason, &kid, &kagent, &agent, &eventID, &detail, &sum, &size)
		if err != nil {
			t.Fatalf("record %d not in the quarantine: %v", i, err)
		}
		want := sha256.Sum256(sent)
		if reason != string(signing.BadSignature) || kid != "billing-bot-1" || kagent != "billing-bot" || agent != "billing-bot" ||
			eventID != "" || !strings.Contains(detail, "withheld") || sum != hex.EncodeToString(want[:]) || int(size) != len(sent) {
			t.Errorf("record %d quarantined as reason %q key %q/%q agent %q event %q detail %q sha %s size %d", i, reason, kid, kagent, agent, eventID, detail, sum, size)
		}
	}
	// d: dead-lettered as validation, the only dead letter.
	var class, field string
	if err := conn.QueryRow(bg, "SELECT reason_class, field FROM "+db+".dead_letters FINAL WHERE partition = ? AND offset = ?", pos[4].Partition, pos[4].Offset).Scan(&class, &field); err != nil ||
		class != "validation" || field != "trace_id" {
		t.Errorf("record 4: dead letter %q field %q (%v), want validation of trace_id", class, field, err)
	}
	if n := count("SELECT count() FROM " + db + ".v_quarantine WHERE partition = " + fmt.Sprint(pos[4].Partition) + " AND offset = " + fmt.Sprint(pos[4].Offset)); n != 0 {
		t.Errorf("the validly signed invalid record is also quarantined")
	}
	// The alert: high severity, for billing-bot's bad signatures, on the
	// alerts topic too.
	alerts := sigAlerts()
	for _, a := range alerts {
		if a.GroupKey != "agent=billing-bot, reason=bad_signature" || a.Severity != QuarantineSeverity || a.AgentID != "billing-bot" || slices.Contains(a.EventIDs, "") {
			t.Errorf("alert %+v", a)
		}
	}
	onTopic := topicAlerts(t, addr, len(alerts))
	for _, a := range alerts {
		if got, ok := onTopic[a.ID]; !ok || got.Version != a.Version {
			t.Errorf("alert %s v%d: on the topic %v v%d", a.GroupKey, a.Version, ok, got.Version)
		}
	}

	// The planted secret: in no column of any table.
	rows, err := conn.Query(bg, "SELECT name FROM system.tables WHERE database = ? AND engine NOT LIKE '%View%'", db)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) < 5 {
		t.Fatalf("tables = %v", tables)
	}
	for _, tbl := range tables {
		q := fmt.Sprintf("SELECT count() FROM %s.%s WHERE position(formatRow('TSVRaw', *), '%s') > 0", db, tbl, secret)
		if n := count(q); n != 0 {
			t.Errorf("%s: %d rows hold the planted secret", tbl, n)
		}
	}
}
