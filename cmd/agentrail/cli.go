package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/agentrail/agentrail/internal/chserver"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/pipeline/bench"
	"github.com/agentrail/agentrail/producers/simulate"
)

// The exit statuses of every command (printed by "agentrail help").
const (
	exitOK      = 0 // clean
	exitFinding = 1 // a finding: tampering, rejected lines, a rule file with mistakes, an unknown team
	exitUsage   = 2 // usage: a bad flag, argument or name
	exitFailure = 3 // an operational failure: a server unreachable, an I/O error, a config that does not load
)

const exitCodesHelp = `Exit status: 0 clean; 1 a finding (tampering found by verify, rejected lines
in replay, a rule or registry file with mistakes, an unknown team in report
weekly/send, a trace not found); 2 usage (a bad flag, argument or name);
3 an operational failure (a server unreachable, an I/O error, a config that
does not load).`

// cli is the command tree: one kong struct, so every command parses its
// flags the same way (flags before or after arguments, --help everywhere).
type cli struct {
	globals

	Broker     brokerCmd     `cmd:"" help:"run the embedded Kafka broker (kfake) on 127.0.0.1"`
	ClickHouse clickhouseCmd `cmd:"" name:"clickhouse" help:"run the embedded ClickHouse server (libchdb) on 127.0.0.1"`
	Migrate    migrateCmd    `cmd:"" help:"create or upgrade the ClickHouse database and tables"`
	Ingest     ingestCmd     `cmd:"" help:"consume agent events from Kafka into ClickHouse"`
	Gateway    gatewayCmd    `cmd:"" help:"serve POST /v1/events: signed JSON events over HTTP, produced to Kafka after checks"`
	Simulate   simulateCmd   `cmd:"" help:"publish events from a simulated fleet of agents"`
	Replay     replayCmd     `cmd:"" help:"publish canonical-JSON events from a file, reporting rejected lines"`
	Pseudonym  pseudonymCmd  `cmd:"" help:"print the stored pseudonym of each value on stdin (needs the redaction secret)"`
	Trace      traceCmd      `cmd:"" help:"print one trace as a timeline: who, what, which policy, who approved, what happened"`
	Rules      rulesCmd      `cmd:"" help:"check a rule file, or backtest rules over stored events"`
	Registry   registryCmd   `cmd:"" help:"validate and load the agent registry (agents, owners, grants); make agent keys"`
	Report     reportCmd     `cmd:"" help:"weekly permission reports: write them, send one by mail, or send them on a schedule"`
	Reports    reportsCmd    `cmd:"" hidden:"" help:"deprecated spelling of report serve|send"`
	Retention  retentionCmd  `cmd:"" help:"enforce tier-based retention, honouring legal holds"`
	Ledger     ledgerCmd     `cmd:"" help:"seal stored events into the signed tamper-evidence chain; make its key"`
	Verify     verifyCmd     `cmd:"" help:"check the chain and recompute it from ClickHouse: what changed, where"`
	Demo       demoCmd       `cmd:"" help:"run the whole pipeline on the embedded default and show what it found"`
	Bench      benchCmd      `cmd:"" help:"measure the pipeline against ClickHouse's Kafka engine on the embedded default"`
	Probe      probeCmd      `cmd:"" help:"check a service's /healthz or /readyz (a container healthcheck with no shell)"`
	Version    versionCmd    `cmd:"" help:"print the version"`
}

// globals are the flags every command takes, and where its output goes.
type globals struct {
	LogFormat string           `name:"log-format" enum:"text,json" default:"text" help:"log format on stderr: text or json"`
	LogLevel  string           `name:"log-level" placeholder:"LEVEL" help:"log level: debug, info, warn or error (default info; warn for demo and bench)"`
	V         kong.VersionFlag `name:"version" help:"print the version and exit"`

	stdout, stderr io.Writer
	cmd            string // the command's name, "report weekly"
}

// logger is the one constructor of the process's logger: text (or JSON)
// to stderr at --log-level, def when it is not given.
func (g *globals) logger(def slog.Level) *slog.Logger {
	level := def
	if g.LogLevel != "" {
		_ = level.UnmarshalText([]byte(g.LogLevel)) // checked in parse
	}
	opts := &slog.HandlerOptions{Level: level}
	if g.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(g.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(g.stderr, opts))
}

// printJSON writes v to stdout as one JSON object.
func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// warnf prints a warning on stderr, prefixed with the command.
func (g *globals) warnf(format string, args ...any) {
	fmt.Fprintf(g.stderr, "agentrail %s: warning: "+format+"\n", append([]any{g.cmd}, args...)...)
}

// exitError carries an exit status other than exitFailure; a nil err
// prints nothing (the command has said what it found).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErr is a usage error (exit 2): a bad flag, argument or name.
func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// finding is a finding (exit 1); err, if not nil, is printed.
func finding(err error) error { return &exitError{code: exitFinding, err: err} }

// exitCode prints err, if any, and maps it to the exit status: an
// exitError's own, 0 for none or a canceled context, exitFailure for any
// other error.
func exitCode(stderr io.Writer, cmd string, err error) int {
	if err == nil || errors.Is(err, context.Canceled) {
		return exitOK
	}
	code := exitFailure
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.err == nil {
			return code
		}
	}
	fmt.Fprintf(stderr, "agentrail %s: %v\n", cmd, err)
	return code
}

// kongExit is how kong's exit (after --help, --version) unwinds runArgs.
type kongExit int

// runArgs parses args (without the program name) and runs the command,
// returning its exit status.
func runArgs(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	if len(args) == 0 {
		args = []string{"--help"}
	} else if args[0] == "help" {
		args = append(args[1:len(args):len(args)], "--help")
	}
	var c cli
	parser, err := newParser(ctx, &c, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "agentrail: %v\n", err)
		return exitFailure
	}
	defer func() {
		if r := recover(); r != nil {
			k, ok := r.(kongExit)
			if !ok {
				panic(r)
			}
			code = int(k)
		}
	}()
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "agentrail: %v\n", err)
		var pe *kong.ParseError
		if errors.As(err, &pe) && pe.Context != nil && pe.Context.Selected() != nil {
			fmt.Fprintf(stderr, "run \"agentrail %s --help\" for its flags\n", commandName(pe.Context.Command()))
		}
		return exitUsage
	}
	c.cmd = commandName(kctx.Command())
	if c.LogLevel != "" {
		var l slog.Level
		if l.UnmarshalText([]byte(c.LogLevel)) != nil {
			fmt.Fprintf(stderr, "agentrail %s: --log-level %q must be debug, info, warn or error\n", c.cmd, c.LogLevel)
			return exitUsage
		}
	}
	// What packages log on the default logger (the config loader's
	// warnings about old spellings) follows --log-format and --log-level.
	prev := slog.Default()
	slog.SetDefault(c.logger(slog.LevelInfo))
	defer slog.SetDefault(prev)
	return exitCode(stderr, c.cmd, kctx.Run())
}

// kongVars are the defaults the flags' tags name (${...}).
func kongVars() kong.Vars {
	var kc kafkacfg.Config
	kc.Defaults()
	return kong.Vars{
		"version":     "agentrail " + version,
		"chlib":       chserver.DefaultLibPath(),
		"defbroker":   kafkacfg.DefaultBroker,
		"eventstopic": kc.Topics.Events,
		"reorder":     strconv.FormatFloat(simulate.DefaultReorderRate, 'g', -1, 64),
		"dups":        strconv.FormatFloat(simulate.DefaultDuplicateRate, 'g', -1, 64),
		"scenarios":   strings.Join(simulate.BuiltinNames(), ", "),
		"phases":      strings.Join(bench.Phases, ","),
		"whoami":      whoami(),
	}
}

// newParser is the command line's parser, filling c; kong's exit (after
// --help, --version) panics with kongExit.
func newParser(ctx context.Context, c *cli, stdout, stderr io.Writer) (*kong.Kong, error) {
	c.stdout, c.stderr = stdout, stderr
	return kong.New(c,
		kong.Name("agentrail"),
		kong.Description("The evidence pipeline for AI-agent actions.\n\n"+exitCodesHelp),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(kongExit(code)) }),
		kongVars(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: true}),
		kong.Bind(&c.globals),
		kong.BindTo(ctx, (*context.Context)(nil)),
	)
}

// commandName drops the arguments from kong's "replay <file>".
func commandName(s string) string {
	var words []string
	for _, w := range strings.Fields(s) {
		if !strings.HasPrefix(w, "<") {
			words = append(words, w)
		}
	}
	return strings.Join(words, " ")
}

type probeCmd struct {
	URL     string        `arg:"" name:"url" help:"the endpoint, e.g. http://127.0.0.1:9464/readyz"`
	Timeout time.Duration `default:"3s" help:"how long to wait for the answer"`
}

// Run answers 0 when the endpoint says 200, exitFailure otherwise.
func (c *probeCmd) Run(ctx context.Context, g *globals) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return usageErr("%w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", c.URL, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprint(g.stdout, string(body))
	return nil
}

type versionCmd struct {
	JSON bool `name:"json" help:"print the version as one JSON object"`
}

func (c *versionCmd) Run(g *globals) error {
	if c.JSON {
		return g.printJSON(struct {
			Version   string `json:"version"`
			GoVersion string `json:"go_version"`
		}{version, runtime.Version()})
	}
	fmt.Fprintln(g.stdout, "agentrail", version)
	return nil
}
