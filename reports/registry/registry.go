// Package registry is the agent registry: which agents exist, which team
// and human owner each belongs to, the keys each signs its events with
// (signing/), and the permissions (grants) each holds — a tool, an action, a
// resource pattern and a risk tier, with rate limits for tier 2 and an
// approval requirement for tier 3. Teams carry their report recipients,
// schedule and time zone.
//
// Parse reads the YAML file strictly and Validate collects every mistake,
// each naming its field and line. Team names and agent ids follow
// TeamNameRule and AgentIDRule (CheckTeamName, CheckAgentID, for the
// command line too); FileComponent turns any team name, including one
// that came from events, into a safe file-name component. Apply loads a registry into ClickHouse as
// versioned rows (valid_from, valid_to), so what was granted at any instant
// stays answerable after later changes: a grant is never updated in place,
// it is closed and a new one opened.
//
// It has no metrics (it runs as a one-shot command) and deliberately does not
// enforce anything: the policy engine decides at run time; the registry is
// what the weekly report compares behaviour against.
package registry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
	_ "time/tzdata" // team time zones must resolve on hosts without zoneinfo

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/agentrail/agentrail/signing"
)

// Registry is the whole file.
type Registry struct {
	Teams  []Team  `yaml:"teams"`
	Agents []Agent `yaml:"agents"`

	lines map[string]int // field path -> line, for error messages
	file  string
}

// Team is a department that runs agents and receives their weekly report.
type Team struct {
	Name string `yaml:"name"`
	// TimeZone is the IANA zone the team's weeks and schedule are in; ""
	// means the reports configuration's default.
	TimeZone string `yaml:"timezone"`
	// Schedule is a five-field cron expression in TimeZone; "" means the
	// reports configuration's default.
	Schedule   string   `yaml:"schedule"`
	Recipients []string `yaml:"recipients"`
}

// Agent is one agent identity and what it may do.
type Agent struct {
	ID          string `yaml:"id"`
	Team        string `yaml:"team"`
	Owner       string `yaml:"owner"` // the accountable human, an email address
	Description string `yaml:"description"`
	// Keys are the keys the agent signs its events with (several while a
	// key rotates); ingest verifies events against them.
	Keys   []signing.KeySpec `yaml:"keys"`
	Grants []Grant           `yaml:"grants"`
}

// Grant is one permission: a tool's action on resources matching Resource
// ("*" matches any run of characters; everything else is literal).
type Grant struct {
	Tool     string `yaml:"tool"`
	Action   string `yaml:"action"`
	Resource string `yaml:"resource"`
	// ActionClasses, if set, are the intent action classes (read, draft,
	// write, send, ...) the grant covers; empty means any class.
	ActionClasses []string   `yaml:"action_classes"`
	Tier          int        `yaml:"tier"`
	RateLimit     *RateLimit `yaml:"rate_limit"`
	Approval      *Approval  `yaml:"approval"`
	// Shadow marks a proposed grant: the policy engine evaluates it and
	// records what it would decide, but does not enforce it, and Apply does
	// not load it as a grant in force. An agent's shadow grants for a tool
	// and action stand in for its enforced grants of that tool and action.
	Shadow bool `yaml:"shadow"`
}

// RateLimit caps how often a grant may be used; tier 2 grants need one.
type RateLimit struct {
	PerHour int `yaml:"per_hour"`
	PerDay  int `yaml:"per_day"`
}

// Approval says who must approve each use; tier 3 grants need one.
type Approval struct {
	Required      bool     `yaml:"required"`
	ApproverRoles []string `yaml:"approver_roles"`
}

// Load reads and validates a registry file.
func Load(path string) (*Registry, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registry: read %s: %w", path, err)
	}
	r, err := Parse(raw, path)
	if err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// Parse decodes a registry strictly: an unknown or mistyped key is an error
// with its line. name is used in error messages. Parse does not validate.
func Parse(raw []byte, name string) (*Registry, error) {
	var r Registry
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("registry: %s: %w", name, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, fmt.Errorf("registry: %s: %w", name, err)
	}
	r.lines = map[string]int{}
	indexLines(&root, "", r.lines)
	r.file = name
	return &r, nil
}

// indexLines records the line of every mapping key and sequence item under
// n, by path ("agents[2].grants[0].tier").
func indexLines(n *yaml.Node, path string, out map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			indexLines(c, path, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			out[p] = n.Content[i].Line
			indexLines(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			out[p] = c.Line
			indexLines(c, p, out)
		}
	}
}

// FieldError is one mistake in a registry: the field's path, its line (0 if
// unknown) and what is wrong.
type FieldError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Field, e.Msg)
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
	agentIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	toolRE    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$`)
)

// Limits of a rate limit's values.
const maxRate = 1_000_000

// Validate checks the registry (time zone names against the zone database,
// which is embedded) and returns every mistake found,
// joined, each a *FieldError naming the field.
func (r *Registry) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		line := 0
		for p := field; p != ""; p = parent(p) {
			if l, ok := r.lines[p]; ok {
				line = l
				break
			}
		}
		errs = append(errs, &FieldError{File: r.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	teams := map[string]int{}
	for i, t := range r.Teams {
		f := fmt.Sprintf("teams[%d]", i)
		switch {
		case t.Name == "":
			bad(f+".name", "is required")
		case !nameRE.MatchString(t.Name):
			bad(f+".name", "%q must match %s (%s)", t.Name, nameRE, TeamNameRule)
		default:
			if j, dup := teams[t.Name]; dup {
				bad(f+".name", "%q is already defined at teams[%d]", t.Name, j)
			} else {
				teams[t.Name] = i
			}
		}
		if t.TimeZone != "" {
			if _, err := time.LoadLocation(t.TimeZone); err != nil || t.TimeZone == "Local" {
				bad(f+".timezone", "%q is not an IANA time zone name (e.g. Europe/Berlin, UTC)", t.TimeZone)
			}
		}
		if t.Schedule != "" {
			if err := checkSchedule(t.Schedule); err != nil {
				bad(f+".schedule", "%v", err)
			}
		}
		seen := map[string]bool{}
		for j, rc := range t.Recipients {
			a, err := mail.ParseAddress(rc)
			switch {
			case err != nil:
				bad(fmt.Sprintf("%s.recipients[%d]", f, j), "%q is not an email address", rc)
			case seen[strings.ToLower(a.Address)]:
				bad(fmt.Sprintf("%s.recipients[%d]", f, j), "%q is listed twice", rc)
			default:
				seen[strings.ToLower(a.Address)] = true
			}
		}
	}
	if len(r.Agents) == 0 {
		bad("agents", "at least one agent is required")
	}
	agents := map[string]int{}
	keyIDs := map[string]string{}
	for i, a := range r.Agents {
		f := fmt.Sprintf("agents[%d]", i)
		switch {
		case a.ID == "":
			bad(f+".id", "is required")
		case !agentIDRE.MatchString(a.ID):
			bad(f+".id", "%q must match %s (%s)", a.ID, agentIDRE, AgentIDRule)
		default:
			if j, dup := agents[a.ID]; dup {
				bad(f+".id", "%q is already defined at agents[%d]", a.ID, j)
			} else {
				agents[a.ID] = i
			}
		}
		switch {
		case a.Team == "":
			bad(f+".team", "is required")
		case len(r.Teams) > 0:
			if _, ok := teams[a.Team]; !ok {
				bad(f+".team", "%q is not one of the teams (%s)", a.Team, strings.Join(r.teamNames(), ", "))
			}
		case !nameRE.MatchString(a.Team):
			bad(f+".team", "%q must match %s (%s)", a.Team, nameRE, TeamNameRule)
		}
		if a.Owner == "" {
			bad(f+".owner", "is required (the accountable human's email address)")
		} else if _, err := mail.ParseAddress(a.Owner); err != nil {
			bad(f+".owner", "%q is not an email address", a.Owner)
		}
		for j, k := range a.Keys {
			kf := fmt.Sprintf("%s.keys[%d]", f, j)
			for _, p := range k.Check() {
				bad(kf+"."+p.Field, "%s", p.Msg)
			}
			if k.ID != "" {
				if first, dup := keyIDs[k.ID]; dup {
					bad(kf+".id", "key id %q is already used at %s (key ids are unique across the registry)", k.ID, first)
				} else {
					keyIDs[k.ID] = kf
				}
			}
		}
		grants := map[string]int{}
		for j, g := range a.Grants {
			gf := fmt.Sprintf("%s.grants[%d]", f, j)
			if g.Tool == "" {
				bad(gf+".tool", "is required")
			} else if !toolRE.MatchString(g.Tool) {
				bad(gf+".tool", "%q must match %s", g.Tool, toolRE)
			}
			if g.Action == "" {
				bad(gf+".action", "is required")
			} else if !toolRE.MatchString(g.Action) {
				bad(gf+".action", "%q must match %s", g.Action, toolRE)
			}
			if g.Resource == "" {
				bad(gf+".resource", `is required ("*" grants every resource)`)
			} else if len(g.Resource) > 256 {
				bad(gf+".resource", "is %d bytes, at most 256", len(g.Resource))
			}
			if g.Tier < 1 || g.Tier > 3 {
				bad(gf+".tier", "%d out of range 1..3", g.Tier)
			}
			if rl := g.RateLimit; rl != nil {
				if rl.PerHour < 0 || rl.PerHour > maxRate {
					bad(gf+".rate_limit.per_hour", "%d out of range 0..%d", rl.PerHour, maxRate)
				}
				if rl.PerDay < 0 || rl.PerDay > maxRate {
					bad(gf+".rate_limit.per_day", "%d out of range 0..%d", rl.PerDay, maxRate)
				}
			}
			if g.Tier == 2 && (g.RateLimit == nil || (g.RateLimit.PerHour <= 0 && g.RateLimit.PerDay <= 0)) {
				bad(gf+".rate_limit", "tier 2 grants need per_hour or per_day > 0")
			}
			if g.Tier == 3 {
				switch {
				case g.Approval == nil || !g.Approval.Required:
					bad(gf+".approval.required", "tier 3 grants need required: true")
				case len(g.Approval.ApproverRoles) == 0:
					bad(gf+".approval.approver_roles", "tier 3 grants need at least one approver role")
				}
			}
			if ap := g.Approval; ap != nil {
				for k, role := range ap.ApproverRoles {
					if !nameRE.MatchString(role) {
						bad(fmt.Sprintf("%s.approval.approver_roles[%d]", gf, k), "%q must match %s", role, nameRE)
					}
				}
			}
			classes := map[string]bool{}
			for k, c := range g.ActionClasses {
				cf := fmt.Sprintf("%s.action_classes[%d]", gf, k)
				switch {
				case !nameRE.MatchString(c):
					bad(cf, "%q must match %s", c, nameRE)
				case classes[c]:
					bad(cf, "%q is listed twice", c)
				default:
					classes[c] = true
				}
			}
			if g.Tool != "" && g.Action != "" && g.Resource != "" {
				k := fmt.Sprintf("%s\x00%s\x00%s\x00%t", g.Tool, g.Action, g.Resource, g.Shadow)
				if prev, dup := grants[k]; dup {
					what := "grants"
					if g.Shadow {
						what = "shadow-grants"
					}
					bad(gf, "%s %s.%s on %q again (first at grants[%d])", what, g.Tool, g.Action, g.Resource, prev)
				} else {
					grants[k] = j
				}
			}
		}
	}
	return errors.Join(errs...)
}

// checkSchedule accepts a standard five-field cron expression or a
// descriptor (@weekly); the time zone comes from the team's timezone field.
func checkSchedule(s string) error {
	if strings.HasPrefix(s, "CRON_TZ=") || strings.HasPrefix(s, "TZ=") {
		return fmt.Errorf("%q: set the zone in timezone, not in the schedule", s)
	}
	if _, err := cron.ParseStandard(s); err != nil {
		return fmt.Errorf("%q is not a cron expression (minute hour day-of-month month day-of-week): %v", s, err)
	}
	return nil
}

func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i <= 0 {
		return ""
	}
	return path[:i]
}

func (r *Registry) teamNames() []string {
	var out []string
	for _, t := range r.Teams {
		out = append(out, t.Name)
	}
	sort.Strings(out)
	return out
}

// ResourceLike turns a grant's resource pattern into a ClickHouse LIKE
// pattern: '*' matches anything, everything else literally.
func ResourceLike(pattern string) string {
	var b strings.Builder
	for _, c := range pattern {
		switch c {
		case '\\', '%', '_':
			b.WriteByte('\\')
			b.WriteRune(c)
		case '*':
			b.WriteByte('%')
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// MatchResource reports whether resource matches the grant pattern, with
// the same meaning as ResourceLike in ClickHouse.
func MatchResource(pattern, resource string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == resource
	}
	if !strings.HasPrefix(resource, parts[0]) {
		return false
	}
	resource = resource[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(resource, p)
		if i < 0 {
			return false
		}
		resource = resource[i+len(p):]
	}
	return strings.HasSuffix(resource, last) && len(resource) >= len(last)
}
