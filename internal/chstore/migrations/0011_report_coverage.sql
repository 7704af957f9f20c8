-- A report sent before its week ended is partial: it must never stand in
-- for the final report. Deliveries and runs say which one they were, and
-- the at-most-once check before a final send reads final deliveries only
-- (reports/service.go). Rows from before this migration read as 'final'.
ALTER TABLE {db}.report_deliveries ADD COLUMN IF NOT EXISTS coverage LowCardinality(String) DEFAULT 'final' AFTER status;
ALTER TABLE {db}.report_runs ADD COLUMN IF NOT EXISTS coverage LowCardinality(String) DEFAULT 'final' AFTER status;
