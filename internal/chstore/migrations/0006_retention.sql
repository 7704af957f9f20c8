-- Tier-based retention (reports/retention). Retention drops or rewrites
-- whole partitions of events; these tables hold the legal holds it honours
-- and the record of every run.

-- A legal hold keeps the events of one trace, agent or team past their
-- expiry until released. Releasing writes a new revision of the same hold.
CREATE TABLE IF NOT EXISTS {db}.legal_holds
(
    hold_id     String,
    scope       LowCardinality(String),
    value       String,
    reason      String,
    set_by      String,
    set_at      DateTime64(3, 'UTC'),
    released_at Nullable(DateTime64(3, 'UTC')),
    released_by String,
    revision    UInt8
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY hold_id;

-- One row per run: revision 1 when it starts, 2 when it ends (ok or failed).
-- A run that stays at revision 1 crashed; its actions show how far it got.
CREATE TABLE IF NOT EXISTS {db}.retention_runs
(
    run_id        String,
    started_at    DateTime64(3, 'UTC'),
    finished_at   Nullable(DateTime64(3, 'UTC')),
    status        LowCardinality(String),
    error         String,
    policy        String,
    trigger       LowCardinality(String),
    partitions    UInt32,
    rows_deleted  UInt64,
    rows_stripped UInt64,
    rows_held     UInt64,
    revision      UInt8
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY run_id;

-- One row per partition a run acted on: revision 1 before the change,
-- 2 after it. rows_* count events (each once, as v_events shows them).
CREATE TABLE IF NOT EXISTS {db}.retention_actions
(
    run_id        String,
    tier          UInt8,
    partition_id  String,
    range_start   DateTime64(3, 'UTC'),
    range_end     DateTime64(3, 'UTC'),
    action        LowCardinality(String),
    status        LowCardinality(String),
    rows_before   UInt64,
    rows_deleted  UInt64,
    rows_stripped UInt64,
    rows_held     UInt64,
    deleted_by_team Map(String, UInt64),
    holds         Array(String),
    at            DateTime64(3, 'UTC'),
    revision      UInt8
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (run_id, tier, partition_id);
