package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/pipeline"
	"github.com/agentrail/agentrail/reports/registry"
)

type registryCmd struct {
	Check  registryCheckCmd `cmd:"" help:"validate a registry file (no database)"`
	Apply  registryApplyCmd `cmd:"" help:"validate and load a registry as a new version"`
	Keygen keygenCmd        `cmd:"" help:"make an agent's signing key (or, with --demo, write the demo fleet's keys into a registry file)"`
}

type registryCheckCmd struct {
	File string `arg:"" name:"file" help:"the registry file (deployments/registry.yaml shows one)"`
	JSON bool   `name:"json" help:"print the result as one JSON object"`
}

func (c *registryCheckCmd) Run(g *globals) error {
	reg, err := registry.Load(c.File)
	type result struct {
		File   string `json:"file"`
		Valid  bool   `json:"valid"`
		Error  string `json:"error,omitempty"`
		Teams  int    `json:"teams"`
		Agents int    `json:"agents"`
		Grants int    `json:"grants"`
		Keys   int    `json:"keys"`
	}
	r := result{File: c.File, Valid: err == nil}
	if err != nil {
		if !c.JSON {
			return finding(err)
		}
		r.Error = err.Error()
		if err := g.printJSON(r); err != nil {
			return err
		}
		return finding(nil)
	}
	r.Teams, r.Agents = len(reg.Teams), len(reg.Agents)
	for _, a := range reg.Agents {
		r.Grants += len(a.Grants)
		r.Keys += len(a.Keys)
	}
	if c.JSON {
		return g.printJSON(r)
	}
	fmt.Fprintf(g.stdout, "%s: valid: %d teams, %d agents, %d grants, %d signing keys\n", c.File, r.Teams, r.Agents, r.Grants, r.Keys)
	return nil
}

type registryApplyCmd struct {
	connFlags
	File string `arg:"" name:"file" help:"the registry file"`
	AsOf string `name:"as-of" placeholder:"TIME" help:"RFC 3339 time the grants take effect (default now; must be after every earlier apply)"`
	By   string `default:"${whoami}" help:"who applies it, for the record"`
	JSON bool   `name:"json" help:"print the applied version and its changes as one JSON object"`
}

func (c *registryApplyCmd) Run(ctx context.Context, g *globals) error {
	reg, err := registry.Load(c.File)
	if err != nil {
		return finding(err)
	}
	opts := registry.ApplyOptions{By: c.By, Source: c.File}
	if c.AsOf != "" {
		if opts.AsOf, err = time.Parse(time.RFC3339, c.AsOf); err != nil {
			return usageErr("--as-of: %w", err)
		}
	}
	cfg, conn, err := openStore(ctx, &c.connFlags)
	if err != nil {
		return err
	}
	defer conn.Close()
	s, err := registry.Apply(ctx, conn, cfg.ClickHouse.Database, reg, opts)
	if err != nil {
		return err
	}
	if c.JSON {
		return g.printJSON(toRegistryApplyJSON(s))
	}
	fmt.Fprintf(g.stdout, "registry version %d in force from %s: %d teams, %d agents, %d grants (%d rows opened, %d closed)\n",
		s.Version, s.EffectiveAt.Format(time.RFC3339), s.Teams, s.Agents, s.Grants, s.Opened, s.Closed)
	for _, x := range s.Added {
		fmt.Fprintln(g.stdout, "  + "+x)
	}
	for _, x := range s.Change {
		fmt.Fprintln(g.stdout, "  ~ "+x)
	}
	for _, x := range s.Revoked {
		fmt.Fprintln(g.stdout, "  - "+x)
	}
	return nil
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

// checkTeamFlag checks a --team flag against the registry's team names
// (registry.TeamNameRule) before anything runs, so a name like "../../x"
// is a usage error, not a path; "" (no flag) is fine.
func checkTeamFlag(team string) error {
	if team == "" {
		return nil
	}
	if err := registry.CheckTeamName("--team", team); err != nil {
		return usageErr("%w", err)
	}
	return nil
}

func whoami() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}
