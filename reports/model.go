package reports

import "time"

// Weekly is one team's permission report for one ISO week. It marshals to
// the report's JSON form. Every time in it is UTC; the renderers show them
// in TimeZone.
type Weekly struct {
	Team        string    `json:"team"`
	Week        string    `json:"week"`
	TimeZone    string    `json:"timezone"`
	From        time.Time `json:"from"` // Monday 00:00 in TimeZone
	To          time.Time `json:"to"`   // the next Monday 00:00
	GeneratedAt time.Time `json:"generated_at"`
	// Partial is true for a report made before its week ended: it covers
	// From to CoversUntil only, and never stands in for the final report.
	Partial     bool      `json:"partial"`
	CoversUntil time.Time `json:"covers_until"` // To, or GeneratedAt when partial
	Recipients  []string  `json:"recipients"`

	Registry RegistryInfo `json:"registry"`
	Figures  Figures      `json:"figures"`
	Previous Figures      `json:"previous_week"`
	Changes  []Change     `json:"week_over_week"`

	Actions []ActionRow  `json:"actions_by_tier_and_class"`
	Denials []DenialRow  `json:"top_denials"`
	Agents  []AgentEntry `json:"agents"`

	Permissions Permissions `json:"permissions"`
	Violations  Violations  `json:"violations"`
	Alerts      Alerts      `json:"alerts"`
	Daily       []DailyRow  `json:"daily"`
	Retention   Retention   `json:"retention"`
}

// Location is the team's time zone (UTC if TimeZone does not load).
func (r *Weekly) Location() *time.Location {
	if l, err := time.LoadLocation(r.TimeZone); err == nil {
		return l
	}
	return time.UTC
}

// Coverage says what a partial report covers, in the team's zone:
// "partial: Mon 7 Dec 00:00 – Wed 9 Dec 14:05 CET"; "" for a final one.
func (r *Weekly) Coverage() string {
	if !r.Partial {
		return ""
	}
	loc := r.Location()
	const f = "Mon 2 Jan 15:04"
	return "partial: " + r.From.In(loc).Format(f) + " – " + r.CoversUntil.In(loc).Format(f+" MST")
}

// RegistryInfo says which registry version the permission findings used.
type RegistryInfo struct {
	Loaded  bool      `json:"loaded"`
	Version int       `json:"version,omitempty"`
	Applied time.Time `json:"applied_at,omitzero"`
	Agents  int       `json:"agents"` // of this team, at the week's end
	Grants  int       `json:"grants"` // in force at the week's end
}

// Figures are the counts and the autonomy figures of a team or an agent.
// An action is a trace whose intent falls in the week.
type Figures struct {
	Actions   int `json:"actions"`
	Allowed   int `json:"allowed"`   // the policy allowed it outright
	Escalated int `json:"escalated"` // the policy asked a human (approvals requested)
	Denied    int `json:"denied"`
	Granted   int `json:"approvals_granted"`
	Rejected  int `json:"approvals_rejected"`
	Expired   int `json:"approvals_expired"`
	Pending   int `json:"approvals_pending"` // escalated, no decision recorded
	Executed  int `json:"executed"`          // a result of success, failure or error
	Failed    int `json:"failed"`            // failure or error
	// MedianApproveSeconds is the median time from the policy's escalation
	// to the granting approval; nil without granted approvals.
	MedianApproveSeconds *float64 `json:"median_approve_seconds"`

	// Autonomy figures (nil when the denominator is zero):
	AutoApproved *float64 `json:"auto_approved_share"` // allowed / decided
	EscalatedPct *float64 `json:"escalated_share"`     // escalated / decided
	DenialRate   *float64 `json:"denial_rate"`         // denied / decided
	OverrideRate *float64 `json:"human_override_rate"` // rejected / (granted + rejected)
	FailureRate  *float64 `json:"tool_failure_rate"`   // failed / executed

	Violations int `json:"violations"`
	Alerts     int `json:"alerts"`
}

// Change is one figure this week against the week before.
type Change struct {
	Metric   string   `json:"metric"`
	Previous *float64 `json:"previous"`
	Current  *float64 `json:"current"`
	Delta    *float64 `json:"delta"`
}

// ActionRow counts a tier and action class's actions.
type ActionRow struct {
	Tier        int    `json:"tier"`
	ActionClass string `json:"action_class"`
	Actions     int    `json:"actions"`
	Allowed     int    `json:"allowed"`
	Escalated   int    `json:"escalated"`
	Denied      int    `json:"denied"`
	Executed    int    `json:"executed"`
	Failed      int    `json:"failed"`
}

// DenialRow is a policy and reason that denied actions.
type DenialRow struct {
	PolicyID string `json:"policy_id"`
	Reason   string `json:"reason"`
	Count    int    `json:"count"`
}

// AgentEntry is one agent's part of the report.
type AgentEntry struct {
	AgentID    string      `json:"agent_id"`
	Owner      string      `json:"owner"`
	Registered bool        `json:"registered"` // in the registry at the week's end
	Figures    Figures     `json:"figures"`
	TopDenials []DenialRow `json:"top_denials"`
	Unused     int         `json:"unused_grants"`
	Repeated   int         `json:"repeatedly_denied"`
	Ungranted  int         `json:"ungranted_actions"`
}

// Permissions are the findings against the registry's versioned grants.
type Permissions struct {
	LookbackDays int       `json:"lookback_days"`
	LookbackFrom time.Time `json:"lookback_from"`
	// Unused grants were in force for the whole lookback window and never
	// used in it: over-broad, propose to revoke.
	Unused []GrantFinding `json:"unused"`
	// TooNew grants were granted inside the window and are unused so far;
	// not yet judged.
	TooNew []GrantFinding `json:"unused_too_new"`
	// Repeated are tool actions denied at least RepeatedDenials times in the
	// week: under-scoped (the agent holds a grant for the tool action) or
	// probing (it holds none).
	Repeated []RepeatedDenial `json:"repeatedly_denied"`
	// Ungranted are actions attempted with no matching grant in force.
	Ungranted []Ungranted `json:"ungranted"`
	// BeforeRegistry counts the week's actions whose intent predates the
	// first registry version (in force from RegistryFrom): nothing was
	// granted then, so they are not judged, and not called ungranted.
	BeforeRegistry int       `json:"before_registry"`
	RegistryFrom   time.Time `json:"registry_from,omitzero"`
}

// GrantFinding is one grant the report comments on.
type GrantFinding struct {
	AgentID  string    `json:"agent_id"`
	Tool     string    `json:"tool"`
	Action   string    `json:"action"`
	Resource string    `json:"resource"`
	Tier     int       `json:"tier"`
	Since    time.Time `json:"granted_since"`
	Version  int       `json:"registry_version"`
	Proposal string    `json:"proposal"`
}

// RepeatedDenial is one agent's tool action denied again and again.
type RepeatedDenial struct {
	AgentID    string      `json:"agent_id"`
	Tool       string      `json:"tool"`
	Action     string      `json:"action"`
	Denials    int         `json:"denials"`
	Assessment string      `json:"assessment"` // under-scoped or probing
	Reasons    []DenialRow `json:"reasons"`
}

// Ungranted is one agent's tool action attempted without a grant.
type Ungranted struct {
	AgentID       string `json:"agent_id"`
	Tool          string `json:"tool"`
	Action        string `json:"action"`
	Attempts      int    `json:"attempts"`
	Denied        int    `json:"denied"`
	Executed      int    `json:"executed"`
	ExampleTarget string `json:"example_target"`
	ExampleTrace  string `json:"example_trace"`
}

// Violations are the governance violations of the week.
type Violations struct {
	Available bool        `json:"available"`
	Note      string      `json:"note,omitempty"`
	Total     int         `json:"total"`
	Items     []Violation `json:"items"`
}

// Violation is one detected violation, with the command showing its trace.
type Violation struct {
	ID          string    `json:"violation_id"`
	Kind        string    `json:"kind"`
	Severity    string    `json:"severity"`
	AgentID     string    `json:"agent_id"`
	TraceID     string    `json:"trace_id"`
	EventTime   time.Time `json:"event_time"`
	Explanation string    `json:"explanation"`
	TraceCmd    string    `json:"trace_command"`
}

// Alerts are the anomaly alerts raised in the week.
type Alerts struct {
	Available bool    `json:"available"`
	Note      string  `json:"note,omitempty"`
	Total     int     `json:"total"`
	Items     []Alert `json:"items"`
}

// Alert is one anomaly alert: the traces of its first events, and the
// command that shows the first of them.
type Alert struct {
	ID          string    `json:"alert_id"`
	Rule        string    `json:"rule"`
	Kind        string    `json:"kind"`
	Severity    string    `json:"severity"`
	AgentID     string    `json:"agent_id"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	Observed    float64   `json:"observed"`
	Threshold   float64   `json:"threshold"`
	RaisedAt    time.Time `json:"raised_at"`
	Traces      []string  `json:"trace_ids"`
	TraceCmd    string    `json:"trace_command,omitempty"` // of Traces[0]
}

// DailyRow is one local day and tier of the chart.
type DailyRow struct {
	Date    string `json:"date"` // YYYY-MM-DD in the team's zone
	Tier    int    `json:"tier"`
	Actions int    `json:"actions"`
	Denials int    `json:"denials"`
}

// Retention summarises retention as of the week's end.
type Retention struct {
	Policy      string          `json:"policy"`
	Runs        int             `json:"runs"` // finished during the week
	FailedRuns  int             `json:"failed_runs"`
	LastRun     time.Time       `json:"last_run,omitzero"`
	LastStatus  string          `json:"last_status,omitempty"`
	Tiers       []RetentionTier `json:"tiers"`
	ActiveHolds []HoldEntry     `json:"holds"` // on this team, its agents or its traces
}

// RetentionTier is what the week's runs did to one tier.
type RetentionTier struct {
	Tier        int       `json:"tier"`
	KeptFor     string    `json:"kept_for"`
	Deleted     uint64    `json:"deleted_all_teams"`
	DeletedTeam uint64    `json:"deleted_this_team"`
	Stripped    uint64    `json:"stripped"`
	Held        uint64    `json:"kept_by_holds"`
	From        time.Time `json:"range_from,omitzero"`
	To          time.Time `json:"range_to,omitzero"`
}

// HoldEntry is a legal hold in force at the week's end.
type HoldEntry struct {
	ID     string    `json:"hold_id"`
	Scope  string    `json:"scope"`
	Value  string    `json:"value"`
	Reason string    `json:"reason"`
	SetBy  string    `json:"set_by"`
	SetAt  time.Time `json:"set_at"`
}
