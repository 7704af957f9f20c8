package chserver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// childEnv makes the test binary act as `agentrail clickhouse`, so the
// integration test needs no build step: StartProcess runs os.Executable().
const childEnv = "AGENTRAIL_CHSERVER_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runChild does what cmd/agentrail does for `clickhouse`.
func runChild(args []string) int {
	if len(args) == 0 || args[0] != "clickhouse" {
		fmt.Fprintf(os.Stderr, "chserver test child: want subcommand clickhouse, got %q\n", args)
		return 2
	}
	var cfg Config
	fs := flag.NewFlagSet("clickhouse", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Serve(ctx, cfg); err != nil {
		cfg.Logger.Error("serve", "err", err)
		return 1
	}
	return 0
}

func TestConfigValidate(t *testing.T) {
	good := Config{LibPath: "/lib/libchdb.so", DataDir: "/tmp/ch", TCPPort: 19000, HTTPPort: 18123}
	for _, tc := range []struct {
		name    string
		edit    func(*Config)
		wantErr string // "" means valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no lib", func(c *Config) { c.LibPath = "" }, "LibPath"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"tcp port zero", func(c *Config) { c.TCPPort = 0 }, "TCPPort 0 out of range 1..65535"},
		{"tcp port too big", func(c *Config) { c.TCPPort = 65536 }, "TCPPort 65536 out of range"},
		{"http port negative", func(c *Config) { c.HTTPPort = -1 }, "HTTPPort -1 out of range"},
		{"same ports", func(c *Config) { c.HTTPPort = c.TCPPort }, "HTTPPort 19000 equals TCPPort"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			err := cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "chserver: ") {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestMissingLibrary(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "nope", "libchdb.so")
	cfg := Config{LibPath: lib, DataDir: filepath.Join(dir, "data"), TCPPort: 19000, HTTPPort: 18123}
	want := `chserver: ClickHouse engine library not found at ` + lib + `: run "make chdb" (or set AGENTRAIL_CHDB_LIB)`

	err := Serve(context.Background(), cfg)
	if !errors.Is(err, ErrLibraryMissing) || err.Error() != want {
		t.Errorf("Serve() = %v, want %q", err, want)
	}
	_, err = StartProcess(context.Background(), "/bin/false", cfg)
	if !errors.Is(err, ErrLibraryMissing) || err.Error() != want {
		t.Errorf("StartProcess() = %v, want %q", err, want)
	}
	if engineUsed.Load() {
		t.Error("Serve marked the engine used without loading it")
	}
}

func TestDefaultLibPath(t *testing.T) {
	t.Setenv("AGENTRAIL_CHDB_LIB", "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if got, want := DefaultLibPath(), "/xdg/agentrail/chdb/"+LibVersion+"/libchdb.so"; got != want {
		t.Errorf("with XDG_CACHE_HOME: %q, want %q", got, want)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if got, want := DefaultLibPath(), "/home/u/.cache/agentrail/chdb/"+LibVersion+"/libchdb.so"; got != want {
		t.Errorf("with HOME: %q, want %q", got, want)
	}
	t.Setenv("AGENTRAIL_CHDB_LIB", "/opt/libchdb.so")
	if got := DefaultLibPath(); got != "/opt/libchdb.so" {
		t.Errorf("with AGENTRAIL_CHDB_LIB: %q", got)
	}
}

// The child parses what StartProcess passes with RegisterFlags.
func TestFlagArgsRoundTrip(t *testing.T) {
	want := Config{LibPath: "/l/libchdb.so", DataDir: "/d", TCPPort: 1, HTTPPort: 2, UsersXML: "/u.xml", SystemLogs: true}
	var got Config
	fs := flag.NewFlagSet("clickhouse", flag.ContinueOnError)
	got.RegisterFlags(fs)
	if err := fs.Parse(want.flagArgs()); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip = %+v, want %+v", got, want)
	}
}

// TestEngineConfigSystemLogs: the query and part logs are configured only
// when asked for; they cost the server a little on every statement.
func TestEngineConfigSystemLogs(t *testing.T) {
	for _, on := range []bool{false, true} {
		conf := engineConfig(Config{DataDir: "/d", SystemLogs: on})
		for _, tag := range []string{"<query_log>", "<part_log>"} {
			if got := strings.Contains(conf, tag); got != on {
				t.Errorf("SystemLogs %v: config has %s = %v\n%s", on, tag, got, conf)
			}
		}
	}
}

// childServer returns this test binary (which acts as the server child,
// see TestMain) and a config on free ports; without the engine library the
// test fails under CI and is skipped elsewhere.
func childServer(t *testing.T) (string, Config) {
	t.Helper()
	lib := DefaultLibPath()
	if err := checkLibrary(lib); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skipf("%v; the integration test needs it", err)
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(childEnv, "1") // inherited by the child only; TestMain already ran
	cfg := Config{LibPath: lib, DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	if cfg.TCPPort, err = FreePort(); err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPPort, err = FreePort(); err != nil {
		t.Fatal(err)
	}
	return bin, cfg
}

// startChild starts the server child and connects to it; both are closed
// when the test ends (a stopped server's connection just fails).
func startChild(ctx context.Context, t *testing.T, bin string, cfg Config) (*Process, clickhouse.Conn) {
	t.Helper()
	p, err := StartProcess(ctx, bin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{p.Addr()}, Auth: clickhouse.Auth{Username: "default"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return p, conn
}

// TestServeRealClickHouse starts the real engine in a child process, writes
// through the native protocol, SIGKILLs the server and checks that the rows
// survive a restart on the same data dir.
func TestServeRealClickHouse(t *testing.T) {
	bin, cfg := childServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	start := func() (*Process, clickhouse.Conn) { t.Helper(); return startChild(ctx, t, bin, cfg) }
	count := func(conn clickhouse.Conn) uint64 {
		t.Helper()
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM events").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	p, conn := start()
	if err := conn.Exec(ctx, `CREATE TABLE events (
		ts DateTime64(3, 'UTC'), agent String, attrs Map(String, String), n UInt64
	) ENGINE = MergeTree ORDER BY (agent, ts)`); err != nil {
		t.Fatal(err)
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO events")
	if err != nil {
		t.Fatal(err)
	}
	const rows = 10_000
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range rows {
		agent := fmt.Sprintf("agent-%d", i%7)
		if err := batch.Append(t0.Add(time.Duration(i)*time.Millisecond), agent, map[string]string{"i": fmt.Sprint(i)}, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	if n := count(conn); n != rows {
		t.Fatalf("count() = %d after insert, want %d", n, rows)
	}
	// The engine read the config chserver wrote: merges below inserts.
	var nice string
	if err := conn.QueryRow(ctx, "SELECT value FROM system.server_settings WHERE name = 'os_threads_nice_value_merge_mutate'").Scan(&nice); err != nil || nice != "10" {
		t.Fatalf("os_threads_nice_value_merge_mutate = %q (%v), want 10", nice, err)
	}
	// ...and the child can apply it exactly when we could: it keeps our
	// capabilities.
	if own, err := MergesBelowInserts(os.Getpid()); err != nil {
		t.Fatal(err)
	} else if child, err := MergesBelowInserts(p.Pid()); err != nil || child != own {
		t.Fatalf("server pid %d: merges below inserts %v (%v), want %v as this process", p.Pid(), child, err, own)
	}

	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("server still answers after SIGKILL")
	}

	p, conn = start()
	if n := count(conn); n != rows {
		t.Fatalf("count() = %d after SIGKILL and restart, want %d", n, rows)
	}
	stopCtx, cancelStop := context.WithTimeout(ctx, 30*time.Second)
	defer cancelStop()
	stopErr := p.Stop(stopCtx)
	log, err := os.ReadFile(filepath.Join(cfg.DataDir, LogName))
	if err != nil {
		t.Fatal(err)
	}
	if stopErr != nil || !strings.Contains(string(log), "clickhouse stopped") {
		t.Errorf("clean stop: %v; server.log:\n%s", stopErr, log)
	}
}

// TestSystemLogsAfterRestart: the query log keeps working when the server
// starts again on the same data dir (the engine used to find the previous
// run's log directory in its way, and every flush failed).
func TestSystemLogsAfterRestart(t *testing.T) {
	bin, cfg := childServer(t)
	cfg.SystemLogs = true
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for run := 1; run <= 2; run++ {
		p, conn := startChild(ctx, t, bin, cfg)
		marker := fmt.Sprintf("SELECT %d AS restart_marker", run)
		if err := conn.Exec(ctx, marker); err != nil {
			t.Fatal(err)
		}
		// A flush that cannot write waits for the log to catch up: bound it.
		flushCtx, cancelFlush := context.WithTimeout(ctx, 20*time.Second)
		err := conn.Exec(flushCtx, "SYSTEM FLUSH LOGS")
		cancelFlush()
		if err != nil {
			t.Fatalf("run %d: flush the system logs: %v", run, err)
		}
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.query_log WHERE query = ?", marker).Scan(&n); err != nil {
			t.Fatalf("run %d: read system.query_log: %v", run, err)
		}
		if n == 0 {
			t.Fatalf("run %d: system.query_log has no row for %q", run, marker)
		}
		stopCtx, cancelStop := context.WithTimeout(ctx, 30*time.Second)
		err = p.Stop(stopCtx)
		cancelStop()
		if err != nil {
			t.Fatalf("run %d: stop: %v", run, err)
		}
	}
}

// TestSurvivesMisbehavingClients: a client that speaks HTTP to the native
// port, or resets its connection, must not take the server down (in
// non-interactive clickhouse-local it did: ClickHouse issue 115666).
func TestSurvivesMisbehavingClients(t *testing.T) {
	bin, cfg := childServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := StartProcess(ctx, bin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()

	for range 3 {
		// HTTP on the native port: an unexpected packet.
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		_, _ = io.ReadAll(io.LimitReader(c, 4096))
		c.Close()
		// A native connection reset mid-handshake (SO_LINGER 0 sends RST).
		c, err = net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte{0x00, 0x0a})
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{p.Addr()}, Auth: clickhouse.Auth{Username: "default"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint8
	if err := conn.QueryRow(ctx, "SELECT 42").Scan(&n); err != nil || n != 42 {
		t.Fatalf("after misbehaving clients: SELECT 42 = %d, %v", n, err)
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
}
