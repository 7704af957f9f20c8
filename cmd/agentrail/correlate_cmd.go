package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/agentrail/agentrail/consumers/correlate"
	"github.com/agentrail/agentrail/internal/chstore"
)

// runTrace is `agentrail trace TRACE_ID [--json]`: one trace as a timeline
// (who, what, which policy, who approved, what happened, violations,
// latencies), or as JSON for tools.
func runTrace(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the trace as one JSON object")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: agentrail trace TRACE_ID [--json] [flags]\n\nflags:")
		fs.PrintDefaults()
	}
	// Flags may come before or after the trace id.
	var ids []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		ids = append(ids, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(ids) != 1 {
		fmt.Fprintln(os.Stderr, "agentrail trace: want exactly one TRACE_ID (32 hex characters)")
		fs.Usage()
		return 2
	}
	id := strings.ToLower(strings.TrimSpace(ids[0]))
	if !isTraceID(id) {
		fmt.Fprintf(os.Stderr, "agentrail trace: %q is not a trace id (32 hex characters)\n", ids[0])
		return 2
	}
	cfg, err := cf.load()
	if err != nil {
		return exitCode("trace", err)
	}
	conn, err := chstore.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return exitCode("trace", err)
	}
	defer conn.Close()
	rep, err := correlate.Lookup(ctx, conn, cfg.ClickHouse.Database, id, time.Now(), cfg.Correlation.AbandonAfter)
	if errors.Is(err, correlate.ErrTraceNotFound) {
		fmt.Fprintf(os.Stderr, "agentrail trace: no events of trace %s in database %s\n", id, cfg.ClickHouse.Database)
		return 1
	}
	if err != nil {
		return exitCode("trace", err)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return exitCode("trace", enc.Encode(rep))
	}
	if err := rep.WriteText(os.Stdout); err != nil {
		return exitCode("trace", err)
	}
	fmt.Printf("\n(%d events, looked up in %.1f ms)\n", len(rep.Events), rep.QueryMS)
	return 0
}

func isTraceID(s string) bool {
	if len(s) != 32 || strings.Trim(s, "0") == "" {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
