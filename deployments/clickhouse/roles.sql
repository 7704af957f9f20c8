-- Roles for a production ClickHouse server or cluster (run as an admin; add
-- ON CLUSTER '<cluster>' to each statement on a cluster). The embedded server
-- cannot run SQL access management; it gets the same grants from users.xml.
--
-- Passwords: generate them in your secret store and pass them here with
-- clickhouse-client --param_writer_password=... or set them afterwards with
-- ALTER USER; agentrail reads its own from clickhouse.password_file or
-- clickhouse.password_env, never from its config file.

CREATE ROLE IF NOT EXISTS agentrail_writer;
-- DROP VIEW: migrations recreate views when the tables under them gain
-- columns; a view holds no data. No DROP TABLE.
GRANT CREATE DATABASE, CREATE TABLE, CREATE VIEW, DROP VIEW, SELECT, INSERT, ALTER, OPTIMIZE ON agentrail.* TO agentrail_writer;
GRANT TABLE ENGINE ON MergeTree TO agentrail_writer;
GRANT TABLE ENGINE ON ReplacingMergeTree TO agentrail_writer;
GRANT TABLE ENGINE ON AggregatingMergeTree TO agentrail_writer;
GRANT TABLE ENGINE ON ReplicatedReplacingMergeTree TO agentrail_writer;
GRANT TABLE ENGINE ON Distributed TO agentrail_writer;

CREATE ROLE IF NOT EXISTS agentrail_analyst;
GRANT SELECT ON agentrail.* TO agentrail_analyst;
-- Analysts may set per-query settings (BI tools do) but never write.
CREATE SETTINGS PROFILE IF NOT EXISTS agentrail_analyst_profile SETTINGS readonly = 2, max_execution_time = 300 TO agentrail_analyst;

-- One login per service and per person:
-- CREATE USER agentrail_ingest IDENTIFIED WITH sha256_password BY '...' DEFAULT ROLE agentrail_writer;
-- CREATE USER alice IDENTIFIED WITH sha256_password BY '...' DEFAULT ROLE agentrail_analyst;
