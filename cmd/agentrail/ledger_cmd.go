package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/ledger"
	"github.com/agentrail/agentrail/pipeline"
)

// openLedger returns the chain writer the config describes (it needs the
// signing key).
func openLedger(cfg pipeline.Config, conn driver.Conn, reg prometheus.Registerer, log *slog.Logger, opts ...ledger.Option) (*ledger.Ledger, error) {
	return ledger.New(cfg.Ledger, ledger.Deps{Kafka: cfg.Kafka, Conn: conn, Database: cfg.ClickHouse.Database, Group: cfg.Ingest.Group},
		reg, log, opts...)
}

// runLedger seals stored events (agentrail ledger serve|seal) and makes the
// signing key (agentrail ledger keygen).
func runLedger(ctx context.Context, args []string) int {
	sub, args, ok, code := subcommand("ledger", args, map[string]string{
		"serve":  "seal what ingest committed every ledger.interval (needs ledger.enabled and the key)",
		"seal":   "seal what ingest committed, now, once",
		"keygen": "write a new Ed25519 signing key: agentrail ledger keygen --out FILE",
	})
	if !ok {
		return code
	}
	fs := flag.NewFlagSet("ledger "+sub, flag.ContinueOnError)
	if sub == "keygen" {
		out := fs.String("out", "", "file to write the private key to (PKCS#8 PEM, mode 0600; must not exist)")
		if ok, code := parseWithArgs(fs, args, 0, ""); !ok {
			return code
		}
		return exitCode("ledger keygen", ledgerKeygen(*out, os.Stdout))
	}
	var cf connFlags
	cf.register(fs)
	metricsAddr := fs.String("metrics", "127.0.0.1:9466", `address of the Prometheus /metrics endpoint (serve; "" disables it)`)
	if ok, code := parseWithArgs(fs, args, 0, ""); !ok {
		return code
	}
	cfg, conn, err := openStore(ctx, &cf)
	if err != nil {
		return exitCode("ledger "+sub, err)
	}
	defer conn.Close()
	if !cfg.Ledger.Enabled {
		// Sealing while retention does not record its runs would make
		// every retention run look like tampering.
		return exitCode("ledger "+sub, errors.New("ledger.enabled is false: enable it (so retention records its runs too) and set the signing key"))
	}
	log := newLogger()
	reg := prometheus.NewRegistry()
	if err := registerRuntimeMetrics(reg); err != nil {
		return exitCode("ledger "+sub, err)
	}
	led, err := openLedger(cfg, conn, reg, log)
	if err != nil {
		return exitCode("ledger "+sub, err)
	}
	defer led.Close(context.Background())
	if sub == "seal" {
		res, err := led.Seal(ctx)
		if err == nil {
			fmt.Printf("sealed %d rows in %d ranges, %d entries; chain head %d (key %s)\n", res.Rows, res.Ranges, res.Entries, led.Head(), led.KeyID())
			if res.Skipped != "" {
				fmt.Println("skipped: " + res.Skipped)
			}
		}
		return exitCode("ledger seal", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return led.Run(gctx) })
	if *metricsAddr != "" {
		g.Go(func() error { return serveMetrics(gctx, *metricsAddr, reg) })
	}
	log.Info("ledger sealing", "interval", cfg.Ledger.Interval, "key", led.KeyID(), "topic", cfg.Kafka.Topics.Ledger,
		"database", cfg.ClickHouse.Database, "metrics", *metricsAddr)
	return exitCode("ledger serve", g.Wait())
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

// runVerify checks the chain and recomputes it from ClickHouse.
func runVerify(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	from := fs.String("from", "", "recompute seals made at or after this time (RFC 3339 or YYYY-MM-DD; default: the first)")
	to := fs.String("to", "", "recompute seals made at or before this time (default: the last)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	noKafka := fs.Bool("no-kafka", false, "do not compare with the ledger topic")
	var keys stringList
	fs.Var(&keys, "public-key", "accept signatures of this public key (base64), besides ledger.public_keys; repeatable")
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	opts := ledger.VerifyOptions{}
	var err error
	if opts.From, err = parseVerifyTime(*from, false); err != nil {
		return exitCode("verify", fmt.Errorf("--from: %w", err))
	}
	if opts.To, err = parseVerifyTime(*to, true); err != nil {
		return exitCode("verify", fmt.Errorf("--to: %w", err))
	}
	cfg, err := cf.load()
	if err != nil {
		return exitCode("verify", err)
	}
	conn, err := openConn(ctx, cfg)
	if err != nil {
		return exitCode("verify", err)
	}
	defer conn.Close()
	opts.Conn, opts.Database = conn, cfg.ClickHouse.Database
	opts.PublicKeys = append(append([]string(nil), cfg.Ledger.PublicKeys...), keys...)
	if !*noKafka {
		opts.Kafka = &cfg.Kafka
	}
	rep, err := ledger.Verify(ctx, opts)
	if err != nil {
		return exitCode("verify", err)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return exitCode("verify", err)
		}
	} else {
		printReport(os.Stdout, rep)
	}
	if !rep.OK {
		return 1
	}
	return 0
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

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// printReport prints what verify found, failures first and named.
func printReport(w io.Writer, r *ledger.Report) {
	status := "OK"
	if !r.OK {
		status = "FAILED"
	}
	window := "all seals"
	if r.From != nil || r.To != nil {
		f, t := "the first", "the last"
		if r.From != nil {
			f = r.From.Format(time.RFC3339)
		}
		if r.To != nil {
			t = r.To.Format(time.RFC3339)
		}
		window = "seals from " + f + " to " + t
	}
	fmt.Fprintf(w, "ledger: %d entries (seq %d-%d), signed by key %s\n", r.Entries, r.FirstSeq, r.LastSeq, strings.Join(r.KeyIDs, ", "))
	if len(r.Chain) == 0 {
		fmt.Fprintln(w, "chain: OK (hashes, links, signatures, contiguous ranges)")
	}
	for _, p := range r.Chain {
		fmt.Fprintf(w, "FAIL chain at entry %d: %s\n", p.Seq, p.What)
	}
	switch {
	case !r.Topic.Checked && r.Topic.Err != "":
		fmt.Fprintf(w, "topic: not compared (%s)\n", r.Topic.Err)
	case !r.Topic.Checked:
		fmt.Fprintln(w, "topic: not compared (--no-kafka)")
	case len(r.Topic.Problems) == 0:
		fmt.Fprintf(w, "topic: OK (%d entries, the same as the table's)\n", r.Topic.Entries)
	}
	for _, p := range r.Topic.Problems {
		fmt.Fprintf(w, "FAIL topic entry %d: %s\n", p.Seq, p.What)
	}
	fmt.Fprintf(w, "recomputed %s: %d ranges, %d rows sealed, %d retention entries applied\n", window, r.Ranges, r.Rows, r.Retention)
	for _, p := range r.Changed {
		fmt.Fprintf(w, "FAIL %s\n", p)
	}
	for _, p := range r.Foreign {
		fmt.Fprintf(w, "FAIL %s\n", p.What)
	}
	if r.Unsealed > 0 {
		fmt.Fprintf(w, "not yet sealed: %d rows above the sealed offsets\n", r.Unsealed)
	}
	fmt.Fprintf(w, "result: %s\n", status)
}
