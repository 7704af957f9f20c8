package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/consumers"
)

// newCorrelator builds the trace-correlation stage (consumers/correlate).
func newCorrelator(ctx context.Context, cfg pipelineConfig, reg prometheus.Registerer, log *slog.Logger) (consumers.Processor, error) {
	return nil, nil
}

// runTrace prints one trace as a timeline.
func runTrace(ctx context.Context, args []string) int {
	fmt.Fprintln(os.Stderr, "agentrail trace: not built yet")
	return 2
}
