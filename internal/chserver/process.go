package chserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// startTimeout bounds how long StartProcess waits for the child to answer.
// The child loads the engine library and its tables before it answers; the
// bound is generous so that a loaded host or a cold disk does not fail a
// start that would have succeeded.
const startTimeout = 60 * time.Second

// LogName is the file in DataDir that receives a child server's output.
const LogName = "server.log"

// Process is a server running in a child process, in its own process group.
type Process struct {
	cfg    Config
	cmd    *exec.Cmd
	done   chan struct{} // closed when the child has exited
	err    error         // exit status; read only after done
	killed atomic.Bool
	// stopping is set by Stop and Kill, before they signal.
	stopping atomic.Bool
}

// StartProcess runs `bin clickhouse --data-dir=... --tcp-port=... --http-port=... --lib=...`
// and returns once the server answers a native-protocol ping. bin must run
// Serve for that subcommand, as agentrail does. ctx bounds only the start;
// the child runs until Stop or Kill. Its output goes to DataDir/server.log,
// whose tail is part of the error when the start fails.
func StartProcess(ctx context.Context, bin string, cfg Config) (*Process, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Checked here too, so a missing library is ErrLibraryMissing rather
	// than a log tail.
	if err := checkLibrary(cfg.LibPath); err != nil {
		return nil, err
	}
	// Checked here too: the readiness ping cannot tell this child from
	// another server already on the port.
	if err := checkPortsFree(cfg); err != nil {
		return nil, err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("chserver: resolve data dir: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("chserver: create data dir: %w", err)
	}
	logPath := filepath.Join(dataDir, LogName)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chserver: open server log: %w", err)
	}
	defer logFile.Close() // the child keeps its own descriptor
	logStart, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("chserver: open server log: %w", err)
	}

	cfg.DataDir = dataDir
	cmd := exec.Command(bin, append([]string{"clickhouse"}, cfg.flagArgs()...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true, // signals meant for the parent's group skip the server
		// A parent that dies (a test binary at its timeout) takes the
		// server with it instead of leaving it holding the ports.
		Pdeathsig: syscall.SIGKILL,
	}
	start := time.Now()
	p := &Process{cfg: cfg, cmd: cmd, done: make(chan struct{})}
	// Linux sends Pdeathsig when the *thread* that forked the child exits,
	// not the process, and the Go runtime may retire threads. Starting and
	// waiting on one goroutine locked to its thread keeps that thread alive
	// exactly as long as the child.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		if !p.stopping.Load() {
			// Nobody asked it to stop: say how it ended, for the test or
			// operator wondering why queries fail from now on.
			cfg.Logger.Error("clickhouse process exited on its own", "pid", cmd.Process.Pid, "status", cmd.ProcessState.String())
		}
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("chserver: start %s: %w", bin, err)
	}

	if err := p.waitReady(ctx); err != nil {
		_ = p.Kill()
		return nil, fmt.Errorf("chserver: start server in %s: %w\n--- tail of %s ---\n%s", dataDir, err, logPath, logTail(logPath, logStart))
	}
	cfg.Logger.Info("clickhouse process ready", "pid", cmd.Process.Pid, "tcp", p.Addr(), "http", p.HTTPAddr(),
		"startup", time.Since(start).Round(time.Millisecond))
	return p, nil
}

func (p *Process) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		err := ping(ctx, p.Addr())
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("server exited: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("no answer on %s: %w (last ping: %v)", p.Addr(), ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ping logs in as default, the only user the server has: any failed native
// login aborts the engine.
func ping(ctx context.Context, addr string) error {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{addr},
		Auth:        clickhouse.Auth{Username: "default"},
		DialTimeout: time.Second,
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return conn.Ping(ctx)
}

// logTail returns up to the last 4 KiB the child wrote to the log.
func logTail(path string, from int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	const max = 4096
	if fi, err := f.Stat(); err == nil && fi.Size()-from > max {
		from = fi.Size() - max
	}
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return err.Error()
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// Pid is the server process's id (for resource accounting).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Addr is the native protocol address, "127.0.0.1:port".
func (p *Process) Addr() string {
	return net.JoinHostPort(loopback, strconv.Itoa(p.cfg.TCPPort))
}

// HTTPAddr is the HTTP interface address, "127.0.0.1:port".
func (p *Process) HTTPAddr() string {
	return net.JoinHostPort(loopback, strconv.Itoa(p.cfg.HTTPPort))
}

// Stop sends SIGTERM, which makes the child stop the server cleanly, and
// waits; when ctx ends first it sends SIGKILL and reports that.
func (p *Process) Stop(ctx context.Context) error {
	p.stopping.Store(true)
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitErr()
	case <-ctx.Done():
		_ = p.Kill()
		return fmt.Errorf("chserver: server pid %d did not stop in time and was killed: %w", p.cmd.Process.Pid, ctx.Err())
	}
}

// Kill sends SIGKILL to the server and waits for it to exit, for fault tests.
func (p *Process) Kill() error {
	p.stopping.Store(true)
	p.killed.Store(true)
	p.signal(syscall.SIGKILL)
	<-p.done
	return nil
}

// Wait blocks until the server exits. It returns nil after a clean exit or
// after Kill, and the exit status otherwise.
func (p *Process) Wait() error {
	<-p.done
	return p.exitErr()
}

func (p *Process) exitErr() error {
	if p.err == nil || p.killed.Load() {
		return nil
	}
	return fmt.Errorf("chserver: server pid %d: %w", p.cmd.Process.Pid, p.err)
}

// signal signals the child's process group, unless the child is gone and its
// group id may belong to someone else.
func (p *Process) signal(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		p.cfg.Logger.Warn("chserver: signal server", "pid", p.cmd.Process.Pid, "signal", sig, "err", err)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return 0, fmt.Errorf("chserver: find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
