package bench

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
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

// The parallel load must hand over exactly the events one goroutine would
// make and encode, in the same order, and stop at n even within a trace.
func TestLoadEventsKeepsTheFleetsOrder(t *testing.T) {
	const n = 3*loadChunkEvents + 7 // more than the workers' queue, and a trace cut short
	from := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

	fleet := simulate.New(loadFleet)
	enc := schemas.NewSingleObjectEncoder()
	var wantAvro, wantJSON [][]byte
	at, step := from, loadSpan/time.Duration(n/3+1)
	for len(wantAvro) < n {
		at = at.Add(step)
		for _, ev := range fleet.NextTrace(at) {
			if len(wantAvro) == n {
				break
			}
			a, err := enc.AppendEncode(nil, &ev)
			if err != nil {
				t.Fatal(err)
			}
			j, err := schemas.AppendJSON(nil, &ev)
			if err != nil {
				t.Fatal(err)
			}
			wantAvro, wantJSON = append(wantAvro, a), append(wantJSON, j)
		}
	}

	var gotAvro, gotJSON [][]byte
	chunks := 0
	err := loadEvents(context.Background(), n, from, func(c *loadChunk) {
		chunks++
		if len(c.avro) != len(c.events) || len(c.json) != len(c.events) {
			t.Errorf("chunk %d: %d events, %d Avro, %d JSON", chunks, len(c.events), len(c.avro), len(c.json))
		}
		gotAvro, gotJSON = append(gotAvro, c.avro...), append(gotJSON, c.json...)
	})
	if err != nil {
		t.Fatal(err)
	}
	if chunks < 4 {
		t.Errorf("%d chunks, want at least 4", chunks)
	}
	if len(gotAvro) != n || len(gotJSON) != n {
		t.Fatalf("got %d Avro and %d JSON events, want %d", len(gotAvro), len(gotJSON), n)
	}
	for i := range n {
		if !bytes.Equal(gotAvro[i], wantAvro[i]) || !bytes.Equal(gotJSON[i], wantJSON[i]) {
			t.Fatalf("event %d differs from the sequential encoding:\n got %s\nwant %s", i, gotJSON[i], wantJSON[i])
		}
	}
}

// A canceled load returns the context's error rather than a short load.
func TestLoadEventsCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	sunk := 0
	err := loadEvents(ctx, 100*loadChunkEvents, time.Now(), func(*loadChunk) {
		if sunk++; sunk == 2 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if sunk >= 100 {
		t.Fatalf("sank all %d chunks after cancel", sunk)
	}
}
