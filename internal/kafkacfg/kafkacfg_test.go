package kafkacfg

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/testenv"
)

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		mut  func(c *Config)
		want string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no port", func(c *Config) { c.Brokers = []string{"kafka"} }, "kafka.brokers[0]"},
		{"bad mechanism", func(c *Config) { c.SASL = &SASL{Mechanism: "GSSAPI", Username: "u", PasswordEnv: "P"} }, "kafka.sasl.mechanism"},
		{"no user", func(c *Config) { c.SASL = &SASL{Mechanism: "PLAIN", PasswordEnv: "P"} }, "kafka.sasl.username"},
		{"no password source", func(c *Config) { c.SASL = &SASL{Mechanism: "PLAIN", Username: "u"} }, "password_file or password_env"},
		{"cert without key", func(c *Config) { c.TLS = &TLSConfig{CertFile: "c.pem"} }, "cert_file and key_file"},
		{"scram", func(c *Config) { c.SASL = &SASL{Mechanism: "SCRAM-SHA-512", Username: "u", PasswordFile: "/p"} }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			c.Defaults()
			tc.mut(&c)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestMissingSecretNamesTheSource(t *testing.T) {
	c := Config{SASL: &SASL{Mechanism: "PLAIN", Username: "u", PasswordEnv: "AGENTRAIL_TEST_UNSET_VAR"}}
	c.Defaults()
	if _, err := c.Opts(); err == nil || !strings.Contains(err.Error(), "AGENTRAIL_TEST_UNSET_VAR is not set") {
		t.Fatalf("err = %v", err)
	}
}

// TestTLSAndSCRAM connects through Opts to a real Kafka-protocol broker
// (kfake) that requires TLS and SASL/SCRAM-SHA-512, produces and consumes.
func TestTLSAndSCRAM(t *testing.T) {
	dir := t.TempDir()
	serverTLS, caFile := testenv.SelfSignedTLS(t, dir)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(serverTLS), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", "agentrail", "s3cret"), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Brokers: c.ListenAddrs(), TLS: &TLSConfig{CAFile: caFile, ServerName: "localhost"},
		SASL: &SASL{Mechanism: "SCRAM-SHA-512", Username: "agentrail", PasswordFile: pw}}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	opts, err := cfg.Opts()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics("t"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("hello")}).FirstErr(); err != nil {
		t.Fatalf("produce over TLS+SCRAM: %v", err)
	}
	fs := cl.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		t.Fatal(err)
	}
	if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "hello" {
		t.Fatalf("consumed %v", recs)
	}

	// The wrong password is refused.
	if err := os.WriteFile(pw, []byte("wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad, _ := cfg.Opts()
	cl2, err := kgo.NewClient(append(bad, kgo.RequestRetries(0))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := cl2.Ping(sctx); err == nil {
		t.Fatal("ping with the wrong password succeeded")
	}
}
