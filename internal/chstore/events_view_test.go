package chstore_test

import (
	"context"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/agentrail/agentrail/internal/testenv"
)

// TestEventsViewFinalPerPartition: v_events shows redelivered copies of an
// event once, though they sit in separate parts; collapses copies
// partition by partition (migration 0010), so a conflicting copy with
// another tier, in another partition, shows too; and works for a readonly
// session, which may not set the view's setting itself.
func TestEventsViewFinalPerPartition(t *testing.T) {
	cfg, conn := testenv.ClickHouse(t)
	ctx := context.Background()
	insert := func(tier uint8, offset int64) {
		t.Helper()
		if err := conn.Exec(ctx, `INSERT INTO `+cfg.Database+`.events
			(event_id, trace_id, event_type, event_time, tier, agent_id, team, kafka_partition, kafka_offset)
			VALUES ('e1', 't1', 'intent', '2026-11-16 09:30:00', ?, 'bot-1', 'finance', 0, ?)`, tier, offset); err != nil {
			t.Fatal(err)
		}
	}
	// No merge may combine the parts before the view is read: FINAL must.
	if err := conn.Exec(ctx, "SYSTEM STOP MERGES "+cfg.Database+".events"); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{10, 20, 30} { // three deliveries, three parts
		insert(2, off)
	}
	insert(3, 40)
	var parts uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = ? AND table = 'events' AND active", cfg.Database).Scan(&parts); err != nil {
		t.Fatal(err)
	}
	if parts != 4 {
		t.Fatalf("%d active parts, want 4 (one per insert, none merged yet)", parts)
	}
	ro := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"readonly": 1}))
	rows, err := conn.Query(ro, "SELECT tier, count() FROM "+cfg.Database+".v_events WHERE event_id = 'e1' GROUP BY tier ORDER BY tier")
	if err != nil {
		t.Fatalf("v_events in a readonly session: %v", err)
	}
	defer rows.Close()
	got := map[uint8]uint64{}
	for rows.Next() {
		var tier uint8
		var n uint64
		if err := rows.Scan(&tier, &n); err != nil {
			t.Fatal(err)
		}
		got[tier] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[2] != 1 || got[3] != 1 {
		t.Fatalf("v_events rows of e1 by tier: %v, want the three tier-2 deliveries as one row and the tier-3 copy as another", got)
	}
}
