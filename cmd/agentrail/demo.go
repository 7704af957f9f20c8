package main

import (
	"context"
	"time"

	"github.com/agentrail/agentrail/pipeline/demo"
)

// demoCmd runs the whole pipeline on the embedded default — broker,
// ClickHouse, ingest and a simulated fleet — then prints what arrived and
// what the pipeline found, and stops everything it started (pipeline/demo).
type demoCmd struct {
	Dir      string        `default:"./data/demo" help:"working directory for the broker's and ClickHouse's data (emptied first)"`
	Duration time.Duration `default:"60s" help:"how long the simulated fleet runs"`
	Rate     float64       `default:"100" help:"events per second the fleet emits"`
	Seed     uint64        `default:"7" help:"simulator seed"`
	Verbose  bool          `short:"v" help:"show the components' logs (--log-level info)"`
}

func (c *demoCmd) Run(ctx context.Context, g *globals) error {
	return demo.Run(ctx, demo.Config{Dir: c.Dir, Duration: c.Duration, Rate: c.Rate, Seed: c.Seed,
		Out: g.stdout, Log: g.logger(verboseLevel(g, c.Verbose))})
}
