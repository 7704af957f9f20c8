-- Tamper evidence (package ledger): a hash chain of signed entries over the
-- stored events, and an index of the offset ranges it sealed.

-- One row per chain entry: a seal (digests of the events in Kafka offset
-- ranges) or a retention record (what a retention run removed or rewrote).
-- Plain MergeTree, not Replacing: a second, different entry with the same
-- seq must stay visible (verify reports it as a fork), and a deleted entry
-- leaves a gap verify names.
CREATE TABLE IF NOT EXISTS {db}.ledger
(
    seq        UInt64,
    kind       LowCardinality(String),
    at         DateTime64(6, 'UTC'),
    prev_hash  String,
    entry_hash String,
    key_id     LowCardinality(String),
    signature  String,
    body       String CODEC(ZSTD(3)),
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY seq;

-- The latest sealed state of every range, for the sealer and retention to
-- find ranges quickly. verify does not trust it: it rebuilds every state
-- from the signed entries.
CREATE TABLE IF NOT EXISTS {db}.ledger_ranges
(
    kafka_partition Int32,
    offset_from     Int64,
    offset_to       Int64,
    seq             UInt64,
    kind            LowCardinality(String),
    rows            UInt64,
    digest          String,
    columns         Array(LowCardinality(String)),
    at              DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(seq)
ORDER BY (kafka_partition, offset_from);

-- Sealing and verifying read events by Kafka offset range: a min-max index
-- skips the parts and granules outside it (new parts get it at once; older
-- parts when merged, or after MATERIALIZE INDEX).
ALTER TABLE {db}.events ADD INDEX IF NOT EXISTS idx_kafka_offset kafka_offset TYPE minmax GRANULARITY 1;
