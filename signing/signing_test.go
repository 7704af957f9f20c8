package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/race"
)

var t0 = time.Date(2026, 11, 16, 9, 30, 0, 0, time.UTC)

func seed(b byte) []byte { return bytes.Repeat([]byte{b}, ed25519.SeedSize) }

func mustSigner(t testing.TB, agent, kid, alg string, material []byte) *Signer {
	t.Helper()
	s, err := NewSigner(agent, kid, alg, material)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// keyOf is the registry's view of a signer's key.
func keyOf(s *Signer, secret []byte, nb, na time.Time) Key {
	return Key{ID: s.KeyID(), AgentID: s.AgentID(), Alg: s.Alg(), Public: s.PublicKey(), Secret: secret, NotBefore: nb, NotAfter: na}
}

func headers(s *Signer, value []byte) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: "traceparent", Value: []byte("x")},
		{Key: HeaderKeyID, Value: s.KeyIDHeader()},
		{Key: HeaderSignature, Value: s.AppendSign(nil, value)},
	}
}

func TestVerify(t *testing.T) {
	secret := bytes.Repeat([]byte("k"), 32)
	edA := mustSigner(t, "billing-bot", "billing-bot-1", Ed25519, seed(1))
	edB := mustSigner(t, "support-bot", "support-bot-1", Ed25519, seed(2))
	hm := mustSigner(t, "data-bot", "data-bot-hmac", HMACSHA256, secret)
	// Rotation: billing-bot's old key ends at t0, the new one began an hour
	// before, so both are valid for an hour.
	oldKey := mustSigner(t, "billing-bot", "billing-bot-0", Ed25519, seed(3))
	newKey := mustSigner(t, "billing-bot", "billing-bot-2", Ed25519, seed(4))
	// A rogue key with the id of a registered one.
	rogue := mustSigner(t, "billing-bot", "billing-bot-1", Ed25519, seed(9))
	rogueHMAC := mustSigner(t, "data-bot", "data-bot-hmac", HMACSHA256, bytes.Repeat([]byte("x"), 32))

	v, err := NewVerifier(time.Minute,
		keyOf(edA, nil, time.Time{}, time.Time{}),
		keyOf(edB, nil, time.Time{}, time.Time{}),
		keyOf(hm, secret, t0.Add(-24*time.Hour), t0.Add(24*time.Hour)),
		keyOf(oldKey, nil, t0.Add(-30*24*time.Hour), t0),
		keyOf(newKey, nil, t0.Add(-time.Hour), time.Time{}),
	)
	if err != nil {
		t.Fatal(err)
	}
	value := []byte("\xc3\x01fingerprint-and-avro-datum")
	tampered := bytes.Clone(value)
	tampered[len(tampered)-1] ^= 1

	cases := []struct {
		name   string
		hs     []kgo.RecordHeader
		value  []byte
		agent  string
		at     time.Time
		reason Reason
		kid    string
		detail string
	}{
		{"ed25519 genuine", headers(edA, value), value, "billing-bot", t0, "", "billing-bot-1", ""},
		{"hmac genuine", headers(hm, value), value, "data-bot", t0, "", "data-bot-hmac", ""},
		{"no headers", []kgo.RecordHeader{{Key: "traceparent", Value: []byte("x")}}, value, "billing-bot", t0, Unsigned, "", "no agentrail.sig.kid"},
		{"nil headers", nil, value, "billing-bot", t0, Unsigned, "", ""},
		{"signature without key id", headers(edA, value)[2:], value, "billing-bot", t0, BadSignature, "", "without agentrail.sig.kid"},
		{"key id without signature", headers(edA, value)[:2], value, "billing-bot", t0, BadSignature, "", "without agentrail.sig"},
		{"signature twice", append(headers(edA, value), kgo.RecordHeader{Key: HeaderSignature, Value: []byte{1}}), value, "billing-bot", t0, BadSignature, "", "more than once"},
		{"empty signature", []kgo.RecordHeader{{Key: HeaderKeyID, Value: []byte("billing-bot-1")}, {Key: HeaderSignature}}, value, "billing-bot", t0, BadSignature, "", "0 bytes"},
		{"garbage key id", []kgo.RecordHeader{{Key: HeaderKeyID, Value: []byte("a b\x00")}, {Key: HeaderSignature, Value: []byte{1}}}, value, "billing-bot", t0, BadSignature, "", "not a key id"},
		{"unknown key", headers(mustSigner(t, "billing-bot", "stolen-7", Ed25519, seed(5)), value), value, "billing-bot", t0, UnknownKey, "stolen-7", "not in the registry"},
		{"tampered byte ed25519", headers(edA, value), tampered, "billing-bot", t0, BadSignature, "billing-bot-1", "does not match"},
		{"tampered byte hmac", headers(hm, value), tampered, "data-bot", t0, BadSignature, "data-bot-hmac", "does not match"},
		{"rogue key under a registered id", headers(rogue, value), value, "billing-bot", t0, BadSignature, "billing-bot-1", ""},
		{"wrong hmac secret", headers(rogueHMAC, value), value, "data-bot", t0, BadSignature, "data-bot-hmac", ""},
		{"hmac signature truncated", []kgo.RecordHeader{{Key: HeaderKeyID, Value: []byte("data-bot-hmac")}, {Key: HeaderSignature, Value: hm.AppendSign(nil, value)[:31]}}, value, "data-bot", t0, BadSignature, "data-bot-hmac", ""},
		{"another agent's key", headers(edB, value), value, "billing-bot", t0, IdentityMismatch, "support-bot-1", "of agent support-bot, the event claims agent billing-bot"},
		{"hmac not yet valid", headers(hm, value), value, "data-bot", t0.Add(-25 * time.Hour), KeyNotYetValid, "data-bot-hmac", "before key data-bot-hmac's not_before"},
		{"hmac expired", headers(hm, value), value, "data-bot", t0.Add(25 * time.Hour), KeyExpired, "data-bot-hmac", "after key"},
		{"within skew after not_after", headers(oldKey, value), value, "billing-bot", t0.Add(59 * time.Second), "", "billing-bot-0", ""},
		{"beyond skew after not_after", headers(oldKey, value), value, "billing-bot", t0.Add(61 * time.Second), KeyExpired, "billing-bot-0", ""},
		{"within skew before not_before", headers(newKey, value), value, "billing-bot", t0.Add(-time.Hour - 59*time.Second), "", "billing-bot-2", ""},
		// In flight during a rotation: both keys pass in the overlap.
		{"rotation: old key in the overlap", headers(oldKey, value), value, "billing-bot", t0.Add(-time.Minute), "", "billing-bot-0", ""},
		{"rotation: new key in the overlap", headers(newKey, value), value, "billing-bot", t0.Add(-time.Minute), "", "billing-bot-2", ""},
		{"rotation: old key after the overlap", headers(oldKey, value), value, "billing-bot", t0.Add(time.Hour), KeyExpired, "billing-bot-0", ""},
		{"rotation: new key after the overlap", headers(newKey, value), value, "billing-bot", t0.Add(time.Hour), "", "billing-bot-2", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := v.Verify(tc.hs, tc.value, tc.agent, tc.at)
			if got.Reason != tc.reason || got.KeyID != tc.kid || !strings.Contains(got.Detail, tc.detail) {
				t.Fatalf("got %+v, want reason %q key %q detail containing %q", got, tc.reason, tc.kid, tc.detail)
			}
			if got.Genuine() != (tc.reason == "") {
				t.Fatalf("Genuine() = %v for %+v", got.Genuine(), got)
			}
		})
	}
	if n, a := v.Keys(); n != 5 || a != 3 {
		t.Fatalf("Keys() = %d keys of %d agents, want 5 of 3", n, a)
	}
}

func TestSignerRefusesAnotherAgent(t *testing.T) {
	s := mustSigner(t, "a", "a-1", Ed25519, seed(1))
	if _, err := s.SignerFor("b"); err == nil || !strings.Contains(err.Error(), "belongs to agent a, not b") {
		t.Fatalf("err = %v", err)
	}
	kr := NewKeyring(s, mustSigner(t, "b", "b-1", HMACSHA256, bytes.Repeat([]byte{7}, 40)))
	if got, err := kr.SignerFor("b"); err != nil || got.KeyID() != "b-1" {
		t.Fatalf("keyring b: %v %v", got, err)
	}
	if _, err := kr.SignerFor("c"); err == nil || !strings.Contains(err.Error(), "no key for agent c") {
		t.Fatalf("keyring c: %v", err)
	}
}

func TestNewSignerErrors(t *testing.T) {
	for _, tc := range []struct {
		name, agent, kid, alg string
		material              []byte
		want                  string
	}{
		{"bad kid", "a", "has space", Ed25519, seed(1), "key id"},
		{"no agent", "", "k", Ed25519, seed(1), "agent id is empty"},
		{"short seed", "a", "k", Ed25519, seed(1)[:31], "31 bytes"},
		{"short secret", "a", "k", HMACSHA256, []byte("short"), "5 bytes, at least 32"},
		{"unknown alg", "a", "k", "rsa", seed(1), `alg "rsa"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSigner(tc.agent, tc.kid, tc.alg, tc.material)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// Signing allocates nothing when dst has room: the producer's hot path.
func TestAppendSignAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("under -race, sync.Pool drops items at random")
	}
	value := bytes.Repeat([]byte{1}, 600)
	for _, s := range []*Signer{
		mustSigner(t, "a", "a-1", Ed25519, seed(1)),
		mustSigner(t, "a", "a-2", HMACSHA256, bytes.Repeat([]byte{2}, 32)),
	} {
		buf := make([]byte, 0, MaxSignatureSize)
		s.AppendSign(buf, value) // warm the pool
		if n := testing.AllocsPerRun(100, func() { buf = s.AppendSign(buf[:0], value) }); n != 0 {
			t.Errorf("%s: %v allocations per signature", s.Alg(), n)
		}
	}
}

const registryYAML = `teams:
  - name: finance
agents:
  - id: billing-bot
    team: finance
    owner: a@b.c
    keys:
      - id: billing-bot-1
        alg: ed25519
        public_key: %s
        not_before: 2026-01-01T00:00:00Z
        not_after: 2027-01-01T00:00:00Z
      - {id: billing-bot-hmac, alg: hmac-sha256, secret_env: TEST_SIGNING_SECRET}
    grants: []
  - id: no-keys-bot
    team: finance
`

func TestLoadRegistry(t *testing.T) {
	s := mustSigner(t, "billing-bot", "billing-bot-1", Ed25519, seed(1))
	dir := t.TempDir()
	p := filepath.Join(dir, "registry.yaml")
	if err := os.WriteFile(p, []byte(strings.Replace(registryYAML, "%s", EncodePublicKey(s.PublicKey()), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	secret := bytes.Repeat([]byte{9}, 32)
	t.Setenv("TEST_SIGNING_SECRET", base64.StdEncoding.EncodeToString(secret))
	v, err := LoadRegistry(p, DefaultSkew)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(v.KeyIDs(), ","); got != "billing-bot-1,billing-bot-hmac" {
		t.Fatalf("keys %s", got)
	}
	value := []byte("value")
	if vd := v.Verify(headers(s, value), value, "billing-bot", time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)); !vd.Genuine() {
		t.Fatalf("ed25519 key from the file: %+v", vd)
	}
	if vd := v.Verify(headers(s, value), value, "billing-bot", time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)); vd.Reason != KeyExpired {
		t.Fatalf("not_after from the file: %+v", vd)
	}
	h := mustSigner(t, "billing-bot", "billing-bot-hmac", HMACSHA256, secret)
	if vd := v.Verify(headers(h, value), value, "billing-bot", t0); !vd.Genuine() {
		t.Fatalf("hmac key from the environment: %+v", vd)
	}

	// The secret's environment variable missing: the error names it, and
	// never a value.
	os.Unsetenv("TEST_SIGNING_SECRET")
	if _, err := LoadRegistry(p, DefaultSkew); err == nil || !strings.Contains(err.Error(), "agents[0].keys[1] (key billing-bot-hmac): secret_env: environment variable TEST_SIGNING_SECRET is not set") {
		t.Fatalf("err = %v", err)
	}
	t.Setenv("TEST_SIGNING_SECRET", base64.StdEncoding.EncodeToString([]byte("too short, and secret")))
	_, err = LoadRegistry(p, DefaultSkew)
	if err == nil || !strings.Contains(err.Error(), "secret: is 21 bytes, at least 32") || strings.Contains(err.Error(), "too short") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseRegistryKeysErrors(t *testing.T) {
	pub := EncodePublicKey(mustSigner(t, "a", "a-1", Ed25519, seed(1)).PublicKey())
	cases := []struct{ name, yaml, want string }{
		{"unknown field", "agents:\n  - id: a\n    keys:\n      - id: a-1\n        alg: ed25519\n        public_key: " + pub + "\n        privat_key: x\n",
			"r.yaml:7: agents[0].keys[0].privat_key: unknown field"},
		{"secret inline", "agents:\n  - id: a\n    keys:\n      - {id: a-1, alg: hmac-sha256, secret: hunter2hunter2}\n",
			"r.yaml:4: agents[0].keys[0].secret: unknown field"},
		{"bad alg", "agents:\n  - id: a\n    keys:\n      - id: a-1\n        alg: rsa\n", "r.yaml:5: agents[0].keys[0].alg: \"rsa\" must be ed25519 or hmac-sha256"},
		{"short public key", "agents:\n  - id: a\n    keys:\n      - id: a-1\n        alg: ed25519\n        public_key: AAAA\n", "r.yaml:6: agents[0].keys[0].public_key: is 3 bytes"},
		{"not base64", "agents:\n  - id: a\n    keys:\n      - {id: a-1, alg: ed25519, public_key: '!!!'}\n", "agents[0].keys[0].public_key: is not base64"},
		{"hmac without secret", "agents:\n  - id: a\n    keys:\n      - {id: a-1, alg: hmac-sha256}\n", "agents[0].keys[0].secret_file: hmac-sha256 keys need secret_file or secret_env"},
		{"hmac with both", "agents:\n  - id: a\n    keys:\n      - {id: a-1, alg: hmac-sha256, secret_file: /x, secret_env: X}\n", "secret_env: set secret_file or secret_env, not both"},
		{"ed25519 with secret", "agents:\n  - id: a\n    keys:\n      - {id: a-1, alg: ed25519, public_key: " + pub + ", secret_env: X}\n", "the private key stays with the agent"},
		{"bad validity", "agents:\n  - id: a\n    keys:\n      - {id: a-1, alg: ed25519, public_key: " + pub + ", not_before: 2026-02-01T00:00:00Z, not_after: 2026-01-01T00:00:00Z}\n",
			"agents[0].keys[0].not_after: 2026-01-01T00:00:00Z is not after not_before"},
		{"bad time", "agents:\n  - id: a\n    keys:\n      - {id: a-1, alg: ed25519, public_key: " + pub + ", not_before: tomorrow}\n", "r.yaml:4: agents[0].keys[0]"},
		{"duplicate id", "agents:\n  - id: a\n    keys:\n      - {id: k, alg: ed25519, public_key: " + pub + "}\n  - id: b\n    keys:\n      - {id: k, alg: ed25519, public_key: " + pub + "}\n",
			"r.yaml:7: agents[1].keys[0].id: key id \"k\" is already used at agents[0].keys[0]"},
		{"keys not a list", "agents:\n  - id: a\n    keys: {id: k}\n", "r.yaml:3: agents[0].keys: must be a list"},
		{"no agents", "teams: []\n", "no agents list"},
		{"bad key id", "agents:\n  - id: a\n    keys:\n      - {id: 'a b', alg: ed25519, public_key: " + pub + "}\n", "agents[0].keys[0].id: \"a b\" must match"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRegistryKeys([]byte(tc.yaml), "r.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error echoes a secret: %v", err)
			}
		})
	}
}

func TestReadMaterial(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pemFile := filepath.Join(dir, "k.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadMaterial(pemFile, "", "key")
	if err != nil || !bytes.Equal(got, priv.Seed()) {
		t.Fatalf("PEM: %x %v", got, err)
	}
	b64File := filepath.Join(dir, "k.b64")
	if err := os.WriteFile(b64File, []byte(base64.StdEncoding.EncodeToString(priv.Seed())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadMaterial(b64File, "", "key"); err != nil || !bytes.Equal(got, priv.Seed()) {
		t.Fatalf("base64 file: %x %v", got, err)
	}
	t.Setenv("TEST_KEY", base64.RawURLEncoding.EncodeToString(priv.Seed()))
	if got, err := ReadMaterial("", "TEST_KEY", "key"); err != nil || !bytes.Equal(got, priv.Seed()) {
		t.Fatalf("env: %x %v", got, err)
	}
	t.Setenv("TEST_KEY", "s3cr3t value!")
	if _, err := ReadMaterial("", "TEST_KEY", "key"); err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "key_env TEST_KEY: not base64") {
		t.Fatalf("err = %v", err)
	}
	if _, err := ReadMaterial(filepath.Join(dir, "missing"), "", "key"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	s, err := LoadSigner("a", SignerConfig{KeyID: "a-1", Alg: Ed25519, KeyFile: pemFile})
	if err != nil || !bytes.Equal(s.PublicKey(), priv.Public().(ed25519.PublicKey)) {
		t.Fatalf("LoadSigner: %v", err)
	}
	if _, err := LoadSigner("a", SignerConfig{KeyID: "a-1", Alg: Ed25519}); err == nil || !strings.Contains(err.Error(), "exactly one of key_file and key_env") {
		t.Fatalf("LoadSigner without a source: %v", err)
	}
}

// The vectors of schemas/README.md, computed independently with Python
// (cryptography 48 for ed25519, hashlib for HMAC), for SDKs in other
// languages to test against.
func TestSignatureVectors(t *testing.T) {
	value, _ := hex.DecodeString("c30100000000000000006167656e747261696c207465737420766563746f72")
	ed := mustSigner(t, "a", "a-1", Ed25519, bytes.Repeat([]byte{1}, 32))
	if got := EncodePublicKey(ed.PublicKey()); got != "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=" {
		t.Errorf("ed25519 public key %s", got)
	}
	if got := hex.EncodeToString(ed.AppendSign(nil, value)); got != "4313d054d62c5e587fa8293af92066ef014813e18ec3069c161431daeb8cafedb9492e9b1a6bbafb09cd2d0feb0f5070702c1a2f56403f7086c2bbe939fc6b04" {
		t.Errorf("ed25519 signature %s", got)
	}
	hm := mustSigner(t, "a", "a-2", HMACSHA256, bytes.Repeat([]byte("k"), 32))
	if got := hex.EncodeToString(hm.AppendSign(nil, value)); got != "efea05ba19edd3b5249d21432f86dfdc534223de6059fb2f549d5b3f43b81faf" {
		t.Errorf("hmac-sha256 signature %s", got)
	}
}

// VerifySignature decides on the bytes alone, before any decoding; the
// claims the decoded event makes are VerifyClaims', and Verify is the two.
func TestVerifySignatureThenClaims(t *testing.T) {
	s := mustSigner(t, "billing-bot", "billing-bot-1", Ed25519, seed(1))
	v, err := NewVerifier(time.Minute, keyOf(s, seed(1), t0.Add(-time.Hour), t0.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	value := []byte("any bytes at all: nothing here is decoded")
	hs := headers(s, value)
	signed := v.VerifySignature(hs, value)
	if !signed.Genuine() || signed.KeyID != "billing-bot-1" || signed.KeyAgent != "billing-bot" {
		t.Fatalf("VerifySignature = %+v", signed)
	}
	altered := append([]byte(nil), value...)
	altered[0] ^= 1
	if vd := v.VerifySignature(hs, altered); vd.Reason != BadSignature || vd.KeyAgent != "billing-bot" {
		t.Errorf("altered: %+v", vd)
	}
	for _, tc := range []struct {
		agent string
		at    time.Time
		want  Reason
	}{
		{"billing-bot", t0, ""},
		{"support-bot", t0, IdentityMismatch},
		{"billing-bot", t0.Add(2 * time.Hour), KeyExpired},
		{"billing-bot", t0.Add(-2 * time.Hour), KeyNotYetValid},
	} {
		if got := v.VerifyClaims(signed, tc.agent, tc.at); got.Reason != tc.want || got.KeyID != "billing-bot-1" {
			t.Errorf("VerifyClaims(%s, %s) = %+v, want %q", tc.agent, tc.at, got, tc.want)
		}
		if got := v.Verify(hs, value, tc.agent, tc.at); got.Reason != tc.want {
			t.Errorf("Verify(%s, %s) = %+v, want %q", tc.agent, tc.at, got, tc.want)
		}
	}
	// A verdict that did not verify stays what it is.
	bad := Verdict{Reason: BadSignature, KeyID: "billing-bot-1", Detail: "x"}
	if got := v.VerifyClaims(bad, "billing-bot", t0); got != bad {
		t.Errorf("VerifyClaims(bad) = %+v", got)
	}
}
