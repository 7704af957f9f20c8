package registry

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/signing"
)

const pubA = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="
const pubB = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="

func withKeys(keys string) string {
	return strings.Replace(valid, "    grants:\n", "    keys:\n"+keys+"    grants:\n", 1)
}

func TestValidateKeys(t *testing.T) {
	y := withKeys(`      - {id: k1, alg: ed25519, public_key: ` + pubA + `}
      - {id: k1, alg: hmac-sha256}
      - {id: k3, alg: ed25519, public_key: short, not_before: 2026-02-01T00:00:00Z, not_after: 2026-01-01T00:00:00Z}
`)
	r, err := Parse([]byte(y), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	err = r.Validate()
	for _, w := range []string{
		`r.yaml:13: agents[0].keys[1].secret_file: hmac-sha256 keys need secret_file or secret_env`,
		`r.yaml:13: agents[0].keys[1].id: key id "k1" is already used at agents[0].keys[0]`,
		`r.yaml:14: agents[0].keys[2].public_key: is not base64`,
		`r.yaml:14: agents[0].keys[2].not_after: 2026-01-01T00:00:00Z is not after not_before 2026-02-01T00:00:00Z`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
	if _, err := Parse([]byte(withKeys("      - {id: k1, alg: hmac-sha256, secret: hunter2}\n")), "r.yaml"); err == nil ||
		!strings.Contains(err.Error(), "field secret not found") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("inline secret: %v", err)
	}
}

// Keys are versioned like grants: a rotation adds the new key, then closes
// the old one; what was registered at any instant stays answerable, and no
// secret is stored.
func TestApplyKeys(t *testing.T) {
	ctx := context.Background()
	cfg, conn := testenv.ClickHouse(t)
	db := cfg.Database
	t1 := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	t2 := t1.Add(30 * 24 * time.Hour)
	t3 := t2.Add(7 * 24 * time.Hour)
	v1 := withKeys("      - {id: inv-2026a, alg: ed25519, public_key: " + pubA + ", not_before: 2026-01-01T00:00:00Z}\n")
	v2 := withKeys("      - {id: inv-2026a, alg: ed25519, public_key: " + pubA + ", not_before: 2026-01-01T00:00:00Z, not_after: 2026-10-08T00:00:00Z}\n" +
		"      - {id: inv-2026b, alg: ed25519, public_key: " + pubB + ", not_before: 2026-10-01T00:00:00Z}\n" +
		"      - {id: inv-hmac, alg: hmac-sha256, secret_env: INV_HMAC_SECRET}\n")
	v3 := withKeys("      - {id: inv-2026b, alg: ed25519, public_key: " + pubB + ", not_before: 2026-10-01T00:00:00Z}\n" +
		"      - {id: inv-hmac, alg: hmac-sha256, secret_env: INV_HMAC_SECRET}\n")
	s1, err := Apply(ctx, conn, db, mustParse(t, v1), ApplyOptions{AsOf: t1})
	if err != nil {
		t.Fatal(err)
	}
	if s1.Keys != 1 || !strings.Contains(strings.Join(s1.Added, ";"), "key finance-invoice-bot-01 inv-2026a") {
		t.Fatalf("first apply: %+v", s1)
	}
	s2, err := Apply(ctx, conn, db, mustParse(t, v2), ApplyOptions{AsOf: t2})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Keys != 3 || strings.Join(s2.Change, ";") != "key finance-invoice-bot-01 inv-2026a" ||
		strings.Join(s2.Added, ";") != "key finance-invoice-bot-01 inv-2026b;key finance-invoice-bot-01 inv-hmac" {
		t.Fatalf("rotation apply: %+v", s2)
	}
	s3, err := Apply(ctx, conn, db, mustParse(t, v3), ApplyOptions{AsOf: t3})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s3.Revoked, ";") != "key finance-invoice-bot-01 inv-2026a" || s3.Keys != 2 {
		t.Fatalf("retire apply: %+v", s3)
	}
	at := func(ts time.Time) string {
		ks, err := KeysAt(ctx, conn, db, ts)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range ks {
			na := "open"
			if k.NotAfter != nil {
				na = k.NotAfter.Format("2006-01-02")
			}
			out = append(out, k.KeyID+"/"+k.Alg+"/"+na+"/"+k.SecretSource)
		}
		return strings.Join(out, ",")
	}
	if got := at(t1); got != "inv-2026a/ed25519/open/" {
		t.Errorf("at v1: %q", got)
	}
	if got := at(t2); got != "inv-2026a/ed25519/2026-10-08/,inv-2026b/ed25519/open/,inv-hmac/hmac-sha256/open/env:INV_HMAC_SECRET" {
		t.Errorf("at v2: %q", got)
	}
	if got := at(t3); got != "inv-2026b/ed25519/open/,inv-hmac/hmac-sha256/open/env:INV_HMAC_SECRET" {
		t.Errorf("at v3: %q", got)
	}
}

// The example registry carries every simulated agent's demo key, as
// `agentrail registry keygen --demo` writes it, so the demo's events verify.
func TestDeploymentRegistryHasDemoKeys(t *testing.T) {
	r, err := Load("../../deployments/registry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range r.Agents {
		s := simulate.DemoSigner(a.ID)
		if len(a.Keys) != 1 || a.Keys[0].ID != s.KeyID() || a.Keys[0].PublicKey != signing.EncodePublicKey(s.PublicKey()) ||
			!a.Keys[0].NotBefore.Equal(simulate.DemoKeyNotBefore) {
			t.Errorf("agent %s: keys %+v, want its demo key %s", a.ID, a.Keys, s.KeyID())
		}
	}
}
