package registry

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the registry decoder and validator:
// they must return errors, never panic, and a registry that validates must
// have what Apply relies on.
func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	if b, err := os.ReadFile("../../deployments/registry.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("agents:\n  - {id: a, team: t, owner: o@x.y, grants: [{tool: t, action: a, resource: '*', tier: 3}]}\n"))
	f.Add([]byte("teams: [{name: x, timezone: 'Mars/Olympus', schedule: '61 * * * *'}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b, "fuzz.yaml")
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			if !strings.Contains(err.Error(), "fuzz.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, a := range r.Agents {
			if a.ID == "" || a.Team == "" || a.Owner == "" {
				t.Fatalf("valid registry with an incomplete agent: %+v", a)
			}
			for _, g := range a.Grants {
				if g.Tier < 1 || g.Tier > 3 || g.Resource == "" {
					t.Fatalf("valid registry with a bad grant: %+v", g)
				}
				_ = ResourceLike(g.Resource)
			}
		}
	})
}
