-- Authentic events (signing/, consumers/verify.go): which key signed each
-- stored event, the events that failed verification, and the registry's
-- keys.

-- The key that signed the event ('' when ingest runs with signatures off).
ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS signer_key_id LowCardinality(String) DEFAULT '' AFTER duration_us;

-- A view made with SELECT * lists its columns when it is created: recreate
-- it so it shows signer_key_id. Same definition as 0001 (and as any other
-- migration that recreates it), so the order migrations run in does not
-- matter. Drop and create, not CREATE OR REPLACE (which drops a temporary
-- table, needing DROP TABLE) nor ALTER (ClickHouse cannot alter a plain
-- view's query): the writer role holds DROP VIEW but not DROP TABLE
-- (deployments/clickhouse/roles.sql). The view is missing for the moment
-- between the two statements.
DROP VIEW IF EXISTS {db}.v_events;
CREATE VIEW IF NOT EXISTS {db}.v_events AS
SELECT * EXCEPT (kafka_partition, kafka_offset, ingested_at) FROM {db}.events FINAL
SETTINGS do_not_merge_across_partitions_select_final = 1;

-- Events that failed signature verification: never in events or v_events.
-- One row per Kafka record (a redone batch rewrites the same rows), with
-- the envelope and action columns an investigation needs, why it failed,
-- and the key it named. Free-text fields (parameters, rationale, context,
-- labels, messages) are not kept: the record is unauthenticated. Its
-- original bytes stay on the events topic at (topic, partition, offset);
-- raw_sha256 identifies them.
CREATE TABLE IF NOT EXISTS {db}.quarantine
(
    topic            LowCardinality(String),
    partition        Int32,
    offset           Int64,
    reason           LowCardinality(String),
    detail           String,
    key_id           String,
    key_agent_id     LowCardinality(String),

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
    tool             LowCardinality(String),
    action           LowCardinality(String),
    target           String,
    action_class     LowCardinality(String),
    action_digest    String,
    outcome          LowCardinality(String),
    policy_id        LowCardinality(String),
    approval_id      String,
    approval_status  LowCardinality(String),
    approver         String,
    result_status    LowCardinality(String),

    raw_bytes        UInt32,
    raw_sha256       FixedString(64),
    quarantined_at   DateTime64(6, 'UTC') DEFAULT now64(6),

    INDEX idx_trace trace_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (topic, partition, offset);

-- Each quarantined record once, for analysts.
CREATE VIEW IF NOT EXISTS {db}.v_quarantine AS
SELECT * FROM {db}.quarantine FINAL;

-- The registry's keys as versioned rows, like the other registry_* tables
-- (0004): key id, agent, algorithm and validity; never secret material.
-- public_key is the ed25519 public key (base64), '' for HMAC keys.
CREATE TABLE IF NOT EXISTS {db}.registry_keys
(
    key_id         String,
    agent_id       String,
    team           LowCardinality(String),
    alg            LowCardinality(String),
    public_key     String,
    secret_source  LowCardinality(String),
    not_before     Nullable(DateTime64(3, 'UTC')),
    not_after      Nullable(DateTime64(3, 'UTC')),
    valid_from     DateTime64(3, 'UTC'),
    valid_to       DateTime64(3, 'UTC'),
    opened_version UInt32,
    closed_version UInt32
)
ENGINE = ReplacingMergeTree(closed_version)
ORDER BY (agent_id, key_id, valid_from);
