package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/consumers"
)

// processorFactory builds one stage that runs inside ingest on every batch;
// it returns nil when the stage is switched off by the config.
type processorFactory func(ctx context.Context, cfg pipelineConfig, reg prometheus.Registerer, log *slog.Logger) (consumers.Processor, error)

// processorFactories lists the in-ingest stages in the order they run:
// correlation first, so rules may use what it found.
var processorFactories = []processorFactory{newCorrelator, newAnomalyEngine}

// buildProcessors builds every enabled stage.
func buildProcessors(ctx context.Context, cfg pipelineConfig, reg prometheus.Registerer, log *slog.Logger) ([]consumers.Processor, error) {
	var ps []consumers.Processor
	for _, f := range processorFactories {
		p, err := f(ctx, cfg, reg, log)
		if err != nil {
			return nil, err
		}
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps, nil
}
