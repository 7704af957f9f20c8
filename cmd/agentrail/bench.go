package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/agentrail/agentrail/pipeline/bench"
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
	fs.Float64Var(&cfg.FreshRate, "fresh-rate", 0, "steady load of the freshness run, events/s (0: half of ours' median)")
	only := fs.String("only", "", "run only these phases, comma-separated: "+strings.Join(bench.Phases, ","))
	fs.IntVar(&cfg.Peer.Consumers, "peer-consumers", 0, "peer: kafka_num_consumers (0: the CPU count)")
	fs.BoolVar(&cfg.Peer.ThreadPerConsumer, "peer-thread-per-consumer", true, "peer: kafka_thread_per_consumer")
	fs.IntVar(&cfg.Peer.MaxBlockSize, "peer-max-block-size", 0, "peer: kafka_max_block_size (0: 262144)")
	fs.IntVar(&cfg.Peer.PollMaxBatch, "peer-poll-max-batch", 0, "peer: kafka_poll_max_batch_size (0: 65536)")
	fs.DurationVar(&cfg.Peer.FlushInterval, "peer-flush-interval", 0, "peer: kafka_flush_interval_ms (0: 1s)")
	fs.IntVar(&cfg.BatchRows, "batch-rows", 0, "ours: ingest.batch_rows (0: ingest's default)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep each measured run's database (in DIR/clickhouse: agentrail clickhouse --data-dir DIR/clickhouse) instead of dropping it; later phases then share the server with its merges")
	fs.BoolVar(&cfg.CHProfile, "ch-profile", false, "after each throughput run, print ClickHouse's CPU by statement and by merge (turns on its query_log and part_log)")
	verbose := fs.Bool("v", false, "show the components' logs (--log-level info)")
	level := slog.LevelWarn
	fs.TextVar(&level, "log-level", slog.LevelWarn, "the components' log level: debug, info, warn or error (debug shows ingest's per-batch timings)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to FILE (go tool pprof)")
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	if *verbose && level > slog.LevelInfo {
		level = slog.LevelInfo
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Out = os.Stdout
	self, err := os.Executable()
	if err != nil {
		return exitCode("bench", err)
	}
	cfg.Bin = self
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
