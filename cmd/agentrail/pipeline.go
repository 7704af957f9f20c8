package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/agentrail/agentrail/internal/broker"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/pipeline"
)

type brokerCmd struct {
	Port       int    `default:"19092" help:"listen port on 127.0.0.1"`
	DataDir    string `name:"data-dir" default:"./data/kafka" help:"persistence directory (\"\" keeps data in memory only)"`
	SyncWrites bool   `name:"sync-writes" help:"fsync every produced batch"`
	Partitions int32  `default:"12" help:"partitions of created topics"`
}

func (c *brokerCmd) Run(ctx context.Context, g *globals) error {
	var kc kafkacfg.Config
	kc.Defaults()
	return broker.Run(ctx, broker.Config{
		Port: c.Port, DataDir: c.DataDir, SyncWrites: c.SyncWrites, Partitions: c.Partitions,
		Topics: []string{kc.Topics.Events, kc.Topics.DeadLetter},
	}, g.logger(slog.LevelInfo))
}

type migrateCmd struct {
	connFlags
	JSON bool `name:"json" help:"print the applied versions as one JSON object"`
}

func (c *migrateCmd) Run(ctx context.Context, g *globals) error {
	cfg, err := c.load()
	if err != nil {
		return err
	}
	applied, err := pipeline.Migrate(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	if c.JSON {
		if applied == nil {
			applied = []int{}
		}
		return g.printJSON(struct {
			Applied  []int  `json:"applied"`
			Database string `json:"database"`
		}{applied, cfg.ClickHouse.Database})
	}
	fmt.Fprintf(g.stdout, "migrations applied: %v (database %s)\n", applied, cfg.ClickHouse.Database)
	return nil
}

type ingestCmd struct {
	connFlags
	Metrics string `default:"127.0.0.1:9464" placeholder:"ADDR" help:"address of /metrics, /healthz and /readyz (\"\" disables them)"`
}

func (c *ingestCmd) Run(ctx context.Context, g *globals) error {
	cfg, err := c.load()
	if err != nil {
		return err
	}
	log := g.logger(slog.LevelInfo)
	reg := prometheus.NewRegistry()
	return runService(ctx, c.Metrics, reg, func(gctx context.Context, ready func()) error {
		if _, err := pipeline.Migrate(gctx, cfg.ClickHouse); err != nil {
			return err
		}
		in, err := newIngest(gctx, cfg, reg, log)
		if err != nil {
			return err
		}
		defer in.Close(context.Background())
		stopReload := onSIGHUP(func() { _ = in.Reload() }) // each stage logs and counts its reload
		defer stopReload()
		// ClickHouse answered (migrated) and Kafka did (topics ensured).
		ready()
		log.Info("ingest running", "brokers", cfg.Kafka.Brokers, "topic", cfg.Kafka.Topics.Events,
			"clickhouse", cfg.ClickHouse.Addr, "database", cfg.ClickHouse.Database, "metrics", c.Metrics)
		return in.Run(gctx)
	})
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

// registerRuntimeMetrics adds the metrics every serving command exposes:
// agentrail_build_info{version,goversion} and the Go and process metrics
// (process_start_time_seconds, go_goroutines, ...).
func registerRuntimeMetrics(reg prometheus.Registerer) error {
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "agentrail_build_info",
		Help: "Always 1; the labels name the agentrail version and the Go version it was built with.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	for _, c := range []prometheus.Collector{build, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register runtime metrics: %w", err)
		}
	}
	return nil
}

// runService runs a service beside its /metrics, /healthz and /readyz on
// addr ("" serves none): start builds the service, calls ready once the
// service's dependencies answered, and runs it until ctx ends. The first
// error of either ends both.
func runService(ctx context.Context, addr string, reg *prometheus.Registry, start func(ctx context.Context, ready func()) error) error {
	var h health
	grp, gctx := errgroup.WithContext(ctx)
	if addr != "" {
		grp.Go(func() error { return serveMetrics(gctx, addr, reg, &h) })
	}
	grp.Go(func() error { return start(gctx, func() { h.ready.Store(true) }) })
	return grp.Wait()
}

// health is what a service's /healthz and /readyz answer: alive while the
// process serves; ready once the service's dependencies answered.
type health struct{ ready atomic.Bool }

// serveMetrics serves /metrics from reg, /healthz and /readyz from h until
// ctx ends.
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, h *health) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !h.ready.Load() {
			http.Error(w, "not ready: waiting for ClickHouse and Kafka to answer", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
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
