package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/pipeline"
	"github.com/agentrail/agentrail/producers"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// producerFlags are the flags of the commands that publish events; the
// embedding command sets --sign's default (set:"sign=...").
type producerFlags struct {
	Brokers  string `default:"${defbroker}" placeholder:"ADDRS" help:"comma-separated Kafka seed brokers"`
	Registry string `placeholder:"URL" help:"schema registry URL (optional; without it records use the Avro single-object encoding)"`
	Topic    string `default:"${eventstopic}" help:"events topic"`
	Sign     string `default:"${sign}" enum:"demo,none" help:"sign events: demo (each agent's DEMO key, which deployments/registry.yaml lists) or none"`
}

// emitter creates the events topic if it is missing and returns an Emitter
// for it, with a counter of the events that failed delivery.
func (f *producerFlags) emitter(ctx context.Context, log *slog.Logger) (*producers.Emitter, *atomic.Int64, error) {
	var kc kafkacfg.Config
	kc.Brokers = strings.Split(f.Brokers, ",")
	kc.Topics.Events = f.Topic
	kc.Defaults()
	if err := kc.Validate(); err != nil {
		return nil, nil, err
	}
	var signer signing.EventSigner
	switch f.Sign {
	case "demo":
		signer = simulate.DemoKeys()
	case "none":
	default:
		return nil, nil, fmt.Errorf("--sign %q must be demo or none", f.Sign)
	}
	if err := pipeline.EnsureTopics(ctx, kc); err != nil {
		return nil, nil, err
	}
	failed := new(atomic.Int64)
	em, err := producers.New(producers.Config{
		Kafka:       kc,
		RegistryURL: f.Registry,
		Signer:      signer,
		OnDeliveryError: func(string, error) {
			failed.Add(1)
		},
	}, prometheus.NewRegistry(), log)
	return em, failed, err
}

// closeEmitter flushes and closes em with a budget of its own: ctx may be
// canceled already (Ctrl-C), and what was accepted should still go out.
func closeEmitter(em *producers.Emitter) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return em.Close(ctx)
}

type simulateCmd struct {
	producerFlags `embed:"" set:"sign=demo"`
	Rate          float64       `default:"500" help:"events per second (0: as fast as possible)"`
	Duration      time.Duration `default:"60s" help:"how long to run (0: until interrupted or --events)"`
	Seed          uint64        `default:"1" help:"random seed: the same seed generates the same fleet and traces"`
	Out           string        `placeholder:"FILE" help:"write canonical JSON lines to FILE instead of producing to Kafka (\"-\": stdout)"`
	Events        int           `help:"stop after N events (0: no limit)"`
	ReorderRate   float64       `name:"reorder-rate" default:"${reorder}" help:"share of traces delivered out of order, 0..1"`
	DuplicateRate float64       `name:"duplicate-rate" default:"${dups}" help:"share of events delivered twice, 0..1"`
	Plant         string        `placeholder:"NAME=RATE,..." help:"scenarios to plant, name=rate,... (known: ${scenarios})"`
	JSON          bool          `name:"json" help:"print the summary as one JSON object (on stderr when --out - puts the events on stdout)"`
}

func (c *simulateCmd) Run(ctx context.Context, g *globals) error {
	rate, duration, events, reorder, dups := &c.Rate, &c.Duration, &c.Events, &c.ReorderRate, &c.DuplicateRate
	seed, out, pf := &c.Seed, &c.Out, &c.producerFlags
	var bad []string
	if *rate < 0 {
		bad = append(bad, "--rate must be >= 0")
	}
	if *duration < 0 {
		bad = append(bad, "--duration must be >= 0")
	}
	if *events < 0 {
		bad = append(bad, "--events must be >= 0")
	}
	if !(*reorder >= 0 && *reorder <= 1) || !(*dups >= 0 && *dups <= 1) {
		bad = append(bad, "--reorder-rate and --duplicate-rate must be in 0..1")
	}
	scenarios, err := simulate.ParseScenarios(c.Plant)
	if err != nil {
		bad = append(bad, "--plant: "+err.Error())
	}
	if len(bad) > 0 {
		return usageErr("%s", strings.Join(bad, "; "))
	}

	log := g.logger(slog.LevelInfo)
	fleet := simulate.New(simulate.Config{Seed: *seed, ReorderRate: *reorder, DuplicateRate: *dups, Scenarios: scenarios})
	var (
		emit    func(context.Context, *schemas.Event) error
		finish  func() error
		failed  = new(atomic.Int64)
		summary = g.stdout
		dest    string
	)
	if *out != "" {
		w, closeOut, err := openOut(g, *out)
		if err != nil {
			return err
		}
		if *out == "-" {
			summary = g.stderr // stdout carries the events
		}
		dest = *out
		bw := bufio.NewWriterSize(w, 256<<10)
		var line []byte
		emit = func(_ context.Context, e *schemas.Event) error {
			var err error
			if line, err = schemas.AppendJSON(line[:0], e); err != nil {
				return err
			}
			_, err = bw.Write(append(line, '\n'))
			return err
		}
		finish = func() error { return errors.Join(bw.Flush(), closeOut()) }
	} else {
		em, f, err := pf.emitter(ctx, log)
		if err != nil {
			return err
		}
		failed = f
		dest = "kafka topic " + pf.Topic
		emit = em.Emit
		finish = func() error { return closeEmitter(em) }
	}
	if *events > 0 {
		limit, n, inner := *events, 0, emit
		emit = func(ctx context.Context, e *schemas.Event) error {
			if n >= limit {
				return simulate.ErrStop
			}
			if err := inner(ctx, e); err != nil {
				return err
			}
			n++
			return nil
		}
	}

	log.Info("simulating", "seed", *seed, "rate", *rate, "duration", *duration, "events", *events, "to", dest)
	st, runErr := fleet.Run(ctx, emit, *rate, *duration, time.Now)
	finishErr := finish()
	if c.JSON {
		if err := json.NewEncoder(summary).Encode(struct {
			Events         int            `json:"events"`
			Traces         int            `json:"traces"`
			To             string         `json:"to"`
			ElapsedSeconds float64        `json:"elapsed_seconds"`
			Duplicates     int            `json:"duplicates"`
			Reordered      int            `json:"reordered"`
			Planted        map[string]int `json:"planted"`
			FailedDelivery int64          `json:"failed_delivery"`
		}{st.Events, st.Traces, dest, st.Elapsed.Seconds(), st.Duplicates, st.Reordered, st.Planted, failed.Load()}); err != nil {
			return err
		}
		return errors.Join(runErr, finishErr)
	}
	fmt.Fprintf(summary, "simulate: %d events in %d traces to %s in %s (%.0f/s; %d duplicates, %d out of order%s%s)\n",
		st.Events, st.Traces, dest, st.Elapsed.Round(time.Millisecond), float64(st.Events)/max(st.Elapsed.Seconds(), 1e-9),
		st.Duplicates, st.Reordered, plantedSummary(st.Planted), failedSummary(failed.Load()))
	return errors.Join(runErr, finishErr)
}

// openOut opens path for writing, "-" meaning stdout.
func openOut(g *globals, path string) (io.Writer, func() error, error) {
	if path == "-" {
		return g.stdout, func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}

func plantedSummary(planted map[string]int) string {
	if len(planted) == 0 {
		return ""
	}
	names := make([]string, 0, len(planted))
	for n := range planted {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("; planted")
	for _, n := range names {
		fmt.Fprintf(&b, " %s=%d", n, planted[n])
	}
	return b.String()
}

func failedSummary(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; %d failed delivery", n)
}
