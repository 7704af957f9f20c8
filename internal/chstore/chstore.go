// Package chstore connects to ClickHouse and applies agentrail's versioned
// schema migrations.
//
// It deliberately does not know what the rows mean: the stages that write
// (consumers) and read (anomaly, reports) own their queries. It does not start
// a server either; internal/chserver does that for the embedded default.
package chstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DefaultAddr is the embedded server's native address (agentrail clickhouse).
const DefaultAddr = "127.0.0.1:19000"

// Config is how to reach ClickHouse.
type Config struct {
	Addr         []string `yaml:"addr"`
	Database     string   `yaml:"database"`
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
	PasswordEnv  string   `yaml:"password_env"`
	TLS          *TLS     `yaml:"tls"`
	// Compression of the native protocol's blocks: auto (the default: none
	// when every address is a loopback one, where compressing only costs
	// CPU on both ends, lz4 otherwise), lz4, zstd or none.
	Compression string `yaml:"compression"`
}

// TLS enables TLS to ClickHouse.
type TLS struct {
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if len(c.Addr) == 0 {
		c.Addr = []string{DefaultAddr}
	}
	if c.Database == "" {
		c.Database = "agentrail"
	}
	if c.Username == "" {
		c.Username = "default"
	}
	if c.Compression == "" {
		c.Compression = "auto"
	}
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// Validate checks the settings without any I/O.
func (c *Config) Validate() error {
	if len(c.Addr) == 0 {
		return errors.New("clickhouse.addr: at least one host:port is required")
	}
	for i, a := range c.Addr {
		if !strings.Contains(a, ":") {
			return fmt.Errorf("clickhouse.addr[%d]: %q must be host:port", i, a)
		}
	}
	switch c.Compression {
	case "", "auto", "lz4", "zstd", "none":
	default:
		return fmt.Errorf("clickhouse.compression: %q must be auto, lz4, zstd or none", c.Compression)
	}
	if !identRE.MatchString(c.Database) {
		return fmt.Errorf("clickhouse.database: %q must be an identifier ([A-Za-z_][A-Za-z0-9_]*, at most 64)", c.Database)
	}
	return nil
}

// compressionMethod resolves Config.Compression ("auto" included) into
// none, lz4 or zstd.
func compressionMethod(c Config) string {
	switch c.Compression {
	case "none", "zstd", "lz4":
		return c.Compression
	}
	for _, a := range c.Addr {
		if !isLoopback(a) {
			return "lz4"
		}
	}
	return "none"
}

// compression resolves Config.Compression into clickhouse-go's option.
func compression(c Config) *clickhouse.Compression {
	switch compressionMethod(c) {
	case "zstd":
		return &clickhouse.Compression{Method: clickhouse.CompressionZSTD}
	case "lz4":
		return &clickhouse.Compression{Method: clickhouse.CompressionLZ4}
	}
	return nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Timeouts of every connection to ClickHouse, clickhouse-go's and ch-go's
// (native.go) alike.
const (
	dialTimeout = 5 * time.Second
	readTimeout = 5 * time.Minute
)

// connSettings are the session settings every connection sends.
var connSettings = map[string]string{"date_time_input_format": "best_effort"}

// Open connects and pings. The database need not exist yet.
func Open(ctx context.Context, c Config) (driver.Conn, error) {
	password, err := c.password()
	if err != nil {
		return nil, err
	}
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	settings := clickhouse.Settings{}
	for k, v := range connSettings {
		settings[k] = v
	}
	opts := &clickhouse.Options{
		Addr:        c.Addr,
		Auth:        clickhouse.Auth{Database: "default", Username: c.Username, Password: password},
		Compression: compression(c),
		DialTimeout: dialTimeout,
		ReadTimeout: readTimeout,
		Settings:    settings,
		TLS:         tc,
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("chstore: open %v: %w", c.Addr, err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("chstore: ping %v: %w", c.Addr, err)
	}
	return conn, nil
}

// password reads the password from password_file or password_env ("" if
// neither is set).
func (c Config) password() (string, error) {
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("chstore: read clickhouse.password_file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if c.PasswordEnv != "" {
		p, ok := os.LookupEnv(c.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("chstore: clickhouse.password_env: environment variable %s is not set", c.PasswordEnv)
		}
		return p, nil
	}
	return "", nil
}

// tlsConfig builds the TLS settings, nil when TLS is off.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.TLS == nil {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLS.ServerName}
	if c.TLS.CAFile != "" {
		pem, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("chstore: read clickhouse.tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		tc.RootCAs.AppendCertsFromPEM(pem)
	}
	return tc, nil
}

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migration is one versioned DDL file.
type Migration struct {
	Version    int
	Name       string
	Statements []string
}

// Migrations returns the embedded migrations in version order, with {db}
// replaced by the database name.
func Migrations(db string) ([]Migration, error) {
	entries, err := migrationFS.ReadDir("migrations")
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("chstore: migration %s: name must start with a version number", name)
		}
		raw, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, Statements: splitStatements(strings.ReplaceAll(string(raw), "{db}", db))})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("chstore: migrations %s and %s share version %d", ms[i-1].Name, ms[i].Name, ms[i].Version)
		}
	}
	return ms, nil
}

// splitStatements splits a migration file on semicolons that end a line,
// dropping comment-only lines. Migrations keep ';' out of string literals.
func splitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "--") || t == "" {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			s := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			out = append(out, s)
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// Migrate creates the database and applies every migration not yet recorded
// in {db}.schema_migrations. It returns the versions it applied. Statements
// are idempotent (IF NOT EXISTS), so a migration interrupted half-way is
// simply applied again. On an up-to-date database it only reads, so a login
// without CREATE rights (the retention role) passes it.
func Migrate(ctx context.Context, conn driver.Conn, db string) ([]int, error) {
	if !identRE.MatchString(db) {
		return nil, fmt.Errorf("chstore: database name %q is not an identifier", db)
	}
	done, err := appliedVersions(ctx, conn, db)
	if err != nil {
		// A new database (or a schema_migrations this login cannot read,
		// in which case creating it fails with the reason).
		if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
			return nil, fmt.Errorf("chstore: create database %s: %w", db, err)
		}
		if err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+db+`.schema_migrations
		(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))
		ENGINE = ReplacingMergeTree ORDER BY version`); err != nil {
			return nil, fmt.Errorf("chstore: create schema_migrations: %w", err)
		}
		if done, err = appliedVersions(ctx, conn, db); err != nil {
			return nil, err
		}
	}
	ms, err := Migrations(db)
	if err != nil {
		return nil, err
	}
	var applied []int
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		for i, stmt := range m.Statements {
			if err := conn.Exec(ctx, stmt); err != nil {
				return applied, fmt.Errorf("chstore: migration %s statement %d: %w", m.Name, i+1, err)
			}
		}
		if err := conn.Exec(ctx, "INSERT INTO "+db+".schema_migrations (version, name) VALUES (?, ?)", uint32(m.Version), m.Name); err != nil {
			return applied, fmt.Errorf("chstore: record migration %s: %w", m.Name, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}

// appliedVersions reads the versions recorded in {db}.schema_migrations.
func appliedVersions(ctx context.Context, conn driver.Conn, db string) (map[int]bool, error) {
	rows, err := conn.Query(ctx, "SELECT version FROM "+db+".schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("chstore: read schema_migrations: %w", err)
	}
	defer rows.Close()
	done := map[int]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("chstore: read schema_migrations: %w", err)
		}
		done[int(v)] = true
	}
	return done, rows.Err()
}
