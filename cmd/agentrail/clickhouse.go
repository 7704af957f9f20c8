package main

import (
	"context"
	"log/slog"

	"github.com/agentrail/agentrail/internal/chserver"
)

// clickhouseCmd is `agentrail clickhouse [flags]`: a real ClickHouse
// server on 127.0.0.1 from the embedded engine library, until ctx ends.
// Its flags are chserver.Config.RegisterFlags' (StartProcess passes them to
// its child).
type clickhouseCmd struct {
	DataDir    string `name:"data-dir" default:"./data/clickhouse" help:"directory for the server's databases and tables"`
	TCPPort    int    `name:"tcp-port" default:"19000" help:"native protocol port on 127.0.0.1"`
	HTTPPort   int    `name:"http-port" default:"18123" help:"HTTP interface port on 127.0.0.1"`
	Lib        string `name:"lib" default:"${chlib}" help:"path of the ClickHouse engine library libchdb.so"`
	UsersXML   string `name:"users-xml" help:"users.xml with users, passwords and grants (deployments/clickhouse/users.xml); default: user default only"`
	SystemLogs bool   `name:"system-logs" help:"keep system.query_log and system.part_log (CPU per statement and per merge)"`
}

func (c *clickhouseCmd) Run(ctx context.Context, g *globals) error {
	return chserver.Serve(ctx, chserver.Config{
		DataDir: c.DataDir, TCPPort: c.TCPPort, HTTPPort: c.HTTPPort, LibPath: c.Lib,
		UsersXML: c.UsersXML, SystemLogs: c.SystemLogs, Logger: g.logger(slog.LevelInfo),
	})
}
