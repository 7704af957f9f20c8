package bench

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/agentrail/agentrail/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestRetireKeepsWithKeep: a run's database is dropped after the run, or,
// with --keep, stays and the bench says where.
func TestRetireKeepsWithKeep(t *testing.T) {
	cfg, conn := testenv.ClickHouse(t)
	ctx := context.Background()
	exists := func() bool {
		t.Helper()
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", cfg.Database).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	var out bytes.Buffer
	e := &env{cfg: Config{Keep: true, Dir: "/tmp/benchdir", Out: &out}, conn: conn}
	if err := e.retire(ctx, cfg.Database); err != nil {
		t.Fatal(err)
	}
	if !exists() {
		t.Fatal("--keep: the database was dropped")
	}
	if want := "kept database " + cfg.Database + " in /tmp/benchdir/clickhouse\n"; out.String() != want {
		t.Errorf("--keep printed %q, want %q", out.String(), want)
	}
	e.cfg.Keep = false
	if err := e.retire(ctx, cfg.Database); err != nil {
		t.Fatal(err)
	}
	if exists() {
		t.Fatal("without --keep the database is still there")
	}
}

// TestValidateNamesTheFlag: every out-of-range setting is refused with an
// error naming its flag, and the defaults pass.
func TestValidateNamesTheFlag(t *testing.T) {
	ok := Config{}
	ok.defaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for flag, mutate := range map[string]func(*Config){
		"--events":       func(c *Config) { c.Events = 10 },
		"--runs":         func(c *Config) { c.Runs = 21 },
		"--query-events": func(c *Config) { c.QueryEvents = 1 },
		"--batch-rows":   func(c *Config) { c.BatchRows = -1 },
		"--fresh-rate":   func(c *Config) { c.FreshRate = -5 },
		"--only":         func(c *Config) { c.Only = []string{"ours", "nope"} },
	} {
		c := ok
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s: got %v, want an error naming it", flag, err)
		}
	}
	c := ok
	c.BatchRows = 100_000
	if err := c.Validate(); err != nil {
		t.Errorf("--batch-rows 100000: %v", err)
	}
}
