package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/reports"
)

// `report weekly --team T` for a team that is neither registered nor has
// events is a finding (exit 1) and writes nothing; a team with events exits
// 0; a usage error exits 2.
func TestReportWeeklyUnknownTeamExitStatus(t *testing.T) {
	chCfg, conn := testenv.ClickHouse(t)
	ctx := context.Background()
	db := chCfg.Database
	args := func(team, dir string) []string {
		return []string{"report", "weekly", "--clickhouse", chCfg.Addr[0], "--database", db, "--team", team, "--out", dir}
	}
	// Migrate, through the command itself (no team has anything yet).
	if code := runArgs(ctx, args("finance", t.TempDir()), io.Discard, io.Discard); code != exitFinding {
		t.Fatalf("report weekly for a team with nothing at all: exit %d, want %d", code, exitFinding)
	}
	// One intent of team finance in the last complete week (UTC).
	from, _ := reports.LastComplete(time.Now(), time.UTC).Bounds(time.UTC)
	if err := conn.Exec(ctx, `INSERT INTO `+db+`.events (event_id, trace_id, event_type, event_time, tier, agent_id, team, tool, action, target, kafka_partition, kafka_offset)
		VALUES ('e1', '0123456789abcdef0123456789abcdef', 'intent', ?, 1, 'finance-bot-01', 'finance', 'ledger', 'read', 'account:1', 0, 0)`,
		from.Add(36*time.Hour).Format("2006-01-02 15:04:05")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, team string
		want       int
		files      int
	}{
		{"team with events", "finance", 0, 4},
		{"unknown team", "fiance", exitFinding, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if code := runArgs(ctx, args(tc.team, dir), io.Discard, io.Discard); code != tc.want {
				t.Errorf("exit %d, want %d", code, tc.want)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != tc.files {
				t.Errorf("%d files in %s, want %d", len(ents), filepath.Base(dir), tc.files)
			}
		})
	}
	if code := runArgs(ctx, []string{"report", "weekly", "--no-such-flag"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("usage error: exit %d, want 2", code)
	}
}
