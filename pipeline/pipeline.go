// Package pipeline composes agentrail's stages from one Config: it is the
// one wiring path that `agentrail ingest`, the demo, the benchmark and the
// tests start the pipeline through, so a stage is built, run, reloaded and
// closed the same way everywhere.
//
// Each stage has one lifecycle: it is built from its section of Config
// (New), runs until its context ends (Run), reloads its config when asked
// (Reload, for the stages that have a file to reload) and closes within a
// budget (Close, idempotent). Ingest is ingest with the stages that run
// inside it on every batch (consumers.Processor): trace correlation and the
// anomaly rules.
//
// It deliberately does not touch signals, flags or the process: main turns
// SIGHUP into Reload and SIGTERM into the end of Run's context, so the
// pipeline can be embedded in tests and in the demo.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/kafkacfg"
)

// stage is one component of the pipeline with its lifecycle. run, reload
// and close may be nil when the stage has nothing to do there.
type stage struct {
	name   string
	proc   consumers.Processor // set for stages that run inside ingest
	run    func(ctx context.Context) error
	reload func() error
	close  func(ctx context.Context) error
}

// stageFactory builds one in-ingest stage from its section of cfg; it
// returns nil when the config switches the stage off.
type stageFactory func(ctx context.Context, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*stage, error)

// ingestStages are the stages that run inside ingest, in the order they
// see each batch. Nothing passes between them (each reads the batch and
// its own state), so the order only decides whose inserts and records come
// first in the batch's transaction.
var ingestStages = []stageFactory{newCorrelator, newAnomalyEngine}

// Ingest is ingest with its in-ingest stages.
type Ingest struct {
	in        *consumers.Ingest
	stages    []*stage
	log       *slog.Logger
	closeOnce sync.Once
	closeErr  error
}

// NewIngest creates the topics ingest and its stages write, builds every
// enabled stage and ingest itself, registering their metrics on reg. It
// does not migrate: call Migrate first. opts go to consumers.New (an
// injected clock in tests).
func NewIngest(ctx context.Context, cfg Config, reg prometheus.Registerer, log *slog.Logger, opts ...consumers.Option) (*Ingest, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := EnsureTopics(ctx, cfg.Kafka); err != nil {
		return nil, err
	}
	p := &Ingest{log: log}
	var procs []consumers.Processor
	for _, f := range ingestStages {
		s, err := f(ctx, cfg, reg, log)
		if err != nil {
			_ = p.Close(context.Background())
			return nil, err
		}
		if s != nil {
			p.stages = append(p.stages, s)
			procs = append(procs, s.proc)
		}
	}
	in, err := consumers.New(ctx, cfg.Config, reg, log, append([]consumers.Option{consumers.WithProcessors(procs...)}, opts...)...)
	if err != nil {
		_ = p.Close(context.Background())
		return nil, err
	}
	p.in = in
	return p, nil
}

// Run consumes until ctx ends, with every stage's own work (a rule file's
// watch, webhook delivery) beside it. It returns the first error of any of
// them; context.Canceled when ctx ended is not an error.
func (p *Ingest) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.in.Run(gctx) })
	for _, s := range p.stages {
		if s.run == nil {
			continue
		}
		g.Go(func() error {
			// A stage's side work stopping is logged, not fatal:
			// ingest and its batches go on (the anomaly stage can still
			// be reloaded by hand).
			if err := s.run(gctx); err != nil && gctx.Err() == nil {
				p.log.Error("stage stopped", "stage", s.name, "err", err)
			}
			return nil
		})
	}
	err := g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// Reload reloads the config of every stage that has one to reload (the
// anomaly rules). Each stage logs and counts its own outcome; the errors
// are joined.
func (p *Ingest) Reload() error {
	var errs []error
	for _, s := range p.stages {
		if s.reload != nil {
			if err := s.reload(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Close ends ingest's Kafka session first (no batch is in flight after
// it), then closes the stages and their connections, within ctx. It is
// idempotent.
func (p *Ingest) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		var errs []error
		if p.in != nil {
			errs = append(errs, p.in.Close(ctx))
		}
		for _, s := range p.stages {
			if s.close != nil {
				errs = append(errs, s.close(ctx))
			}
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// Migrate applies the ClickHouse migrations and returns the versions it
// applied.
func Migrate(ctx context.Context, c chstore.Config) ([]int, error) {
	conn, err := chstore.Open(ctx, c)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return chstore.Migrate(ctx, conn, c.Database)
}

// EnsureTopics creates the events and dead-letter topics (12 partitions)
// and the ledger's (one: the chain is one ordered log) if they are missing.
func EnsureTopics(ctx context.Context, kc kafkacfg.Config) error {
	cl, err := KafkaClient(kc)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := kafkacfg.EnsureTopics(ctx, cl, 12, kc.Topics.Events, kc.Topics.DeadLetter); err != nil {
		return err
	}
	return kafkacfg.EnsureTopics(ctx, cl, 1, kc.Topics.Ledger)
}

// KafkaClient is a franz-go client for the cluster kc names, with extra
// options.
func KafkaClient(kc kafkacfg.Config, extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := kc.Opts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}
