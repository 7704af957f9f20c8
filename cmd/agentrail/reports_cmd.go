package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/pipeline"
	"github.com/agentrail/agentrail/reports"
	"github.com/agentrail/agentrail/reports/retention"
)

// reportCmd is every command of the weekly reports: written on demand,
// sent by mail now, or sent on each team's schedule.
type reportCmd struct {
	Weekly reportWeeklyCmd `cmd:"" help:"write weekly permission reports (HTML, PNG chart, JSON, CSV) into a directory"`
	Send   reportSendCmd   `cmd:"" help:"send one team's report for one week by mail, now"`
	Serve  reportServeCmd  `cmd:"" help:"send each team's weekly report on its schedule and run retention on its own"`
}

type reportWeeklyCmd struct {
	connFlags
	Week string `placeholder:"WEEK" help:"ISO week, e.g. 2026-W47 (default: the last complete week in each team's zone; \"current\" for the week in progress)"`
	Team string `placeholder:"TEAM" help:"one team (default: every registered team and every team with events in the week)"`
	Out  string `default:"./out/reports" placeholder:"DIR" help:"directory to write the reports into"`
	JSON bool   `name:"json" help:"print the written files as one JSON object"`
}

func (c *reportWeeklyCmd) Help() string {
	return "A --team that is neither in the registry nor has any events in the week is a\nfinding (exit 1, a warning, nothing written)."
}

func (c *reportWeeklyCmd) Run(ctx context.Context, g *globals) error {
	if err := checkTeamFlag(c.Team); err != nil {
		return err
	}
	cfg, conn, err := openStore(ctx, &c.connFlags)
	if err != nil {
		return err
	}
	defer conn.Close()
	b := reports.NewBuilder(cfg.Reports, conn, cfg.ClickHouse.Database, time.Now)
	w := c.Week
	switch w {
	case "current":
		w = ""
	case "":
		w = reports.LastComplete(time.Now(), time.UTC).String()
		if c.Team != "" {
			t, err := b.Team(ctx, c.Team)
			if err != nil {
				return err
			}
			w = reports.LastComplete(time.Now(), t.Location).String()
		}
	}
	paths, err := b.Write(ctx, w, c.Team, c.Out)
	if c.JSON {
		if jerr := g.printJSON(struct {
			Week  string   `json:"week"`
			Team  string   `json:"team"`
			Files []string `json:"files"`
		}{w, c.Team, nonNil(paths)}); jerr != nil {
			return jerr
		}
	} else {
		for _, p := range paths {
			fmt.Fprintln(g.stdout, p)
		}
	}
	if errors.Is(err, reports.ErrUnknownTeam) {
		return unknownTeam(g, c.Team, "is not in the registry and has no events in the week: nothing to report, nothing written")
	}
	return err
}

// unknownTeam warns that team has nothing to report: a finding (exit 1).
func unknownTeam(g *globals, team, what string) error {
	g.warnf("team %q %s", team, what)
	return finding(nil)
}

type reportSendCmd struct {
	connFlags
	Team  string `required:"" placeholder:"TEAM" help:"the team"`
	Week  string `placeholder:"WEEK" help:"ISO week, e.g. 2026-W47 (default the last complete week in the team's zone; \"current\" for the week in progress, sent as a partial report)"`
	Force bool   `help:"send even to recipients who had the week"`
	JSON  bool   `name:"json" help:"print the delivery as one JSON object"`
}

func (c *reportSendCmd) Help() string {
	return "A week that has not ended is sent as a partial report, marked so, and does not\n" +
		"count as the week delivered: the final report is still sent when it has ended.\n" +
		"A team that is not in the registry has no recipients: a finding (exit 1, a\nwarning, nothing sent)."
}

func (c *reportSendCmd) Run(ctx context.Context, g *globals) error {
	if err := checkTeamFlag(c.Team); err != nil {
		return err
	}
	cfg, conn, err := openStore(ctx, &c.connFlags)
	if err != nil {
		return err
	}
	defer conn.Close()
	svc, closeLedger, err := newReportsService(cfg, conn, prometheus.NewRegistry(), g.logger(slog.LevelInfo), false)
	if err != nil {
		return err
	}
	defer closeLedger()
	defer svc.Close(context.Background())
	t, err := svc.Team(ctx, c.Team)
	if err != nil {
		return err
	}
	if !t.Registered {
		return unknownTeam(g, c.Team, "is not in the registry, so it has no recipients: nothing sent")
	}
	w := reports.LastComplete(time.Now(), t.Location)
	switch c.Week {
	case "":
	case "current":
		w = reports.WeekOf(time.Now(), t.Location)
	default:
		if w, err = reports.ParseWeek(c.Week); err != nil {
			return usageErr("--week: %w", err)
		}
	}
	d, err := svc.SendWeek(ctx, t, w, "manual", c.Force)
	if c.JSON {
		if jerr := g.printJSON(toDeliveryJSON(d, err)); jerr != nil {
			return jerr
		}
		return err
	}
	kind := "final"
	if d.Partial {
		kind = "partial, up to " + d.CoversUntil.Format(time.RFC3339)
	}
	fmt.Fprintf(g.stdout, "%s %s (%s): sent to %v; already had it: %v; unconfirmed: %v (run %s, %d attempts)\n",
		d.Team, d.Week, kind, d.Sent, d.Already, d.Unconfirmed, d.RunID, d.Attempts)
	return err
}

type reportServeCmd struct {
	connFlags
	Metrics string `default:"127.0.0.1:9465" placeholder:"ADDR" help:"address of /metrics, /healthz and /readyz (\"\" disables them)"`
}

func (c *reportServeCmd) Run(ctx context.Context, g *globals) error {
	cfg, err := c.load()
	if err != nil {
		return err
	}
	log := g.logger(slog.LevelInfo)
	reg := prometheus.NewRegistry()
	return runService(ctx, c.Metrics, reg, func(gctx context.Context, ready func()) error {
		_, conn, err := openStore(gctx, &c.connFlags)
		if err != nil {
			return err
		}
		defer conn.Close()
		svc, closeLedger, err := newReportsService(cfg, conn, reg, log, true)
		if err != nil {
			return err
		}
		defer closeLedger()
		defer svc.Close(context.Background())
		ready() // ClickHouse answered (migrated), the ledger opened
		log.Info("reports serving", "clickhouse", cfg.ClickHouse.Addr, "database", cfg.ClickHouse.Database,
			"smtp", fmt.Sprintf("%s:%d", cfg.Reports.SMTP.Host, cfg.Reports.SMTP.Port), "retention", cfg.Reports.Retention.Schedule,
			"metrics", c.Metrics)
		return svc.Run(gctx)
	})
}

// reportsCmd is the spelling before `report send|serve`, one letter from
// `report`: it works for one more release, with a warning.
type reportsCmd struct {
	Serve deprecatedServe `cmd:"" help:"deprecated: use agentrail report serve"`
	Send  deprecatedSend  `cmd:"" help:"deprecated: use agentrail report send"`
}

type deprecatedServe struct {
	reportServeCmd `embed:""`
}

func (c *deprecatedServe) Run(ctx context.Context, g *globals) error {
	g.warnf("deprecated: use \"agentrail report serve\" (this spelling goes in the next release)")
	return c.reportServeCmd.Run(ctx, g)
}

type deprecatedSend struct {
	reportSendCmd `embed:""`
}

func (c *deprecatedSend) Run(ctx context.Context, g *globals) error {
	g.warnf("deprecated: use \"agentrail report send\" (this spelling goes in the next release)")
	return c.reportSendCmd.Run(ctx, g)
}

// newReportsService builds the report mailer (and, when serve, its retention
// job and ledger), registering every metric `agentrail report serve` serves
// on reg. closeLedger is never nil.
func newReportsService(cfg pipeline.Config, conn driver.Conn, reg prometheus.Registerer, log *slog.Logger, serve bool) (svc *reports.Service, closeLedger func(), err error) {
	closeLedger = func() {}
	if err := registerRuntimeMetrics(reg); err != nil {
		return nil, closeLedger, err
	}
	if !serve {
		// A manual send runs no schedule, so no retention job.
		cfg.Reports.Retention.Schedule = "off"
	}
	var opts []reports.Option
	if cfg.Ledger.Enabled && serve {
		led, err := pipeline.NewLedger(cfg, conn, reg, log)
		if err != nil {
			return nil, closeLedger, err
		}
		closeLedger = func() { led.Close(context.Background()) }
		opts = append(opts, reports.WithRetentionOptions(retention.WithLedger(led)))
	}
	svc, err = reports.New(cfg.Reports, reports.Store{Conn: conn, Database: cfg.ClickHouse.Database}, reg, log, opts...)
	if err != nil {
		closeLedger()
		return nil, func() {}, err
	}
	return svc, closeLedger, nil
}
