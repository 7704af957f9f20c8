package registry

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/producers/simulate"
)

var badNames = []struct{ name, in string }{
	{"parent dirs", "../../x"},
	{"separator", "a/b"},
	{"backslash", `a\b`},
	{"quote", `a"b`},
	{"hidden", ".hidden"},
	{"dot dot", ".."},
	{"empty", ""},
	{"over long", strings.Repeat("a", 65)},
	{"unicode", "finanzen-ü"},
	{"space", "finance team"},
	{"nul", "fin\x00ance"},
	{"upper case", "Finance"},
	{"event path", "x/../../../tmp/p"},
}

func TestCheckTeamName(t *testing.T) {
	for _, tc := range badNames {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckTeamName("--team", tc.in)
			if err == nil {
				t.Fatalf("CheckTeamName(%q) = nil", tc.in)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "registry: --team: ") || !strings.Contains(msg, TeamNameRule) {
				t.Errorf("error %q does not name the field and the rule", msg)
			}
		})
	}
	for _, ok := range []string{"finance", "a", "x9", "team.eu-1_b", strings.Repeat("a", 64)} {
		if err := CheckTeamName("teams[0].name", ok); err != nil {
			t.Errorf("CheckTeamName(%q) = %v", ok, err)
		}
	}
}

func TestCheckAgentID(t *testing.T) {
	for _, bad := range []string{"../../x", "a/b", `a"b`, ".hidden", "", strings.Repeat("a", 129), "agént", "a b"} {
		err := CheckAgentID("--agent", bad)
		if err == nil || !strings.Contains(err.Error(), "--agent") || !strings.Contains(err.Error(), AgentIDRule) {
			t.Errorf("CheckAgentID(%q) = %v", bad, err)
		}
	}
	for _, ok := range []string{"finance-refunds-1", "Agent.X:7", strings.Repeat("a", 128)} {
		if err := CheckAgentID("--agent", ok); err != nil {
			t.Errorf("CheckAgentID(%q) = %v", ok, err)
		}
	}
}

// Every name the project ships passes: the deployed registry's and the
// simulated fleet's.
func TestShippedNamesValid(t *testing.T) {
	reg, err := Load(filepath.Join("..", "..", "deployments", "registry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tm := range reg.Teams {
		if err := CheckTeamName("team", tm.Name); err != nil {
			t.Error(err)
		}
		n++
	}
	for _, a := range reg.Agents {
		if err := CheckAgentID("agent", a.ID); err != nil {
			t.Error(err)
		}
		n++
	}
	seen := map[string]bool{}
	for _, e := range simulate.New(simulate.Config{Seed: 1}).Events(2000, time.Now()) {
		if !seen[e.Agent.ID] {
			seen[e.Agent.ID] = true
			if err := CheckAgentID("agent", e.Agent.ID); err != nil {
				t.Error(err)
			}
			if err := CheckTeamName("team", e.Agent.Team); err != nil {
				t.Error(err)
			}
		}
	}
	if n == 0 || len(seen) == 0 {
		t.Fatalf("checked %d registry names and %d simulated agents", n, len(seen))
	}
}

func TestFileComponent(t *testing.T) {
	out := map[string]string{}
	for _, tc := range append(badNames, struct{ name, in string }{"valid", "finance"},
		struct{ name, in string }{"long unicode", strings.Repeat("ü/", 40)},
		struct{ name, in string }{"long unicode 2", strings.Repeat("ü/", 40) + "x"}) {
		got := FileComponent(tc.in)
		switch {
		case got == "" || len(got) > maxFileComponent:
			t.Errorf("%s: FileComponent(%q) = %q: empty or over %d bytes", tc.name, tc.in, got, maxFileComponent)
		case strings.ContainsAny(got, `/\"' `) || strings.HasPrefix(got, ".") || filepath.Base(got) != got:
			t.Errorf("%s: FileComponent(%q) = %q is not one safe component", tc.name, tc.in, got)
		case CheckTeamName("x", tc.in) == nil && got != tc.in:
			t.Errorf("%s: a valid name changed: %q -> %q", tc.name, tc.in, got)
		case CheckTeamName("x", tc.in) != nil && CheckTeamName("x", got) == nil:
			t.Errorf("%s: FileComponent(%q) = %q, which is also a valid name", tc.name, tc.in, got)
		}
		if prev, dup := out[got]; dup {
			t.Errorf("%q and %q share the component %q", prev, tc.in, got)
		}
		out[got] = tc.in
	}
	if FileComponent("Finance") == FileComponent("finance") {
		t.Error("Finance and finance share a file")
	}
}
