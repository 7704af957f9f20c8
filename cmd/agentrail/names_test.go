package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/reports/registry"
)

// A --team or --agent outside the registry's character set is a usage error
// before anything runs: no file is written, inside --out or out of it.
func TestNameFlagsRefused(t *testing.T) {
	bin := testenv.Binary(t)
	root := t.TempDir()
	out := filepath.Join(root, "a", "b", "out")
	for _, tc := range []struct {
		name string
		args []string
		want int
		msg  string
	}{
		{"report weekly parent dirs", []string{"report", "weekly", "--team", "../../x", "--week", "2026-W47", "--out", out}, 2, registry.TeamNameRule},
		{"report weekly quote", []string{"report", "weekly", "--team", `a"b`, "--out", out}, 2, registry.TeamNameRule},
		{"report weekly separator", []string{"report", "weekly", "--team", "a/b", "--out", out}, 2, registry.TeamNameRule},
		{"report send hidden", []string{"report", "send", "--team", ".hidden", "--week", "2026-W47"}, 2, registry.TeamNameRule},
		{"reports send hidden (old spelling)", []string{"reports", "send", "--team", ".hidden", "--week", "2026-W47"}, 2, registry.TeamNameRule},
		{"keygen agent path", []string{"registry", "keygen", "--agent", "../x", "--out", filepath.Join(root, "key")}, 2, registry.AgentIDRule},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Dir = root
			// No config and no ClickHouse: the check comes first.
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tc.want {
				t.Fatalf("exit %v, want status %d; stderr:\n%s", err, tc.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.msg) {
				t.Errorf("stderr does not state the rule %q:\n%s", tc.msg, stderr.String())
			}
		})
	}
	// The commands ran in root, with --out under it: nothing may be there.
	var made []string
	if err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != root {
			made = append(made, p)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(made) != 0 {
		t.Errorf("written: %v", made)
	}
}
