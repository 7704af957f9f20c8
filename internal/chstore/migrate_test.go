package chstore_test

import (
	"context"
	"os"
	"testing"

	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestMigrateIsIdempotent applies every migration to a real ClickHouse and
// checks a second run applies nothing and the tables and views exist.
func TestMigrateIsIdempotent(t *testing.T) {
	cfg, conn := testenv.ClickHouse(t) // already migrated once
	ctx := context.Background()
	applied, err := chstore.Migrate(ctx, conn, cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 0 {
		t.Fatalf("second migrate applied %v, want nothing", applied)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name IN ('events', 'v_events', 'dead_letters', 'schema_migrations')", cfg.Database).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("%d of 4 tables and views exist", n)
	}
	ms, _ := chstore.Migrations(cfg.Database)
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".schema_migrations FINAL").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if int(n) != len(ms) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(ms))
	}
}
