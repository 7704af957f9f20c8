-- Redaction before storage (consumers/redact): each event records which of
-- its fields ingest redacted, how (drop, mask, pseudonym) and why (the
-- rule's name, or the detector's: email, card, phone, secret, high_entropy).
-- Never a value. Nested: three parallel arrays, so
--   SELECT ... FROM v_events ARRAY JOIN redactions
-- gives one row per redaction with redactions.path, .action and .rule.
-- Rows stored before this migration have empty arrays.
ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS redactions Nested(
        path   String,
        action LowCardinality(String),
        rule   LowCardinality(String)
    ) AFTER duration_us;

-- v_events was created with SELECT *, which expands to the columns of the
-- time; recreate it (same definition as 0001) so it shows the new column.
-- DROP + CREATE rather than CREATE OR REPLACE: the latter builds a temporary
-- table and needs DROP TABLE, which the writer role does not have (it has
-- DROP VIEW). Queries on v_events fail for the instant between the two; a
-- crash between them is mended by the rerun (the migration is recorded only
-- when both have run).
DROP VIEW IF EXISTS {db}.v_events;
CREATE VIEW IF NOT EXISTS {db}.v_events AS
SELECT * EXCEPT (kafka_partition, kafka_offset, ingested_at) FROM {db}.events FINAL
SETTINGS do_not_merge_across_partitions_select_final = 1;
