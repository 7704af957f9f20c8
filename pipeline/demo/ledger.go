package demo

import (
	"context"
	"crypto/ed25519"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/ledger"
	"github.com/agentrail/agentrail/pipeline"
)

// startLedger runs the sealer beside ingest, signing with a key made for
// this demo (a deployment keeps its key in a file: agentrail ledger keygen).
func (d *demo) startLedger(ctx context.Context, cfg *pipeline.Config) error {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	cfg.Ledger.Enabled, cfg.Ledger.Interval = true, 5*time.Second
	cfg.Ledger.PublicKeys = []string{ledger.EncodePublicKey(pub)}
	conn, err := chstore.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	led, err := pipeline.NewLedger(*cfg, conn, prometheus.NewRegistry(), d.log, ledger.WithKey(priv))
	if err != nil {
		conn.Close()
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- led.Run(runCtx) }()
	d.led = led
	d.stopLedger = func() {
		cancel()
		<-done
		_ = led.Close(context.Background())
		conn.Close()
	}
	return nil
}

// verifyLedger seals what is left and prints what `agentrail verify` finds.
func (d *demo) verifyLedger(ctx context.Context, cfg pipeline.Config) error {
	res, err := d.led.Seal(ctx)
	if err != nil {
		return err
	}
	conn, err := chstore.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer conn.Close()
	rep, err := ledger.Verify(ctx, ledger.VerifyOptions{Conn: conn, Database: cfg.ClickHouse.Database,
		PublicKeys: cfg.Ledger.PublicKeys, Kafka: &cfg.Kafka})
	if err != nil {
		return err
	}
	d.printf("Tamper evidence — the sealer signed the stored events into a hash chain as ingest committed them (last seal: %d rows); agentrail verify:\n", res.Rows)
	rep.WriteText(d.out)
	d.printf("\n")
	return nil
}
