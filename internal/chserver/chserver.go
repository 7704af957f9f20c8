// Package chserver runs a real ClickHouse server (ClickHouse 26.7, from the
// engine library libchdb.so of the npm package @chdb/lib-linux-x64-gnu) on
// 127.0.0.1, speaking the native and HTTP protocols, for the demo and tests.
//
// Serve loads the library into the calling process with purego (no cgo) and
// runs it as clickhouse-local with its listeners started; it returns after a
// clean stop when its context ends. StartProcess runs Serve in a child
// process, so a test can SIGKILL the server and restart it on the same data.
//
// It deliberately does not:
//   - listen anywhere but 127.0.0.1, or manage users: clients log in as
//     "default" without a password. A failed native-protocol login (unknown
//     user, wrong password) aborts the whole engine process, and SQL access
//     management (CREATE USER, CREATE ROW POLICY) fails because
//     clickhouse-local reads users only from users.xml and has no writable
//     access storage;
//   - start the engine twice in one process: the library cannot be
//     re-initialised, so a restart is a new process;
//   - download the library (scripts/fetch-chdb.sh does) or handle signals:
//     its callers own them.
//
// Production points agentrail at a real ClickHouse server instead.
package chserver

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// LibVersion is the version of @chdb/lib-linux-x64-gnu that provides the
// engine; scripts/fetch-chdb.sh pins the same one.
const LibVersion = "26.7.3-stable.1"

// ErrLibraryMissing reports that the engine library is not at Config.LibPath.
var ErrLibraryMissing = errors.New("ClickHouse engine library not found")

const (
	loopback = "127.0.0.1"

	// The listeners live as long as the clickhouse-local run. It runs
	// interactively (see ttyStdin): after starting them it waits at its
	// prompt on our terminal, and typing exitCommand there ends it.
	startQuery  = "SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP"
	exitCommand = "exit\r" // raw mode: Enter is a carriage return
	// killQuery cancels every client query before the exit: the engine's
	// shutdown waits 5 s for open connections and then exits the process
	// with status 1, skipping the rest of the clean stop.
	killQuery = "KILL QUERY WHERE query_id != queryID() ASYNC"

	// The engine config (engineConfig) is written to the data dir at every
	// start and passed with --config-file, so that clickhouse-local never
	// picks up a stray ./config.xml or ~/.clickhouse-local/config.xml.
	configName = "chserver-config.xml"
	// The kafka section makes a Kafka-engine table's new consumer group start
	// at the earliest offset (librdkafka's default is the latest), as the
	// benchmark's Kafka-engine peer needs to read events already produced.
	//
	// Merges run at nice 10, below inserts and queries: a merge then waits
	// for a CPU that ingest's inserts or an analyst's query would want, and
	// catches up when they leave one idle, so a steady load's batches are
	// not starved of CPU by merges (docs/PERFORMANCE-HISTORY.md, "Merges
	// below inserts, and the merges left after a run"). The engine needs
	// CAP_SYS_NICE for it; without it the setting does nothing, and Serve
	// logs a warning (MergesBelowInserts).
	configHead = "<!-- Written by agentrail's chserver at every start; edits are lost. -->\n<clickhouse>\n" +
		"  <kafka><auto_offset_reset>smallest</auto_offset_reset></kafka>\n" +
		"  <os_threads_nice_value_merge_mutate>10</os_threads_nice_value_merge_mutate>\n"

	stopBudget = 30 * time.Second
)

// Config sets up the server.
type Config struct {
	LibPath  string       // libchdb.so; "" means DefaultLibPath()
	DataDir  string       // the engine's --path (databases, tables); created if missing
	TCPPort  int          // native protocol port on 127.0.0.1
	HTTPPort int          // HTTP interface port on 127.0.0.1
	Logger   *slog.Logger // nil means slog.Default()
	// UsersXML, if set, is a users.xml (users, passwords, profiles,
	// grants) that replaces the built-in "default only" users. It must keep
	// a "default" user without a password on loopback: the launcher stops
	// the server and checks readiness as that user.
	UsersXML string
	// SystemLogs turns on the server's system.query_log and
	// system.part_log (CPU and rows per statement, per merge), flushed
	// every second: `agentrail bench --ch-profile` reads them.
	SystemLogs bool
}

// Validate checks the config without I/O.
func (c Config) Validate() error {
	if c.LibPath == "" {
		return errors.New("chserver: LibPath is empty: want the path of libchdb.so")
	}
	if c.DataDir == "" {
		return errors.New("chserver: DataDir is empty: want a directory for the server's data")
	}
	if c.TCPPort < 1 || c.TCPPort > 65535 {
		return fmt.Errorf("chserver: TCPPort %d out of range 1..65535", c.TCPPort)
	}
	if c.HTTPPort < 1 || c.HTTPPort > 65535 {
		return fmt.Errorf("chserver: HTTPPort %d out of range 1..65535", c.HTTPPort)
	}
	if c.TCPPort == c.HTTPPort {
		return fmt.Errorf("chserver: HTTPPort %d equals TCPPort: want two different ports", c.HTTPPort)
	}
	return nil
}

// RegisterFlags binds the flags of `agentrail clickhouse` to c, with their
// defaults. StartProcess passes the same flags to its child.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", "./data/clickhouse", "directory for the server's databases and tables")
	fs.IntVar(&c.TCPPort, "tcp-port", 19000, "native protocol port on 127.0.0.1")
	fs.IntVar(&c.HTTPPort, "http-port", 18123, "HTTP interface port on 127.0.0.1")
	fs.StringVar(&c.LibPath, "lib", DefaultLibPath(), "path of the ClickHouse engine library libchdb.so")
	fs.StringVar(&c.UsersXML, "users-xml", "", "users.xml with users, passwords and grants (deployments/clickhouse/users.xml); default: user default only")
	fs.BoolVar(&c.SystemLogs, "system-logs", false, "keep system.query_log and system.part_log (CPU per statement and per merge)")
}

// flagArgs are the flags that make RegisterFlags reproduce c.
func (c Config) flagArgs() []string {
	args := []string{
		"--data-dir=" + c.DataDir,
		"--tcp-port=" + strconv.Itoa(c.TCPPort),
		"--http-port=" + strconv.Itoa(c.HTTPPort),
		"--lib=" + c.LibPath,
	}
	if c.UsersXML != "" {
		args = append(args, "--users-xml="+c.UsersXML)
	}
	if c.SystemLogs {
		args = append(args, "--system-logs")
	}
	return args
}

// engineConfig is the config file the engine reads: SQL-defined users need
// a writable access storage that clickhouse-local lacks, so users and their
// grants come from a users.xml when one is given.
func engineConfig(c Config) string {
	s := configHead
	// The engine's own warnings and errors, for whoever wonders why it
	// stopped; clickhouse-local logs nothing otherwise.
	if dir, err := filepath.Abs(c.DataDir); err == nil {
		s += "  <logger><level>warning</level><console>0</console><log>" + html.EscapeString(filepath.Join(dir, "engine.log")) +
			"</log><errorlog>" + html.EscapeString(filepath.Join(dir, "engine.err.log")) + "</errorlog></logger>\n"
	}
	if c.UsersXML != "" {
		p, err := filepath.Abs(c.UsersXML)
		if err != nil {
			p = c.UsersXML
		}
		s += "  <user_directories><users_xml><path>" + html.EscapeString(p) + "</path></users_xml></user_directories>\n"
	}
	if c.SystemLogs {
		for _, t := range systemLogTables {
			s += "  <" + t + "><database>system</database><table>" + t + "</table><flush_interval_milliseconds>1000</flush_interval_milliseconds></" + t + ">\n"
		}
	}
	return s + "</clickhouse>\n"
}

// systemLogTables are the system logs SystemLogs turns on.
var systemLogTables = []string{"query_log", "part_log"}

// clearOrphanLogs removes what an earlier run's system logs left in the
// data dir. The engine keeps no metadata for its system database, so at
// the next start it makes the log tables anew and finds their data
// directories taken: every flush then fails ("Directory for table data
// data/system/query_log/ already exists") and the logs stay empty. The old
// rows cannot be read without that metadata anyway.
func clearOrphanLogs(dataDir string, log *slog.Logger) error {
	for _, t := range systemLogTables {
		if _, err := os.Stat(filepath.Join(dataDir, "metadata", "system", t+".sql")); err == nil {
			continue // the engine keeps this one: not an orphan
		}
		dir := filepath.Join(dataDir, "data", "system", t)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("chserver: remove the previous run's %s: %w", t, err)
		}
		log.Info("removed the previous run's system log, which the engine cannot reattach", "table", "system."+t)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.LibPath == "" {
		c.LibPath = DefaultLibPath()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// DefaultLibPath is $AGENTRAIL_CHDB_LIB if set, else where `make chdb` puts
// the library: $XDG_CACHE_HOME (or ~/.cache)/agentrail/chdb/<LibVersion>/libchdb.so.
func DefaultLibPath() string {
	if p := os.Getenv("AGENTRAIL_CHDB_LIB"); p != "" {
		return p
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "agentrail", "chdb", LibVersion, "libchdb.so")
}

func checkLibrary(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) || (err == nil && fi.IsDir()) {
		return fmt.Errorf("chserver: %w at %s: run \"make chdb\" (or set AGENTRAIL_CHDB_LIB)", ErrLibraryMissing, path)
	}
	if err != nil {
		return fmt.Errorf("chserver: check engine library: %w", err)
	}
	return nil
}

// engineUsed is set by the first Serve: the library keeps global state that
// cannot be initialised twice ("EventNotifier is initialized twice").
var engineUsed atomic.Bool

// Serve runs the server in this process until ctx ends, then stops it
// cleanly and returns nil. It logs one line when both ports answer. Serve
// works once per process; an error after the engine started means the
// process should exit.
//
// A clean stop KILLs every running query, clients' included (they fail as
// cancelled), and types exit at the engine's interactive prompt; the run
// then ends as clickhouse-local does: it stops the listeners and shuts the
// global context down (merges stopped, tables shut down, buffers and system
// logs flushed). Inserted parts are in DataDir as soon as the INSERT
// returns, so they also survive a SIGKILL of the process.
func Serve(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := checkLibrary(cfg.LibPath); err != nil {
		return err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("chserver: resolve data dir: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("chserver: create data dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, configName), []byte(engineConfig(cfg)), 0o644); err != nil {
		return fmt.Errorf("chserver: write engine config: %w", err)
	}
	if cfg.SystemLogs {
		if err := clearOrphanLogs(dataDir, cfg.Logger); err != nil {
			return err
		}
	}
	if err := checkPortsFree(cfg); err != nil {
		return err
	}
	if !engineUsed.CompareAndSwap(false, true) {
		return errors.New("chserver: the engine already ran in this process and cannot start again: start a new process")
	}
	start := time.Now()
	eng, err := openEngine(cfg.LibPath)
	if err != nil {
		return err
	}
	// Before the engine starts: its handlers for SIGSEGV, SIGTERM and others
	// would replace the Go runtime's, which Go needs for panics, preemption
	// and os/signal.
	eng.setSignalHandlers(0)

	tty, err := ttyStdin()
	if err != nil {
		return err
	}
	defer tty.Close()
	done := make(chan string, 1)
	go func() { done <- eng.run(engineArgs(cfg, dataDir)) }()

	// No keep-alive: an idle connection of ours must not slow the engine's
	// shutdown, which waits for open connections.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	s := &control{
		url:    "http://" + net.JoinHostPort(loopback, strconv.Itoa(cfg.HTTPPort)) + "/",
		client: client,
		done:   done,
		log:    cfg.Logger,
		tty:    tty,
	}
	// Nothing reads the terminal's output (the engine's own output goes to
	// stdout), but its echo must not fill the terminal's buffer.
	go func() { _, _ = io.Copy(io.Discard, tty) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for ready := false; !ready; {
		select {
		case msg := <-done:
			return exitError("before it was ready", msg)
		case <-ctx.Done():
			return s.stop()
		case <-tick.C:
			// HTTP answers once both listeners have started; the data path
			// proves the answer comes from this engine rather than another
			// server on the same port.
			ready = s.query(ctx, "SELECT throwIf(count() = 0) FROM system.disks WHERE name = 'default' AND path = '"+
				strings.ReplaceAll(dataDir, "'", "\\'")+"/'") == nil
		}
	}
	cfg.Logger.Info("clickhouse ready",
		"tcp", net.JoinHostPort(loopback, strconv.Itoa(cfg.TCPPort)),
		"http", net.JoinHostPort(loopback, strconv.Itoa(cfg.HTTPPort)),
		"data_dir", dataDir, "engine", eng.version(), "startup", time.Since(start).Round(time.Millisecond))
	if below, err := MergesBelowInserts(os.Getpid()); err != nil {
		cfg.Logger.Warn("clickhouse merge priority unknown", "err", err)
	} else if !below {
		cfg.Logger.Warn(mergePriorityWarning)
	}

	select {
	case msg := <-done:
		return exitError("unexpectedly", msg)
	case <-ctx.Done():
		return s.stop()
	}
}

// engineArgs are the clickhouse-local arguments of the server run.
func engineArgs(cfg Config, dataDir string) []string {
	return []string{
		"clickhouse",
		"--config-file=" + filepath.Join(dataDir, configName),
		"--path=" + dataDir,
		"--listen_host=" + loopback,
		"--tcp_port=" + strconv.Itoa(cfg.TCPPort),
		"--http_port=" + strconv.Itoa(cfg.HTTPPort),
		// Idle native connections notice a shutdown only every poll_interval
		// (default 10 s), and the engine force-exits with status 1 when
		// connections outlast its 5 s shutdown wait.
		"--poll_interval=1",
		"--multiquery",
		// Interactive, for the error handler (see ttyStdin), but without
		// loading completion suggestions, a query the stop would wait for.
		"--interactive",
		"--disable_suggestion",
		"--query=" + startQuery,
	}
}

// checkPortsFree turns a port in use into a clear error up front; the
// engine would only report it on stderr.
func checkPortsFree(cfg Config) error {
	for _, p := range []struct {
		field string
		port  int
	}{{"TCPPort", cfg.TCPPort}, {"HTTPPort", cfg.HTTPPort}} {
		l, err := net.Listen("tcp", net.JoinHostPort(loopback, strconv.Itoa(p.port)))
		if err != nil {
			return fmt.Errorf("chserver: %s %d is not free: %w", p.field, p.port, err)
		}
		l.Close()
	}
	return nil
}

func exitError(when, msg string) error {
	if msg = strings.TrimSpace(msg); msg == "" {
		msg = "see its messages on stderr"
	}
	return fmt.Errorf("chserver: engine exited %s: %s", when, msg)
}

// control talks to the running engine over its own HTTP port: chDB has no
// call to observe or cancel a chdb_query_cmdline run.
type control struct {
	url    string
	client *http.Client
	done   <-chan string
	log    *slog.Logger
	tty    io.Writer // the engine's terminal, where it waits at its prompt
}

func (s *control) query(ctx context.Context, q string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, strings.NewReader(q))
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// stop kills the running queries until the engine run returns. It retries
// because the listeners may not be up yet when ctx ends during startup.
func (s *control) stop() error {
	start := time.Now()
	for {
		// ctx has ended; the stop itself still needs its requests.
		err := s.query(context.Background(), killQuery)
		// The prompt discards input typed before it appeared (raw mode is
		// set with TCSAFLUSH), so the command is typed again each round.
		_, _ = io.WriteString(s.tty, exitCommand)
		select {
		case <-s.done:
			s.log.Info("clickhouse stopped", "took", time.Since(start).Round(time.Millisecond))
			return nil
		case <-time.After(250 * time.Millisecond):
		}
		if time.Since(start) > stopBudget {
			return fmt.Errorf("chserver: engine did not stop within %v (last KILL QUERY: %v)", stopBudget, err)
		}
	}
}
