package retention

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/reports/internal/fixture"
)

// TestRetentionRole runs retention on a real ClickHouse with the grants of
// deployments/clickhouse/users.xml: the retention login can do what a run
// needs (drop expired partitions, strip fields through its staging table,
// record the run). That the writer cannot remove events is TestAccessRoles.
func TestRetentionRole(t *testing.T) {
	srv := testenv.StartClickHouseWithUsers(t, "../../deployments/clickhouse/users.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Setenv("TEST_WRITER_PASSWORD", "writer-dev-password")
	t.Setenv("TEST_RETENTION_PASSWORD", "retention-dev-password")
	open := func(user, env string) driver.Conn {
		c, err := chstore.Open(ctx, chstore.Config{Addr: []string{srv.Addr()}, Database: "agentrail", Username: user, PasswordEnv: env})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	writer := open("agentrail_writer", "TEST_WRITER_PASSWORD")
	if _, err := chstore.Migrate(ctx, writer, "agentrail"); err != nil {
		t.Fatalf("writer cannot migrate: %v", err)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	evs := synthetic(now)
	if err := fixture.InsertEvents(ctx, writer, "agentrail", evs); err != nil {
		t.Fatal(err)
	}
	want := expect(evs, now, func(fixture.Event) bool { return false })

	// The retention login passes the migration check of an up-to-date
	// database without any right to create.
	reten := open("agentrail_retention", "TEST_RETENTION_PASSWORD")
	if applied, err := chstore.Migrate(ctx, reten, "agentrail"); err != nil || len(applied) != 0 {
		t.Fatalf("retention login on a migrated database: applied %v, err %v", applied, err)
	}

	var rc Config
	rc.Defaults()
	enforcer := func(conn driver.Conn) *Enforcer {
		e, err := New(rc, conn, "agentrail", prometheus.NewRegistry(), quiet, WithClock(func() time.Time { return now }))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	run, err := enforcer(reten).Enforce(ctx, false, "test")
	if err == nil {
		err = run.Err
	}
	if err != nil {
		t.Fatalf("retention as the retention login: %v", err)
	}
	if run.Deleted != want.deleted[1]+want.deleted[2] || run.Stripped != want.stripped[1] {
		t.Fatalf("run deleted %d, stripped %d; want %d and %d", run.Deleted, run.Stripped, want.deleted[1]+want.deleted[2], want.stripped[1])
	}
	if n := countEvents(t, writer); n != uint64(len(want.kept)) {
		t.Fatalf("after the run: %d events, want %d", n, len(want.kept))
	}
	t.Logf("retention login deleted %d and stripped %d events, %d kept", run.Deleted, run.Stripped, len(want.kept))
}

func countEvents(t *testing.T, conn driver.Conn) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM agentrail.v_events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
