package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/reports/retention"
)

// Every duration of agentrail.yaml is read in the one grammar
// (internal/duration), and retention periods in its calendar form.
func TestConfigDurationGrammar(t *testing.T) {
	cases := []struct {
		name, yaml string
		check      func(c Config) bool
	}{
		{"days in a fixed duration", "correlation:\n  abandon_after: 1d\n", func(c Config) bool { return c.Correlation.AbandonAfter == 24*time.Hour }},
		{"weeks", "reports:\n  catch_up: 1w\n", func(c Config) bool { return c.Reports.CatchUp == 7*24*time.Hour }},
		{"combined", "ingest:\n  max_past: 400d\n  max_future: 1h30m\n", func(c Config) bool {
			return c.Ingest.MaxPast == 9600*time.Hour && c.Ingest.MaxFuture == 90*time.Minute
		}},
		{"quoted", "reports:\n  retry:\n    max: \"1d\"\n", func(c Config) bool { return c.Reports.Retry.Max == 24*time.Hour }},
		{"m is minutes", "reports:\n  retry:\n    max: 10m\n", func(c Config) bool { return c.Reports.Retry.Max == 10*time.Minute }},
		{"go form", "ledger:\n  interval: 1m30s\n", func(c Config) bool { return c.Ledger.Interval == 90*time.Second }},
		{"months", "reports:\n  retention:\n    tier1: 6mo\n", func(c Config) bool { return c.Reports.Retention.Tier1 == retention.Age{N: 6, Unit: 'm'} }},
		{"years and months", "reports:\n  retention:\n    tier2: 1y6mo\n", func(c Config) bool { return c.Reports.Retention.Tier2 == retention.Age{N: 18, Unit: 'm'} }},
		{"weeks of retention", "reports:\n  retention:\n    tier1: 8w\n", func(c Config) bool { return c.Reports.Retention.Tier1 == retention.Age{N: 8, Unit: 'w'} }},
		{"anchor and alias", "ingest:\n  max_future: &d 2d\ncorrelation:\n  abandon_after: *d\n", func(c Config) bool {
			return c.Ingest.MaxFuture == 48*time.Hour && c.Correlation.AbandonAfter == 48*time.Hour
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, warns, err := ParseWithWarnings([]byte(tc.yaml), "c.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) != 0 {
				t.Errorf("warnings %v, want none", warns)
			}
			if !tc.check(cfg) {
				t.Fatalf("decoded %+v", cfg)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConfigDurationErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"not a duration", "ingest:\n  batch_interval: soon\n", `config c.yaml: line 2: ingest.batch_interval: "soon" is not a duration like 90s`},
		{"months in a fixed duration", "reports:\n  catch_up: 1mo\n", `line 2: reports.catch_up: "1mo": months (mo) and years (y) are calendar periods`},
		{"years in a fixed duration", "correlation:\n  lookback: 1y\n", `line 2: correlation.lookback: "1y": months (mo) and years (y)`},
		{"hours in a period", "reports:\n  retention:\n    tier1: 720h\n", `line 3: reports.retention.tier1: "720h" is not a period like 30d, 8w, 6mo or 7y`},
		{"mixed period", "reports:\n  retention:\n    tier2: 1y3d\n", `line 3: reports.retention.tier2: "1y3d" mixes days with months or years`},
		{"old and new months", "reports:\n  retention:\n    tier2: 1y6m\n", `reports.retention.tier2: "1y6m" is not a period`},
		{"out of range in the new grammar", "reports:\n  retry:\n    max: 2d\n", "reports.retry.max: 48h0m0s out of range 30s..24h"},
		{"unknown key in a list", "redaction:\n  rules:\n    - {name: x, pathz: [a]}\n", "line 3: field pathz not found in redaction.rules[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := ParseWithWarnings([]byte(tc.yaml), "c.yaml")
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// The previous release's spellings still work, each with a warning that
// names the new one.
func TestConfigOldSpellings(t *testing.T) {
	cases := []struct {
		name, yaml string
		check      func(c Config) bool
		warn       string
	}{
		{"months as m", "reports:\n  retention:\n    tier1: 6m\n    tier2: 12m\n",
			func(c Config) bool {
				return c.Reports.Retention.Tier1 == retention.Age{N: 6, Unit: 'm'} && c.Reports.Retention.Tier2 == retention.Age{N: 12, Unit: 'm'}
			},
			"c.yaml:3: reports.retention.tier1: 6m means months here; write 6mo (m will mean minutes)"},
		{"anomaly.alert_topic", "anomaly:\n  alert_topic: audit.alerts\n",
			func(c Config) bool {
				return c.Kafka.Topics.Alerts == "audit.alerts" && c.Anomaly.AlertTopic == "audit.alerts"
			},
			"c.yaml:2: anomaly.alert_topic is an old key; write the topic as kafka.topics.alerts"},
		{"correlation.violation_topic", "correlation:\n  violation_topic: audit.violations\n",
			func(c Config) bool {
				return c.Kafka.Topics.Violations == "audit.violations" && c.Correlation.ViolationTopic == "audit.violations"
			},
			"c.yaml:2: correlation.violation_topic is an old key; write the topic as kafka.topics.violations"},
		{"both keys, one value", "kafka:\n  topics:\n    alerts: a\nanomaly:\n  alert_topic: a\n",
			func(c Config) bool { return c.Kafka.Topics.Alerts == "a" && c.Anomaly.AlertTopic == "a" },
			"c.yaml:5: anomaly.alert_topic is an old key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, warns, err := ParseWithWarnings([]byte(tc.yaml), "c.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if !tc.check(cfg) {
				t.Fatalf("decoded %+v", cfg)
			}
			if len(warns) == 0 || warns[0].String() != tc.warn && !strings.HasPrefix(warns[0].String(), tc.warn) {
				t.Fatalf("warnings %v, want the first to be %q", warns, tc.warn)
			}
		})
	}
}

// The new topic keys are what the stages use; the old key beside a
// different new one is an error, in the file and in a config built in Go.
func TestTopicsUnderKafka(t *testing.T) {
	cfg, warns, err := ParseWithWarnings([]byte("kafka:\n  topics:\n    alerts: a\n    violations: v\n"), "c.yaml")
	if err != nil || len(warns) != 0 {
		t.Fatal(err, warns)
	}
	if cfg.Anomaly.AlertTopic != "a" || cfg.Correlation.ViolationTopic != "v" {
		t.Fatalf("sections not given kafka.topics: %q %q", cfg.Anomaly.AlertTopic, cfg.Correlation.ViolationTopic)
	}
	var def Config
	def.Defaults()
	if def.Kafka.Topics.Alerts != "agentrail.alerts" || def.Kafka.Topics.Violations != "agentrail.violations" {
		t.Fatalf("default topics %+v", def.Kafka.Topics)
	}

	for _, y := range []string{
		"kafka:\n  topics:\n    alerts: a\nanomaly:\n  alert_topic: b\n",
		"kafka:\n  topics:\n    violations: a\ncorrelation:\n  violation_topic: b\n",
	} {
		_, _, err := ParseWithWarnings([]byte(y), "c.yaml")
		if err == nil || !strings.Contains(err.Error(), `line 5: `) || !strings.Contains(err.Error(), `"b" differs from kafka.topics.`) {
			t.Errorf("err = %v, want the conflict named with its line", err)
		}
	}

	cfg.Anomaly.AlertTopic = "other"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `anomaly.alert_topic: "other" differs from kafka.topics.alerts "a"`) {
		t.Fatalf("Validate = %v", err)
	}
	var inGo Config
	inGo.Correlation.ViolationTopic = "old-style"
	inGo.Defaults()
	if inGo.Kafka.Topics.Violations != "old-style" || inGo.Validate() != nil {
		t.Fatalf("a Go config setting only the old field: %q, %v", inGo.Kafka.Topics.Violations, inGo.Validate())
	}
}

func TestLoadFromEnvironment(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agentrail.yaml")
	if err := os.WriteFile(p, []byte("ingest:\n  batch_rows: 1234\nreports:\n  retention:\n    tier1: 2m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(ConfigEnv, p)
	cfg, warns, err := LoadWithWarnings("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Ingest.BatchRows != 1234 {
		t.Fatalf("Load(\"\") with %s=%s: batch_rows %d", ConfigEnv, p, cfg.Ingest.BatchRows)
	}
	if len(warns) != 1 || warns[0].File != p || warns[0].Line != 5 {
		t.Fatalf("warnings %v, want one at %s:5", warns, p)
	}
	if cfg, err := Load(""); err != nil || cfg.Ingest.BatchRows != 1234 {
		t.Fatalf("Load(\"\") = %d, %v", cfg.Ingest.BatchRows, err)
	}

	// An explicit path wins over the variable.
	other := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(other, []byte("ingest:\n  batch_rows: 99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg, err := Load(other); err != nil || cfg.Ingest.BatchRows != 99 {
		t.Fatalf("Load(%s) = %d, %v", other, cfg.Ingest.BatchRows, err)
	}

	// A variable naming a missing file is an error, not the defaults.
	t.Setenv(ConfigEnv, filepath.Join(t.TempDir(), "missing.yaml"))
	if _, err := Load(""); err == nil {
		t.Fatal("Load(\"\") with a missing $AGENTRAIL_CONFIG file: no error")
	}

	// Unset or empty: all defaults.
	t.Setenv(ConfigEnv, "")
	cfg, err = Load("")
	var want Config
	want.Defaults()
	if err != nil || cfg.Ingest.BatchRows != want.Ingest.BatchRows {
		t.Fatalf("Load(\"\") without %s = %d, %v", ConfigEnv, cfg.Ingest.BatchRows, err)
	}
}

// The shipped configs use no old spelling.
func TestShippedConfigsHaveNoWarnings(t *testing.T) {
	for _, p := range []string{"../deployments/agentrail.yaml", "../deployments/compose/agentrail.yaml", "../deployments/compose/reports.yaml"} {
		_, warns, err := LoadWithWarnings(p)
		if err != nil || len(warns) != 0 {
			t.Errorf("%s: %v, warnings %v", p, err, warns)
		}
	}
}
