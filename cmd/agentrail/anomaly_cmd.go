package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/agentrail/agentrail/anomaly"
	"github.com/agentrail/agentrail/internal/chstore"
)

// runRules is `agentrail rules check FILE...` and `agentrail rules
// backtest --from --to [--rules FILE]`.
func runRules(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		rulesUsage(os.Stdout)
		return 0
	}
	switch args[0] {
	case "check":
		return rulesCheck(args[1:], os.Stdout)
	case "backtest":
		return rulesBacktest(ctx, args[1:], os.Stdout)
	}
	fmt.Fprintf(os.Stderr, "agentrail rules: unknown subcommand %q\n\n", args[0])
	rulesUsage(os.Stderr)
	return 2
}

func rulesUsage(w io.Writer) {
	fmt.Fprint(w, `usage:
  agentrail rules check FILE...
      check rule files: every mistake with its line, column and field
  agentrail rules backtest --from TIME --to TIME [--rules FILE] [-v] [--config FILE] [--clickhouse ADDR] [--database DB]
      replay the events stored in ClickHouse through the rules and print how many
      alerts each rule would have raised, per day (TIME: 2026-11-18 or RFC 3339)

Without --rules, backtest uses anomaly.rules_file of the config, or the built-in
rules (deployments/rules.yaml). docs/RULES.md describes the rule file.
`)
}

// rulesCheck exits 0 when every file is good, 1 when one has mistakes.
func rulesCheck(files []string, out io.Writer) int {
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "agentrail rules check: name at least one rule file")
		return 2
	}
	code := 0
	for _, f := range files {
		rs, err := anomaly.LoadRules(f)
		var probs *anomaly.Problems
		switch {
		case errors.As(err, &probs):
			fmt.Fprintln(out, probs.Error())
			fmt.Fprintf(out, "%s: %d mistake(s)\n", f, len(probs.List))
			code = 1
		case err != nil:
			fmt.Fprintf(out, "%s: %v\n", f, err)
			code = 1
		default:
			fmt.Fprintf(out, "%s: ok, %s\n", f, rs.Summary())
		}
	}
	return code
}

func rulesBacktest(ctx context.Context, args []string, out io.Writer) int {
	fs := flag.NewFlagSet("rules backtest", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	from := fs.String("from", "", "start of the replayed event time, inclusive (2026-11-18 or RFC 3339)")
	to := fs.String("to", "", "end of the replayed event time, exclusive")
	rulesFile := fs.String("rules", "", "rule file (default: anomaly.rules_file of the config, or the built-in rules)")
	verbose := fs.Bool("v", false, "list every alert after the table")
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	if *from == "" || *to == "" {
		fmt.Fprintln(os.Stderr, "agentrail rules backtest: --from and --to are required (2026-11-18 or RFC 3339)")
		return 2
	}
	start, err1 := parseWhen(*from)
	end, err2 := parseWhen(*to)
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintf(os.Stderr, "agentrail rules backtest: %v\n", err)
		return 2
	}
	cfg, err := cf.load()
	if err != nil {
		return exitCode("rules backtest", err)
	}
	path := *rulesFile
	if path == "" {
		path = cfg.Anomaly.RulesFile
	}
	rs := anomaly.DefaultRules()
	if path != "" {
		if rs, err = anomaly.LoadRules(path); err != nil {
			return exitCode("rules backtest", err)
		}
	}
	conn, err := chstore.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return exitCode("rules backtest", err)
	}
	defer conn.Close()
	res, err := anomaly.Backtest(ctx, conn, cfg.ClickHouse.Database, rs, cfg.Anomaly, start, end)
	if err != nil {
		return exitCode("rules backtest", err)
	}
	fmt.Fprintf(out, "rules: %s (%s)\n", rs.Source(), rs.Summary())
	return exitCode("rules backtest", res.Print(out, *verbose))
}

// parseWhen reads a date (midnight UTC) or an RFC 3339 time.
func parseWhen(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a date (2026-11-18) nor an RFC 3339 time", s)
	}
	return t.UTC(), nil
}
