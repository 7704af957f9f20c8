package consumers

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/consumers/redact"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// prepareIngest is an Ingest with what prepare needs (decoder, limits,
// redaction, signatures) and no Kafka or ClickHouse: the per-record path
// alone.
func prepareIngest(tb testing.TB, sc SignatureConfig) *Ingest {
	tb.Helper()
	cfg := Config{Signatures: sc}
	cfg.Defaults()
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		tb.Fatal(err)
	}
	red, err := newRedaction(cfg.Redaction, reg, quietLog())
	if err != nil {
		tb.Fatal(err)
	}
	sig, err := newSignatures(cfg.Signatures, reg, quietLog())
	if err != nil {
		tb.Fatal(err)
	}
	dec, err := schemas.NewDecoder(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &Ingest{cfg: cfg, log: quietLog(), dec: dec, now: time.Now, m: m, red: red, sig: sig,
		lim: schemas.Limits{MaxFuture: cfg.Ingest.MaxFuture, MaxPast: cfg.Ingest.MaxPast, MaxString: schemas.DefaultLimits.MaxString}}
}

// BenchmarkPrepare measures ingest's per-record work (decode, validate,
// redact, verify) on the four events of a trace, signed with each
// algorithm, and unsigned with signatures off.
func BenchmarkPrepare(b *testing.B) {
	dir := b.TempDir()
	secret := bytes.Repeat([]byte("s"), 32)
	secretFile := filepath.Join(dir, "agent-1.secret")
	if err := os.WriteFile(secretFile, []byte(base64.StdEncoding.EncodeToString(secret)), 0o600); err != nil {
		b.Fatal(err)
	}
	ed := testSigner(b, "agent-0", "agent-0-ed", signing.Ed25519, bytes.Repeat([]byte{0}, 32))
	mac := testSigner(b, "agent-1", "agent-1-hmac", signing.HMACSHA256, secret)
	reg := filepath.Join(dir, "registry.yaml")
	writeRegistry(b, reg, map[string]string{
		"agent-0": edKey(ed, ""),
		"agent-1": fmt.Sprintf("      - {id: agent-1-hmac, alg: hmac-sha256, secret_file: %s}\n", secretFile),
	})
	now := time.Now().UTC()
	for _, tc := range []struct {
		name   string
		trace  int // agent-(trace%7)
		signer *signing.Signer
		sc     SignatureConfig
	}{
		{"ed25519", 0, ed, SignatureConfig{RegistryFile: reg, DisableWatch: true}},
		{"hmac-sha256", 1, mac, SignatureConfig{RegistryFile: reg, DisableWatch: true}},
		{"off", 0, nil, SignatureConfig{Mode: SignaturesOff}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			in := prepareIngest(b, tc.sc)
			recs := encodeAll(b, "events", traceEvents(tc.trace, now))
			if tc.signer != nil {
				recs = sign(tc.signer, recs)
			}
			var a Accepted
			var reds []redact.Redaction
			var v signing.Verdict
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := recs[i%len(recs)]
				i++
				d, err := in.prepare(ctx, r, &a, &reds, &v)
				if err != nil || d.class != "" || !v.Genuine() {
					b.Fatalf("record %d: %v %s %v %+v", i, err, d.class, d.err, v)
				}
			}
		})
	}
}
