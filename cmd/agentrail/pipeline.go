package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/agentrail/agentrail/internal/broker"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/pipeline"
)

func runBroker(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	port := fs.Int("port", 19092, "listen port on 127.0.0.1")
	dir := fs.String("data-dir", "./data/kafka", `persistence directory ("" keeps data in memory only)`)
	sync := fs.Bool("sync-writes", false, "fsync every produced batch")
	parts := fs.Int("partitions", 12, "partitions of created topics")
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	var kc kafkacfg.Config
	kc.Defaults()
	err := broker.Run(ctx, broker.Config{
		Port: *port, DataDir: *dir, SyncWrites: *sync, Partitions: int32(*parts),
		Topics: []string{kc.Topics.Events, kc.Topics.DeadLetter},
	}, newLogger())
	return exitCode("broker", err)
}

func runMigrate(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := cf.load()
	if err != nil {
		return exitCode("migrate", err)
	}
	applied, err := pipeline.Migrate(ctx, cfg.ClickHouse)
	if err == nil {
		fmt.Printf("migrations applied: %v (database %s)\n", applied, cfg.ClickHouse.Database)
	}
	return exitCode("migrate", err)
}

func runIngest(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	metricsAddr := fs.String("metrics", "127.0.0.1:9464", `address of the Prometheus /metrics endpoint ("" disables it)`)
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := cf.load()
	if err != nil {
		return exitCode("ingest", err)
	}
	log := newLogger()
	if _, err := pipeline.Migrate(ctx, cfg.ClickHouse); err != nil {
		return exitCode("ingest", err)
	}
	reg := prometheus.NewRegistry()
	in, err := newIngest(ctx, cfg, reg, log)
	if err != nil {
		return exitCode("ingest", err)
	}
	defer in.Close(context.Background())
	stopReload := onSIGHUP(func() { _ = in.Reload() }) // each stage logs and counts its reload
	defer stopReload()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return in.Run(gctx) })
	if *metricsAddr != "" {
		g.Go(func() error { return serveMetrics(gctx, *metricsAddr, reg) })
	}
	log.Info("ingest running", "brokers", cfg.Kafka.Brokers, "topic", cfg.Kafka.Topics.Events,
		"clickhouse", cfg.ClickHouse.Addr, "database", cfg.ClickHouse.Database, "metrics", *metricsAddr)
	return exitCode("ingest", g.Wait())
}

// newIngest builds ingest and its in-ingest stages (package pipeline),
// registering every metric `agentrail ingest` serves on reg
// (deployments/prometheus rules and the dashboard are checked against these
// names by TestDeploymentsMetrics).
func newIngest(ctx context.Context, cfg pipeline.Config, reg prometheus.Registerer, log *slog.Logger) (*pipeline.Ingest, error) {
	if err := registerRuntimeMetrics(reg); err != nil {
		return nil, err
	}
	return pipeline.NewIngest(ctx, cfg, reg, log)
}

// registerRuntimeMetrics adds the Go and process metrics every serving
// command exposes (process_start_time_seconds, go_goroutines, ...).
func registerRuntimeMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register runtime metrics: %w", err)
		}
	}
	return nil
}

func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics endpoint %s: %w", addr, err)
	}
	return nil
}

// exitCode prints err, if any, and maps it to the process exit status.
func exitCode(cmd string, err error) int {
	if err == nil || errors.Is(err, context.Canceled) {
		return 0
	}
	fmt.Fprintf(os.Stderr, "agentrail %s: %v\n", cmd, err)
	return 1
}
