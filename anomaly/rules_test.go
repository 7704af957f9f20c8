package anomaly

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// The built-in rules are deployments/rules.yaml, byte for byte.
func TestDefaultRulesAreTheDeployedFile(t *testing.T) {
	deployed, err := os.ReadFile("../deployments/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(deployed, defaultRules) {
		t.Fatal("anomaly/default_rules.yaml differs from deployments/rules.yaml: copy one onto the other")
	}
	rs := DefaultRules()
	kinds := map[string]bool{}
	for _, r := range rs.compiled {
		kinds[r.Kind] = true
	}
	if len(kinds) != len(kindSpecs) {
		t.Fatalf("the built-in rules use %d of the %d kinds", len(kinds), len(kindSpecs))
	}
}

// Every mistake of a bad file is reported with its line, column and field,
// in file order (golden file testdata/bad_rules.golden).
func TestRuleFileProblemsGolden(t *testing.T) {
	_, err := LoadRules("testdata/bad_rules.yaml")
	var probs *Problems
	if !errors.As(err, &probs) {
		t.Fatalf("err = %v, want *Problems", err)
	}
	got := err.Error() + "\n"
	golden := filepath.Join("testdata", "bad_rules.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Fatalf("problems differ from %s (run with -update if intended):\n%s", golden, got)
	}
	if len(probs.List) < 15 {
		t.Fatalf("%d problems found, want every mistake of the file", len(probs.List))
	}
}

func TestRuleFileProblems(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string // each must appear in the error
	}{
		{"empty", "", []string{"1:1:", "empty"}},
		{"not yaml", "rules: [\n", []string{"not YAML"}},
		{"no rules", "version: 1\n", []string{"rules: at least one rule"}},
		{"unknown top-level field", "rulez: []\n", []string{"1:1: rulez: unknown field"}},
		{"unknown rule field", "rules:\n  - name: a\n    kind: retry_burst\n    window: {size: 1m}\n    threshold: 2\n    threshhold: 3\n",
			[]string{"6:5: rules[0].threshhold: unknown field (known: "}},
		{"field of another kind", "rules:\n  - name: a\n    kind: retry_burst\n    window: {size: 1m}\n    threshold: 2\n    factor: 3\n",
			[]string{"6:13: rules[0].factor: not a field of kind retry_burst (it belongs to denial_spike)"}},
		{"integer duration", "rules:\n  - name: a\n    kind: retry_burst\n    window: {size: 60}\n    threshold: 2\n",
			[]string{"4:20: rules[0].window.size: must be a duration"}},
		{"missing threshold", "rules:\n  - name: a\n    kind: retry_burst\n    window: {size: 1m}\n",
			[]string{"rules[0].threshold: threshold is required"}},
		{"threshold beyond the window bound", "rules:\n  - name: a\n    kind: retry_burst\n    window: {size: 1m}\n    threshold: 5000\n",
			[]string{"5:16: rules[0].threshold: 5000 out of range 1..4096"}},
		{"after-failure threshold above the threshold", "rules:\n  - name: a\n    kind: retry_burst\n    window: {size: 1m}\n    threshold: 3\n    after_failure_threshold: 4\n",
			[]string{"rules[0].after_failure_threshold: 4 out of range 1..threshold (3)"}},
		{"duplicate names", "rules:\n  - {name: a, kind: first_use}\n  - {name: a, kind: first_use}\n",
			[]string{"3:12: rules[1].name: \"a\" is also the name of rules[0]"}},
		{"out of hours without business hours", "rules:\n  - {name: a, kind: out_of_hours}\n",
			[]string{"rules[0].kind: out_of_hours needs business_hours"}},
		{"speed without a read time", "rules:\n  - {name: a, kind: approval_fatigue, measure: speed, window: {size: 1h}, threshold: 2}\n",
			[]string{"rules[0].min_read_time: 0s out of range 1s..1h"}},
		{"baseline shorter than the window", "rules:\n  - {name: a, kind: denial_spike, window: {size: 1h}, threshold: 2, baseline: 30m}\n",
			[]string{"rules[0].baseline: 30m must hold 1..1000 windows of 1h"}},
		{"first use grouped by team", "rules:\n  - {name: a, kind: first_use, group_by: [team]}\n",
			[]string{`rules[0].group_by[0]: "team" cannot group first_use (allowed: agent)`}},
		{"bool where a name is expected", "rules:\n  - {name: true, kind: first_use}\n",
			[]string{"rules[0].name: must be a string (quote it)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRules("r.yaml", []byte(tc.src))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

// Defaults are filled in one place and disabled rules are parsed but not
// run.
func TestRuleDefaults(t *testing.T) {
	rs := mustRules(t, `
defaults: {severity: high, suppress: 5m}
rules:
  - {name: a, kind: retry_burst, window: {size: 1m}, threshold: 2}
  - {name: b, kind: denial_spike, window: {size: 10m}, threshold: 2, severity: low}
  - {name: c, kind: first_use, disabled: true}
`)
	if got := rs.RuleNames(); len(got) != 2 {
		t.Fatalf("enabled rules %v, want a and b", got)
	}
	a, b := rs.compiled[0], rs.compiled[1]
	if a.Severity != "high" || a.Suppress.Std().Minutes() != 5 || a.Window.Type != "sliding" ||
		strings.Join(a.GroupBy, ",") != "agent,action_digest" {
		t.Fatalf("rule a defaults: %+v", a.Rule)
	}
	if b.Severity != "low" || b.Factor != 3 || b.Baseline.Std().Hours() != 24 || b.baseBuckets != 144 {
		t.Fatalf("rule b defaults: %+v", b.Rule)
	}
	if rs.Lateness().Hours() != 1 {
		t.Fatalf("allowed lateness %s, want 1h", rs.Lateness())
	}
}

func FuzzParseRules(f *testing.F) {
	for _, p := range []string{"../deployments/rules.yaml", "testdata/bad_rules.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("rules: [{name: a, kind: retry_burst, window: {size: 1m}, threshold: 2}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ParseRules("fuzz.yaml", data)
		if err != nil {
			var probs *Problems
			if !errors.As(err, &probs) || len(probs.List) == 0 {
				t.Fatalf("error %v is not a non-empty *Problems", err)
			}
			return
		}
		if len(rs.compiled) == 0 && len(rs.Rules) == 0 {
			t.Fatal("a rule set without rules parsed")
		}
		if _, err := newEngine(rs, limits{maxGroups: 100, maxTraces: 100, maxEvents: 4096, maxIDs: 20}); err != nil {
			t.Fatalf("parsed rules do not build an engine: %v", err)
		}
	})
}
