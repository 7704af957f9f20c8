-- Every accepted event, one row each. ReplacingMergeTree on the sort key
-- (which ends in event_id) collapses a redelivered event into one row; the
-- v_events view reads with FINAL so analysts see each event exactly once even
-- before the background merge has run.
--
-- Sort key: the analysts' second question ("what did this team / agent do in
-- a time range") is a prefix range scan; the first ("everything about one
-- trace") uses the trace_id bloom filter. Partitions: by tier, weekly for
-- tier 1 (kept for weeks) and monthly for tiers 2 and 3 (kept for years), so
-- retention drops whole partitions instead of mutating rows.
CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id         String,
    trace_id         String,
    span_id          String,
    event_type       LowCardinality(String),
    event_time       DateTime64(6, 'UTC'),
    tier             UInt8,
    agent_id         LowCardinality(String),
    agent_version    LowCardinality(String),
    team             LowCardinality(String),
    environment      LowCardinality(String),
    tenant           LowCardinality(String),
    requested_by     String,
    producer_name    LowCardinality(String),
    producer_version LowCardinality(String),
    producer_host    LowCardinality(String),
    session_id       String,
    labels           Map(String, String),

    tool             LowCardinality(String),
    action           LowCardinality(String),
    target           String,
    action_class     LowCardinality(String),
    parameters       Map(String, String),
    action_digest    String,
    rationale        String CODEC(ZSTD(3)),
    context          Map(String, String),
    model_id         LowCardinality(String),
    prompt_version   LowCardinality(String),
    evidence_ids     Array(String),
    confidence       Nullable(Float64),

    outcome          LowCardinality(String),
    policy_id        LowCardinality(String),
    policy_version   Int64,
    matched_rule     LowCardinality(String),
    reason           String,
    remaining_quota  Nullable(Int64),

    approval_id      String,
    approval_status  LowCardinality(String),
    approver         String,
    approver_role    LowCardinality(String),
    approver_kind    LowCardinality(String),
    scope            LowCardinality(String),
    expires_at       Nullable(DateTime64(6, 'UTC')),
    channel          LowCardinality(String),
    comment          String,

    result_status    LowCardinality(String),
    executor         String,
    changed_resource String,
    side_effects     Array(String),
    error_class      LowCardinality(String),
    error_message    String,
    duration_us      Int64,

    kafka_partition  Int32,
    kafka_offset     Int64,
    ingested_at      DateTime64(6, 'UTC') DEFAULT now64(6),
    -- When an event was delivered more than once, merges keep the copy with
    -- the lowest offset: its first delivery, which is where correlation
    -- places it in the stream.
    dedup_rank       UInt64 MATERIALIZED 9223372036854775807 - kafka_offset,

    INDEX idx_trace trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_event event_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(dedup_rank)
PARTITION BY (tier, if(tier = 1, toMonday(event_time), toStartOfMonth(event_time)))
ORDER BY (team, agent_id, toStartOfHour(event_time), trace_id, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Exactly-once as analysts see it.
CREATE VIEW IF NOT EXISTS {db}.v_events AS
SELECT * EXCEPT (kafka_partition, kafka_offset, ingested_at) FROM {db}.events FINAL
SETTINGS do_not_merge_across_partitions_select_final = 1;

-- Records ingest could not accept. The original bytes go to the dead-letter
-- topic; here only their size and digest, so nothing unvalidated reaches the
-- analysts' tables.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    received_at  DateTime64(6, 'UTC') DEFAULT now64(6),
    topic        LowCardinality(String),
    partition    Int32,
    offset       Int64,
    reason_class LowCardinality(String),
    field        LowCardinality(String),
    reason       String,
    raw_bytes    UInt32,
    raw_sha256   FixedString(64)
)
ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, offset);
