// Package policy is the gate: it decides allow, deny or require_approval
// for an agent's intent from the grants of one registry version
// (reports/registry), before the agent acts.
//
// New compiles the registry once into an immutable engine: an agent index,
// and per agent, tool and action its grants with their resource patterns
// compiled, most specific first. Decide then answers, in this order:
//   - an unregistered agent, or one claiming another team than its own, is
//     denied;
//   - the grants of the agent for the tool and action whose resource
//     pattern matches the target ("*" any run of characters, the rest
//     literal: registry.MatchResource, the weekly report's matching) are
//     tried most specific first (more literal bytes, then fewer "*", then
//     the file's order). The first that admits the intent's tier (an intent
//     may not ask a higher tier than its grant; a lower claim is raised to
//     the grant's) and action class (the grant's action_classes, if any) is
//     the matched grant. None matching: deny, "no grant of agent X for
//     tool.action on target"; all refusing: deny with the most specific
//     one's reason;
//   - a rate-limited grant (tier 2's rate_limit, per hour and per day) takes
//     one use; a window used up denies, naming the limit and when the window
//     frees up. The decision carries the uses remaining (the last allowed
//     use has 0);
//   - a tier 3 grant, or one with approval.required, gives require_approval
//     naming the approver roles; anything else is allowed.
//
// Every decision carries policy_id and policy_version: the id is
// DefaultPolicyID ("registry", WithPolicyID to change it) and the version
// the registry version the engine was built from (what registry.Apply
// returned, registry_versions.version). Versions only grow, so
// correlation's stale_policy flags a decision made by a gate still on an
// older registry than others. matched_rule is registry.GrantKey of the
// grant, which is registry_grants.grant_key: the weekly report joins a
// decision to the grant it used.
//
// Quotas are counted in fixed windows aligned to the clock (UTC hours and
// days) on the engine's clock (WithClock), not on a time the caller
// claims. Counters sit behind the Quotas interface, asked once per grant at
// New, so a Decide costs one uncontended mutex per rate-limited grant.
// Across several gateway or proxy instances the simple first answer is
// per-instance shares: NewLocalQuotas(N) gives each of N instances
// limit/N (rounded down) of every limit, N coming from config; together
// they never exceed the limit, and no instance exceeds its share when
// another is gone (the cost: a busy instance is refused while an idle one
// has room). Counting through Kafka (each gate publishing its uses on a
// compacted topic and summing the others') is a later Quotas
// implementation behind the same interface.
//
// Shadow grants (shadow: true in the registry) are a proposed change: an
// agent's shadow grants for a tool and action stand in, in a second
// evaluation, for its enforced grants of that tool and action. The
// enforced grants decide; when the shadow evaluation decides otherwise
// (typically deny where enforcement allows), the decision carries Shadow,
// ShadowRule and ShadowReason, and the event body's reason says
// "; shadow deny: …". Shadow grants count their own quotas.
//
// Environment: grants carry none yet, so Request.Environment is not
// decided on. The restriction would be an optional environments list on a
// grant (environments: [prod]), refusing like action_classes does.
//
// It deliberately does no I/O: no Kafka, no ClickHouse, no emitting of
// events (the SDK and gateway emit the intent and Decision.Schema), no
// registry reload (build a new engine and pass it the old one's Quotas).
// Controls (pause, read-only, exclusions) and break-glass are later pieces
// and not here. It has no metrics: the surfaces count decisions by outcome.
package policy
