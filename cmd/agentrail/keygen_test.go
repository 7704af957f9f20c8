package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/signing"
)

// keygen writes a key only the owner can read, never over an existing file,
// and prints a registry entry that verifies what the written key signs.
func TestKeygen(t *testing.T) {
	for _, alg := range []string{signing.Ed25519, signing.HMACSHA256} {
		t.Run(alg, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "bot.key")
			nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			entry, err := keygen(alg, "bot-1", out, nb)
			if err != nil {
				t.Fatal(err)
			}
			if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("key file: %v %v", st.Mode(), err)
			}
			if _, err := keygen(alg, "bot-2", out, nb); err == nil || !strings.Contains(err.Error(), "exists") {
				t.Fatalf("overwrite: %v", err)
			}
			agents, err := signing.ParseRegistryKeys([]byte("agents:\n  - id: bot\n    keys:\n"+entry), "r.yaml")
			if err != nil {
				t.Fatalf("entry %q: %v", entry, err)
			}
			if strings.Contains(entry, mustRead(t, out)) {
				t.Fatalf("the entry holds the secret: %s", entry)
			}
			k, err := signing.Resolve("bot", agents[0].Keys[0])
			if err != nil {
				t.Fatal(err)
			}
			v, err := signing.NewVerifier(0, k)
			if err != nil {
				t.Fatal(err)
			}
			s, err := signing.LoadSigner("bot", signing.SignerConfig{KeyID: "bot-1", Alg: alg, KeyFile: out})
			if err != nil {
				t.Fatal(err)
			}
			value := []byte("value")
			hs := []kgo.RecordHeader{{Key: signing.HeaderKeyID, Value: s.KeyIDHeader()}, {Key: signing.HeaderSignature, Value: s.AppendSign(nil, value)}}
			if vd := v.Verify(hs, value, "bot", nb.Add(time.Hour)); !vd.Genuine() {
				t.Fatalf("verify: %+v", vd)
			}
			if vd := v.Verify(hs, value, "bot", nb.Add(-time.Hour)); vd.Reason != signing.KeyNotYetValid {
				t.Fatalf("before not_before: %+v", vd)
			}
		})
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// deployments/registry.yaml is what `agentrail registry keygen --demo`
// makes of it: running it again changes nothing.
func TestDemoKeysInExampleRegistry(t *testing.T) {
	orig, err := os.ReadFile("../../deployments/registry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "registry.yaml")
	if err := os.WriteFile(cp, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := writeDemoKeys(cp)
	if err != nil {
		t.Fatal(err)
	}
	if n != 35 {
		t.Errorf("%d agents got demo keys, want the fleet's 35", n)
	}
	if got, _ := os.ReadFile(cp); !bytes.Equal(got, orig) {
		t.Fatal("deployments/registry.yaml differs from what keygen --demo writes: run `agentrail registry keygen --demo deployments/registry.yaml`")
	}
}
