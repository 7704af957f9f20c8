-- The events and dead_letters tables on the 2-shard x 2-replica cluster of
-- this folder: a ReplicatedReplacingMergeTree table per node in database
-- agentrail_local, and a Distributed table of the same name in database
-- agentrail, which ingest writes and analysts read (README.md here).
-- Columns, keys, partitions and settings are those of the migrations
-- (internal/chstore/migrations) as of this file; TestClusterSchema checks
-- the column names still match what the migrations create, and that every
-- statement parses (formatQuery), on the real server.
--
-- agentrail's migrations do not create this layout (they run on one server,
-- without ON CLUSTER): on a cluster the schema is applied by hand from files
-- like this one, and `agentrail migrate` must not be run against it.

CREATE DATABASE IF NOT EXISTS agentrail_local ON CLUSTER agentrail;

CREATE DATABASE IF NOT EXISTS agentrail ON CLUSTER agentrail;

-- One replica per node; {shard} and {replica} come from macros.xml. The
-- version column (dedup_rank) and the sort key are the single-server
-- table's, so a re-delivered event collapses on its shard as it does today
-- (every copy of an event has the same agent_id, so the same shard).
CREATE TABLE IF NOT EXISTS agentrail_local.events ON CLUSTER agentrail
(
    `event_id` String,
    `trace_id` String,
    `span_id` String,
    `event_type` LowCardinality(String),
    `event_time` DateTime64(6, 'UTC'),
    `tier` UInt8,
    `agent_id` LowCardinality(String),
    `agent_version` LowCardinality(String),
    `team` LowCardinality(String),
    `environment` LowCardinality(String),
    `tenant` LowCardinality(String),
    `requested_by` String,
    `producer_name` LowCardinality(String),
    `producer_version` LowCardinality(String),
    `producer_host` LowCardinality(String),
    `session_id` String,
    `labels` Map(String, String),
    `tool` LowCardinality(String),
    `action` LowCardinality(String),
    `target` String,
    `action_class` LowCardinality(String),
    `parameters` Map(String, String),
    `action_digest` String,
    `rationale` String CODEC(ZSTD(3)),
    `context` Map(String, String),
    `model_id` LowCardinality(String),
    `prompt_version` LowCardinality(String),
    `evidence_ids` Array(String),
    `confidence` Nullable(Float64),
    `outcome` LowCardinality(String),
    `policy_id` LowCardinality(String),
    `policy_version` Int64,
    `matched_rule` LowCardinality(String),
    `reason` String,
    `remaining_quota` Nullable(Int64),
    `approval_id` String,
    `approval_status` LowCardinality(String),
    `approver` String,
    `approver_role` LowCardinality(String),
    `approver_kind` LowCardinality(String),
    `scope` LowCardinality(String),
    `expires_at` Nullable(DateTime64(6, 'UTC')),
    `channel` LowCardinality(String),
    `comment` String,
    `result_status` LowCardinality(String),
    `executor` String,
    `changed_resource` String,
    `side_effects` Array(String),
    `error_class` LowCardinality(String),
    `error_message` String,
    `duration_us` Int64,
    `signer_key_id` LowCardinality(String) DEFAULT '',
    `redactions.path` Array(String),
    `redactions.action` Array(LowCardinality(String)),
    `redactions.rule` Array(LowCardinality(String)),
    `kafka_partition` Int32,
    `kafka_offset` Int64,
    `ingested_at` DateTime64(6, 'UTC') DEFAULT now64(6),
    `dedup_rank` UInt64 MATERIALIZED 9223372036854775807 - kafka_offset,
    INDEX idx_trace trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_event event_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_kafka_offset kafka_offset TYPE minmax GRANULARITY 1
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/agentrail/events', '{replica}', dedup_rank)
PARTITION BY (tier, if(tier = 1, toMonday(event_time), toStartOfMonth(event_time)))
ORDER BY (team, agent_id, toStartOfHour(event_time), trace_id, event_id)
SETTINGS replicated_deduplication_window = 1000, index_granularity = 8192;

-- Ingest inserts here with distributed_foreground_insert = 1 (the insert
-- returns once the shard has the block, so offsets commit after the rows
-- are durable). sipHash64(agent_id): one agent's events on one shard.
CREATE TABLE IF NOT EXISTS agentrail.events ON CLUSTER agentrail AS agentrail_local.events
ENGINE = Distributed(agentrail, agentrail_local, events, sipHash64(agent_id));

CREATE TABLE IF NOT EXISTS agentrail_local.dead_letters ON CLUSTER agentrail
(
    `received_at` DateTime64(6, 'UTC') DEFAULT now64(6),
    `topic` LowCardinality(String),
    `partition` Int32,
    `offset` Int64,
    `reason_class` LowCardinality(String),
    `field` LowCardinality(String),
    `reason` String,
    `raw_bytes` UInt32,
    `raw_sha256` FixedString(64)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/agentrail/dead_letters', '{replica}')
ORDER BY (topic, partition, offset)
SETTINGS index_granularity = 8192;

-- Dead letters are keyed by Kafka position: shard by it, so a redone
-- batch's copy lands where the first one did and collapses.
CREATE TABLE IF NOT EXISTS agentrail.dead_letters ON CLUSTER agentrail AS agentrail_local.dead_letters
ENGINE = Distributed(agentrail, agentrail_local, dead_letters, cityHash64(topic, partition, offset));

-- v_events stays a view over the Distributed table: FINAL is applied on
-- each shard, which is exact because every copy of an event is on one shard,
-- and partition by partition, since every copy is in one partition too
-- (migration 0010).
CREATE VIEW IF NOT EXISTS agentrail.v_events ON CLUSTER agentrail AS
SELECT * FROM agentrail.events FINAL
SETTINGS do_not_merge_across_partitions_select_final = 1;
