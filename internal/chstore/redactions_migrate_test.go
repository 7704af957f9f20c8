package chstore_test

import (
	"context"
	"testing"

	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/testenv"
)

// Migration 0007 adds events.redactions and recreates v_events with DROP +
// CREATE: rerunning its statements (a crash before it was recorded) must
// work from any point, and v_events must show the column afterwards.
func TestRedactionsMigrationRerunnable(t *testing.T) {
	cfg, conn := testenv.ClickHouse(t) // migrated once
	ctx := context.Background()
	db := cfg.Database
	if err := conn.Exec(ctx, "INSERT INTO "+db+".events (event_id, trace_id, event_type, event_time, tier, agent_id, team) VALUES ('e1', 't1', 'intent', now64(6), 1, 'a', 'ops')"); err != nil {
		t.Fatal(err)
	}
	ms, err := chstore.Migrations(db)
	if err != nil {
		t.Fatal(err)
	}
	var m7 *chstore.Migration
	for i := range ms {
		if ms[i].Version == 7 {
			m7 = &ms[i]
		}
	}
	if m7 == nil || len(m7.Statements) != 3 {
		t.Fatalf("migration 7 = %+v", m7)
	}
	// Crashed after dropping the view: the rest, then all of it again.
	if err := conn.Exec(ctx, m7.Statements[1]); err != nil {
		t.Fatal(err)
	}
	for _, st := range append(m7.Statements[2:], m7.Statements...) {
		if err := conn.Exec(ctx, st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	var paths []string
	if err := conn.QueryRow(ctx, "SELECT redactions.path FROM "+db+".v_events WHERE event_id = 'e1'").Scan(&paths); err != nil {
		t.Fatal(err)
	}
	if len(paths) != 0 {
		t.Fatalf("an event stored without redactions has %v", paths)
	}
}
