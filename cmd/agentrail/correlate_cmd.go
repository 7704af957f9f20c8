package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentrail/agentrail/consumers/correlate"
	"github.com/agentrail/agentrail/internal/chstore"
)

// traceCmd is `agentrail trace TRACE_ID [--json]`: one trace as a timeline
// (who, what, which policy, who approved, what happened, violations,
// latencies), or as JSON for tools.
type traceCmd struct {
	connFlags
	ID   string `arg:"" name:"trace-id" help:"the trace id (32 hex characters)"`
	JSON bool   `name:"json" help:"print the trace as one JSON object"`
}

func (c *traceCmd) Run(ctx context.Context, g *globals) error {
	id := strings.ToLower(strings.TrimSpace(c.ID))
	if !isTraceID(id) {
		return usageErr("%q is not a trace id (32 hex characters)", c.ID)
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	conn, err := chstore.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer conn.Close()
	rep, err := correlate.Lookup(ctx, conn, cfg.ClickHouse.Database, id, time.Now(), cfg.Correlation.AbandonAfter)
	if errors.Is(err, correlate.ErrTraceNotFound) {
		return finding(fmt.Errorf("no events of trace %s in database %s", id, cfg.ClickHouse.Database))
	}
	if err != nil {
		return err
	}
	if c.JSON {
		return g.printJSON(rep)
	}
	if err := rep.WriteText(g.stdout); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "\n(%d events, looked up in %.1f ms)\n", len(rep.Events), rep.QueryMS)
	return nil
}

func isTraceID(s string) bool {
	if len(s) != 32 || strings.Trim(s, "0") == "" {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
