package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/bench"
)

// runBench runs the end-to-end benchmark on the embedded default.
func runBench(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var cfg bench.Config
	fs.IntVar(&cfg.Events, "events", 2_000_000, "events per throughput run")
	fs.IntVar(&cfg.Runs, "runs", 3, "repetitions of each throughput run")
	fs.IntVar(&cfg.QueryEvents, "query-events", 10_000_000, "rows in the analyst-query table")
	fs.DurationVar(&cfg.Steady, "steady", 20*time.Second, "length of the freshness run")
	fs.StringVar(&cfg.Dir, "dir", "./data/bench", "working directory (emptied first)")
	verbose := fs.Bool("v", false, "show the components' logs")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to FILE (go tool pprof)")
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Out = os.Stdout
	self, err := os.Executable()
	if err != nil {
		return exitCode("bench", err)
	}
	cfg.Bin = self
	cfg.Processors = func(ctx context.Context, c consumers.Config, reg prometheus.Registerer) ([]consumers.Processor, error) {
		pc := pipelineConfig{Config: c}
		pc.Defaults()
		return buildProcessors(ctx, pc, reg, cfg.Log)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return exitCode("bench", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return exitCode("bench", err)
		}
		defer pprof.StopCPUProfile()
	}
	return exitCode("bench", bench.Run(ctx, cfg))
}
