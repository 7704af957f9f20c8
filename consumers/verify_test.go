package consumers

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers/redact"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

func testSigner(t testing.TB, agent, kid, alg string, material []byte) *signing.Signer {
	t.Helper()
	s, err := signing.NewSigner(agent, kid, alg, material)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sign adds s's signature headers to each record.
func sign(s *signing.Signer, recs []*kgo.Record) []*kgo.Record {
	for _, r := range recs {
		r.Headers = append(r.Headers,
			kgo.RecordHeader{Key: signing.HeaderKeyID, Value: []byte(s.KeyID())},
			kgo.RecordHeader{Key: signing.HeaderSignature, Value: s.AppendSign(nil, r.Value)})
	}
	return recs
}

// eventsOf returns the four events of trace i with event times ending at
// end, all of agent-(i%7).
func eventsOf(i int, end time.Time) []*schemas.Event { return traceEvents(i, end) }

func edKey(s *signing.Signer, extra string) string {
	return fmt.Sprintf("      - {id: %s, alg: ed25519, public_key: %s%s}\n", s.KeyID(), signing.EncodePublicKey(s.PublicKey()), extra)
}

func writeRegistry(t testing.TB, path string, agents map[string]string) {
	t.Helper()
	ids := make([]string, 0, len(agents))
	for id := range agents {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	b.WriteString("agents:\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "  - id: %s\n    team: finance\n    owner: o@acme.test\n    keys:\n%s", id, agents[id])
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // as editors and ConfigMaps do
		t.Fatal(err)
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// TestSignaturesEndToEnd sends genuine events signed with ed25519 and HMAC
// keys and one forged record of each kind through a real broker into a
// real ClickHouse: genuine events are stored with the key that signed them,
// every forged one is quarantined with its reason, and none reaches events.
func TestSignaturesEndToEnd(t *testing.T) {
	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter)
	chCfg, conn := testenv.ClickHouse(t)
	now := time.Now().UTC()
	dir := t.TempDir()

	secret := bytes.Repeat([]byte("s"), 32)
	secretFile := filepath.Join(dir, "agent-1.secret")
	if err := os.WriteFile(secretFile, []byte(base64.StdEncoding.EncodeToString(secret)), 0o600); err != nil {
		t.Fatal(err)
	}
	a0 := testSigner(t, "agent-0", "agent-0-ed", signing.Ed25519, bytes.Repeat([]byte{0}, 32))
	a1 := testSigner(t, "agent-1", "agent-1-hmac", signing.HMACSHA256, secret)
	a2 := testSigner(t, "agent-2", "agent-2-ed", signing.Ed25519, bytes.Repeat([]byte{2}, 32))
	a3 := testSigner(t, "agent-3", "agent-3-old", signing.Ed25519, bytes.Repeat([]byte{3}, 32))
	a4 := testSigner(t, "agent-4", "agent-4-next", signing.Ed25519, bytes.Repeat([]byte{4}, 32))
	rogue := testSigner(t, "agent-0", "rogue-1", signing.Ed25519, bytes.Repeat([]byte{9}, 32))
	reg := filepath.Join(dir, "registry.yaml")
	writeRegistry(t, reg, map[string]string{
		"agent-0": edKey(a0, ""),
		"agent-1": fmt.Sprintf("      - {id: agent-1-hmac, alg: hmac-sha256, secret_file: %s}\n", secretFile),
		"agent-2": edKey(a2, ""),
		"agent-3": edKey(a3, ", not_after: "+now.Add(-time.Hour).Format(time.RFC3339)),
		"agent-4": edKey(a4, ", not_before: "+now.Add(time.Hour).Format(time.RFC3339)),
	})

	// Genuine: traces 0, 1, 2 (agents 0, 1, 2), each trace's four events.
	var recs []*kgo.Record
	genuine := map[string]string{} // event id -> key id
	for i, s := range []*signing.Signer{a0, a1, a2} {
		evs := eventsOf(i, now)
		for _, e := range evs {
			genuine[e.EventID] = s.KeyID()
		}
		recs = append(recs, sign(s, encodeAll(t, kc.Topics.Events, evs))...)
	}

	// Forged: one record of each kind, each an event of its own.
	forgedEvent := func(i int) *schemas.Event { return eventsOf(100+i, now)[0] } // agent-(100+i)%7
	type forgery struct {
		rec    *kgo.Record
		reason signing.Reason
		keyID  string
	}
	var forged []forgery
	// unsigned: agent-2's event without headers.
	unsigned := forgedEvent(4) // 104%7 = agent-6? use explicit agent below
	unsigned.Agent.ID = "agent-2"
	forged = append(forged, forgery{encodeAll(t, kc.Topics.Events, []*schemas.Event{unsigned})[0], signing.Unsigned, ""})
	// bad_signature: agent-0's event, signed, then altered (another target)
	// with the signature kept.
	altered := forgedEvent(0)
	altered.Agent.ID = "agent-0"
	orig := sign(a0, encodeAll(t, kc.Topics.Events, []*schemas.Event{altered}))[0]
	altered.Intent.Target = "order:someone-elses"
	tampered := encodeAll(t, kc.Topics.Events, []*schemas.Event{altered})[0]
	tampered.Headers = orig.Headers
	forged = append(forged, forgery{tampered, signing.BadSignature, "agent-0-ed"})
	// identity_mismatch: agent-2 signs an event claiming to be agent-0,
	// reusing a genuine event's id.
	imp := eventsOf(0, now)[1]
	imp.Decision.Outcome = schemas.OutcomeAllow
	forged = append(forged, forgery{sign(a2, encodeAll(t, kc.Topics.Events, []*schemas.Event{imp}))[0], signing.IdentityMismatch, "agent-2-ed"})
	// unknown_key: a key nobody registered, claiming agent-0.
	unk := forgedEvent(1)
	unk.Agent.ID = "agent-0"
	forged = append(forged, forgery{sign(rogue, encodeAll(t, kc.Topics.Events, []*schemas.Event{unk}))[0], signing.UnknownKey, "rogue-1"})
	// key_expired and key_not_yet_valid: agents 3 and 4 with keys outside
	// their validity at the event's time.
	exp := forgedEvent(2)
	exp.Agent.ID = "agent-3"
	forged = append(forged, forgery{sign(a3, encodeAll(t, kc.Topics.Events, []*schemas.Event{exp}))[0], signing.KeyExpired, "agent-3-old"})
	early := forgedEvent(3)
	early.Agent.ID = "agent-4"
	forged = append(forged, forgery{sign(a4, encodeAll(t, kc.Topics.Events, []*schemas.Event{early}))[0], signing.KeyNotYetValid, "agent-4-next"})
	// A signature header without its key id.
	half := forgedEvent(5)
	half.Agent.ID = "agent-1"
	hrec := sign(a1, encodeAll(t, kc.Topics.Events, []*schemas.Event{half}))[0]
	hrec.Headers = hrec.Headers[1:]
	forged = append(forged, forgery{hrec, signing.BadSignature, ""})

	for _, f := range forged {
		recs = append(recs, f.rec)
	}
	produce(t, addr, recs)

	cfg := Config{Kafka: kafkacfg.Config{Brokers: []string{addr}}, ClickHouse: chCfg,
		Signatures: SignatureConfig{RegistryFile: reg, DisableWatch: true}}
	cfg.Defaults()
	cfg.Ingest.BatchRows = 5
	cfg.Ingest.BatchInterval = 50 * time.Millisecond
	preg := prometheus.NewRegistry()
	stop := startIngest(t, cfg, preg)
	db := chCfg.Database
	testenv.Eventually(t, 60*time.Second, "every record accounted for", func() (bool, error) {
		n := count(t, conn, "SELECT count() FROM "+db+".v_events")
		q := count(t, conn, "SELECT count() FROM "+db+".v_quarantine")
		return n == uint64(len(genuine)) && q == uint64(len(forged)), fmt.Errorf("events %d/%d, quarantined %d/%d", n, len(genuine), q, len(forged))
	})
	stop()

	// Genuine events carry the key that signed them.
	rows, err := conn.Query(context.Background(), "SELECT event_id, signer_key_id, outcome FROM "+db+".v_events")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, kid, outcome string
		if err := rows.Scan(&id, &kid, &outcome); err != nil {
			t.Fatal(err)
		}
		if genuine[id] != kid {
			t.Errorf("event %s: signer_key_id %q, want %q", id, kid, genuine[id])
		}
		if id == imp.EventID && outcome != string(schemas.OutcomeRequireApproval) {
			t.Errorf("the impersonating copy of %s replaced the genuine one (outcome %s)", id, outcome)
		}
	}
	rows.Close()

	// Each forgery is quarantined at its position with its reason.
	for i, f := range forged {
		var reason, kid, detail, agent, sum string
		var size uint32
		err := conn.QueryRow(context.Background(), "SELECT reason, key_id, detail, agent_id, raw_sha256, raw_bytes FROM "+db+".v_quarantine WHERE partition = ? AND offset = ?",
			f.rec.Partition, f.rec.Offset).Scan(&reason, &kid, &detail, &agent, &sum, &size)
		if err != nil {
			t.Fatalf("forgery %d (%s): %v", i, f.reason, err)
		}
		if reason != string(f.reason) || kid != f.keyID || detail == "" || int(size) != len(f.rec.Value) || len(sum) != 64 {
			t.Errorf("forgery %d: reason %q key %q detail %q size %d, want reason %q key %q", i, reason, kid, detail, size, f.reason, f.keyID)
		}
	}
	// None of them is in events, not even the one reusing a genuine id.
	if n := count(t, conn, "SELECT count() FROM "+db+".events WHERE signer_key_id = '' OR signer_key_id IN ('rogue-1', 'agent-3-old', 'agent-4-next') OR (event_id = '"+imp.EventID+"' AND outcome = 'allow')"); n != 0 {
		t.Errorf("%d forged or unsigned rows in events", n)
	}
	want := map[signing.Reason]float64{signing.Unsigned: 1, signing.BadSignature: 2, signing.IdentityMismatch: 1, signing.UnknownKey: 1, signing.KeyExpired: 1, signing.KeyNotYetValid: 1}
	for r, w := range want {
		if got := metricValue(t, preg, "agentrail_ingest_quarantined_total", string(r)); got != w {
			t.Errorf("agentrail_ingest_quarantined_total{reason=%q} = %v, want %v", r, got, w)
		}
	}
	if got := metricValue(t, preg, "agentrail_ingest_records_total", "quarantined"); got != float64(len(forged)) {
		t.Errorf("records_total{quarantined} = %v, want %d", got, len(forged))
	}
}

// TestKeyRotationInFlight rotates an agent's key while ingest runs: the
// registry gains the new key and retires the old one. Events the old key
// signed before the rotation and delivered after it are stored; so are the
// new key's; an event the old key signed after its retirement is
// quarantined as key_expired. Nothing else is lost.
func TestKeyRotationInFlight(t *testing.T) {
	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter)
	chCfg, conn := testenv.ClickHouse(t)
	now := time.Now().UTC().Truncate(time.Second)
	rotation := now.Add(-10 * time.Minute)
	oldKey := testSigner(t, "agent-0", "agent-0-2026a", signing.Ed25519, bytes.Repeat([]byte{1}, 32))
	newKey := testSigner(t, "agent-0", "agent-0-2026b", signing.Ed25519, bytes.Repeat([]byte{2}, 32))
	reg := filepath.Join(t.TempDir(), "registry.yaml")
	writeRegistry(t, reg, map[string]string{"agent-0": edKey(oldKey, ", not_before: "+now.Add(-24*time.Hour).Format(time.RFC3339))})

	cfg := Config{Kafka: kafkacfg.Config{Brokers: []string{addr}}, ClickHouse: chCfg, Signatures: SignatureConfig{RegistryFile: reg}}
	cfg.Defaults()
	cfg.Ingest.BatchInterval = 50 * time.Millisecond
	preg := prometheus.NewRegistry()
	startIngest(t, cfg, preg)
	db := chCfg.Database

	// Traces of agent-0 are those i with i%7 == 0.
	batchOf := func(from, n int, end time.Time, s *signing.Signer) ([]*kgo.Record, int) {
		var recs []*kgo.Record
		for i := from; i < from+7*n; i += 7 {
			recs = append(recs, sign(s, encodeAll(t, kc.Topics.Events, eventsOf(i, end)))...)
		}
		return recs, len(recs)
	}
	before, n1 := batchOf(0, 20, rotation.Add(-20*time.Minute), oldKey)
	produce(t, addr, before)
	testenv.Eventually(t, 60*time.Second, "events before the rotation", func() (bool, error) {
		n := count(t, conn, "SELECT count() FROM "+db+".v_events")
		return n == uint64(n1), fmt.Errorf("%d/%d", n, n1)
	})

	// The rotation: the new key valid from shortly before the switch, the
	// old one retired at it.
	writeRegistry(t, reg, map[string]string{"agent-0": edKey(oldKey, ", not_before: "+now.Add(-24*time.Hour).Format(time.RFC3339)+", not_after: "+rotation.Format(time.RFC3339)) +
		edKey(newKey, ", not_before: "+rotation.Add(-5*time.Minute).Format(time.RFC3339))})
	testenv.Eventually(t, 30*time.Second, "the rotated registry loaded", func() (bool, error) {
		return gaugeValue(t, preg, "agentrail_ingest_signature_keys") == 2, nil
	})

	inFlight, n2 := batchOf(1001, 20, rotation.Add(-time.Minute), oldKey) // signed before, delivered after
	after, n3 := batchOf(2002, 20, now, newKey)
	late, n4 := batchOf(3003, 2, now, oldKey) // the old key used after its retirement
	produce(t, addr, append(append(inFlight, after...), late...))
	testenv.Eventually(t, 60*time.Second, "every event accounted for", func() (bool, error) {
		n := count(t, conn, "SELECT count() FROM "+db+".v_events")
		q := count(t, conn, "SELECT count() FROM "+db+".v_quarantine")
		return n == uint64(n1+n2+n3) && q == uint64(n4), fmt.Errorf("events %d/%d, quarantined %d/%d", n, n1+n2+n3, q, n4)
	})
	if n := count(t, conn, "SELECT count() FROM "+db+".v_events WHERE signer_key_id = 'agent-0-2026a'"); n != uint64(n1+n2) {
		t.Errorf("%d events signed with the old key stored, want %d", n, n1+n2)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".v_quarantine WHERE reason = 'key_expired' AND key_id = 'agent-0-2026a'"); n != uint64(n4) {
		t.Errorf("%d late old-key events quarantined as key_expired, want %d", n, n4)
	}
}

// A registry file with mistakes stops ingest from starting, naming the
// field and line; mode off needs no registry.
func TestSignatureConfig(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "registry.yaml")
	if err := os.WriteFile(bad, []byte("agents:\n  - id: a\n    keys:\n      - {id: a-1, alg: ed25519, public_key: nope}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := newSignatures(SignatureConfig{Mode: SignaturesEnforce, RegistryFile: bad}, prometheus.NewRegistry(), quietLog())
	if err == nil || !strings.Contains(err.Error(), "registry.yaml:4: agents[0].keys[0].public_key") || !strings.Contains(err.Error(), "mode: off") {
		t.Fatalf("err = %v", err)
	}
	_, err = newSignatures(SignatureConfig{Mode: SignaturesEnforce, RegistryFile: bad + ".missing"}, prometheus.NewRegistry(), quietLog())
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := newSignatures(SignatureConfig{Mode: SignaturesOff, RegistryFile: bad + ".missing"}, prometheus.NewRegistry(), quietLog()); err != nil {
		t.Fatalf("mode off: %v", err)
	}
	for _, tc := range []struct {
		c    SignatureConfig
		want string
	}{
		{SignatureConfig{Mode: "warn"}, `signatures.mode: "warn" must be enforce or off`},
		{SignatureConfig{ClockSkew: 2 * time.Hour}, "signatures.clock_skew: 2h0m0s out of range"},
	} {
		tc.c.defaults()
		if err := tc.c.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.c, err, tc.want)
		}
	}
	var c SignatureConfig
	c.defaults()
	if c.Mode != SignaturesEnforce || c.RegistryFile != DefaultRegistryFile || c.validate() != nil {
		t.Fatalf("defaults: %+v", c)
	}
}

// TestPrepareVerifiesFirst holds prepare to the contract's order: the
// signature over the exact bytes first, decoding only after. A record whose
// signature does not verify is quarantined whatever its bytes are, its
// value withheld when it is not a valid event; a record whose signature
// verifies and whose content is bad is the agent's own, dead-lettered.
func TestPrepareVerifiesFirst(t *testing.T) {
	dir := t.TempDir()
	s := testSigner(t, "agent-0", "agent-0-ed", signing.Ed25519, bytes.Repeat([]byte{0}, 32))
	reg := filepath.Join(dir, "registry.yaml")
	writeRegistry(t, reg, map[string]string{"agent-0": edKey(s, "")})
	now := time.Now().UTC()
	ts := now.Add(-time.Minute).Truncate(time.Millisecond)
	const secret = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"

	valid := traceEvents(0, now)[0] // agent-0
	valid.Intent.Rationale = "repo key " + secret
	invalid := traceEvents(0, now)[0]
	invalid.TraceID = "not-a-trace"
	invalid.Intent.Rationale = "repo key " + secret
	enc := func(e *schemas.Event) []byte { return encodeAll(t, "events", []*schemas.Event{e})[0].Value }
	signed := func(v []byte) *kgo.Record {
		return sign(s, []*kgo.Record{{Topic: "events", Value: v, Timestamp: ts}})[0]
	}
	// resigned returns a record carrying orig's signature headers over
	// other bytes: altered after signing.
	altered := func(orig *kgo.Record, v []byte) *kgo.Record {
		return &kgo.Record{Topic: "events", Value: v, Headers: orig.Headers, Timestamp: ts}
	}
	good := enc(valid)
	undecodable := append([]byte(nil), good[:len(good)/2]...)

	enforce := SignatureConfig{RegistryFile: reg, DisableWatch: true}
	for _, tc := range []struct {
		name     string
		sc       SignatureConfig
		rec      *kgo.Record
		dead     string         // dead-letter class, or "" when not dead-lettered
		reason   signing.Reason // quarantine reason, or "" when genuine
		withheld bool           // the quarantined value is not kept
	}{
		{"genuine", enforce, signed(good), "", "", false},
		{"signed then altered to not decode", enforce, altered(signed(good), undecodable), "", signing.BadSignature, true},
		{"signed then altered to fail validation", enforce, altered(signed(good), enc(invalid)), "", signing.BadSignature, true},
		{"signed then altered, still valid", enforce, altered(signed(good), enc(traceEvents(7, now)[0])), "", signing.BadSignature, false},
		{"signed, content fails validation", enforce, signed(enc(invalid)), "validation", "", false},
		{"signed, content does not decode", enforce, signed(undecodable), "decode", "", false},
		{"unsigned, does not decode", enforce, &kgo.Record{Topic: "events", Value: undecodable, Timestamp: ts}, "", signing.Unsigned, true},
		{"signed with another agent's key", enforce, signed(enc(traceEvents(1, now)[0])), "", signing.IdentityMismatch, false},
		{"off, does not decode", SignatureConfig{Mode: SignaturesOff}, altered(signed(good), undecodable), "decode", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := prepareIngest(t, tc.sc)
			var a Accepted
			var reds []redact.Redaction
			var v signing.Verdict
			d, err := in.prepare(context.Background(), tc.rec, &a, &reds, &v)
			if err != nil {
				t.Fatal(err)
			}
			if d.class != tc.dead || v.Reason != tc.reason {
				t.Fatalf("dead letter %q (%v), verdict %+v; want dead letter %q, reason %q", d.class, d.err, v, tc.dead, tc.reason)
			}
			if tc.reason == "" || tc.dead != "" {
				return
			}
			if strings.Contains(fmt.Sprintf("%+v", a.Event), secret) || strings.Contains(v.Detail, secret) {
				t.Errorf("the planted secret is kept: %+v %q", a.Event, v.Detail)
			}
			if tc.withheld {
				wantAgent := v.KeyAgent
				if a.EventID != "" || a.Intent != nil || a.Agent.ID != wantAgent || !a.Time.Equal(ts) || !strings.Contains(v.Detail, "withheld") {
					t.Errorf("withheld: event %+v detail %q; want only agent %q and time %s", a.Event, v.Detail, wantAgent, ts)
				}
			} else if a.EventID == "" || a.Intent == nil {
				t.Errorf("the claim of a valid event is not kept: %+v", a.Event)
			}
		})
	}
}
