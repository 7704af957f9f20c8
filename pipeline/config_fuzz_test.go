package pipeline

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParseConfig feeds arbitrary YAML to the pipeline config decoder: it must
// never panic, and a config that parses and validates must survive a round
// trip through YAML unchanged (so what an operator reads back with
// `yaml.Marshal` is what the pipeline runs with).
func FuzzParseConfig(f *testing.F) {
	example, err := os.ReadFile("../deployments/agentrail.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, seed := range []string{
		"",
		"kafka:\n  brokers: [127.0.0.1:9092]\n  sasl:\n    mechanism: SCRAM-SHA-512\n    username: u\n    password_file: /run/secret\n",
		"ingest:\n  batch_rows: 5000\n  batch_interval: 100ms\n",
		"clickhouse:\n  addrs: ['127.0.0.1:9000']\n  database: audit\n",
		"anomaly:\n  rules_file: rules.yaml\ncorrelation:\n  max_traces: 10\n",
		"reports:\n  smtp:\n    addr: 127.0.0.1:25\n",
		"ingest: [1, 2]\n",
		"&a [*a]\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		cfg, err := Parse(raw, "fuzz.yaml")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config fuzz.yaml: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if cfg.Validate() != nil {
			return
		}
		out, err := yaml.Marshal(&cfg)
		if err != nil {
			t.Fatalf("marshal a valid config: %v", err)
		}
		again, err := Parse(out, "roundtrip.yaml")
		if err != nil {
			t.Fatalf("re-parse a valid config: %v\n%s", err, out)
		}
		// Compared as YAML, so a nil list and an empty one are the same.
		if out2, err := yaml.Marshal(&again); err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the config (err %v):\n%s\nbecame\n%s", err, out, out2)
		}
	})
}
