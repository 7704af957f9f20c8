package reports

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentrail/agentrail/reports/registry"
)

// WriteFiles renders r into dir as agentrail-report-TEAM-WEEK.html (with
// the chart beside it as .png), .json and .csv, and returns the paths, the
// HTML first. TEAM is registry.FileComponent of the team: a team name that
// came from events, not the registry, cannot leave dir.
func WriteFiles(r *Weekly, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("reports: create %s: %w", dir, err)
	}
	base := reportBase(r)
	png, err := Chart(r)
	if err != nil {
		return nil, err
	}
	html, err := HTML(r, base+".png")
	if err != nil {
		return nil, err
	}
	js, err := JSON(r)
	if err != nil {
		return nil, err
	}
	csv, err := CSV(r)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, f := range []struct {
		ext  string
		data []byte
	}{{".html", html}, {".png", png}, {".json", js}, {".csv", csv}} {
		p := filepath.Join(dir, base+f.ext)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return paths, fmt.Errorf("reports: write %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// reportBase is the file name, without extension, of r's files and mail
// attachments. Every path or attachment name built from a team goes
// through registry.FileComponent here; the week is always an ISO week
// Build made (2026-W47).
func reportBase(r *Weekly) string {
	return "agentrail-report-" + registry.FileComponent(r.Team) + "-" + r.Week
}

// ErrUnknownTeam is returned for a report asked for by team name when the
// team is neither in the registry nor has any events or findings in the
// week: most likely a misspelt name. No files are written for it.
var ErrUnknownTeam = errors.New("reports: team is not in the registry and has nothing to report")

// empty reports whether r has nothing in it: no action, violation or alert.
func (r *Weekly) empty() bool {
	return r.Figures.Actions == 0 && r.Violations.Total == 0 && r.Alerts.Total == 0
}

// WriteWeekly builds the weekly report of team (every team when "") for
// week ("2026-W47"; "" means the current week in each team's zone) from
// database db with the default configuration, writes each with WriteFiles
// into dir, and returns the paths, each team's HTML first. The demo calls
// it after the simulated fleet has run.
func WriteWeekly(ctx context.Context, conn driver.Conn, db, week, team, dir string) ([]string, error) {
	var cfg Config
	cfg.Defaults()
	b := NewBuilder(cfg, conn, db, time.Now)
	return b.Write(ctx, week, team, dir)
}

// Write is WriteWeekly with b's configuration and clock.
func (b *Builder) Write(ctx context.Context, week, team, dir string) ([]string, error) {
	var w Week
	if week != "" {
		var err error
		if w, err = ParseWeek(week); err != nil {
			return nil, err
		}
	}
	var teams []TeamInfo
	if team != "" {
		t, err := b.Team(ctx, team)
		if err != nil {
			return nil, err
		}
		teams = []TeamInfo{t}
	} else {
		// Registered teams, and teams with events in the week (a margin of
		// a day each side covers every zone).
		ref := w
		if week == "" {
			ref = WeekOf(b.now(), time.UTC)
		}
		from, to := ref.Bounds(time.UTC)
		var err error
		if teams, err = b.Teams(ctx, from.Add(-24*time.Hour), to.Add(24*time.Hour)); err != nil {
			return nil, err
		}
	}
	var paths []string
	for _, t := range teams {
		tw := w
		if week == "" {
			tw = WeekOf(b.now(), t.Location)
		}
		r, err := b.Build(ctx, t, tw)
		if err != nil {
			return paths, err
		}
		if team != "" && !t.Registered && r.empty() {
			return paths, fmt.Errorf("%w: %q in %s", ErrUnknownTeam, t.Name, r.Week)
		}
		ps, err := WriteFiles(r, dir)
		paths = append(paths, ps...)
		if err != nil {
			return paths, err
		}
	}
	return paths, nil
}
