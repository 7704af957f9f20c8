package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/agentrail/agentrail/internal/chserver"
)

// runClickHouse is `agentrail clickhouse [flags]`: a real ClickHouse server
// on 127.0.0.1 from the embedded engine library, until ctx ends. args are
// the arguments after the subcommand name; it returns the exit code.
func runClickHouse(ctx context.Context, args []string) int {
	var cfg chserver.Config
	fs := flag.NewFlagSet("agentrail clickhouse", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "agentrail clickhouse: unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg.Logger = newLogger()
	if err := chserver.Serve(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "agentrail clickhouse: %v\n", err)
		return 1
	}
	return 0
}
