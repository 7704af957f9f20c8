// Command agentrail is the evidence pipeline for AI-agent actions: one binary
// whose subcommands run each stage (see "agentrail help").
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string) int
}

func commands() []command {
	return []command{
		{"broker", "run the embedded Kafka broker (kfake) on 127.0.0.1", runBroker},
		{"clickhouse", "run the embedded ClickHouse server (libchdb) on 127.0.0.1", runClickHouse},
		{"migrate", "create or upgrade the ClickHouse database and tables", runMigrate},
		{"ingest", "consume agent events from Kafka into ClickHouse", runIngest},
		{"simulate", "publish events from a simulated fleet of agents", runSimulate},
		{"replay", "publish canonical-JSON events from a file, reporting rejected lines", runReplay},
		{"pseudonym", "print the stored pseudonym of each value on stdin (needs the redaction secret)", runPseudonym},
		{"trace", "print one trace as a timeline: who, what, which policy, who approved, what happened", runTrace},
		{"rules", "check a rule file, or backtest rules over stored events", runRules},
		{"registry", "validate and load the agent registry (agents, owners, grants)", runRegistry},
		{"report", "make a weekly permission report on demand", runReport},
		{"reports", "send weekly reports by mail on a schedule", runReports},
		{"retention", "enforce tier-based retention, honouring legal holds", runRetention},
		{"ledger", "seal stored events into the signed tamper-evidence chain; make its key", runLedger},
		{"verify", "check the chain and recompute it from ClickHouse: what changed, where", runVerify},
		{"demo", "run the whole pipeline on the embedded default and show what it found", runDemo},
		{"bench", "measure the pipeline against ClickHouse's Kafka engine on the embedded default", runBench},
		{"version", "print the version", func(context.Context, []string) int { fmt.Println("agentrail", version); return 0 }},
	}
}

func main() { os.Exit(run()) }

func run() int {
	if len(os.Args) < 2 || os.Args[1] == "help" || os.Args[1] == "-h" || os.Args[1] == "--help" {
		usage(os.Stdout)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands() {
		if c.name == os.Args[1] {
			return c.run(ctx, os.Args[2:])
		}
	}
	fmt.Fprintf(os.Stderr, "agentrail: unknown command %q\n\n", os.Args[1])
	usage(os.Stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: agentrail <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun \"agentrail <command> -h\" for a command's flags.")
}

// onSIGHUP calls reload on every SIGHUP until the returned stop is called:
// the one place a reload signal is handled (packages never touch signals).
func onSIGHUP(reload func()) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				reload()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

// newLogger is the one place log format is decided: text to stderr.
func newLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
