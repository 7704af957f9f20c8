package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/gateway"
)

// gatewayCmd serves POST /v1/events in front of Kafka for agents that do
// not speak Kafka (docs/GATEWAY.md), with the gateway section of the
// config; its /metrics are on --metrics, its /healthz and /readyz on
// gateway.listen beside the endpoint.
type gatewayCmd struct {
	connFlags
	Metrics string `default:"127.0.0.1:9467" placeholder:"ADDR" help:"address of /metrics, /healthz and /readyz (\"\" disables them)"`
}

func (c *gatewayCmd) Run(ctx context.Context, g *globals) error {
	cfg, err := c.load()
	if err != nil {
		return err
	}
	log := g.logger(slog.LevelInfo)
	reg := prometheus.NewRegistry()
	if err := registerRuntimeMetrics(reg); err != nil {
		return err
	}
	// The gateway produces to the events topic; it does not create it.
	return runService(ctx, c.Metrics, reg, func(gctx context.Context, ready func()) error {
		gc := cfg.Gateway
		gc.Kafka = cfg.Kafka // with --brokers applied
		gw, err := gateway.New(gctx, gc, reg, log)
		if err != nil {
			return err
		}
		defer gw.Close(context.Background())
		ready()
		log.Info("gateway running", "listen", gw.Addr(), "brokers", cfg.Kafka.Brokers, "topic", cfg.Kafka.Topics.Events,
			"registry", cfg.Gateway.RegistryFile, "metrics", c.Metrics)
		return gw.Run(gctx) // drains within gateway.drain_timeout when ctx ends
	})
}
