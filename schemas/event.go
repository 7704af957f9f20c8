package schemas

import "time"

// EventType says which body an Event carries.
type EventType string

// The four event types, in the order an action usually goes through them.
const (
	TypeIntent   EventType = "intent"
	TypeDecision EventType = "policy_decision"
	TypeApproval EventType = "approval"
	TypeResult   EventType = "result"
)

// Policy decision outcomes.
const (
	OutcomeAllow           = "allow"
	OutcomeDeny            = "deny"
	OutcomeRequireApproval = "require_approval"
)

// Approval statuses.
const (
	ApprovalRequested = "requested"
	ApprovalGranted   = "granted"
	ApprovalRejected  = "rejected"
	ApprovalExpired   = "expired"
)

// Approval scopes.
const (
	ScopeSingle     = "single"
	ScopeBundle     = "bundle"
	ScopeTimeWindow = "time_window"
)

// Principal kinds, for approvers.
const (
	PrincipalHuman   = "human"
	PrincipalAgent   = "agent"
	PrincipalService = "service"
)

// Result statuses.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
	ResultError   = "error"
	ResultBlocked = "blocked"
)

// Risk tiers.
const (
	TierLow    = 1 // internal
	TierMedium = 2 // customer-facing
	TierHigh   = 3 // external, money, access, legal
)

// Event is one step of an agent action. Exactly one of Intent, Decision,
// Approval and Result is set, the one Type names.
type Event struct {
	EventID     string            `avro:"event_id" json:"event_id"`
	TraceID     string            `avro:"trace_id" json:"trace_id"`
	SpanID      string            `avro:"span_id" json:"span_id,omitempty"`
	Type        EventType         `avro:"event_type" json:"event_type"`
	Time        time.Time         `avro:"event_time" json:"event_time"`
	Agent       Agent             `avro:"agent" json:"agent"`
	RequestedBy string            `avro:"requested_by" json:"requested_by,omitempty"`
	Tier        int32             `avro:"tier" json:"tier"`
	Producer    Producer          `avro:"producer" json:"producer"`
	SessionID   string            `avro:"session_id" json:"session_id,omitempty"`
	Labels      map[string]string `avro:"labels" json:"labels,omitempty"`

	Intent   *Intent   `avro:"intent" json:"intent,omitempty"`
	Decision *Decision `avro:"decision" json:"policy_decision,omitempty"`
	Approval *Approval `avro:"approval" json:"approval,omitempty"`
	Result   *Result   `avro:"result" json:"result,omitempty"`
}

// Agent is the acting agent's own identity.
type Agent struct {
	ID          string `avro:"agent_id" json:"agent_id"`
	Version     string `avro:"agent_version" json:"agent_version,omitempty"`
	Team        string `avro:"team" json:"team"`
	Environment string `avro:"environment" json:"environment,omitempty"`
	Tenant      string `avro:"tenant" json:"tenant,omitempty"`
}

// Producer names the software that emitted the event.
type Producer struct {
	Name    string `avro:"name" json:"name,omitempty"`
	Version string `avro:"version" json:"version,omitempty"`
	Host    string `avro:"host" json:"host,omitempty"`
}

// Intent is what the agent means to do, before it does it.
type Intent struct {
	Tool          string            `avro:"tool" json:"tool"`
	Action        string            `avro:"action" json:"action"`
	Target        string            `avro:"target" json:"target,omitempty"`
	ActionClass   string            `avro:"action_class" json:"action_class"`
	Tier          int32             `avro:"tier" json:"tier"`
	Parameters    map[string]string `avro:"parameters" json:"parameters,omitempty"`
	ActionDigest  string            `avro:"action_digest" json:"action_digest"`
	Rationale     string            `avro:"rationale" json:"rationale,omitempty"`
	Context       map[string]string `avro:"context" json:"context,omitempty"`
	ModelID       string            `avro:"model_id" json:"model_id,omitempty"`
	PromptVersion string            `avro:"prompt_version" json:"prompt_version,omitempty"`
	EvidenceIDs   []string          `avro:"evidence_ids" json:"evidence_ids,omitempty"`
	Confidence    *float64          `avro:"confidence" json:"confidence,omitempty"`
}

// Decision is the policy engine's verdict on an intent.
type Decision struct {
	Outcome        string `avro:"outcome" json:"outcome"`
	PolicyID       string `avro:"policy_id" json:"policy_id"`
	PolicyVersion  int64  `avro:"policy_version" json:"policy_version"`
	MatchedRule    string `avro:"matched_rule" json:"matched_rule,omitempty"`
	Reason         string `avro:"reason" json:"reason,omitempty"`
	Tier           int32  `avro:"tier" json:"tier"`
	RemainingQuota *int64 `avro:"remaining_quota" json:"remaining_quota,omitempty"`
}

// Approval is a step of the human (or delegated) approval of an action.
type Approval struct {
	ApprovalID   string     `avro:"approval_id" json:"approval_id"`
	Status       string     `avro:"status" json:"status"`
	Approver     string     `avro:"approver" json:"approver,omitempty"`
	ApproverRole string     `avro:"approver_role" json:"approver_role,omitempty"`
	ApproverKind string     `avro:"approver_kind" json:"approver_kind,omitempty"`
	ActionDigest string     `avro:"action_digest" json:"action_digest,omitempty"`
	Scope        string     `avro:"scope" json:"scope,omitempty"`
	ExpiresAt    *time.Time `avro:"expires_at" json:"expires_at,omitempty"`
	Channel      string     `avro:"channel" json:"channel,omitempty"`
	Comment      string     `avro:"comment" json:"comment,omitempty"`
}

// Result is what actually happened when the action ran (or did not).
type Result struct {
	Status          string   `avro:"status" json:"status"`
	ActionDigest    string   `avro:"action_digest" json:"action_digest"`
	Executor        string   `avro:"executor" json:"executor,omitempty"`
	ChangedResource string   `avro:"changed_resource" json:"changed_resource,omitempty"`
	SideEffects     []string `avro:"side_effects" json:"side_effects,omitempty"`
	ErrorClass      string   `avro:"error_class" json:"error_class,omitempty"`
	ErrorMessage    string   `avro:"error_message" json:"error_message,omitempty"`
	DurationUS      int64    `avro:"duration_us" json:"duration_us,omitempty"`
}
