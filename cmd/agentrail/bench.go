package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/agentrail/agentrail/pipeline/bench"
)

// benchCmd runs the end-to-end benchmark on the embedded default. The
// components log at warn unless --log-level or -v says otherwise (debug
// shows ingest's per-batch timings).
type benchCmd struct {
	Events                int           `default:"2000000" help:"events per throughput run"`
	Runs                  int           `default:"3" help:"repetitions of each throughput run"`
	QueryEvents           int           `name:"query-events" default:"10000000" help:"rows in the analyst-query table"`
	Steady                time.Duration `default:"20s" help:"length of the freshness run"`
	Dir                   string        `default:"./data/bench" help:"working directory (emptied first)"`
	FreshRate             float64       `name:"fresh-rate" help:"steady load of the freshness run, events/s (0: half of ours' median)"`
	Only                  string        `help:"run only these phases, comma-separated: ${phases}"`
	PeerConsumers         int           `name:"peer-consumers" help:"peer: kafka_num_consumers (0: the CPU count)"`
	PeerThreadPerConsumer bool          `name:"peer-thread-per-consumer" default:"true" negatable:"" help:"peer: kafka_thread_per_consumer"`
	PeerMaxBlockSize      int           `name:"peer-max-block-size" help:"peer: kafka_max_block_size (0: 262144)"`
	PeerPollMaxBatch      int           `name:"peer-poll-max-batch" help:"peer: kafka_poll_max_batch_size (0: 65536)"`
	PeerFlushInterval     time.Duration `name:"peer-flush-interval" help:"peer: kafka_flush_interval_ms (0: 1s)"`
	BatchRows             int           `name:"batch-rows" help:"ours: ingest.batch_rows (0: ingest's default)"`
	Keep                  bool          `help:"keep each measured run's database (in DIR/clickhouse: agentrail clickhouse --data-dir DIR/clickhouse) instead of dropping it; later phases then share the server with its merges"`
	CHProfile             bool          `name:"ch-profile" help:"after each throughput run, print ClickHouse's CPU by statement and by merge (turns on its query_log and part_log)"`
	Verbose               bool          `short:"v" help:"show the components' logs (--log-level info)"`
	CPUProfile            string        `name:"cpuprofile" placeholder:"FILE" help:"write a CPU profile of the whole run to FILE (go tool pprof)"`
}

func (c *benchCmd) Run(ctx context.Context, g *globals) error {
	cfg := bench.Config{
		Events: c.Events, Runs: c.Runs, QueryEvents: c.QueryEvents, Steady: c.Steady, Dir: c.Dir,
		FreshRate: c.FreshRate, BatchRows: c.BatchRows, Keep: c.Keep, CHProfile: c.CHProfile,
	}
	cfg.Peer.Consumers, cfg.Peer.ThreadPerConsumer = c.PeerConsumers, c.PeerThreadPerConsumer
	cfg.Peer.MaxBlockSize, cfg.Peer.PollMaxBatch, cfg.Peer.FlushInterval = c.PeerMaxBlockSize, c.PeerPollMaxBatch, c.PeerFlushInterval
	if c.Only != "" {
		cfg.Only = strings.Split(c.Only, ",")
	}
	cfg.Log = g.logger(verboseLevel(g, c.Verbose))
	cfg.Out = g.stdout
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Bin = self
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	return bench.Run(ctx, cfg)
}

// verboseLevel is the default level of demo and bench: warn, or info with
// -v when --log-level is not given.
func verboseLevel(g *globals, verbose bool) slog.Level {
	if verbose && g.LogLevel == "" {
		return slog.LevelInfo
	}
	return slog.LevelWarn
}
