-- The agent registry as versioned rows (reports/registry). Nothing is
-- updated in place: `agentrail registry apply` closes a row (a copy with
-- valid_to set and closed_version > 0, which ReplacingMergeTree keeps over
-- the open copy) and opens a new one. Open rows have valid_to 2200-01-01.
-- "What was granted at T" is valid_from <= T AND valid_to > T, read FINAL.

-- One row per apply: who, when, from which file, what changed.
CREATE TABLE IF NOT EXISTS {db}.registry_versions
(
    version      UInt32,
    applied_at   DateTime64(3, 'UTC'),
    effective_at DateTime64(3, 'UTC'),
    applied_by   String,
    source       String,
    sha256       String,
    teams        UInt32,
    agents       UInt32,
    grants       UInt32,
    opened       UInt32,
    closed       UInt32
)
ENGINE = ReplacingMergeTree
ORDER BY version;

CREATE TABLE IF NOT EXISTS {db}.registry_teams
(
    team           String,
    timezone       String,
    schedule       String,
    recipients     Array(String),
    valid_from     DateTime64(3, 'UTC'),
    valid_to       DateTime64(3, 'UTC'),
    opened_version UInt32,
    closed_version UInt32
)
ENGINE = ReplacingMergeTree(closed_version)
ORDER BY (team, valid_from);

CREATE TABLE IF NOT EXISTS {db}.registry_agents
(
    agent_id       String,
    team           LowCardinality(String),
    owner          String,
    description    String,
    valid_from     DateTime64(3, 'UTC'),
    valid_to       DateTime64(3, 'UTC'),
    opened_version UInt32,
    closed_version UInt32
)
ENGINE = ReplacingMergeTree(closed_version)
ORDER BY (agent_id, valid_from);

-- resource_like is the grant's resource pattern as a LIKE pattern, so the
-- report can match intents' targets in SQL.
CREATE TABLE IF NOT EXISTS {db}.registry_grants
(
    grant_key         String,
    agent_id          String,
    team              LowCardinality(String),
    tool              LowCardinality(String),
    action            LowCardinality(String),
    resource          String,
    resource_like     String,
    tier              UInt8,
    rate_per_hour     UInt32,
    rate_per_day      UInt32,
    approval_required Bool,
    approver_roles    Array(String),
    valid_from        DateTime64(3, 'UTC'),
    valid_to          DateTime64(3, 'UTC'),
    opened_version    UInt32,
    closed_version    UInt32
)
ENGINE = ReplacingMergeTree(closed_version)
ORDER BY (agent_id, grant_key, valid_from);
