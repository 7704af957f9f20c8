package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/reports/retention"
)

// retentionCmd enforces tier-based retention and keeps the legal holds.
type retentionCmd struct {
	Run     retentionRunCmd     `cmd:"" help:"enforce the retention policy now"`
	Hold    retentionHoldCmd    `cmd:"" help:"set a legal hold on one trace, agent or team"`
	Release retentionReleaseCmd `cmd:"" help:"release a legal hold"`
	Holds   retentionHoldsCmd   `cmd:"" help:"list legal holds, active and released"`
}

type retentionRunCmd struct {
	connFlags
	DryRun bool `name:"dry-run" help:"show what would be deleted; change nothing"`
	JSON   bool `name:"json" help:"print the run as one JSON object"`
}

func (c *retentionRunCmd) Run(ctx context.Context, g *globals) error {
	cfg, conn, err := openStore(ctx, &c.connFlags)
	if err != nil {
		return err
	}
	defer conn.Close()
	log := g.logger(slog.LevelInfo)
	var opts []retention.Option
	if cfg.Ledger.Enabled && !c.DryRun {
		led, err := openLedger(cfg, conn, nil, log)
		if err != nil {
			return err
		}
		defer led.Close(context.Background())
		opts = append(opts, retention.WithLedger(led))
	}
	enf, err := retention.New(cfg.Reports.Retention, conn, cfg.ClickHouse.Database, prometheus.NewRegistry(), log, opts...)
	if err != nil {
		return err
	}
	run, err := enf.Enforce(ctx, c.DryRun, "cli")
	if c.JSON {
		if jerr := g.printJSON(toRetentionRunJSON(run, err)); jerr != nil {
			return jerr
		}
		return err
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	verb := "did"
	if c.DryRun {
		verb = "would do (dry run: nothing changed)"
	}
	fmt.Fprintf(tw, "retention run %s, policy %s, %d active holds: what it %s\n", run.ID, run.Policy, run.HoldCount, verb)
	fmt.Fprintln(tw, "TIER\tFROM\tTO\tACTION\tEVENTS\tDELETED\tFIELDS CLEARED\tKEPT BY HOLDS\tHOLDS")
	for _, a := range run.Actions {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", a.Tier, a.RangeStart.Format("2006-01-02"), a.RangeEnd.Format("2006-01-02"),
			a.Kind, a.Rows, a.Deleted, a.Stripped, a.Held, strings.Join(a.Holds, ","))
	}
	fmt.Fprintf(tw, "total\t\t\t\t\t%d\t%d\t%d\t\n", run.Deleted, run.Stripped, run.Held)
	_ = tw.Flush()
	return err
}

type retentionHoldCmd struct {
	connFlags
	Trace  string `placeholder:"ID" help:"hold one trace"`
	Agent  string `placeholder:"ID" help:"hold one agent's events"`
	Team   string `placeholder:"NAME" help:"hold one team's events"`
	Reason string `help:"why: the matter or request the hold serves"`
	By     string `placeholder:"WHO" help:"who sets the hold"`
	JSON   bool   `name:"json" help:"print the hold as one JSON object"`
}

func (c *retentionHoldCmd) Run(ctx context.Context, g *globals) error {
	h := retention.Hold{Reason: c.Reason, SetBy: c.By}
	n := 0
	for _, s := range []struct{ scope, v string }{{retention.ScopeTrace, c.Trace}, {retention.ScopeAgent, c.Agent}, {retention.ScopeTeam, c.Team}} {
		if s.v != "" {
			h.Scope, h.Value = s.scope, s.v
			n++
		}
	}
	if n != 1 {
		return usageErr("give exactly one of --trace, --agent, --team")
	}
	cfg, conn, err := openStore(ctx, &c.connFlags)
	if err != nil {
		return err
	}
	defer conn.Close()
	h, err = retention.SetHold(ctx, conn, cfg.ClickHouse.Database, h, time.Now())
	if err != nil {
		return err
	}
	if c.JSON {
		return g.printJSON(toHoldJSON(h))
	}
	fmt.Fprintf(g.stdout, "%s: %s %s held from %s (%s, set by %s)\n", h.ID, h.Scope, h.Value, h.SetAt.Format(time.RFC3339), h.Reason, h.SetBy)
	return nil
}

type retentionReleaseCmd struct {
	connFlags
	HoldID string `arg:"" name:"hold-id" help:"the hold's id (retention holds lists them)"`
	By     string `placeholder:"WHO" help:"who releases the hold"`
}

func (c *retentionReleaseCmd) Run(ctx context.Context, g *globals) error {
	cfg, conn, err := openStore(ctx, &c.connFlags)
	if err != nil {
		return err
	}
	defer conn.Close()
	return retention.ReleaseHold(ctx, conn, cfg.ClickHouse.Database, c.HoldID, c.By, time.Now())
}

type retentionHoldsCmd struct {
	connFlags
	JSON bool `name:"json" help:"print the holds as one JSON object"`
}

func (c *retentionHoldsCmd) Run(ctx context.Context, g *globals) error {
	cfg, conn, err := openStore(ctx, &c.connFlags)
	if err != nil {
		return err
	}
	defer conn.Close()
	hs, err := retention.Holds(ctx, conn, cfg.ClickHouse.Database)
	if err != nil {
		return err
	}
	if c.JSON {
		out := make([]holdJSON, 0, len(hs))
		for _, h := range hs {
			out = append(out, toHoldJSON(h))
		}
		return g.printJSON(struct {
			Holds []holdJSON `json:"holds"`
		}{out})
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOLD\tSCOPE\tVALUE\tSET AT\tSET BY\tRELEASED\tREASON")
	for _, h := range hs {
		rel := "active"
		if !h.ReleasedAt.IsZero() {
			rel = h.ReleasedAt.Format(time.RFC3339) + " by " + h.ReleasedBy
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.Scope, h.Value, h.SetAt.Format(time.RFC3339), h.SetBy, rel, h.Reason)
	}
	return tw.Flush()
}
