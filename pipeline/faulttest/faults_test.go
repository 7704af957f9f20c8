package faulttest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrail/agentrail/internal/chserver"
	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/testenv"
)

// TestPoisonRecords: 1% poison of every kind in a stream of good events.
func TestPoisonRecords(t *testing.T) {
	addr := testenv.Broker(t, eventsTopic, "agentrail.events.dlq")
	ch, conn := testenv.ClickHouse(t)
	h := newHarness(t, addr, ch, conn)
	p := h.newProducer(1, 0.01)
	if err := p.run(context.Background(), size(30_000, 300_000), 0); err != nil {
		t.Fatal(err)
	}
	h.startIngest("ingest")
	h.account(2 * time.Minute)
	if len(h.poison) < 7 {
		t.Fatalf("only %d poison records made: not every kind covered", len(h.poison))
	}
}

// TestIngestKilledRepeatedly: SIGKILL the ingest process again and again
// while events keep arriving; a new one starts each time.
func TestIngestKilledRepeatedly(t *testing.T) {
	addr := testenv.Broker(t, eventsTopic, "agentrail.events.dlq")
	ch, conn := testenv.ClickHouse(t)
	h := newHarness(t, addr, ch, conn)
	total, kills := size(100_000, 1_000_000), size(4, 10)
	ctx, cancel := context.WithTimeout(context.Background(), size(3*time.Minute, 12*time.Minute))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.newProducer(2, 0.001).run(ctx, total, size(20_000.0, 40_000.0)) }()
	every := size(1200*time.Millisecond, 3*time.Second)
	start := time.Now()
	for i := range kills {
		name := "ingest-" + strconv.Itoa(i)
		cmd := h.startIngest(name)
		// Killed in the middle of its work, not of its join (see
		// waitAssigned).
		h.waitAssigned(name, 0, time.Minute)
		time.Sleep(every + time.Duration(i*97%500)*time.Millisecond)
		stopProc(cmd, syscall.SIGKILL)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d kills; producer done %s after the start", kills, time.Since(start).Round(time.Millisecond))
	last := time.Now()
	h.startIngest("ingest-last")
	h.account(size(3*time.Minute, 10*time.Minute))
	t.Logf("the last ingest caught up %s after it started", time.Since(last).Round(time.Millisecond))
}

// TestClickHouseOutage: ClickHouse stops mid-run and comes back on the same
// data and ports; ingest backs off, stops fetching rather than buffering
// without bound, and catches up.
func TestClickHouseOutage(t *testing.T) {
	addr := testenv.Broker(t, eventsTopic, "agentrail.events.dlq")
	dir := t.TempDir()
	tcp, err1 := chserver.FreePort()
	httpPort, err2 := chserver.FreePort()
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	srv := testenv.StartClickHouseOn(t, dir, tcp, httpPort)
	cfg := chstore.Config{Addr: []string{srv.Addr()}, Database: "faults"}
	cfg.Defaults()
	ctx := context.Background()
	conn, err := chstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chstore.Migrate(ctx, conn, cfg.Database); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, addr, cfg, conn)
	ing := h.startIngest("ingest")
	pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	total := size(60_000, 300_000)
	go func() { done <- h.newProducer(3, 0).run(pctx, total, size(6_000.0, 8_000.0)) }()

	time.Sleep(2 * time.Second)
	conn.Close()
	stopCtx, stopCancel := context.WithTimeout(ctx, 30*time.Second)
	if err := srv.Stop(stopCtx); err != nil {
		t.Logf("stop: %v", err)
	}
	stopCancel()
	outage := size(5*time.Second, 30*time.Second)
	rssBefore := rss(t, ing)
	time.Sleep(outage)
	rssDuring := rss(t, ing)
	t.Logf("ClickHouse down for %s: ingest RSS %d MiB before, %d MiB at the end of the outage", outage, rssBefore>>20, rssDuring>>20)
	// Bounded: ingest holds one batch and franz-go's bounded fetch buffer,
	// not the backlog that accumulated meanwhile.
	if rssDuring > rssBefore+256<<20 {
		t.Fatalf("ingest grew from %d to %d MiB during the outage", rssBefore>>20, rssDuring>>20)
	}
	srv = testenv.StartClickHouseOn(t, dir, tcp, httpPort)
	defer func() {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = srv.Stop(c)
	}()
	if h.conn, err = chstore.Open(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	defer h.conn.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.account(3 * time.Minute)
	if exited(ing) {
		t.Fatal("ingest exited during the ClickHouse outage (its log is in the test's log directory)")
	}
}

// exited reports whether a process the test started, and has not waited
// for, has exited: it is then a zombie (state Z in /proc/PID/stat) until
// waited for. cmd.ProcessState says nothing before Wait.
func exited(cmd *exec.Cmd) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// rss reads a process's resident set size in bytes (/proc/PID/statm, second
// field, in pages).
func rss(t *testing.T, cmd *exec.Cmd) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/statm")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	res, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return res * int64(os.Getpagesize())
}

// waitPort waits until something accepts connections on addr.
func waitPort(t *testing.T, addr string) {
	testenv.Eventually(t, 30*time.Second, "broker listening on "+addr, func() (bool, error) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil, err
	})
}

// TestBrokerRestart: the broker (its own process, persistent data directory)
// restarts mid-run on the same port; producers retry, ingest reconnects
// without exiting, even when the broker went away while a batch's
// transaction was ending (nothing restarts ingest here).
func TestBrokerRestart(t *testing.T) {
	bin := testenv.Binary(t)
	port, err := chserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "kafka")
	startBroker := func() *exec.Cmd {
		cmd := exec.Command(bin, "broker", "--port", strconv.Itoa(port), "--data-dir", dataDir, "--sync-writes")
		logf, _ := os.Create(filepath.Join(t.TempDir(), "broker.log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	b := startBroker()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ch, conn := testenv.ClickHouse(t)
	h := newHarness(t, addr, ch, conn)
	waitPort(t, addr)
	ing := h.startIngest("ingest")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.newProducer(4, 0.005).run(ctx, size(50_000, 300_000), size(8_000.0, 10_000.0)) }()
	time.Sleep(2 * time.Second)
	stopProc(b, syscall.SIGTERM) // a clean restart flushes its data directory
	time.Sleep(2 * time.Second)
	startBroker()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if exited(ing) {
		t.Fatal("ingest exited when the broker restarted (its log is in the test's log directory)")
	}
	h.account(3 * time.Minute)
	if exited(ing) {
		t.Fatal("ingest exited after the broker restart (its log is in the test's log directory)")
	}
	// Whether the broker went away during a transaction is up to timing;
	// say which case this run tested.
	if log, err := os.ReadFile(filepath.Join(h.logDir, "ingest.log")); err == nil {
		t.Logf("transactions lost to the restart and recovered from: %d", strings.Count(string(log), "batch transaction failed"))
	}
}

// TestRebalance: ingest members join and leave during the run.
func TestRebalance(t *testing.T) {
	addr := testenv.Broker(t, eventsTopic, "agentrail.events.dlq")
	ch, conn := testenv.ClickHouse(t)
	h := newHarness(t, addr, ch, conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.newProducer(5, 0.002).run(ctx, size(60_000, 400_000), size(10_000.0, 20_000.0)) }()
	a := h.startIngest("a")
	time.Sleep(1500 * time.Millisecond)
	b := h.startIngest("b")
	time.Sleep(1500 * time.Millisecond)
	c := h.startIngest("c")
	time.Sleep(1500 * time.Millisecond)
	joins := h.assignments("b")
	stopProc(a, syscall.SIGTERM) // leaves the group cleanly
	time.Sleep(1500 * time.Millisecond)
	h.waitAssigned("b", joins, time.Minute) // b rejoined after a left (see waitAssigned)
	stopProc(b, syscall.SIGKILL)            // vanishes: its partitions move after the session timeout
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_ = c
	h.account(3 * time.Minute)
}
