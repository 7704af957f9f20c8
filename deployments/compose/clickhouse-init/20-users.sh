#!/bin/bash
# Runs once, on the ClickHouse container's first start (after
# 10-roles.sql, the roles of deployments/clickhouse/roles.sql): one login per
# agentrail duty, with the passwords init-secrets.sh made.
set -euo pipefail
writer=$(cat /run/secrets/clickhouse_writer_password)
retention=$(cat /run/secrets/clickhouse_retention_password)
clickhouse client --user "$CLICKHOUSE_USER" --password "$CLICKHOUSE_PASSWORD" --multiquery <<SQL
CREATE USER IF NOT EXISTS agentrail_ingest IDENTIFIED WITH sha256_password BY '${writer}' DEFAULT ROLE agentrail_writer;
GRANT agentrail_writer TO agentrail_ingest;
CREATE USER IF NOT EXISTS agentrail_reports IDENTIFIED WITH sha256_password BY '${retention}' DEFAULT ROLE agentrail_retention;
GRANT agentrail_retention TO agentrail_reports;
SQL
