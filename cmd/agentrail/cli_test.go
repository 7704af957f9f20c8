package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/internal/chserver"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
)

// runCLI runs a command line in-process and returns its exit status and
// what it printed.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = runArgs(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

// runBin runs the built binary; it fails t when the binary did not run.
func runBin(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, o.String(), e.String()
}

// parseOnly parses args into a cli without running the command.
func parseOnly(t *testing.T, args ...string) *cli {
	t.Helper()
	var c cli
	p, err := newParser(context.Background(), &c, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(args); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return &c
}

// Flags may come before or after the positional arguments.
func TestFlagsAfterPositionals(t *testing.T) {
	c := parseOnly(t, "replay", "events.jsonl", "--sign", "demo")
	if c.Replay.File != "events.jsonl" || c.Replay.Sign != "demo" {
		t.Errorf("replay FILE --sign demo: file %q, sign %q", c.Replay.File, c.Replay.Sign)
	}
	c = parseOnly(t, "replay", "--sign", "demo", "events.jsonl")
	if c.Replay.File != "events.jsonl" || c.Replay.Sign != "demo" {
		t.Errorf("replay --sign demo FILE: file %q, sign %q", c.Replay.File, c.Replay.Sign)
	}
	if c := parseOnly(t, "replay", "events.jsonl"); c.Replay.Sign != "none" || c.Simulate.Sign != "demo" {
		t.Errorf("--sign defaults: replay %q (want none), simulate %q (want demo)", c.Replay.Sign, c.Simulate.Sign)
	}
	c = parseOnly(t, "registry", "apply", "reg.yaml", "--by", "alice", "--log-level", "debug")
	if c.Registry.Apply.File != "reg.yaml" || c.Registry.Apply.By != "alice" || c.LogLevel != "debug" {
		t.Errorf("registry apply FILE --by alice: %+v", c.Registry.Apply)
	}
	c = parseOnly(t, "retention", "release", "h-1", "--by", "bob")
	if c.Retention.Release.HoldID != "h-1" || c.Retention.Release.By != "bob" {
		t.Errorf("retention release ID --by bob: %+v", c.Retention.Release)
	}
	// The flags other programs pass: bench starts the broker with an
	// empty --data-dir, chserver.StartProcess passes --flag=value.
	if c := parseOnly(t, "broker", "--port", "1", "--data-dir", "", "--partitions", "12"); c.Broker.DataDir != "" || c.Broker.Port != 1 {
		t.Errorf(`broker --data-dir "": %+v`, c.Broker)
	}
	c = parseOnly(t, "clickhouse", "--data-dir=/d", "--tcp-port=1", "--http-port=2", "--lib=/l.so", "--system-logs")
	if ch := c.ClickHouse; ch.DataDir != "/d" || ch.TCPPort != 1 || ch.HTTPPort != 2 || ch.Lib != "/l.so" || !ch.SystemLogs {
		t.Errorf("clickhouse --flag=value: %+v", ch)
	}
	for _, f := range []string{"--peer-thread-per-consumer=false", "--no-peer-thread-per-consumer"} {
		if c := parseOnly(t, "bench", f); c.Bench.PeerThreadPerConsumer {
			t.Errorf("bench %s: still true", f)
		}
	}
	// And through the binary: the flag after the file takes effect.
	code, out, _ := runBin(t, "rules", "check", "../../deployments/rules.yaml", "--json")
	if code != 0 || !json.Valid([]byte(out)) {
		t.Errorf("rules check FILE --json: exit %d, output not JSON:\n%s", code, out)
	}
}

// Every command and subcommand answers --help and -h with its usage.
func TestHelpOnEveryCommand(t *testing.T) {
	var c cli
	p, err := newParser(context.Background(), &c, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var paths [][]string
	var walk func(n *kong.Node, path []string)
	walk = func(n *kong.Node, path []string) {
		paths = append(paths, path)
		for _, ch := range n.Children {
			if ch.Type == kong.CommandNode {
				walk(ch, append(append([]string(nil), path...), ch.Name))
			}
		}
	}
	walk(p.Model.Node, nil)
	if len(paths) < 30 {
		t.Fatalf("walked %d commands, want every one (30 or more)", len(paths))
	}
	for _, path := range paths {
		for _, h := range []string{"--help", "-h"} {
			args := append(append([]string(nil), path...), h)
			code, out, errOut := runCLI(args...)
			want := strings.TrimSpace("Usage: agentrail " + strings.Join(path, " "))
			if code != 0 || !strings.Contains(out, want) {
				t.Errorf("%q: exit %d, stdout lacks %q:\n%s%s", args, code, want, out, errOut)
			}
		}
	}
	// "agentrail help" and no arguments print the root usage with the exit
	// statuses.
	for _, args := range [][]string{{"help"}, nil} {
		code, out, _ := runBin(t, args...)
		if code != 0 || !strings.Contains(out, "Exit status: 0 clean; 1 a finding") || !strings.Contains(out, "verify") {
			t.Errorf("agentrail %q: exit %d:\n%s", args, code, out)
		}
	}
	if code, out, _ := runCLI("help", "report", "weekly"); code != 0 || !strings.Contains(out, "Usage: agentrail report weekly") {
		t.Errorf("help report weekly: exit %d:\n%s", code, out)
	}
}

func TestVersion(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "1.2.3-test"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if code, out, _ := runCLI(args...); code != 0 || out != "agentrail 1.2.3-test\n" {
			t.Errorf("%q: exit %d, %q", args, code, out)
		}
	}
	code, out, _ := runCLI("version", "--json")
	var v struct{ Version, GoVersion string }
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Version != "1.2.3-test" {
		t.Errorf("version --json: exit %d, %v: %s", code, err, out)
	}
	// The binary's version comes from -ldflags -X main.version (dev without).
	if code, out, _ := runBin(t, "version"); code != 0 || !strings.HasPrefix(out, "agentrail ") {
		t.Errorf("binary version: exit %d, %q", code, out)
	}
}

// Exit statuses: 2 for usage, 3 for a server that does not answer, 1 for a
// finding.
func TestExitCodes(t *testing.T) {
	dead := "127.0.0.1:1" // nothing listens on port 1
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"unknown command", []string{"nope"}, exitUsage},
		{"bad flag", []string{"migrate", "--no-such-flag"}, exitUsage},
		{"bad flag value", []string{"simulate", "--rate", "fast"}, exitUsage},
		{"bad enum", []string{"replay", "x.jsonl", "--sign", "maybe"}, exitUsage},
		{"bad log level", []string{"version", "--log-level", "loud"}, exitUsage},
		{"missing argument", []string{"trace"}, exitUsage},
		{"bad trace id", []string{"trace", "xyz"}, exitUsage},
		{"bad time", []string{"verify", "--from", "yesterday"}, exitUsage},
		{"clickhouse unreachable: migrate", []string{"migrate", "--clickhouse", dead}, exitFailure},
		{"clickhouse unreachable: verify", []string{"verify", "--clickhouse", dead, "--no-kafka"}, exitFailure},
		{"clickhouse unreachable: trace", []string{"trace", "0123456789abcdef0123456789abcdef", "--clickhouse", dead}, exitFailure},
		{"config does not load", []string{"migrate", "--config", "/nonexistent/agentrail.yaml"}, exitFailure},
		{"rule file with mistakes", []string{"rules", "check", "../../anomaly/testdata/bad_rules.yaml"}, exitFinding},
		{"registry file missing", []string{"registry", "check", "/nonexistent/registry.yaml"}, exitFinding},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runBin(t, tc.args...)
			if code != tc.want {
				t.Errorf("%q: exit %d, want %d; stderr:\n%s", tc.args, code, tc.want, errOut)
			}
			if code == exitFailure && !strings.HasPrefix(errOut, "agentrail ") {
				t.Errorf("stderr does not name the command: %s", errOut)
			}
		})
	}
}

// --json output of the commands that need no server parses as JSON.
func TestJSONWithoutServers(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		key  string // a key the object must have
	}{
		{"rules check", []string{"rules", "check", "../../deployments/rules.yaml", "../../anomaly/testdata/bad_rules.yaml", "--json"}, exitFinding, "files"},
		{"registry check", []string{"registry", "check", "--json", "../../deployments/registry.yaml"}, 0, "agents"},
		{"registry check invalid", []string{"registry", "check", "--json", "../../deployments/rules.yaml"}, exitFinding, "error"},
		{"registry keygen", []string{"registry", "keygen", "--agent", "bot", "--out", filepath.Join(dir, "bot.key"), "--json"}, 0, "registry_entry"},
		{"version", []string{"version", "--json"}, 0, "go_version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(tc.args...)
			var obj map[string]any
			if err := json.Unmarshal([]byte(out), &obj); err != nil || code != tc.code {
				t.Fatalf("exit %d (want %d), %v:\n%s%s", code, tc.code, err, out, errOut)
			}
			if _, ok := obj[tc.key]; !ok {
				t.Errorf("no key %q in %s", tc.key, out)
			}
		})
	}
}

// simulate writes events and replay publishes them: --json on both, and a
// rejected line is a finding (exit 1).
func TestReplayJSON(t *testing.T) {
	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter)
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	var sum struct{ Events int }
	code, out, _ := runCLI("simulate", "--out", events, "--events", "5", "--json", "--log-level", "warn")
	if err := json.Unmarshal([]byte(out), &sum); code != 0 || err != nil || sum.Events != 5 {
		t.Fatalf("simulate --json: exit %d, %v: %s", code, err, out)
	}
	f, err := os.OpenFile(events, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, `{"not": "an event"}`)
	f.Close()
	// The file first, the flags after it.
	code, out, errOut := runBin(t, "replay", events, "--brokers", addr, "--sign", "demo", "--json")
	var rep struct {
		Read, Published, Rejected int
		Rejections                []struct{ Line int }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitFinding {
		t.Fatalf("replay --json: exit %d (want 1), %v:\n%s%s", code, err, out, errOut)
	}
	if rep.Read != 6 || rep.Published != 5 || rep.Rejected != 1 || len(rep.Rejections) != 1 || rep.Rejections[0].Line != 6 {
		t.Errorf("replay --json: %+v", rep)
	}
}

// --json of the commands that read ClickHouse, against the test server.
func TestJSONWithClickHouse(t *testing.T) {
	chCfg, _ := testenv.ClickHouse(t)
	conn := []string{"--clickhouse", chCfg.Addr[0], "--database", chCfg.Database}
	run := func(code int, args ...string) map[string]any {
		t.Helper()
		got, out, errOut := runCLI(append(args, conn...)...)
		var obj map[string]any
		if err := json.Unmarshal([]byte(out), &obj); err != nil || got != code {
			t.Fatalf("%q: exit %d (want %d), %v:\n%s%s", args, got, code, err, out, errOut)
		}
		return obj
	}
	if obj := run(0, "migrate", "--json"); obj["database"] != chCfg.Database {
		t.Errorf("migrate --json: %v", obj)
	}
	if obj := run(0, "registry", "apply", "../../deployments/registry.yaml", "--json", "--by", "test"); obj["version"] != 1.0 {
		t.Errorf("registry apply --json: %v", obj)
	}
	run(0, "rules", "backtest", "--from", "2026-11-16", "--to", "2026-11-18", "--json")
	if obj := run(0, "retention", "run", "--dry-run", "--json"); obj["dry_run"] != true {
		t.Errorf("retention run --json: %v", obj)
	}
	run(0, "retention", "hold", "--team", "ops", "--reason", "test", "--by", "t", "--json")
	if obj := run(0, "retention", "holds", "--json"); len(obj["holds"].([]any)) != 1 {
		t.Errorf("retention holds --json: %v", obj)
	}
	if obj := run(0, "report", "weekly", "--week", "2026-W47", "--out", t.TempDir(), "--json"); obj["week"] != "2026-W47" {
		t.Errorf("report weekly --json: %v", obj)
	}
	// A team with nothing: a finding, with the warning on stderr.
	code, _, errOut := runCLI(append([]string{"report", "weekly", "--team", "nobody", "--out", t.TempDir()}, conn...)...)
	if code != exitFinding || !strings.Contains(errOut, `warning: team "nobody"`) {
		t.Errorf("report weekly --team nobody: exit %d, stderr %s", code, errOut)
	}
}

// The old spelling `reports serve|send` still parses, and warns with the
// new name.
func TestDeprecatedReportsSpelling(t *testing.T) {
	code, _, errOut := runBin(t, "reports", "send", "--team", "ops", "--clickhouse", "127.0.0.1:1")
	if code != exitFailure || !strings.Contains(errOut, `use "agentrail report send"`) {
		t.Errorf("reports send: exit %d (want 3: no ClickHouse), stderr:\n%s", code, errOut)
	}
	if c := parseOnly(t, "reports", "serve", "--metrics", ""); c.Reports.Serve.Metrics != "" {
		t.Errorf(`reports serve --metrics "": %q`, c.Reports.Serve.Metrics)
	}
}

// --log-format json writes one JSON object per log line.
func TestLogFormatJSON(t *testing.T) {
	out := filepath.Join(t.TempDir(), "events.jsonl")
	code, _, errOut := runBin(t, "simulate", "--out", out, "--events", "3", "--log-format", "json", "--log-level", "debug")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(errOut))
	for sc.Scan() {
		var rec struct{ Time, Level, Msg string }
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Level == "" || rec.Msg == "" {
			t.Errorf("not a JSON log line (%v): %s", err, sc.Text())
		}
		lines++
	}
	if lines == 0 {
		t.Error("no log lines")
	}
	if code, _, errOut := runBin(t, "simulate", "--out", out, "--events", "3", "--log-format", "xml"); code != exitUsage {
		t.Errorf("--log-format xml: exit %d: %s", code, errOut)
	}
}

// /readyz says 503 until the service is ready, /healthz 200 all along.
func TestHealthEndpoints(t *testing.T) {
	var h health
	reg := prometheus.NewRegistry()
	if err := registerRuntimeMetrics(reg); err != nil {
		t.Fatal(err)
	}
	port, err := chserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveMetrics(ctx, addr, reg, &h) }()
	defer func() { cancel(); <-done }()
	status := func(path string) int {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	testenv.Eventually(t, 5*time.Second, "the endpoint up", func() (bool, error) { return status("/healthz") == 200, nil })
	if got := status("/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready: %d, want 503", got)
	}
	h.ready.Store(true)
	if got := status("/readyz"); got != http.StatusOK {
		t.Errorf("/readyz when ready: %d, want 200", got)
	}
	// probe, the healthcheck of the compose file, follows the answer.
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	if code, _, _ := runCLI("probe", "http://"+addr+"/readyz"); code != 0 {
		t.Errorf("probe /readyz: exit %d", code)
	}
	if code, _, _ := runCLI("probe", srv.URL); code != exitFailure {
		t.Errorf("probe of a 404: exit %d, want 3", code)
	}
}

// A running `agentrail ingest` answers /healthz, /readyz and serves
// agentrail_build_info.
func TestIngestHealth(t *testing.T) {
	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter)
	chCfg, _ := testenv.ClickHouse(t)
	port, err := chserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metrics := fmt.Sprintf("127.0.0.1:%d", port)
	cfgFile := filepath.Join(t.TempDir(), "ingest.yaml")
	if err := os.WriteFile(cfgFile, []byte("signatures:\n  mode: off\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Binary(t), "ingest", "--config", cfgFile, "--brokers", addr,
		"--clickhouse", chCfg.Addr[0], "--database", chCfg.Database, "--metrics", metrics, "--log-format", "json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-waited
		if t.Failed() {
			t.Logf("ingest's log:\n%s", stderr.String())
		}
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + metrics + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testenv.Eventually(t, 30*time.Second, "/healthz 200", func() (bool, error) {
		code, body := get("/healthz")
		return code == 200, fmt.Errorf("%d %s", code, body)
	})
	testenv.Eventually(t, 60*time.Second, "/readyz 200", func() (bool, error) {
		code, body := get("/readyz")
		return code == 200, fmt.Errorf("%d %s", code, body)
	})
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `agentrail_build_info{goversion="go`) {
		t.Errorf("/metrics: %d, no agentrail_build_info", code)
	}
}
