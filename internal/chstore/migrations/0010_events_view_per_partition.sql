-- v_events collapses an event's copies partition by partition
-- (do_not_merge_across_partitions_select_final). Every copy of an event has
-- the same tier and event time, so it lands in the same partition, and no
-- copy is missed. FINAL then merges each partition on its own: smaller
-- merges, which can run in parallel, instead of one sorted stream across
-- every part a query reads (docs/PERFORMANCE-HISTORY.md, "v_events merges
-- partition by partition").
--
-- Two rows with the same sort key in different partitions (the same event
-- id claimed with two tiers: a conflicting copy, not a redelivery) now both
-- show, as they stay stored: background merges never combine partitions.
--
-- The setting is part of the view, so it applies to every user, readonly
-- ones included (a readonly user may not set it in a query). Same
-- definition as 0001, 0007 and 0008, so the order migrations run in does
-- not matter. DROP + CREATE, as in 0007: the writer role holds DROP VIEW,
-- not DROP TABLE.
DROP VIEW IF EXISTS {db}.v_events;
CREATE VIEW IF NOT EXISTS {db}.v_events AS
SELECT * EXCEPT (kafka_partition, kafka_offset, ingested_at) FROM {db}.events FINAL
SETTINGS do_not_merge_across_partitions_select_final = 1;
