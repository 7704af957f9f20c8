// Package testenv starts the real components integration tests run against:
// the embedded Kafka broker in-process, and a real ClickHouse server from the
// engine library in a child process (or the one named by
// AGENTRAIL_TEST_CLICKHOUSE, which `make test` starts once for all packages).
//
// It deliberately does not mock anything, and does not skip: with CI=true a
// missing engine library fails the test.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentrail/agentrail/internal/broker"
	"github.com/agentrail/agentrail/internal/chserver"
	"github.com/agentrail/agentrail/internal/chstore"
)

// Broker starts an in-process embedded broker on a free port and returns its
// address; it is closed when the test ends.
func Broker(t testing.TB, topics ...string) string {
	t.Helper()
	c, err := broker.Start(broker.Config{Partitions: 12, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of an agentrail binary: $AGENTRAIL_BIN, or one
// built once per test process from this checkout.
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("AGENTRAIL_BIN"); p != "" {
			binPath, binErr = filepath.Abs(p)
			return
		}
		dir, err := os.MkdirTemp("", "agentrail-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "agentrail")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/agentrail/agentrail/cmd/agentrail")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build agentrail: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

var (
	chMu   sync.Mutex
	chProc *chserver.Process
	chAddr string
	chDir  string // the shared server's data, removed by Main
)

// ClickHouse returns a config for a fresh, migrated database on a real
// ClickHouse server, dropped when the test ends, and an open connection.
func ClickHouse(t testing.TB) (chstore.Config, driver.Conn) {
	t.Helper()
	addr := serverAddr(t)
	cfg := chstore.Config{Addr: []string{addr}, Database: "t_" + randomHex(6)}
	cfg.Defaults()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := chstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chstore.Migrate(ctx, conn, cfg.Database); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database+" SYNC")
		conn.Close()
	})
	return cfg, conn
}

func serverAddr(t testing.TB) string {
	if a := os.Getenv("AGENTRAIL_TEST_CLICKHOUSE"); a != "" {
		return a
	}
	chMu.Lock()
	defer chMu.Unlock()
	if chAddr != "" {
		return chAddr
	}
	dir, err := os.MkdirTemp("", "agentrail-ch-")
	if err != nil {
		t.Fatal(err)
	}
	p := StartClickHouse(t, dir)
	chProc, chAddr, chDir = p, p.Addr(), dir
	return chAddr
}

// StartClickHouse starts a server of the test's own in dataDir ("" makes a
// temporary one, removed when the test ends) on free ports. The caller stops
// it; Main stops the shared one.
func StartClickHouse(t testing.TB, dataDir string) *chserver.Process {
	t.Helper()
	return StartClickHouseOn(t, dataDir, 0, 0)
}

// StartClickHouseOn is StartClickHouse on the given ports (0 picks a free
// one): a fault test restarts a server where its clients expect it.
func StartClickHouseOn(t testing.TB, dataDir string, tcp, http int) *chserver.Process {
	t.Helper()
	return startClickHouse(t, chserver.Config{DataDir: dataDir, TCPPort: tcp, HTTPPort: http})
}

// StartClickHouseWithUsers starts a ClickHouse child on free ports whose
// users, passwords and grants are usersXML (deployments/clickhouse/users.xml,
// relative to the test's directory or absolute); it is stopped when the test
// ends.
func StartClickHouseWithUsers(t testing.TB, usersXML string) *chserver.Process {
	t.Helper()
	abs, err := filepath.Abs(usersXML)
	if err != nil {
		t.Fatal(err)
	}
	p := startClickHouse(t, chserver.Config{UsersXML: abs})
	t.Cleanup(func() { p.Stop(context.Background()) })
	return p
}

// startClickHouse starts a ClickHouse child with c's settings, filling a
// data directory and free ports where c leaves them unset.
func startClickHouse(t testing.TB, c chserver.Config) *chserver.Process {
	t.Helper()
	c.LibPath = RequireLibrary(t)
	var err error
	if c.DataDir == "" {
		c.DataDir = t.TempDir()
	}
	if c.TCPPort == 0 {
		if c.TCPPort, err = chserver.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	if c.HTTPPort == 0 {
		if c.HTTPPort, err = chserver.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := chserver.StartProcess(ctx, Binary(t), c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// RequireLibrary returns the ClickHouse engine library's path. Without it
// the test fails under CI and is skipped elsewhere, saying how to get it.
func RequireLibrary(t testing.TB) string {
	t.Helper()
	lib := chserver.DefaultLibPath()
	if _, err := os.Stat(lib); err != nil {
		msg := fmt.Sprintf("ClickHouse engine library not found at %s: run `make chdb`", lib)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return lib
}

// Main runs the tests and then stops the shared server. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	chMu.Lock()
	defer chMu.Unlock()
	if chProc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = chProc.Stop(ctx)
		_ = os.RemoveAll(chDir)
	}
	return code
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Eventually polls cond every 50ms until it returns true or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
		runtime.Gosched()
	}
}
