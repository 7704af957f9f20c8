package main

import (
	"context"
	"fmt"
	"os"
)

// runReport makes a report on demand (agentrail report weekly ...).
func runReport(ctx context.Context, args []string) int {
	fmt.Fprintln(os.Stderr, "agentrail report: not built yet")
	return 2
}

// runReports serves scheduled report mail (agentrail reports serve).
func runReports(ctx context.Context, args []string) int {
	fmt.Fprintln(os.Stderr, "agentrail reports: not built yet")
	return 2
}

// runRegistry applies the agent registry (agentrail registry apply FILE).
func runRegistry(ctx context.Context, args []string) int {
	fmt.Fprintln(os.Stderr, "agentrail registry: not built yet")
	return 2
}

// runRetention enforces tier-based retention (agentrail retention run).
func runRetention(ctx context.Context, args []string) int {
	fmt.Fprintln(os.Stderr, "agentrail retention: not built yet")
	return 2
}
