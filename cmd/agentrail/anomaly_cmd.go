package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/agentrail/agentrail/anomaly"
	"github.com/agentrail/agentrail/internal/chstore"
)

type rulesCmd struct {
	Check    rulesCheckCmd    `cmd:"" help:"check rule files: every mistake with its line, column and field"`
	Backtest rulesBacktestCmd `cmd:"" help:"replay the events stored in ClickHouse through the rules and print how many alerts each rule would have raised, per day"`
}

type rulesCheckCmd struct {
	Files []string `arg:"" name:"file" help:"rule files (docs/RULES.md describes them)"`
	JSON  bool     `name:"json" help:"print the result as one JSON object"`
}

// ruleFileResult is one file of `rules check --json`.
type ruleFileResult struct {
	File     string            `json:"file"`
	OK       bool              `json:"ok"`
	Summary  string            `json:"summary,omitempty"`
	Error    string            `json:"error,omitempty"`
	Mistakes []ruleFileMistake `json:"mistakes,omitempty"`
}

type ruleFileMistake struct {
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (c *rulesCheckCmd) Run(g *globals) error {
	res, bad := checkRuleFiles(c.Files)
	if c.JSON {
		if err := g.printJSON(struct {
			OK    bool             `json:"ok"`
			Files []ruleFileResult `json:"files"`
		}{!bad, res}); err != nil {
			return err
		}
	} else {
		printRuleCheck(g.stdout, res)
	}
	if bad {
		return finding(nil)
	}
	return nil
}

// checkRuleFiles loads each file; bad says whether one has mistakes or
// could not be read.
func checkRuleFiles(files []string) (res []ruleFileResult, bad bool) {
	for _, f := range files {
		r := ruleFileResult{File: f}
		rs, err := anomaly.LoadRules(f)
		var probs *anomaly.Problems
		switch {
		case errors.As(err, &probs):
			r.Error = probs.Error()
			for _, p := range probs.List {
				r.Mistakes = append(r.Mistakes, ruleFileMistake{p.Line, p.Column, p.Field, p.Message})
			}
		case err != nil:
			r.Error = err.Error()
		default:
			r.OK, r.Summary = true, rs.Summary()
		}
		bad = bad || !r.OK
		res = append(res, r)
	}
	return res, bad
}

func printRuleCheck(out io.Writer, res []ruleFileResult) {
	for _, r := range res {
		switch {
		case len(r.Mistakes) > 0:
			fmt.Fprintln(out, r.Error)
			fmt.Fprintf(out, "%s: %d mistake(s)\n", r.File, len(r.Mistakes))
		case !r.OK:
			fmt.Fprintf(out, "%s: %s\n", r.File, r.Error)
		default:
			fmt.Fprintf(out, "%s: ok, %s\n", r.File, r.Summary)
		}
	}
}

type rulesBacktestCmd struct {
	connFlags
	From    string `required:"" placeholder:"TIME" help:"start of the replayed event time, inclusive (2026-11-18 or RFC 3339)"`
	To      string `required:"" placeholder:"TIME" help:"end of the replayed event time, exclusive"`
	Rules   string `placeholder:"FILE" help:"rule file (default: anomaly.rules_file of the config, or the built-in rules in deployments/rules.yaml)"`
	Verbose bool   `short:"v" help:"list every alert after the table"`
	JSON    bool   `name:"json" help:"print the result as one JSON object"`
}

func (c *rulesBacktestCmd) Run(ctx context.Context, g *globals) error {
	start, err1 := parseWhen(c.From)
	end, err2 := parseWhen(c.To)
	if err := errors.Join(err1, err2); err != nil {
		return usageErr("%w", err)
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	path := c.Rules
	if path == "" {
		path = cfg.Anomaly.RulesFile
	}
	rs := anomaly.DefaultRules()
	if path != "" {
		if rs, err = anomaly.LoadRules(path); err != nil {
			return finding(err)
		}
	}
	conn, err := chstore.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer conn.Close()
	res, err := anomaly.Backtest(ctx, conn, cfg.ClickHouse.Database, rs, cfg.Anomaly, start, end)
	if err != nil {
		return err
	}
	if c.JSON {
		alerts := res.Alerts
		if alerts == nil {
			alerts = []anomaly.Alert{}
		}
		return g.printJSON(struct {
			RulesSource string                    `json:"rules_source"`
			Rules       []string                  `json:"rules"`
			From        time.Time                 `json:"from"`
			To          time.Time                 `json:"to"`
			Events      int                       `json:"events"`
			Warmup      int                       `json:"warmup_events"`
			Late        uint64                    `json:"late_events"`
			PerDay      map[string]map[string]int `json:"alerts_per_day"`
			Alerts      []anomaly.Alert           `json:"alerts"`
		}{rs.Source(), res.Rules, res.From, res.To, res.Events, res.Warmup, res.Late, res.PerDay, alerts})
	}
	fmt.Fprintf(g.stdout, "rules: %s (%s)\n", rs.Source(), rs.Summary())
	return res.Print(g.stdout, c.Verbose)
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
