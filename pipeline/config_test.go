package pipeline

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The example config in deployments/ states the defaults: loading it must
// give exactly what an empty config gives.
func TestExampleConfigIsTheDefaults(t *testing.T) {
	got, err := Load("../deployments/agentrail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var want Config
	want.Defaults()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("example config differs from the defaults:\n got %+v\nwant %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown key", "kafka:\n  brokerz: [x]\n", "line 2: field brokerz not found"},
		{"wrong type", "ingest:\n  batch_rows: many\n", "line 2"},
		{"bad duration", "ingest:\n  batch_interval: soon\n", "line 2"},
		{"out of range", "ingest:\n  batch_rows: 0\n  batch_interval: 2h\n", "ingest.batch_interval"},
		{"bad broker", "kafka:\n  brokers: [localhost]\n", "kafka.brokers[0]"},
		{"bad sasl", "kafka:\n  sasl:\n    mechanism: GSSAPI\n", "kafka.sasl.mechanism"},
		{"password in file", "kafka:\n  sasl:\n    mechanism: PLAIN\n    username: u\n    password: p\n", "field password not found"},
		{"bad database", "clickhouse:\n  database: \"a-b\"\n", "clickhouse.database"},
		{"ledger without key", "ledger:\n  enabled: true\n", "ledger.private_key_file"},
		{"ledger bad public key", "ledger:\n  public_keys: [abc]\n", "ledger.public_keys[0]"},
		{"ledger interval", "ledger:\n  interval: 2h\n", "ledger.interval"},
		{"redaction secret in file", "redaction:\n  secret: hunter2hunter2hunter2\n", "redaction.secret: a literal secret is not accepted"},
		{"redaction bad path", "redaction:\n  rules:\n    - {name: x, paths: [parameter.to], action: mask}\n", "redaction.rules[0].paths[0]: unknown field path"},
		{"redaction pseudonym without secret", "redaction:\n  rules:\n    - {name: x, paths: [requested_by], action: pseudonym}\n", "pseudonym needs a secret"},
		{"bad signatures mode", "signatures:\n  mode: warn\n", `signatures.mode: "warn" must be enforce or off`},
		{"bad compression", "clickhouse:\n  compression: gzip\n", "clickhouse.compression"},
		{"gc percent", "ingest:\n  gc_percent: 5\n", "ingest.gc_percent: 5 out of range"},
		{"memory limit", "ingest:\n  memory_limit_mb: 100\n", "ingest.memory_limit_mb: 100 out of range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(p)
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
