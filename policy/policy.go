package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentrail/agentrail/reports/registry"
	"github.com/agentrail/agentrail/schemas"
)

// DefaultPolicyID is the policy_id of every decision unless WithPolicyID
// says otherwise: the registry is one policy, versioned as a whole.
const DefaultPolicyID = "registry"

// ShadowRulePrefix starts the rule id of a shadow grant, so a shadow rule
// never reads as a grant in force.
const ShadowRulePrefix = "shadow:"

// Request is an intent to decide on, as the agent states it.
type Request struct {
	AgentID string
	Team    string // the team the agent says it belongs to; "" skips the check
	// Environment is recorded by the surfaces but not decided on: grants
	// carry no environment yet (see the package comment).
	Environment string
	Tool        string
	Action      string
	Target      string // the resource, matched against the grants' patterns
	ActionClass string // read, draft, write, send, ... (schemas/README.md)
	Tier        int    // the tier the intent claims; 0: the grant's
}

// Decision is the engine's verdict on one Request.
type Decision struct {
	Outcome       string // schemas.OutcomeAllow, OutcomeDeny or OutcomeRequireApproval
	PolicyID      string
	PolicyVersion int64
	// MatchedRule is the grant's id, registry.GrantKey (the grant_key of
	// registry_grants), stable across versions; "" when no grant matched.
	MatchedRule string
	Grant       string // the matched grant as "tool.action on pattern"
	Reason      string
	Tier        int   // the grant's tier, or the intent's if higher; 1..3
	Remaining   int64 // uses left in the tightest rate-limit window; -1: no limit applied
	// ApproverRoles are who may approve, for require_approval. Shared with
	// the engine: do not modify.
	ApproverRoles []string
	// Shadow is what the agent's shadow grants for this tool and action
	// would have decided, when it differs from Outcome; "" otherwise.
	Shadow       string
	ShadowRule   string
	ShadowReason string
	At           time.Time // the engine's clock when it decided
}

// Schema returns the decision as the policy_decision event body. The body
// has no shadow field: a shadow verdict is appended to the reason as
// "; shadow deny: …" (or the shadow outcome in place of deny).
func (d Decision) Schema() schemas.Decision {
	out := schemas.Decision{Outcome: d.Outcome, PolicyID: d.PolicyID, PolicyVersion: d.PolicyVersion,
		MatchedRule: d.MatchedRule, Reason: d.Reason, Tier: int32(d.Tier)}
	if d.Remaining >= 0 {
		r := d.Remaining
		out.RemainingQuota = &r
	}
	if d.Shadow != "" {
		out.Reason += "; shadow " + d.Shadow + ": " + d.ShadowReason
	}
	return out
}

// Option configures an Engine.
type Option func(*Engine)

// WithPolicyID sets the decisions' policy_id (default DefaultPolicyID).
func WithPolicyID(id string) Option { return func(e *Engine) { e.id = id } }

// WithClock sets the clock quota windows are counted on (default time.Now).
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// WithQuotas sets where rate-limited uses are counted (default: a new
// NewLocalQuotas(1) per engine). Pass the previous engine's to keep counts
// across a registry reload.
func WithQuotas(q Quotas) Option { return func(e *Engine) { e.quotas = q } }

// Engine decides intents against one registry version. It is immutable
// after New but for its quota counters, and safe for concurrent use.
type Engine struct {
	id      string
	version int64
	now     func() time.Time
	quotas  Quotas

	agents map[string]string // agent id -> team
	rules  map[ruleKey]*toolRules
}

type ruleKey struct{ agent, tool, action string }

// toolRules are one agent's grants for one tool and action, each list
// ordered most specific pattern first.
type toolRules struct {
	enforced, shadow []*rule
}

type rule struct {
	id, label string
	agent     string
	pat       pattern
	tier      int
	classes   []string
	approval  bool
	roles     []string
	counter   Counter
	allowed   string // reason of an allow or require_approval, built once
}

// New builds the engine of registry version from reg's grants, which it
// validates; the registry is not retained.
func New(reg *registry.Registry, version int64, opts ...Option) (*Engine, error) {
	if reg == nil {
		return nil, errors.New("policy: no registry")
	}
	if version < 0 {
		return nil, fmt.Errorf("policy: registry version %d, want >= 0", version)
	}
	if err := reg.Validate(); err != nil {
		return nil, fmt.Errorf("policy: registry: %w", err)
	}
	e := &Engine{id: DefaultPolicyID, version: version, now: time.Now,
		agents: make(map[string]string, len(reg.Agents)), rules: map[ruleKey]*toolRules{}}
	for _, o := range opts {
		o(e)
	}
	if e.id == "" {
		return nil, errors.New("policy: empty policy id")
	}
	if e.quotas == nil {
		e.quotas = NewLocalQuotas(1)
	}
	for _, a := range reg.Agents {
		e.agents[a.ID] = a.Team
		for _, g := range a.Grants {
			r := newRule(a.ID, g)
			if ls := limits(g.RateLimit); len(ls) > 0 {
				r.counter = e.quotas.Counter(r.id, ls)
			}
			k := ruleKey{a.ID, g.Tool, g.Action}
			tr := e.rules[k]
			if tr == nil {
				tr = &toolRules{}
				e.rules[k] = tr
			}
			if g.Shadow {
				tr.shadow = append(tr.shadow, r)
			} else {
				tr.enforced = append(tr.enforced, r)
			}
		}
	}
	for _, tr := range e.rules {
		sortRules(tr.enforced)
		sortRules(tr.shadow)
	}
	return e, nil
}

func newRule(agent string, g registry.Grant) *rule {
	r := &rule{id: registry.GrantKey(agent, g.Tool, g.Action, g.Resource), agent: agent,
		label: fmt.Sprintf("%s.%s on %s", g.Tool, g.Action, g.Resource),
		pat:   compilePattern(g.Resource), tier: g.Tier, classes: g.ActionClasses}
	if g.Shadow {
		r.id = ShadowRulePrefix + r.id
	}
	if g.Approval != nil && g.Approval.Required || g.Tier == 3 {
		r.approval = true
		if g.Approval != nil {
			r.roles = g.Approval.ApproverRoles
		}
		r.allowed = fmt.Sprintf("tier %d grant %s needs approval by %s", g.Tier, r.label, orList(r.roles))
	} else {
		r.allowed = "allowed by grant " + r.label
	}
	return r
}

func limits(rl *registry.RateLimit) []Limit {
	var ls []Limit
	if rl == nil {
		return nil
	}
	if rl.PerHour > 0 {
		ls = append(ls, Limit{Window: time.Hour, Max: int64(rl.PerHour)})
	}
	if rl.PerDay > 0 {
		ls = append(ls, Limit{Window: 24 * time.Hour, Max: int64(rl.PerDay)})
	}
	return ls
}

// sortRules puts the most specific pattern first; ties keep the file's order.
func sortRules(rs []*rule) {
	slices.SortStableFunc(rs, func(a, b *rule) int {
		al, as := a.pat.specificity()
		bl, bs := b.pat.specificity()
		if al != bl {
			return bl - al
		}
		return as - bs
	})
}

// PolicyID and Version are what every decision of the engine carries.
func (e *Engine) PolicyID() string { return e.id }

// Version is the registry version the engine was built from.
func (e *Engine) Version() int64 { return e.version }

// Decide decides one intent. It does no I/O; a rate-limited grant's use is
// counted when the decision is allow or require_approval.
func (e *Engine) Decide(req Request) Decision {
	d := Decision{PolicyID: e.id, PolicyVersion: e.version, Tier: min(max(req.Tier, 1), 3), Remaining: -1, At: e.now()}
	team, ok := e.agents[req.AgentID]
	switch {
	case !ok:
		d.Outcome, d.Reason = schemas.OutcomeDeny, fmt.Sprintf("agent %q is not registered", req.AgentID)
		return d
	case req.Team != "" && req.Team != team:
		d.Outcome, d.Reason = schemas.OutcomeDeny, fmt.Sprintf("agent %s is registered to team %s, not %s", req.AgentID, team, req.Team)
		return d
	}
	tr := e.rules[ruleKey{req.AgentID, req.Tool, req.Action}]
	if tr == nil {
		evaluate(&d, &req, nil)
		return d
	}
	shadow := d
	evaluate(&d, &req, tr.enforced)
	if len(tr.shadow) > 0 {
		evaluate(&shadow, &req, tr.shadow)
		if shadow.Outcome != d.Outcome {
			d.Shadow, d.ShadowRule, d.ShadowReason = shadow.Outcome, shadow.MatchedRule, shadow.Reason
		}
	}
	return d
}

// evaluate decides req against one list of grants, most specific first: the
// first whose pattern matches the target and which admits the intent's tier
// and action class is the matched grant; when every matching grant refuses
// it, the most specific one's refusal is the reason.
func evaluate(d *Decision, req *Request, rules []*rule) {
	var g, refused *rule
	var why string
	for _, r := range rules {
		if !r.pat.match(req.Target) {
			continue
		}
		w := r.refuses(req)
		if w == "" {
			g = r
			break
		}
		if refused == nil {
			refused, why = r, w
		}
	}
	d.Outcome = schemas.OutcomeDeny
	switch {
	case g == nil && refused == nil:
		d.Reason = noGrant(req, rules)
		return
	case g == nil:
		d.MatchedRule, d.Grant, d.Reason = refused.id, refused.label, why
		return
	}
	d.MatchedRule, d.Grant, d.Tier = g.id, g.label, min(max(d.Tier, g.tier), 3)
	if g.counter != nil {
		tk := g.counter.Take(d.At)
		if !tk.OK {
			d.Remaining = 0
			d.Reason = fmt.Sprintf("rate limit %s of grant %s used up; the window frees up at %s",
				tk.Limit, g.label, tk.Frees.UTC().Format(time.RFC3339))
			return
		}
		d.Remaining = tk.Remaining
	}
	d.Reason = g.allowed
	if g.approval {
		d.Outcome, d.ApproverRoles = schemas.OutcomeRequireApproval, g.roles
		return
	}
	d.Outcome = schemas.OutcomeAllow
}

// refuses says why the grant, whose pattern matched, does not cover the
// intent's tier or action class; "" when it does.
func (r *rule) refuses(req *Request) string {
	if req.Tier > r.tier {
		return fmt.Sprintf("intent asks tier %d; grant %s is tier %d", req.Tier, r.label, r.tier)
	}
	if len(r.classes) > 0 && !slices.Contains(r.classes, req.ActionClass) {
		return fmt.Sprintf("action class %q is not one the grant %s covers (%s)", req.ActionClass, r.label, strings.Join(r.classes, ", "))
	}
	return ""
}

func noGrant(req *Request, rules []*rule) string {
	// Concatenated, not fmt: probing agents make this path hot.
	s := "no grant of agent " + req.AgentID + " for " + req.Tool + "." + req.Action + " on " + strconv.Quote(req.Target)
	if len(rules) == 0 {
		return s
	}
	pats := make([]string, len(rules))
	for i, r := range rules {
		pats[i] = r.pat.src
	}
	return s + " (granted on " + strings.Join(pats, ", ") + ")"
}

func orList(roles []string) string {
	switch len(roles) {
	case 0:
		return "an approver"
	case 1:
		return roles[0]
	}
	return strings.Join(roles[:len(roles)-1], ", ") + " or " + roles[len(roles)-1]
}
