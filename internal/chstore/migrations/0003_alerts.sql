-- Alerts raised by the anomaly rules (anomaly/), one row per version: an
-- ongoing burst is one alert_id whose version grows as it is updated, and
-- ReplacingMergeTree(version) keeps the latest. Rows are written by ingest in
-- the same batch as the events that raised them and re-written identically
-- when a batch is redone, so the table is idempotent by (alert_id, version).
--
-- Times are event times (when the agents acted), except inserted_at, the
-- wall-clock time the version was written. raised_at is the stream's newest
-- event time when the alert was first raised; reports read alerts by it.
-- event_ids lead back to the evidence: v_events has a bloom filter on
-- event_id, so "the traces behind an alert" is one query (docs/RULES.md).
CREATE TABLE IF NOT EXISTS {db}.alerts
(
    alert_id       String,
    version        UInt64,
    rule           LowCardinality(String),
    kind           LowCardinality(String),
    severity       LowCardinality(String),
    team           LowCardinality(String),
    agent_id       LowCardinality(String),
    group_key      String,
    window_start   DateTime64(6, 'UTC'),
    window_end     DateTime64(6, 'UTC'),
    observed       Float64,
    threshold      Float64,
    event_ids      Array(String),
    first_seen     DateTime64(6, 'UTC'),
    last_seen      DateTime64(6, 'UTC'),
    raised_at      DateTime64(6, 'UTC'),
    suppress_until DateTime64(6, 'UTC'),
    late_events    UInt64,
    summary        String CODEC(ZSTD(3)),
    inserted_at    DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(raised_at)
ORDER BY alert_id;

-- Each alert once, at its latest version, for analysts and reports.
CREATE VIEW IF NOT EXISTS {db}.v_alerts AS
SELECT * FROM {db}.alerts FINAL;
