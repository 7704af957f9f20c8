package anomaly

import (
	"bytes"
	_ "embed" // the built-in rules
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/agentrail/agentrail/schemas"
)

// RuleSet is a rule file, checked and compiled. Build one with ParseRules,
// LoadRules or DefaultRules.
type RuleSet struct {
	Version int `yaml:"version"`
	// AllowedLateness is how far behind the newest event time an event may
	// arrive and still be counted in its window.
	AllowedLateness Duration            `yaml:"allowed_lateness"`
	Defaults        RuleDefaults        `yaml:"defaults"`
	Calendars       map[string]Calendar `yaml:"calendars"`
	BusinessHours   BusinessHours       `yaml:"business_hours"`
	Rules           []Rule              `yaml:"rules"`

	source    string
	compiled  []*rule
	calendars map[string]*calendar
}

// RuleDefaults apply to every rule that does not set the field.
type RuleDefaults struct {
	Severity string   `yaml:"severity"`
	Suppress Duration `yaml:"suppress"`
}

// BusinessHours says whose hours a calendar describes.
type BusinessHours struct {
	Teams   map[string]string `yaml:"teams"`   // team -> calendar
	Humans  map[string]string `yaml:"humans"`  // requested_by -> calendar
	Default string            `yaml:"default"` // calendar of everyone else ("" none)
}

// Rule is one rule as written in the file. Fields after Suppress belong to
// one kind each; setting another kind's field is a mistake.
type Rule struct {
	Name        string   `yaml:"name"`
	Kind        string   `yaml:"kind"`
	Severity    string   `yaml:"severity"`
	Description string   `yaml:"description"`
	Disabled    bool     `yaml:"disabled"`
	Scope       Scope    `yaml:"scope"`
	GroupBy     []string `yaml:"group_by"`
	Window      Window   `yaml:"window"`
	Threshold   int      `yaml:"threshold"`
	Suppress    Duration `yaml:"suppress"`

	AfterFailureThreshold int            `yaml:"after_failure_threshold"` // retry_burst
	Consequential         *Consequential `yaml:"consequential"`           // out_of_hours
	CalendarBy            []string       `yaml:"calendar_by"`             // out_of_hours
	Factor                float64        `yaml:"factor"`                  // denial_spike
	Baseline              Duration       `yaml:"baseline"`                // denial_spike
	Item                  string         `yaml:"item"`                    // first_use, probing_after_deny
	History               Duration       `yaml:"history"`                 // first_use
	MinAgentAge           Duration       `yaml:"min_agent_age"`           // first_use
	MinAgentEvents        int            `yaml:"min_agent_events"`        // first_use
	Measure               string         `yaml:"measure"`                 // approval_fatigue
	MinReadTime           Duration       `yaml:"min_read_time"`           // approval_fatigue
	ApproverKinds         []string       `yaml:"approver_kinds"`          // approval_fatigue
}

// Scope limits the events a rule looks at; every listed dimension must
// match, an empty one matches everything.
type Scope struct {
	Teams         []string `yaml:"teams"`
	Agents        []string `yaml:"agents"`
	Tiers         []int    `yaml:"tiers"`
	ActionClasses []string `yaml:"action_classes"`
}

// Window is the span a rule counts over.
type Window struct {
	Size Duration `yaml:"size"`
	// Type is sliding (the last Size before each event, the default) or
	// tumbling (fixed Size-long windows aligned to the Unix epoch in UTC).
	Type string `yaml:"type"`
}

// Consequential says which actions out_of_hours looks at: tier at least
// MinTier, or one of ActionClasses.
type Consequential struct {
	MinTier       int      `yaml:"min_tier"`
	ActionClasses []string `yaml:"action_classes"`
}

// Rule kinds.
const (
	KindRetryBurst       = "retry_burst"
	KindOutOfHours       = "out_of_hours"
	KindDenialSpike      = "denial_spike"
	KindFirstUse         = "first_use"
	KindProbingAfterDeny = "probing_after_deny"
	KindApprovalFatigue  = "approval_fatigue"
)

// Severities, lowest first.
var severities = []string{"info", "low", "medium", "high", "critical"}

// Group-by dimensions.
const (
	dimAgent        = "agent"
	dimTeam         = "team"
	dimRequestedBy  = "requested_by"
	dimTier         = "tier"
	dimTool         = "tool"
	dimAction       = "action"
	dimTarget       = "target"
	dimActionDigest = "action_digest"
	dimActionClass  = "action_class"
	dimPolicyID     = "policy_id"
	dimApprover     = "approver"
)

type presence int

const (
	notAllowed presence = iota
	optional
	required
)

type kindSpec struct {
	fields       []string // kind-specific fields
	groupBy      []string // allowed dimensions
	defGroupBy   []string
	window       presence
	defWindow    Duration
	threshold    presence
	defThreshold int
}

var kindSpecs = map[string]kindSpec{
	KindRetryBurst: {
		fields:     []string{"after_failure_threshold"},
		groupBy:    []string{dimAgent, dimTeam, dimRequestedBy, dimTool, dimAction, dimTarget, dimActionDigest, dimActionClass},
		defGroupBy: []string{dimAgent, dimActionDigest},
		window:     required, threshold: required,
	},
	KindOutOfHours: {
		fields:     []string{"consequential", "calendar_by"},
		groupBy:    []string{dimAgent, dimTeam, dimRequestedBy, dimTool, dimAction, dimActionClass},
		defGroupBy: []string{dimAgent},
		window:     optional, defWindow: Duration(time.Hour),
		threshold: optional, defThreshold: 1,
	},
	KindDenialSpike: {
		fields:     []string{"factor", "baseline"},
		groupBy:    []string{dimAgent, dimTeam, dimRequestedBy, dimPolicyID, dimTier},
		defGroupBy: []string{dimAgent},
		window:     required, threshold: required,
	},
	KindFirstUse: {
		fields:     []string{"item", "history", "min_agent_age", "min_agent_events"},
		groupBy:    []string{dimAgent},
		defGroupBy: []string{dimAgent},
		window:     notAllowed, threshold: notAllowed, defThreshold: 1,
	},
	KindProbingAfterDeny: {
		fields:     []string{"item"},
		groupBy:    []string{dimAgent},
		defGroupBy: []string{dimAgent},
		window:     required, threshold: required,
	},
	KindApprovalFatigue: {
		fields:     []string{"measure", "min_read_time", "approver_kinds"},
		groupBy:    []string{dimApprover, dimTeam},
		defGroupBy: []string{dimApprover},
		window:     required, threshold: required,
	},
}

// kindFields are the fields only some kinds have, by yaml name.
var kindFields = []string{"after_failure_threshold", "consequential", "calendar_by", "factor", "baseline",
	"item", "history", "min_agent_age", "min_agent_events", "measure", "min_read_time", "approver_kinds"}

// Items first_use and probing_after_deny tell actions apart by.
const (
	itemTool        = "tool"
	itemToolAction  = "tool_action"
	itemToolTarget  = "tool_target"
	itemActionClass = "action_class"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// MaxRules bounds a rule file (rule names are metric label values).
const MaxRules = 200

//go:embed default_rules.yaml
var defaultRules []byte

// DefaultRules returns the built-in rules (deployments/rules.yaml).
func DefaultRules() *RuleSet {
	rs, err := ParseRules("default_rules.yaml", defaultRules)
	if err != nil {
		panic(fmt.Sprintf("anomaly: built-in rules do not parse: %v", err))
	}
	return rs
}

// LoadRules reads and parses a rule file.
func LoadRules(path string) (*RuleSet, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("anomaly: read rules: %w", err)
	}
	return ParseRules(path, raw)
}

// ParseRules decodes a rule file strictly and checks it. On any mistake it
// returns a *Problems naming the line and field of each.
func ParseRules(name string, data []byte) (*RuleSet, error) {
	rs := &RuleSet{source: name}
	d := newStrictDecoder()
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Problems{File: name, List: []Problem{{Line: 1, Column: 1, Message: "the file is empty: it needs at least rules"}}}
		}
		line := 0
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		return nil, &Problems{File: name, List: []Problem{{Line: line, Column: 1, Message: "not YAML: " + yamlErrorText(err)}}}
	}
	d.decode(&root, reflect.ValueOf(rs).Elem(), "")
	rs.check(d, limitsForCheck)
	if len(d.probs) > 0 {
		slices.SortStableFunc(d.probs, func(a, b Problem) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Column - b.Column
		})
		return nil, &Problems{File: name, List: d.probs}
	}
	return rs, nil
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func yamlErrorText(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	return yamlLineRE.ReplaceAllString(s, "")
}

// limitsForCheck are the bounds a rule file is checked against: the
// defaults. NewEngine checks again against the configured ones.
var limitsForCheck = defaultLimits()

// Source names where the rules came from.
func (rs *RuleSet) Source() string { return rs.source }

// Lateness is the allowed lateness.
func (rs *RuleSet) Lateness() time.Duration { return rs.AllowedLateness.Std() }

// check fills defaults, validates every field, and compiles the rules.
func (rs *RuleSet) check(d *strictDecoder, lim limits) {
	if !d.has("version") {
		rs.Version = 1
	} else if rs.Version != 1 {
		d.problem("version", "must be 1 (the only version so far)")
	}
	if !d.has("allowed_lateness") {
		rs.AllowedLateness = Duration(time.Hour)
	} else if rs.AllowedLateness < 0 || rs.AllowedLateness.Std() > 24*time.Hour {
		d.problem("allowed_lateness", "%s out of range 0s..24h", formatDuration(rs.AllowedLateness.Std()))
	}
	if rs.Defaults.Severity == "" {
		rs.Defaults.Severity = "medium"
	} else if !slices.Contains(severities, rs.Defaults.Severity) {
		d.problem("defaults.severity", "%q must be one of %s", rs.Defaults.Severity, strings.Join(severities, ", "))
	}
	if !d.has("defaults.suppress") {
		rs.Defaults.Suppress = Duration(30 * time.Minute)
	} else if rs.Defaults.Suppress.Std() < time.Second || rs.Defaults.Suppress.Std() > 30*24*time.Hour {
		d.problem("defaults.suppress", "%s out of range 1s..30d", formatDuration(rs.Defaults.Suppress.Std()))
	}

	rs.calendars = map[string]*calendar{}
	for _, name := range sortedKeys(rs.Calendars) {
		c, err := compileCalendar(name, rs.Calendars[name], d, "calendars."+name)
		if err == nil {
			rs.calendars[name] = c
		}
	}
	bh := rs.BusinessHours
	checkRef := func(field, cal string) {
		if _, ok := rs.Calendars[cal]; !ok {
			d.problem(field, "calendar %q is not defined under calendars (defined: %s)", cal, strings.Join(sortedKeys(rs.Calendars), ", "))
		}
	}
	for _, team := range sortedKeys(bh.Teams) {
		checkRef("business_hours.teams."+team, bh.Teams[team])
	}
	for _, h := range sortedKeys(bh.Humans) {
		checkRef("business_hours.humans."+h, bh.Humans[h])
	}
	if bh.Default != "" {
		checkRef("business_hours.default", bh.Default)
	}

	if !d.has("rules") || len(rs.Rules) == 0 {
		d.problem("rules", "at least one rule is needed")
	}
	if len(rs.Rules) > MaxRules {
		d.problem("rules", "%d rules, at most %d", len(rs.Rules), MaxRules)
	}
	names := map[string]string{}
	for i := range rs.Rules {
		path := fmt.Sprintf("rules[%d]", i)
		r := &rs.Rules[i]
		if prev, dup := names[r.Name]; dup && r.Name != "" {
			d.problem(path+".name", "%q is also the name of %s: names must be unique", r.Name, prev)
		}
		names[r.Name] = path
		cr := rs.checkRule(d, lim, path, r)
		if cr != nil && !r.Disabled {
			cr.idx = len(rs.compiled)
			rs.compiled = append(rs.compiled, cr)
		}
	}
}

func (rs *RuleSet) checkRule(d *strictDecoder, lim limits, path string, r *Rule) *rule {
	nprobs := len(d.probs)
	f := func(name string) string { return path + "." + name }
	if !nameRE.MatchString(r.Name) {
		d.problem(f("name"), "%q must be 1..64 of a-z 0-9 _ . - starting with a letter or digit", r.Name)
	}
	spec, ok := kindSpecs[r.Kind]
	if !ok {
		d.problem(f("kind"), "%q must be one of %s", r.Kind, strings.Join(sortedKeys(kindSpecs), ", "))
		return nil
	}
	for _, kf := range kindFields {
		if d.has(f(kf)) && !slices.Contains(spec.fields, kf) {
			owners := []string{}
			for _, k := range sortedKeys(kindSpecs) {
				if slices.Contains(kindSpecs[k].fields, kf) {
					owners = append(owners, k)
				}
			}
			d.problem(f(kf), "not a field of kind %s (it belongs to %s)", r.Kind, strings.Join(owners, ", "))
		}
	}
	if r.Severity == "" {
		r.Severity = rs.Defaults.Severity
	} else if !slices.Contains(severities, r.Severity) {
		d.problem(f("severity"), "%q must be one of %s", r.Severity, strings.Join(severities, ", "))
	}
	if !d.has(f("suppress")) {
		r.Suppress = rs.Defaults.Suppress
	} else if r.Suppress.Std() < time.Second || r.Suppress.Std() > 30*24*time.Hour {
		d.problem(f("suppress"), "%s out of range 1s..30d", formatDuration(r.Suppress.Std()))
	}

	// Scope.
	for i, tier := range r.Scope.Tiers {
		if tier < schemas.TierLow || tier > schemas.TierHigh {
			d.problem(fmt.Sprintf("%s[%d]", f("scope.tiers"), i), "%d must be 1, 2 or 3", tier)
		}
	}
	for _, list := range []struct {
		name string
		vals []string
	}{{"teams", r.Scope.Teams}, {"agents", r.Scope.Agents}, {"action_classes", r.Scope.ActionClasses}} {
		for i, v := range list.vals {
			if v == "" {
				d.problem(fmt.Sprintf("%s[%d]", f("scope."+list.name), i), "must not be empty")
			}
		}
	}

	// Grouping.
	if len(r.GroupBy) == 0 {
		r.GroupBy = slices.Clone(spec.defGroupBy)
	}
	seen := map[string]bool{}
	for i, g := range r.GroupBy {
		gp := fmt.Sprintf("%s[%d]", f("group_by"), i)
		switch {
		case !slices.Contains(spec.groupBy, g):
			d.problem(gp, "%q cannot group %s (allowed: %s)", g, r.Kind, strings.Join(spec.groupBy, ", "))
		case seen[g]:
			d.problem(gp, "%q listed twice", g)
		}
		seen[g] = true
	}
	if r.Kind == KindFirstUse || r.Kind == KindProbingAfterDeny {
		if !slices.Equal(r.GroupBy, []string{dimAgent}) && len(d.probs) == nprobs {
			d.problem(f("group_by"), "%s always groups by agent alone", r.Kind)
		}
	}

	// Window and threshold.
	switch spec.window {
	case notAllowed:
		if d.has(f("window")) {
			d.problem(f("window"), "kind %s has no window (it uses history)", r.Kind)
		}
	case required:
		if !d.has(f("window.size")) {
			d.problem(f("window"), "window.size is required for kind %s", r.Kind)
		}
	case optional:
		if !d.has(f("window.size")) {
			r.Window.Size = spec.defWindow
		}
	}
	if spec.window != notAllowed {
		if d.has(f("window.size")) && (r.Window.Size.Std() < time.Second || r.Window.Size.Std() > 7*24*time.Hour) {
			d.problem(f("window.size"), "%s out of range 1s..7d", formatDuration(r.Window.Size.Std()))
		}
		switch r.Window.Type {
		case "":
			r.Window.Type = "sliding"
		case "sliding", "tumbling":
		default:
			d.problem(f("window.type"), "%q must be sliding or tumbling", r.Window.Type)
		}
	}
	switch spec.threshold {
	case notAllowed:
		if d.has(f("threshold")) {
			d.problem(f("threshold"), "kind %s has no threshold (it fires on the first use)", r.Kind)
		}
		r.Threshold = spec.defThreshold
	case required:
		if !d.has(f("threshold")) {
			d.problem(f("threshold"), "threshold is required for kind %s", r.Kind)
		}
	case optional:
		if !d.has(f("threshold")) {
			r.Threshold = spec.defThreshold
		}
	}
	if d.has(f("threshold")) && (r.Threshold < 1 || r.Threshold > lim.maxEvents) {
		d.problem(f("threshold"), "%d out of range 1..%d (max_events_per_group)", r.Threshold, lim.maxEvents)
	}

	cr := &rule{Rule: *r, rs: rs}
	cr.size = r.Window.Size.Std().Microseconds()
	cr.tumbling = r.Window.Type == "tumbling"
	cr.suppress = r.Suppress.Std().Microseconds()
	cr.scope = compileScope(r.Scope)
	cr.dims = r.GroupBy

	// Kind-specific fields.
	switch r.Kind {
	case KindRetryBurst:
		if d.has(f("after_failure_threshold")) && (r.AfterFailureThreshold < 1 || r.AfterFailureThreshold > r.Threshold) {
			d.problem(f("after_failure_threshold"), "%d out of range 1..threshold (%d)", r.AfterFailureThreshold, r.Threshold)
		}
	case KindOutOfHours:
		if r.Consequential == nil {
			r.Consequential = &Consequential{MinTier: schemas.TierMedium}
		}
		c := r.Consequential
		if d.has(f("consequential.min_tier")) && (c.MinTier < 1 || c.MinTier > 3) {
			d.problem(f("consequential.min_tier"), "%d must be 1, 2 or 3", c.MinTier)
		}
		if c.MinTier == 0 && len(c.ActionClasses) == 0 {
			d.problem(f("consequential"), "set min_tier, action_classes, or both")
		}
		cr.consClasses = toSet(c.ActionClasses)
		if len(r.CalendarBy) == 0 {
			r.CalendarBy = []string{dimRequestedBy, dimTeam}
		}
		for i, cb := range r.CalendarBy {
			if cb != dimRequestedBy && cb != dimTeam {
				d.problem(fmt.Sprintf("%s[%d]", f("calendar_by"), i), "%q must be requested_by or team", cb)
			}
		}
		if len(rs.BusinessHours.Teams) == 0 && len(rs.BusinessHours.Humans) == 0 && rs.BusinessHours.Default == "" {
			d.problem(f("kind"), "out_of_hours needs business_hours (teams, humans or default) mapped to calendars")
		}
	case KindDenialSpike:
		if !d.has(f("factor")) {
			r.Factor = 3
		} else if !(r.Factor >= 1 && r.Factor <= 1000) {
			d.problem(f("factor"), "%v out of range 1..1000", r.Factor)
		}
		if !d.has(f("baseline")) {
			r.Baseline = Duration(24 * time.Hour)
		}
		if r.Window.Size > 0 {
			n := int64(r.Baseline) / int64(r.Window.Size)
			if n < 1 || n > 1000 {
				d.problem(f("baseline"), "%s must hold 1..1000 windows of %s", formatDuration(r.Baseline.Std()), formatDuration(r.Window.Size.Std()))
			}
			cr.baseBuckets = n
		}
	case KindFirstUse:
		if r.Item == "" {
			r.Item = itemToolAction
		} else if !slices.Contains([]string{itemTool, itemToolAction, itemActionClass}, r.Item) {
			d.problem(f("item"), "%q must be tool, tool_action or action_class", r.Item)
		}
		if !d.has(f("history")) {
			r.History = Duration(30 * 24 * time.Hour)
		} else if r.History.Std() < time.Hour || r.History.Std() > 400*24*time.Hour {
			d.problem(f("history"), "%s out of range 1h..400d", formatDuration(r.History.Std()))
		}
		if r.MinAgentAge < 0 || r.MinAgentAge > r.History {
			d.problem(f("min_agent_age"), "%s out of range 0s..history (%s)", formatDuration(r.MinAgentAge.Std()), formatDuration(r.History.Std()))
		}
		if r.MinAgentEvents < 0 || r.MinAgentEvents > 1_000_000 {
			d.problem(f("min_agent_events"), "%d out of range 0..1000000", r.MinAgentEvents)
		}
	case KindProbingAfterDeny:
		if r.Item == "" {
			r.Item = itemToolTarget
		} else if !slices.Contains([]string{itemTool, itemToolAction, itemToolTarget, itemActionClass}, r.Item) {
			d.problem(f("item"), "%q must be tool, tool_action, tool_target or action_class", r.Item)
		}
	case KindApprovalFatigue:
		switch r.Measure {
		case "":
			r.Measure = "volume"
		case "volume", "speed":
		default:
			d.problem(f("measure"), "%q must be volume (approvals per window) or speed (approvals faster than min_read_time)", r.Measure)
		}
		if r.Measure == "speed" && (r.MinReadTime.Std() < time.Second || r.MinReadTime.Std() > time.Hour) {
			d.problem(f("min_read_time"), "%s out of range 1s..1h (required for measure: speed)", formatDuration(r.MinReadTime.Std()))
		}
		if r.Measure == "volume" && d.has(f("min_read_time")) {
			d.problem(f("min_read_time"), "only for measure: speed")
		}
		if len(r.ApproverKinds) == 0 {
			r.ApproverKinds = []string{schemas.PrincipalHuman}
		}
		for i, k := range r.ApproverKinds {
			if k != schemas.PrincipalHuman && k != schemas.PrincipalAgent && k != schemas.PrincipalService {
				d.problem(fmt.Sprintf("%s[%d]", f("approver_kinds"), i), "%q must be human, agent or service", k)
			}
		}
		cr.approverKinds = toSet(r.ApproverKinds)
	}
	if len(d.probs) > nprobs {
		return nil
	}
	cr.Rule = *r
	return cr
}

func toSet(xs []string) map[string]bool {
	if len(xs) == 0 {
		return nil
	}
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// scope is a compiled Scope.
type scope struct {
	teams, agents, classes map[string]bool
	tiers                  [4]bool
	anyTier                bool
}

func compileScope(s Scope) scope {
	c := scope{teams: toSet(s.Teams), agents: toSet(s.Agents), classes: toSet(s.ActionClasses), anyTier: len(s.Tiers) == 0}
	for _, t := range s.Tiers {
		if t >= 0 && t < len(c.tiers) {
			c.tiers[t] = true
		}
	}
	return c
}

// match reports whether an event is in scope; class is the action class of
// its intent ("" when unknown, which only matches a scope without classes).
func (s *scope) match(ev *schemas.Event, class string) bool {
	return s.matchWho(ev) && s.matchWhat(ev, class)
}

// matchWho checks the acting agent and team.
func (s *scope) matchWho(ev *schemas.Event) bool {
	return (s.teams == nil || s.teams[ev.Agent.Team]) && (s.agents == nil || s.agents[ev.Agent.ID])
}

// matchWhat checks the action's tier and class.
func (s *scope) matchWhat(ev *schemas.Event, class string) bool {
	if !s.anyTier && (ev.Tier < 0 || int(ev.Tier) >= len(s.tiers) || !s.tiers[ev.Tier]) {
		return false
	}
	if s.classes != nil && !s.classes[class] {
		return false
	}
	return true
}

// Summary describes the rule set in one line.
func (rs *RuleSet) Summary() string {
	counts := map[string]int{}
	for _, r := range rs.compiled {
		counts[r.Kind]++
	}
	parts := []string{}
	for _, k := range sortedKeys(counts) {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	disabled := len(rs.Rules) - len(rs.compiled)
	s := fmt.Sprintf("%d rules enabled (%s)", len(rs.compiled), strings.Join(parts, ", "))
	if disabled > 0 {
		s += fmt.Sprintf(", %d disabled", disabled)
	}
	return s
}

// RuleNames lists the enabled rules, in file order.
func (rs *RuleSet) RuleNames() []string {
	out := make([]string, len(rs.compiled))
	for i, r := range rs.compiled {
		out[i] = r.Name
	}
	return out
}
