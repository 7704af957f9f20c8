package anomaly

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// Rule files read durations in the grammar of every agentrail file
// (internal/duration): weeks and combined units are accepted, months and
// years refused with a reason.
func TestRuleDurationGrammar(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"2w", 14 * 24 * time.Hour, ""},
		{"1d12h", 36 * time.Hour, ""},
		{"30d", 30 * 24 * time.Hour, ""},
		{"1mo", 0, "rules[0].window.size: \"1mo\": months (mo) and years (y) are calendar periods"},
		{"soon", 0, "rules[0].window.size: must be a duration like 90s"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			d := newStrictDecoder()
			var rs struct {
				Rules []struct {
					Window struct {
						Size Duration `yaml:"size"`
					} `yaml:"window"`
				} `yaml:"rules"`
			}
			var n yaml.Node
			if err := yaml.Unmarshal([]byte("rules:\n  - window:\n      size: "+tc.in+"\n"), &n); err != nil {
				t.Fatal(err)
			}
			d.decode(&n, reflect.ValueOf(&rs).Elem(), "")
			if tc.err == "" {
				if len(d.probs) != 0 || rs.Rules[0].Window.Size.Std() != tc.want {
					t.Fatalf("got %v, %v; want %v", rs.Rules[0].Window.Size.Std(), d.probs, tc.want)
				}
				return
			}
			if len(d.probs) != 1 || !strings.Contains(d.probs[0].String(), tc.err) {
				t.Fatalf("problems %v, want one containing %q", d.probs, tc.err)
			}
		})
	}
}
