-- Roles for a production ClickHouse server or cluster (run as an admin; add
-- ON CLUSTER '<cluster>' to each statement on a cluster). The embedded server
-- cannot run SQL access management; it gets the same grants from users.xml.
--
-- Passwords: generate them in your secret store and pass them here with
-- clickhouse-client --param_writer_password=... or set them afterwards with
-- ALTER USER; agentrail reads its own from clickhouse.password_file or
-- clickhouse.password_env, never from its config file.

CREATE ROLE IF NOT EXISTS agentrail_writer;
-- The pipeline (ingest, ledger, reports, registry): migrate and insert. It
-- cannot delete or update events, nor drop a table or partition; the only
-- rows it deletes are its own violation rows, rewritten when correlation
-- redoes a batch. DROP VIEW: a migration that adds a column to a table
-- recreates the views over it; views hold no data.
GRANT CREATE DATABASE, CREATE TABLE, CREATE VIEW, DROP VIEW, SELECT, INSERT,
      ALTER ADD COLUMN, ALTER ADD INDEX, ALTER MATERIALIZE INDEX ON agentrail.* TO agentrail_writer;
GRANT ALTER DELETE ON agentrail.violations TO agentrail_writer;
GRANT TABLE ENGINE ON MergeTree TO agentrail_writer;
GRANT TABLE ENGINE ON ReplacingMergeTree TO agentrail_writer;
GRANT TABLE ENGINE ON AggregatingMergeTree TO agentrail_writer;
GRANT TABLE ENGINE ON ReplicatedReplacingMergeTree TO agentrail_writer;
GRANT TABLE ENGINE ON Distributed TO agentrail_writer;

-- Retention (reports serve, retention run): drops and rewrites expired
-- partitions of events through its own staging table. ClickHouse grants DROP
-- PARTITION and REPLACE PARTITION with ALTER DELETE, so this is the one role
-- that can remove events: give it to the retention service only; the ledger
-- records each run, and agentrail verify shows any other removal.
CREATE ROLE IF NOT EXISTS agentrail_retention;
GRANT SELECT, INSERT ON agentrail.* TO agentrail_retention;
GRANT SELECT ON system.parts TO agentrail_retention;
GRANT ALTER DELETE ON agentrail.events TO agentrail_retention;
GRANT CREATE TABLE, DROP TABLE, TRUNCATE ON agentrail.retention_stage TO agentrail_retention;
GRANT TABLE ENGINE ON ReplacingMergeTree TO agentrail_retention;

CREATE ROLE IF NOT EXISTS agentrail_analyst;
GRANT SELECT ON agentrail.* TO agentrail_analyst;
-- Analysts may set per-query settings (BI tools do) but never write.
CREATE SETTINGS PROFILE IF NOT EXISTS agentrail_analyst_profile SETTINGS readonly = 2, max_execution_time = 300 TO agentrail_analyst;

-- One login per service and per person:
-- CREATE USER agentrail_ingest IDENTIFIED WITH sha256_password BY '...' DEFAULT ROLE agentrail_writer;
-- CREATE USER agentrail_reports IDENTIFIED WITH sha256_password BY '...' DEFAULT ROLE agentrail_retention;
-- CREATE USER alice IDENTIFIED WITH sha256_password BY '...' DEFAULT ROLE agentrail_analyst;
