-- Weekly report runs and mail deliveries (reports/).

-- One row per report run (scheduled, catch-up or manual): revision 1 when
-- it starts, 2 when it ends. status: running, ok, failed, skipped.
CREATE TABLE IF NOT EXISTS {db}.report_runs
(
    run_id      String,
    trigger     LowCardinality(String),
    team        LowCardinality(String),
    week        LowCardinality(String),
    started_at  DateTime64(3, 'UTC'),
    finished_at Nullable(DateTime64(3, 'UTC')),
    status      LowCardinality(String),
    reason      String,
    recipients  UInt16,
    sent        UInt16,
    revision    UInt8
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (team, week, run_id);

-- Every delivery attempt, per recipient: "sending" before the SMTP
-- exchange, then "sent" or "failed" (with the reason). A "sending" without
-- an outcome is a send interrupted between the exchange and its record; the
-- next run marks it "unconfirmed" and does not send that week to that
-- recipient again. Read before every send: a week goes to a recipient once.
CREATE TABLE IF NOT EXISTS {db}.report_deliveries
(
    team       LowCardinality(String),
    week       LowCardinality(String),
    recipient  String,
    run_id     String,
    attempt    UInt8,
    status     LowCardinality(String),
    message_id String,
    error      String,
    at         DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (team, week, recipient, at);
