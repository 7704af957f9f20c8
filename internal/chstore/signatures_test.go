package chstore_test

import (
	"context"
	"testing"

	"github.com/agentrail/agentrail/internal/testenv"
)

// Migration 0008 recreates v_events so it shows the column it adds to
// events, and keeps the columns v_events hides hidden.
func TestEventsViewShowsSignerKey(t *testing.T) {
	cfg, conn := testenv.ClickHouse(t)
	rows, err := conn.Query(context.Background(), "SELECT name FROM system.columns WHERE database = ? AND table = 'v_events'", cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		cols[n] = true
	}
	if !cols["signer_key_id"] || !cols["event_id"] || cols["kafka_offset"] || cols["ingested_at"] {
		t.Fatalf("v_events columns: %v", cols)
	}
}
