package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/internal/testenv"
)

func TestRulesCheck(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		code  int
		want  []string
	}{
		{"the deployed rules", []string{"../../deployments/rules.yaml"}, 0, []string{"rules.yaml: ok, 7 rules enabled"}},
		{"a file with mistakes", []string{"../../deployments/rules.yaml", "../../anomaly/testdata/bad_rules.yaml"}, 1,
			[]string{"rules.yaml: ok", "bad_rules.yaml:22:13: rules[0].factor: not a field of kind retry_burst", "bad_rules.yaml: 24 mistake(s)"}},
		{"a missing file", []string{"nope.yaml"}, 1, []string{"nope.yaml: anomaly: read rules"}},
		{"no file", nil, 2, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			if code := runArgs(context.Background(), append([]string{"rules", "check"}, tc.files...), &out, io.Discard); code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Fatalf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestParseWhen(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2026-11-18":                time.Date(2026, 11, 18, 0, 0, 0, 0, time.UTC),
		"2026-11-18T15:04:05+01:00": time.Date(2026, 11, 18, 14, 4, 5, 0, time.UTC),
	} {
		if got, err := parseWhen(in); err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %s, %v", in, got, err)
		}
	}
	if _, err := parseWhen("yesterday"); err == nil {
		t.Error("parseWhen(yesterday) succeeded")
	}
}

// The backtest command runs against a real, empty database.
func TestRulesBacktestCommand(t *testing.T) {
	cfg, _ := testenv.ClickHouse(t)
	var out strings.Builder
	code := runArgs(context.Background(), []string{"rules", "backtest", "--clickhouse", cfg.Addr[0], "--database", cfg.Database,
		"--from", "2026-11-16", "--to", "2026-11-18", "--rules", "../../deployments/rules.yaml"}, &out, io.Discard)
	if code != 0 || !strings.Contains(out.String(), "0 events replayed") || !strings.Contains(out.String(), "approval-rubber-stamp") {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
	if code := runArgs(context.Background(), []string{"rules", "backtest", "--from", "2026-11-18"}, &out, io.Discard); code != 2 {
		t.Fatalf("backtest without --to: exit %d", code)
	}
}
