package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/pipeline"
	"github.com/agentrail/agentrail/reports"
	"github.com/agentrail/agentrail/reports/registry"
	"github.com/agentrail/agentrail/reports/retention"
)

// subcommand splits "agentrail NAME SUB [flags] [args]" and parses the
// flags; it reports whether to go on, and the exit code when not.
func subcommand(name string, args []string, subs map[string]string) (sub string, rest []string, ok bool, code int) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(os.Stderr, "usage: agentrail %s <subcommand> [flags]\n\nsubcommands:\n", name)
		for _, k := range sortedKeys(subs) {
			fmt.Fprintf(os.Stderr, "  %-8s %s\n", k, subs[k])
		}
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return "", nil, false, 0
		}
		return "", nil, false, 2
	}
	if _, known := subs[args[0]]; !known {
		fmt.Fprintf(os.Stderr, "agentrail %s: unknown subcommand %q\n", name, args[0])
		return "", nil, false, 2
	}
	return args[0], args[1:], true, 0
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// parseWithArgs parses flags and requires exactly n positional arguments.
func parseWithArgs(fs *flag.FlagSet, args []string, n int, what string) (ok bool, code int) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, 0
		}
		return false, 2
	}
	if fs.NArg() != n {
		if n == 0 {
			fmt.Fprintf(os.Stderr, "agentrail %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		} else {
			fmt.Fprintf(os.Stderr, "agentrail %s: want %s (flags go before it)\n", fs.Name(), what)
		}
		return false, 2
	}
	return true, 0
}

// openStore loads the config and connects to a migrated ClickHouse.
func openStore(ctx context.Context, cf *connFlags) (pipeline.Config, driver.Conn, error) {
	cfg, err := cf.load()
	if err != nil {
		return cfg, nil, err
	}
	conn, err := chstore.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return cfg, nil, err
	}
	if _, err := chstore.Migrate(ctx, conn, cfg.ClickHouse.Database); err != nil {
		conn.Close()
		return cfg, nil, err
	}
	return cfg, conn, nil
}

// teamFlagOK checks a --team flag against the registry's team names
// (registry.TeamNameRule) before anything runs, so a name like "../../x"
// is a usage error, not a path; "" (no flag) is fine.
func teamFlagOK(cmd, team string) bool {
	if team == "" {
		return true
	}
	if err := registry.CheckTeamName("--team", team); err != nil {
		fmt.Fprintf(os.Stderr, "agentrail %s: %v\n", cmd, err)
		return false
	}
	return true
}

func whoami() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

// runRegistry applies the agent registry (agentrail registry apply FILE).
func runRegistry(ctx context.Context, args []string) int {
	sub, args, ok, code := subcommand("registry", args, map[string]string{
		"check":  "validate a registry file (no database): agentrail registry check FILE",
		"apply":  "validate and load a registry as a new version: agentrail registry apply [flags] FILE",
		"keygen": "make an agent's signing key: agentrail registry keygen --agent ID --out FILE [--alg ed25519|hmac-sha256]",
	})
	if !ok {
		return code
	}
	if sub == "keygen" {
		return runKeygen(args) // keygen.go
	}
	fs := flag.NewFlagSet("registry "+sub, flag.ContinueOnError)
	var cf connFlags
	asOf, by := "", whoami()
	if sub == "apply" {
		cf.register(fs)
		fs.StringVar(&asOf, "as-of", "", "RFC 3339 time the grants take effect (default now; must be after every earlier apply)")
		fs.StringVar(&by, "by", by, "who applies it, for the record")
	}
	if ok, code := parseWithArgs(fs, args, 1, "the registry file"); !ok {
		return code
	}
	file := fs.Arg(0)
	reg, err := registry.Load(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if sub == "check" {
		n, k := 0, 0
		for _, a := range reg.Agents {
			n += len(a.Grants)
			k += len(a.Keys)
		}
		fmt.Printf("%s: valid: %d teams, %d agents, %d grants, %d signing keys\n", file, len(reg.Teams), len(reg.Agents), n, k)
		return 0
	}
	opts := registry.ApplyOptions{By: by, Source: file}
	if asOf != "" {
		if opts.AsOf, err = time.Parse(time.RFC3339, asOf); err != nil {
			return exitCode("registry apply", fmt.Errorf("--as-of: %w", err))
		}
	}
	cfg, conn, err := openStore(ctx, &cf)
	if err != nil {
		return exitCode("registry apply", err)
	}
	defer conn.Close()
	s, err := registry.Apply(ctx, conn, cfg.ClickHouse.Database, reg, opts)
	if err != nil {
		return exitCode("registry apply", err)
	}
	fmt.Printf("registry version %d in force from %s: %d teams, %d agents, %d grants (%d rows opened, %d closed)\n",
		s.Version, s.EffectiveAt.Format(time.RFC3339), s.Teams, s.Agents, s.Grants, s.Opened, s.Closed)
	for _, x := range s.Added {
		fmt.Println("  + " + x)
	}
	for _, x := range s.Change {
		fmt.Println("  ~ " + x)
	}
	for _, x := range s.Revoked {
		fmt.Println("  - " + x)
	}
	return 0
}

// runReport makes a report on demand (agentrail report weekly ...).
func runReport(ctx context.Context, args []string) int {
	sub, args, ok, code := subcommand("report", args, map[string]string{
		"weekly": "write weekly permission reports (HTML, PNG chart, JSON, CSV) into a directory",
	})
	if !ok {
		return code
	}
	fs := flag.NewFlagSet("report "+sub, flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	week := fs.String("week", "", `ISO week, e.g. 2026-W47 (default: the last complete week in each team's zone; "current" for the week in progress)`)
	team := fs.String("team", "", "one team (default: every registered team and every team with events in the week)")
	out := fs.String("out", "./out/reports", "directory to write the reports into")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: agentrail report weekly [flags]\n\n"+
			"Exit status: 0 written; 1 error; 2 usage error; 3 --team names a team that is\n"+
			"neither in the registry nor has any events in the week (nothing written).\n\nflags:")
		fs.PrintDefaults()
	}
	if ok, code := parseWithArgs(fs, args, 0, ""); !ok {
		return code
	}
	if !teamFlagOK("report weekly", *team) {
		return 2
	}
	cfg, conn, err := openStore(ctx, &cf)
	if err != nil {
		return exitCode("report weekly", err)
	}
	defer conn.Close()
	b := reports.NewBuilder(cfg.Reports, conn, cfg.ClickHouse.Database, time.Now)
	w := *week
	switch w {
	case "current":
		w = ""
	case "":
		w = reports.LastComplete(time.Now(), time.UTC).String()
		if *team != "" {
			t, err := b.Team(ctx, *team)
			if err != nil {
				return exitCode("report weekly", err)
			}
			w = reports.LastComplete(time.Now(), t.Location).String()
		}
	}
	paths, err := b.Write(ctx, w, *team, *out)
	for _, p := range paths {
		fmt.Println(p)
	}
	if errors.Is(err, reports.ErrUnknownTeam) {
		return unknownTeam("report weekly", *team, "is not in the registry and has no events in the week: nothing to report, nothing written")
	}
	return exitCode("report weekly", err)
}

// exitUnknownTeam is the exit status of `report weekly --team T` and
// `reports send --team T` when T is neither in the registry nor has any
// events in the week: nothing was written or sent (1 is any other error,
// 2 a usage error).
const exitUnknownTeam = 3

// unknownTeam warns that team has nothing to report and returns
// exitUnknownTeam.
func unknownTeam(cmd, team, what string) int {
	fmt.Fprintf(os.Stderr, "agentrail %s: warning: team %q %s\n", cmd, team, what)
	return exitUnknownTeam
}

// runReports serves scheduled report mail (agentrail reports serve).
func runReports(ctx context.Context, args []string) int {
	sub, args, ok, code := subcommand("reports", args, map[string]string{
		"serve": "send each team's weekly report on its schedule and run retention on its own",
		"send":  "send one team's report for one week now: --team T [--week W|current] [--force]",
	})
	if !ok {
		return code
	}
	fs := flag.NewFlagSet("reports "+sub, flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	metricsAddr := fs.String("metrics", "127.0.0.1:9465", `address of the Prometheus /metrics endpoint ("" disables it)`)
	team := fs.String("team", "", "team (send)")
	week := fs.String("week", "", `ISO week, e.g. 2026-W47 (send; default the last complete week in the team's zone; "current" for the week in progress, sent as a partial report)`)
	force := fs.Bool("force", false, "send even to recipients who had the week (send)")
	if sub == "send" {
		fs.Usage = func() {
			fmt.Fprintln(fs.Output(), "usage: agentrail reports send --team T [--week W|current] [--force] [flags]\n\n"+
				"A week that has not ended is sent as a partial report, marked so, and does not\n"+
				"count as the week delivered: the final report is still sent when it has ended.\n"+
				"Exit status: 0 sent or nothing to send; 1 error; 2 usage error; 3 the team is\n"+
				"not in the registry (no recipients, nothing sent).\n\nflags:")
			fs.PrintDefaults()
		}
	}
	if ok, code := parseWithArgs(fs, args, 0, ""); !ok {
		return code
	}
	if !teamFlagOK("reports "+sub, *team) {
		return 2
	}
	cfg, conn, err := openStore(ctx, &cf)
	if err != nil {
		return exitCode("reports "+sub, err)
	}
	defer conn.Close()
	log := newLogger()
	reg := prometheus.NewRegistry()
	svc, closeLedger, err := newReportsService(cfg, conn, reg, log, sub == "serve")
	if err != nil {
		return exitCode("reports "+sub, err)
	}
	defer closeLedger()
	defer svc.Close(context.Background())
	if sub == "send" {
		if *team == "" {
			return exitCode("reports send", errors.New("--team is required"))
		}
		t, err := svc.Team(ctx, *team)
		if err != nil {
			return exitCode("reports send", err)
		}
		if !t.Registered {
			return unknownTeam("reports send", *team, "is not in the registry, so it has no recipients: nothing sent")
		}
		w := reports.LastComplete(time.Now(), t.Location)
		switch *week {
		case "":
		case "current":
			w = reports.WeekOf(time.Now(), t.Location)
		default:
			if w, err = reports.ParseWeek(*week); err != nil {
				return exitCode("reports send", err)
			}
		}
		d, err := svc.SendWeek(ctx, t, w, "manual", *force)
		kind := "final"
		if d.Partial {
			kind = "partial, up to " + d.CoversUntil.Format(time.RFC3339)
		}
		fmt.Printf("%s %s (%s): sent to %v; already had it: %v; unconfirmed: %v (run %s, %d attempts)\n",
			d.Team, d.Week, kind, d.Sent, d.Already, d.Unconfirmed, d.RunID, d.Attempts)
		return exitCode("reports send", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return svc.Run(gctx) })
	if *metricsAddr != "" {
		g.Go(func() error { return serveMetrics(gctx, *metricsAddr, reg) })
	}
	log.Info("reports serving", "clickhouse", cfg.ClickHouse.Addr, "database", cfg.ClickHouse.Database,
		"smtp", fmt.Sprintf("%s:%d", cfg.Reports.SMTP.Host, cfg.Reports.SMTP.Port), "retention", cfg.Reports.Retention.Schedule,
		"metrics", *metricsAddr)
	return exitCode("reports serve", g.Wait())
}

// newReportsService builds the report mailer (and, when serve, its retention
// job and ledger), registering every metric `agentrail reports serve` serves
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
		led, err := openLedger(cfg, conn, reg, log)
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

// runRetention enforces tier-based retention (agentrail retention run).
func runRetention(ctx context.Context, args []string) int {
	sub, args, ok, code := subcommand("retention", args, map[string]string{
		"run":     "enforce the retention policy now: agentrail retention run [--dry-run]",
		"hold":    "set a legal hold: --trace ID | --agent ID | --team NAME, --reason TEXT, --by WHO",
		"release": "release a legal hold: agentrail retention release --by WHO HOLD_ID",
		"holds":   "list legal holds, active and released",
	})
	if !ok {
		return code
	}
	fs := flag.NewFlagSet("retention "+sub, flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	dry := fs.Bool("dry-run", false, "show what would be deleted; change nothing (run)")
	trace := fs.String("trace", "", "hold one trace (hold)")
	agent := fs.String("agent", "", "hold one agent's events (hold)")
	team := fs.String("team", "", "hold one team's events (hold)")
	reason := fs.String("reason", "", "why: the matter or request the hold serves (hold)")
	by := fs.String("by", "", "who sets or releases the hold (hold, release)")
	nargs, what := 0, ""
	if sub == "release" {
		nargs, what = 1, "the hold id"
	}
	if ok, code := parseWithArgs(fs, args, nargs, what); !ok {
		return code
	}
	cfg, conn, err := openStore(ctx, &cf)
	if err != nil {
		return exitCode("retention "+sub, err)
	}
	defer conn.Close()
	db := cfg.ClickHouse.Database
	switch sub {
	case "hold":
		h := retention.Hold{Reason: *reason, SetBy: *by}
		n := 0
		for _, s := range []struct{ scope, v string }{{retention.ScopeTrace, *trace}, {retention.ScopeAgent, *agent}, {retention.ScopeTeam, *team}} {
			if s.v != "" {
				h.Scope, h.Value = s.scope, s.v
				n++
			}
		}
		if n != 1 {
			return exitCode("retention hold", errors.New("give exactly one of --trace, --agent, --team"))
		}
		h, err := retention.SetHold(ctx, conn, db, h, time.Now())
		if err != nil {
			return exitCode("retention hold", err)
		}
		fmt.Printf("%s: %s %s held from %s (%s, set by %s)\n", h.ID, h.Scope, h.Value, h.SetAt.Format(time.RFC3339), h.Reason, h.SetBy)
		return 0
	case "release":
		return exitCode("retention release", retention.ReleaseHold(ctx, conn, db, fs.Arg(0), *by, time.Now()))
	case "holds":
		hs, err := retention.Holds(ctx, conn, db)
		if err != nil {
			return exitCode("retention holds", err)
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HOLD\tSCOPE\tVALUE\tSET AT\tSET BY\tRELEASED\tREASON")
		for _, h := range hs {
			rel := "active"
			if !h.ReleasedAt.IsZero() {
				rel = h.ReleasedAt.Format(time.RFC3339) + " by " + h.ReleasedBy
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.Scope, h.Value, h.SetAt.Format(time.RFC3339), h.SetBy, rel, h.Reason)
		}
		return exitCode("retention holds", tw.Flush())
	}
	var opts []retention.Option
	if cfg.Ledger.Enabled && !*dry {
		led, err := openLedger(cfg, conn, nil, newLogger())
		if err != nil {
			return exitCode("retention run", err)
		}
		defer led.Close(context.Background())
		opts = append(opts, retention.WithLedger(led))
	}
	enf, err := retention.New(cfg.Reports.Retention, conn, db, prometheus.NewRegistry(), newLogger(), opts...)
	if err != nil {
		return exitCode("retention run", err)
	}
	run, err := enf.Enforce(ctx, *dry, "cli")
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	verb := "did"
	if *dry {
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
	return exitCode("retention run", err)
}
