// Package bench is agentrail's end-to-end benchmark (`agentrail bench`,
// run by `make bench`): on one machine, with the embedded broker and a real
// ClickHouse, it measures our ingest (with the in-ingest stages on) against
// ClickHouse's own Kafka engine reading the same events, then freshness,
// producer blocking, analyst queries and storage, and prints a table with
// min/median/max over repeated runs.
//
// It deliberately measures only on 127.0.0.1 and only what it started; it is
// not a load generator for remote systems.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/broker"
	"github.com/agentrail/agentrail/internal/chserver"
	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

// Config sets the benchmark's sizes.
type Config struct {
	Events      int           // events for the throughput runs (default 2,000,000)
	Runs        int           // repetitions of each throughput run (default 3)
	QueryEvents int           // rows for the analyst-query table (default 10,000,000)
	Steady      time.Duration // length of the freshness run (default 20s)
	Bin         string        // agentrail binary, to start ClickHouse
	Dir         string        // working directory (emptied)
	Out         io.Writer
	Log         *slog.Logger
	// Processors builds the in-ingest stages (correlation, anomaly rules)
	// for a run's database, exactly as `agentrail ingest` does.
	Processors func(ctx context.Context, cfg consumers.Config, reg prometheus.Registerer) ([]consumers.Processor, error)
}

func (c *Config) defaults() {
	if c.Events == 0 {
		c.Events = 2_000_000
	}
	if c.Runs == 0 {
		c.Runs = 3
	}
	if c.QueryEvents == 0 {
		c.QueryEvents = 10_000_000
	}
	if c.Steady == 0 {
		c.Steady = 20 * time.Second
	}
}

const (
	avroTopic = "agentrail.events"
	jsonTopic = "bench.events.json"
)

// env is what every phase uses: the broker, the server, a connection.
type env struct {
	cfg   Config
	kc    kafkacfg.Config
	ch    *chserver.Process
	conn  driver.Conn
	adm   *kadm.Client
	cl    *kgo.Client
	close func()
}

// Run runs every phase and prints the results.
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	e, err := setup(ctx, cfg)
	if err != nil {
		return err
	}
	defer e.close()
	out := cfg.Out
	fmt.Fprintf(out, "agentrail bench: %d CPUs (%s), GOMAXPROCS %d, %d events × %d runs\n\n",
		runtime.NumCPU(), cpuModel(), runtime.GOMAXPROCS(0), cfg.Events, cfg.Runs)

	gen, err := e.produce(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "loaded %d events into the broker (Avro %.0f B/event, canonical JSON %.0f B/event) in %s\n\n",
		cfg.Events, gen.avroBytes/float64(cfg.Events), gen.jsonBytes/float64(cfg.Events), gen.took.Round(time.Millisecond))

	var r results
	for i := range cfg.Runs {
		o, err := e.runOurs(ctx, i)
		if err != nil {
			return fmt.Errorf("bench: ours run %d: %w", i+1, err)
		}
		p, err := e.runPeer(ctx, i)
		if err != nil {
			return fmt.Errorf("bench: peer run %d: %w", i+1, err)
		}
		fmt.Fprintf(out, "run %d: ours %.0f events/s (%.2f CPU-µs/event), peer %.0f events/s (%.2f CPU-µs/event)\n",
			i+1, o.rate, o.cpuPerEvent, p.rate, p.cpuPerEvent)
		r.ours = append(r.ours, o)
		r.peer = append(r.peer, p)
	}
	if r.storage, err = e.storage(ctx, "bench_ours_0"); err != nil {
		return err
	}
	half := summarize(r.oursRates()).median / 2
	if r.fresh, err = e.freshness(ctx, half); err != nil {
		return fmt.Errorf("bench: freshness: %w", err)
	}
	if r.block, err = producerBlock(ctx); err != nil {
		return fmt.Errorf("bench: producer block: %w", err)
	}
	if r.queries, err = e.analystQueries(ctx); err != nil {
		return fmt.Errorf("bench: analyst queries: %w", err)
	}
	fmt.Fprintln(out)
	r.print(out, cfg)
	return nil
}

func setup(ctx context.Context, cfg Config) (*env, error) {
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return nil, err
	}
	var kc kafkacfg.Config
	kc.Defaults()
	b, err := broker.Start(broker.Config{Partitions: 12, Topics: []string{avroTopic, jsonTopic, kc.Topics.DeadLetter}})
	if err != nil {
		return nil, err
	}
	kc.Brokers = b.ListenAddrs()
	tcp, err1 := chserver.FreePort()
	httpPort, err2 := chserver.FreePort()
	if err := errors.Join(err1, err2); err != nil {
		b.Close()
		return nil, err
	}
	ch, err := chserver.StartProcess(ctx, cfg.Bin, chserver.Config{DataDir: filepath.Join(cfg.Dir, "clickhouse"),
		TCPPort: tcp, HTTPPort: httpPort, Logger: cfg.Log})
	if err != nil {
		b.Close()
		return nil, err
	}
	conn, err := chstore.Open(ctx, chstore.Config{Addr: []string{ch.Addr()}, Database: "default", Username: "default"})
	if err != nil {
		_ = ch.Kill()
		b.Close()
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(4<<20), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, kc: kc, ch: ch, conn: conn, cl: cl, adm: kadm.NewClient(cl)}
	e.close = func() {
		cl.Close()
		conn.Close()
		stop, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = ch.Stop(stop)
		b.Close()
	}
	return e, nil
}

type generated struct {
	avroBytes, jsonBytes float64
	took                 time.Duration
}

// produce loads the same simulated events into the Avro topic (ours) and
// the canonical-JSON topic (the peer), keyed by trace id.
func (e *env) produce(ctx context.Context) (generated, error) {
	var g generated
	start := time.Now()
	fleet := simulate.New(simulate.Config{Seed: 2026, ReorderRate: simulate.DefaultReorderRate})
	enc := schemas.NewSingleObjectEncoder()
	// A week of the fleet's life: event times spread evenly over the last
	// seven days, as a real backlog would be, rather than millions of
	// actions by 35 agents within the same minutes (which would measure the
	// anomaly rules on an impossible burst, not the pipeline).
	const span = 7 * 24 * time.Hour
	at := time.Now().UTC().Add(-span)
	step := span / time.Duration(e.cfg.Events/3+1)
	n := 0
	var firstErr error
	promise := func(_ *kgo.Record, err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for n < e.cfg.Events {
		at = at.Add(step)
		for _, ev := range fleet.NextTrace(at) {
			if n == e.cfg.Events {
				break
			}
			a, err := enc.AppendEncode(nil, &ev)
			if err != nil {
				return g, err
			}
			j, err := schemas.AppendJSON(nil, &ev)
			if err != nil {
				return g, err
			}
			key := []byte(ev.TraceID)
			e.cl.Produce(ctx, &kgo.Record{Topic: avroTopic, Key: key, Value: a}, promise)
			e.cl.Produce(ctx, &kgo.Record{Topic: jsonTopic, Key: key, Value: j}, promise)
			g.avroBytes += float64(len(a))
			g.jsonBytes += float64(len(j))
			n++
		}
	}
	if err := e.cl.Flush(ctx); err != nil {
		return g, err
	}
	g.took = time.Since(start)
	return g, firstErr
}

type throughput struct {
	rate, cpuPerEvent float64 // events/s, CPU-µs per event across processes
	elapsed           time.Duration
}

// runOurs ingests every event into a fresh database with the in-ingest
// stages on, timing until the group has committed the end of every
// partition (a batch commits only after ClickHouse acknowledged it).
func (e *env) runOurs(ctx context.Context, i int) (throughput, error) {
	db := fmt.Sprintf("bench_ours_%d", i)
	cfg := consumers.Config{Kafka: e.kc, ClickHouse: chstore.Config{Addr: []string{e.ch.Addr()}, Database: db},
		Signatures: consumers.SignatureConfig{Mode: consumers.SignaturesOff}} // unsigned, like the Kafka engine's input
	cfg.Defaults()
	cfg.Ingest.Group = fmt.Sprintf("bench-ours-%d", i)
	if _, err := chstore.Migrate(ctx, e.conn, db); err != nil {
		return throughput{}, err
	}
	reg := prometheus.NewRegistry()
	var procs []consumers.Processor
	if e.cfg.Processors != nil {
		var err error
		if procs, err = e.cfg.Processors(ctx, cfg, reg); err != nil {
			return throughput{}, err
		}
	}
	in, err := consumers.New(ctx, cfg, reg, e.cfg.Log, consumers.WithProcessors(procs...))
	if err != nil {
		return throughput{}, err
	}
	defer in.Close(context.Background())
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	cpu0, err := cpuTime(e.ch.Pid())
	if err != nil {
		stop()
		return throughput{}, err
	}
	start := time.Now()
	go func() { done <- in.Run(runCtx) }()
	err = e.waitCommitted(ctx, cfg.Ingest.Group, avroTopic, done)
	elapsed := time.Since(start)
	cpu1, cerr := cpuTime(e.ch.Pid())
	stop()
	<-done
	if err := errors.Join(err, cerr); err != nil {
		return throughput{}, err
	}
	var stored uint64
	if err := e.conn.QueryRow(ctx, "SELECT count() FROM "+db+".v_events").Scan(&stored); err != nil {
		return throughput{}, err
	}
	if int(stored) != e.cfg.Events {
		return throughput{}, fmt.Errorf("ours stored %d events, want %d", stored, e.cfg.Events)
	}
	return throughput{rate: float64(e.cfg.Events) / elapsed.Seconds(),
		cpuPerEvent: float64((cpu1 - cpu0).Microseconds()) / float64(e.cfg.Events), elapsed: elapsed}, nil
}

// waitCommitted waits until group has committed the end offset of every
// partition of topic.
func (e *env) waitCommitted(ctx context.Context, group, topic string, done <-chan error) error {
	ends, err := e.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	for {
		select {
		case err := <-done:
			return fmt.Errorf("ingest stopped early: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		offs, err := e.adm.FetchOffsets(ctx, group)
		if err != nil {
			continue
		}
		caughtUp := true
		ends.Each(func(o kadm.ListedOffset) {
			if c, ok := offs.Lookup(o.Topic, o.Partition); o.Offset > 0 && (!ok || c.At < o.Offset) {
				caughtUp = false
			}
		})
		if caughtUp {
			return nil
		}
	}
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if i := strings.IndexByte(l, ':'); i > 0 {
				return strings.TrimSpace(l[i+1:])
			}
		}
	}
	return "unknown CPU"
}
