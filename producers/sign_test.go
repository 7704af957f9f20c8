package producers

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/internal/race"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// TestEmitSigned publishes events with a signer and reads them back: each
// record carries the key id and a signature that verifies over its value
// against the registry's view of the key; an event of an agent the signer
// has no key for is refused before it is buffered.
func TestEmitSigned(t *testing.T) {
	c := startBroker(t)
	secret := bytes.Repeat([]byte{7}, 32)
	keyFile := filepath.Join(t.TempDir(), "billing-bot.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	em, _ := newTestEmitter(t, c.ListenAddrs(), func(cfg *Config) {
		cfg.Signing = &signing.SignerConfig{KeyID: "billing-bot-hmac", Alg: signing.HMACSHA256, KeyFile: keyFile}
	})
	v, err := signing.NewVerifier(time.Minute, signing.Key{ID: "billing-bot-hmac", AgentID: testAgent.ID, Alg: signing.HMACSHA256, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	act := &Action{RequestedBy: "alice@acme.test"}
	if _, err := em.Intent(ctx, act, schemas.Intent{Tool: "payments", Action: "refund", Target: "charge:1", ActionClass: "refund", Tier: 3}); err != nil {
		t.Fatal(err)
	}
	must(t, em.Decision(ctx, act, schemas.Decision{Outcome: schemas.OutcomeAllow, PolicyID: "p", PolicyVersion: 1}))
	// Another agent's event: this signer cannot sign it.
	other := *act
	other.Agent = &schemas.Agent{ID: "support-bot", Team: "support"}
	err = em.Result(ctx, &other, schemas.Result{Status: schemas.ResultSuccess})
	if err == nil || !strings.Contains(err.Error(), "key billing-bot-hmac belongs to agent billing-bot, not support-bot") {
		t.Fatalf("other agent's event: %v", err)
	}
	must(t, em.Flush(ctx))
	recs := consume(t, c.ListenAddrs(), 2)
	dec, err := schemas.NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		var e schemas.Event
		if err := dec.Decode(ctx, r.Value, &e); err != nil {
			t.Fatal(err)
		}
		if vd := v.Verify(r.Headers, r.Value, e.Agent.ID, e.Time); !vd.Genuine() || vd.KeyID != "billing-bot-hmac" {
			t.Fatalf("%s record: %+v", e.Type, vd)
		}
		tampered := bytes.Clone(r.Value)
		tampered[len(tampered)-1] ^= 1
		if vd := v.Verify(r.Headers, tampered, e.Agent.ID, e.Time); vd.Reason != signing.BadSignature {
			t.Fatalf("tampered %s record: %+v", e.Type, vd)
		}
	}
	if got := value(em.m.invalid); got != 1 {
		t.Errorf("invalid errors = %v, want 1", got)
	}
}

func TestSigningConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no key source", Config{Agent: testAgent, Signing: &signing.SignerConfig{KeyID: "k", Alg: signing.Ed25519}}, "exactly one of key_file and key_env"},
		{"bad alg", Config{Agent: testAgent, Signing: &signing.SignerConfig{KeyID: "k", Alg: "rsa", KeyEnv: "K"}}, `signing.alg: "rsa"`},
		{"no agent", Config{Signing: &signing.SignerConfig{KeyID: "k", Alg: signing.Ed25519, KeyEnv: "K"}}, "agent.agent_id is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Defaults()
			if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	cfg := Config{Agent: testAgent, Signing: &signing.SignerConfig{KeyID: "k", Alg: signing.Ed25519, KeyEnv: "TEST_UNSET_SIGNING_KEY"}}
	cfg.Defaults()
	if _, err := New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "key_env: environment variable TEST_UNSET_SIGNING_KEY is not set") {
		t.Fatalf("missing key: %v", err)
	}
	t.Setenv("TEST_BAD_SIGNING_KEY", "not base64 and secret!")
	cfg.Signing.KeyEnv = "TEST_BAD_SIGNING_KEY"
	if _, err := New(cfg, nil, nil); err == nil || strings.Contains(err.Error(), "secret!") {
		t.Fatalf("bad key: %v", err)
	}
}

// A typed call allocates nothing, signed or not (the issue allows two).
func TestEmitSignedAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("under the race detector sync.Pool drops items at random, so pooled records are made anew")
	}
	c := startBroker(t)
	seed := bytes.Repeat([]byte{3}, 32)
	s, err := signing.NewSigner(testAgent.ID, "billing-bot-1", signing.Ed25519, seed)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := newTestEmitter(t, c.ListenAddrs(), func(cfg *Config) { cfg.MaxBufferedRecords = 100_000 })
	signed, _ := newTestEmitter(t, c.ListenAddrs(), func(cfg *Config) { cfg.MaxBufferedRecords = 100_000; cfg.Signer = s })
	ctx := context.Background()
	act := Action{Trace: NewTraceContext(), RequestedBy: "alice@acme.test", Tier: 2, Digest: strings.Repeat("a", 64)}
	res := schemas.Result{Status: schemas.ResultSuccess, DurationUS: 1}
	// AllocsPerRun counts the whole process's allocations, the in-process
	// broker's and franz-go's included, which come in bursts: the least of
	// a few measurements is the emit's own.
	allocs := func(em *Emitter) float64 {
		least := math.Inf(1)
		for range 5 {
			for range 100 { // warm the pools
				must(t, em.Result(ctx, &act, res))
			}
			must(t, em.Flush(ctx))
			least = min(least, testing.AllocsPerRun(200, func() {
				if err := em.Result(ctx, &act, res); err != nil && !errors.Is(err, ErrBufferFull) {
					t.Fatal(err)
				}
			}))
		}
		return least
	}
	a0, a1 := allocs(plain), allocs(signed)
	t.Logf("allocations per emit: unsigned %v, signed %v", a0, a1)
	if a0 != 0 || a1 != 0 {
		t.Errorf("allocations per emit: unsigned %v, signed %v; want none", a0, a1)
	}
}
