package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/consumers"
)

// newAnomalyEngine builds the anomaly-rules stage (anomaly/).
func newAnomalyEngine(ctx context.Context, cfg pipelineConfig, reg prometheus.Registerer, log *slog.Logger) (consumers.Processor, error) {
	return nil, nil
}

// runRules validates and backtests rule files.
func runRules(ctx context.Context, args []string) int {
	fmt.Fprintln(os.Stderr, "agentrail rules: not built yet")
	return 2
}
