-- Trace correlation (consumers/correlate): one record per trace, the
-- governance violations found, and the views analysts query directly.
-- docs/ANALYSTS.md explains every column and gives example queries.

-- One row per trace. The correlator writes a new row each time a batch adds
-- events to the trace; version is the number of distinct events correlated,
-- so the most complete record wins. The stage columns describe the trace's
-- primary action (its earliest intent); the counts cover all its actions.
-- The state (open, abandoned, incomplete, completed) depends on the clock,
-- so v_traces computes it from abandon_at at query time.
CREATE TABLE IF NOT EXISTS {db}.traces
(
    trace_id            String,
    kafka_partition     Int32,
    team                LowCardinality(String),
    agent_id            LowCardinality(String),
    agent_version       LowCardinality(String),
    environment         LowCardinality(String),
    tenant              LowCardinality(String),
    session_id          String,
    requested_by        String,

    tool                LowCardinality(String),
    action              LowCardinality(String),
    target              String,
    action_class        LowCardinality(String),
    tier                UInt8,

    outcome             LowCardinality(String),
    policy_id           LowCardinality(String),
    policy_version      Int64,
    matched_rule        LowCardinality(String),

    approval_id         String,
    approval_status     LowCardinality(String),
    approver            String,
    approver_kind       LowCardinality(String),
    approval_scope      LowCardinality(String),
    approval_expires_at Nullable(DateTime64(6, 'UTC')),

    result_status       LowCardinality(String),
    executor            String,
    changed_resource    String,
    error_class         LowCardinality(String),

    intent_time         Nullable(DateTime64(6, 'UTC')),
    decision_time       Nullable(DateTime64(6, 'UTC')),
    approval_time       Nullable(DateTime64(6, 'UTC')),
    result_time         Nullable(DateTime64(6, 'UTC')),
    first_event_time    DateTime64(6, 'UTC'),
    last_event_time     DateTime64(6, 'UTC'),

    -- Milliseconds between stages; NULL when a stage is missing, negative
    -- when the events say the stages ran out of order.
    decision_ms         Nullable(Int64),
    approval_wait_ms    Nullable(Int64),
    execution_ms        Nullable(Int64),
    total_ms            Nullable(Int64),

    events              UInt32,
    intents             UInt32,
    decisions           UInt32,
    approvals           UInt32,
    results             UInt32,
    actions             UInt32,
    pending_actions     UInt32,
    orphan_actions      UInt32,

    -- last_event_time + correlation.abandon_after
    abandon_at          DateTime64(6, 'UTC'),
    -- The correlator's restart bookkeeping: violation kinds that rested on
    -- missing evidence when the row was written (those not in violations
    -- yet are waiting to settle), and when the earliest still waiting may be
    -- emitted (ingest's clock at the result's arrival + settle_after).
    unconfirmed         Array(LowCardinality(String)),
    settle_at           Nullable(DateTime64(6, 'UTC')),
    updated_at          DateTime64(6, 'UTC'),
    version             UInt64,

    INDEX idx_first first_event_time TYPE minmax GRANULARITY 4,
    INDEX idx_team team TYPE set(1000) GRANULARITY 4
)
ENGINE = ReplacingMergeTree(version)
ORDER BY trace_id
SETTINGS index_granularity = 1024;

-- One row per trace and kind, emitted once. kafka_partition and
-- kafka_offset are the partition of the trace and the first offset of the
-- batch that emitted it: a row at or after a partition's committed offset
-- belongs to a batch that was not committed, and the correlator deletes it
-- before redoing that batch. Re-inserting the same violation is harmless.
CREATE TABLE IF NOT EXISTS {db}.violations
(
    violation_id        String,
    kind                LowCardinality(String),
    severity            LowCardinality(String),
    trace_id            String,
    span_id             String,
    team                LowCardinality(String),
    agent_id            LowCardinality(String),
    requested_by        String,
    tool                LowCardinality(String),
    action              LowCardinality(String),
    tier                UInt8,
    policy_id           LowCardinality(String),
    policy_version      Int64,
    event_time          DateTime64(6, 'UTC'),
    detected_at         DateTime64(6, 'UTC'),
    deciding_event_id   String,
    evidence_event_ids  Array(String),
    explanation         String,
    kafka_partition     Int32,
    kafka_offset        Int64
)
ENGINE = ReplacingMergeTree
ORDER BY (trace_id, kind);

-- When each version of each policy was first seen in a decision, kept up
-- to date by ClickHouse on every insert into events: the correlator's
-- stale-policy check loads it at start and every policy_refresh without
-- scanning the decisions. min and argMin do not mind a decision counted
-- twice (the backfill below may overlap the first inserts).
CREATE TABLE IF NOT EXISTS {db}.policy_versions
(
    policy_id       LowCardinality(String),
    policy_version  Int64,
    first_seen      SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    first_event     AggregateFunction(argMin, String, DateTime64(6, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (policy_id, policy_version);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv_policy_versions TO {db}.policy_versions AS
SELECT policy_id, policy_version, min(event_time) AS first_seen, argMinState(event_id, event_time) AS first_event
FROM {db}.events
WHERE event_type = 'policy_decision'
GROUP BY policy_id, policy_version;

-- Decisions stored before this migration.
INSERT INTO {db}.policy_versions
SELECT policy_id, policy_version, min(event_time), argMinState(event_id, event_time)
FROM {db}.events
WHERE event_type = 'policy_decision'
GROUP BY policy_id, policy_version;

-- Every trace once, with its state as of now and the kinds of its
-- violations.
CREATE VIEW IF NOT EXISTS {db}.v_traces AS
SELECT
    t.* EXCEPT (kafka_partition, unconfirmed, settle_at, version),
    multiIf(t.pending_actions > 0 AND now64(6) < t.abandon_at, 'open',
            t.pending_actions > 0, 'abandoned',
            t.orphan_actions > 0, 'incomplete',
            'completed') AS state,
    v.kinds AS violations
FROM {db}.traces AS t FINAL
LEFT JOIN
(
    SELECT trace_id, groupArray(kind) AS kinds FROM {db}.violations FINAL GROUP BY trace_id
) AS v USING (trace_id);

-- Every violation once.
CREATE VIEW IF NOT EXISTS {db}.v_violations AS
SELECT * EXCEPT (kafka_partition, kafka_offset) FROM {db}.violations FINAL;

-- Actions waiting on a human (the policy asked for an approval that has not
-- been given, refused or expired) and approvals granted but not used yet
-- and not expired: both are open authorizations.
CREATE VIEW IF NOT EXISTS {db}.v_open_approvals AS
SELECT
    trace_id, team, agent_id, requested_by, tool, action, target, tier,
    policy_id, policy_version, matched_rule,
    if(approval_status = 'granted', 'granted_unused', 'awaiting_approval') AS open_kind,
    approval_id, approval_status, approver, approval_scope, approval_expires_at,
    coalesce(decision_time, first_event_time) AS requested_at,
    approval_time,
    dateDiff('second', coalesce(approval_time, decision_time, first_event_time), now64(6)) AS waiting_s,
    now64(6) >= abandon_at AS overdue
FROM {db}.traces FINAL
WHERE outcome = 'require_approval'
  AND result_status = ''
  AND (approval_status IN ('', 'requested')
       OR (approval_status = 'granted' AND (approval_expires_at IS NULL OR approval_expires_at > now64(6))));
