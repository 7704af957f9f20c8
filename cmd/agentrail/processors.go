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

// processorFactories lists the in-ingest stages in the order ingest runs
// them on each batch. Nothing passes from one stage to the next: each sees
// the same Batch, and their outputs commit together in the batch's one
// transaction, so the order only fixes the order of their inserts and
// records within that commit (and of each_stage in the debug log).
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
