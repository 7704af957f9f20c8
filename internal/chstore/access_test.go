package chstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/testenv"
)

// TestAccessRoles starts a real ClickHouse with deployments/clickhouse/users.xml:
// the writer migrates and inserts but removes or changes no event; the
// analyst reads every table and view of the database and can write, alter or
// drop nothing. The retention login is TestRetentionRole (reports/retention).
func TestAccessRoles(t *testing.T) {
	srv := testenv.StartClickHouseWithUsers(t, "../../deployments/clickhouse/users.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Setenv("TEST_WRITER_PASSWORD", "writer-dev-password")
	t.Setenv("TEST_ANALYST_PASSWORD", "analyst-dev-password")
	writerCfg := chstore.Config{Addr: []string{srv.Addr()}, Database: "agentrail", Username: "agentrail_writer", PasswordEnv: "TEST_WRITER_PASSWORD"}
	writer, err := chstore.Open(ctx, writerCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	if _, err := chstore.Migrate(ctx, writer, "agentrail"); err != nil {
		t.Fatalf("writer cannot migrate: %v", err)
	}
	if err := writer.Exec(ctx, "INSERT INTO agentrail.events (event_id, trace_id, event_type, event_time, tier, agent_id, team) VALUES ('e1', 't1', 'intent', now64(6), 1, 'a', 'ops')"); err != nil {
		t.Fatalf("writer cannot insert: %v", err)
	}
	// The writer removes or changes no event: only the retention login
	// drops partitions, and the ledger records its runs.
	for _, q := range []string{
		"DROP TABLE agentrail.events",
		"ALTER TABLE agentrail.events DELETE WHERE 1",
		"DELETE FROM agentrail.events WHERE 1",
		"ALTER TABLE agentrail.events UPDATE team = 'x' WHERE 1",
		"ALTER TABLE agentrail.events DROP PARTITION tuple(1, toMonday(now()))",
		"TRUNCATE TABLE agentrail.events",
		"ALTER TABLE agentrail.ledger DELETE WHERE 1",
		"ALTER TABLE agentrail.events DROP COLUMN rationale",
	} {
		if err := writer.Exec(ctx, q); !denied(err) {
			t.Errorf("writer %q: err = %v, want a privilege error", q, err)
		}
	}
	// Correlation rewrites its own violation rows when it redoes a batch.
	if err := writer.Exec(ctx, "DELETE FROM agentrail.violations WHERE trace_id = 'none'"); err != nil {
		t.Errorf("writer cannot delete its violation rows: %v", err)
	}

	analyst, err := chstore.Open(ctx, chstore.Config{Addr: []string{srv.Addr()}, Database: "agentrail",
		Username: "agentrail_analyst", PasswordEnv: "TEST_ANALYST_PASSWORD"})
	if err != nil {
		t.Fatal(err)
	}
	defer analyst.Close()
	rows, err := writer.Query(ctx, "SELECT name FROM system.tables WHERE database = 'agentrail' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) < 4 {
		t.Fatalf("only %v in the database", tables)
	}
	for _, tb := range tables {
		var n uint64
		if err := analyst.QueryRow(ctx, "SELECT count() FROM agentrail."+tb).Scan(&n); err != nil {
			t.Errorf("analyst cannot read %s: %v", tb, err)
		}
	}
	forbidden := []string{
		"INSERT INTO agentrail.events (event_id, trace_id, event_type, event_time, tier, agent_id, team) VALUES ('e2', 't2', 'intent', now64(6), 1, 'a', 'ops')",
		"ALTER TABLE agentrail.events ADD COLUMN sneaky String",
		"ALTER TABLE agentrail.events DELETE WHERE 1",
		"ALTER TABLE agentrail.events DROP PARTITION tuple(1, toMonday(now()))",
		"TRUNCATE TABLE agentrail.events",
		"DROP TABLE agentrail.events",
		"DROP VIEW agentrail.v_events",
		"CREATE TABLE agentrail.mine (x UInt8) ENGINE = Memory",
		"OPTIMIZE TABLE agentrail.events FINAL",
	}
	for _, q := range forbidden {
		err := analyst.Exec(ctx, q)
		if err == nil {
			t.Errorf("analyst could run: %s", q)
			continue
		}
		if !denied(err) {
			t.Errorf("analyst %q: %v (want a privilege or read-only error)", q, err)
		}
	}
	var n uint64
	if err := writer.QueryRow(ctx, "SELECT count() FROM agentrail.events").Scan(&n); err != nil || n != 1 {
		t.Fatalf("events after the analyst's attempts: %d rows, %v; want 1", n, err)
	}
}

// denied reports whether err is ClickHouse refusing for lack of privilege
// (code 497, ACCESS_DENIED) or because the profile is read-only (code 164).
func denied(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "code: 497") || strings.Contains(msg, "code: 164")
}
