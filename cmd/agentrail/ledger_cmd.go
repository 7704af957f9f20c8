package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/ledger"
	"github.com/agentrail/agentrail/pipeline"
)

// ledgerCmd seals stored events (agentrail ledger serve|seal) and makes
// the signing key (agentrail ledger keygen).
type ledgerCmd struct {
	Serve  ledgerServeCmd  `cmd:"" help:"seal what ingest committed every ledger.interval (needs ledger.enabled and the key)"`
	Seal   ledgerSealCmd   `cmd:"" help:"seal what ingest committed, now, once"`
	Keygen ledgerKeygenCmd `cmd:"" help:"write a new Ed25519 signing key"`
}

type ledgerKeygenCmd struct {
	Out string `required:"" placeholder:"FILE" help:"file to write the private key to (PKCS#8 PEM, mode 0600; must not exist)"`
}

func (c *ledgerKeygenCmd) Run(g *globals) error { return ledgerKeygen(c.Out, g.stdout) }

// openSealer connects to a migrated ClickHouse and opens the ledger, which
// must be enabled.
func openSealer(ctx context.Context, cf *connFlags, reg prometheus.Registerer, log *slog.Logger) (pipeline.Config, driver.Conn, *ledger.Ledger, error) {
	cfg, conn, err := openStore(ctx, cf)
	if err != nil {
		return cfg, nil, nil, err
	}
	if !cfg.Ledger.Enabled {
		conn.Close()
		// Sealing while retention does not record its runs would make
		// every retention run look like tampering.
		return cfg, nil, nil, errors.New("ledger.enabled is false: enable it (so retention records its runs too) and set the signing key")
	}
	led, err := pipeline.NewLedger(cfg, conn, reg, log)
	if err != nil {
		conn.Close()
		return cfg, nil, nil, err
	}
	return cfg, conn, led, nil
}

type ledgerSealCmd struct {
	connFlags
	JSON bool `name:"json" help:"print what was sealed as one JSON object"`
}

func (c *ledgerSealCmd) Run(ctx context.Context, g *globals) error {
	_, conn, led, err := openSealer(ctx, &c.connFlags, prometheus.NewRegistry(), g.logger(slog.LevelInfo))
	if err != nil {
		return err
	}
	defer conn.Close()
	defer led.Close(context.Background())
	res, err := led.Seal(ctx)
	if err != nil {
		return err
	}
	if c.JSON {
		return g.printJSON(toSealJSON(res, led.Head(), led.KeyID()))
	}
	fmt.Fprintf(g.stdout, "sealed %d rows in %d ranges, %d entries; chain head %d (key %s)\n", res.Rows, res.Ranges, res.Entries, led.Head(), led.KeyID())
	if res.Skipped != "" {
		fmt.Fprintln(g.stdout, "skipped: "+res.Skipped)
	}
	return nil
}

type ledgerServeCmd struct {
	connFlags
	Metrics string `default:"127.0.0.1:9466" placeholder:"ADDR" help:"address of /metrics, /healthz and /readyz (\"\" disables them)"`
}

func (c *ledgerServeCmd) Run(ctx context.Context, g *globals) error {
	if _, err := c.load(); err != nil {
		return err
	}
	log := g.logger(slog.LevelInfo)
	reg := prometheus.NewRegistry()
	if err := registerRuntimeMetrics(reg); err != nil {
		return err
	}
	return runService(ctx, c.Metrics, reg, func(gctx context.Context, ready func()) error {
		cfg, conn, led, err := openSealer(gctx, &c.connFlags, reg, log)
		if err != nil {
			return err
		}
		defer conn.Close()
		defer led.Close(context.Background())
		ready() // ClickHouse answered (migrated), the ledger opened
		log.Info("ledger sealing", "interval", cfg.Ledger.Interval, "key", led.KeyID(), "topic", cfg.Kafka.Topics.Ledger,
			"database", cfg.ClickHouse.Database, "metrics", c.Metrics)
		return led.Run(gctx)
	})
}

// ledgerKeygen writes a new private key to path and prints the public key.
func ledgerKeygen(path string, w io.Writer) error {
	if path == "" {
		return errors.New("--out is required")
	}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	pemBytes, err := ledger.MarshalPrivateKey(priv)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(pemBytes); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(w, "private key written to %s (key id %s); keep it out of the config and out of ClickHouse admins' reach.\n", path, ledger.KeyID(pub))
	fmt.Fprintf(w, "config:\nledger:\n  enabled: true\n  private_key_file: %s\n  public_keys: [%q]\n", path, ledger.EncodePublicKey(pub))
	return nil
}

// verifyCmd checks the chain and recomputes it from ClickHouse: a
// finding (exit 1) when something changed, an operational failure (exit 3)
// when ClickHouse or the ledger could not be read.
type verifyCmd struct {
	connFlags
	From      string   `placeholder:"TIME" help:"recompute seals made at or after this time (RFC 3339 or YYYY-MM-DD; default: the first)"`
	To        string   `placeholder:"TIME" help:"recompute seals made at or before this time (default: the last)"`
	JSON      bool     `name:"json" help:"print the report as one JSON object"`
	NoKafka   bool     `name:"no-kafka" help:"do not compare with the ledger topic"`
	PublicKey []string `name:"public-key" placeholder:"KEY" sep:"none" help:"accept signatures of this public key (base64), besides ledger.public_keys; repeatable"`
}

func (c *verifyCmd) Run(ctx context.Context, g *globals) error {
	opts := ledger.VerifyOptions{}
	var err error
	if opts.From, err = parseVerifyTime(c.From, false); err != nil {
		return usageErr("--from: %w", err)
	}
	if opts.To, err = parseVerifyTime(c.To, true); err != nil {
		return usageErr("--to: %w", err)
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	conn, err := openConn(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	opts.Conn, opts.Database = conn, cfg.ClickHouse.Database
	opts.PublicKeys = append(append([]string(nil), cfg.Ledger.PublicKeys...), c.PublicKey...)
	if !c.NoKafka {
		opts.Kafka = &cfg.Kafka
	}
	rep, err := ledger.Verify(ctx, opts)
	if err != nil {
		return err
	}
	if c.JSON {
		if err := g.printJSON(rep); err != nil {
			return err
		}
	} else {
		rep.WriteText(g.stdout)
	}
	if !rep.OK {
		return finding(nil)
	}
	return nil
}

// openConn connects to ClickHouse without migrating: verify only reads
// (an analyst's login will do).
func openConn(ctx context.Context, cfg pipeline.Config) (driver.Conn, error) {
	return chstore.Open(ctx, cfg.ClickHouse)
}

// parseVerifyTime reads --from/--to: an RFC 3339 time, or a date, which
// as an end means the whole day.
func parseVerifyTime(s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := parseWhen(s)
	if err == nil && end && len(s) == len(time.DateOnly) {
		t = t.Add(24*time.Hour - time.Microsecond)
	}
	return t, err
}
