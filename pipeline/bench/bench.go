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
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/chserver"
	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/pipeline"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

// Config sets the benchmark's sizes.
type Config struct {
	Events      int           // events for the throughput runs (default 2,000,000)
	Runs        int           // repetitions of each throughput run (default 3)
	QueryEvents int           // rows for the analyst-query table (default 10,000,000)
	Steady      time.Duration // length of the freshness run (default 20s)
	// FreshRate is the steady load of the freshness run, events/s; 0 means
	// half of ours' median throughput (5,000 when ours is not run).
	FreshRate float64
	// Only limits the run to these phases (Phases lists them); empty runs
	// all of them.
	Only []string
	Peer PeerSettings
	// BatchRows is ours' ingest.batch_rows; 0 keeps ingest's default.
	BatchRows int
	// CHProfile prints, after each throughput run, ClickHouse's CPU by
	// statement and table and by merge (from the server's query_log and
	// part_log, which it then keeps).
	CHProfile bool
	// Keep leaves each measured run's database on the server instead of
	// dropping it, to be studied afterwards on a server started on
	// Dir/clickhouse. The phases after a kept run then share the server
	// with whatever merges its tables still run.
	Keep bool
	Bin  string // agentrail binary, to start the broker and ClickHouse
	Dir  string // working directory (emptied)
	Out  io.Writer
	Log  *slog.Logger
}

// Phases are the parts of the benchmark, in the order they run; Config.Only
// picks among them. storage needs ours (it measures ours' first table).
var Phases = []string{"ours", "peer", "storage", "fresh", "producer", "queries"}

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
	c.Peer.defaults()
}

// Validate checks the config without I/O; errors name the flag.
func (c *Config) Validate() error {
	for _, p := range c.Only {
		if !slices.Contains(Phases, p) {
			return fmt.Errorf("bench: --only: unknown phase %q (want some of %s)", p, strings.Join(Phases, ","))
		}
	}
	if c.has("storage") && !c.has("ours") {
		return errors.New("bench: --only: storage measures ours' table: add ours")
	}
	switch {
	case c.Events < 1000 || c.Events > 100_000_000:
		return fmt.Errorf("bench: --events %d out of range 1000..100000000", c.Events)
	case c.Runs < 1 || c.Runs > 20:
		return fmt.Errorf("bench: --runs %d out of range 1..20", c.Runs)
	case c.QueryEvents < 1000 || c.QueryEvents > 1_000_000_000:
		return fmt.Errorf("bench: --query-events %d out of range 1000..1000000000", c.QueryEvents)
	case c.Steady < 5*time.Second || c.Steady > time.Hour:
		return fmt.Errorf("bench: --steady %s out of range 5s..1h", c.Steady)
	case c.BatchRows < 0 || c.BatchRows > 1_000_000:
		return fmt.Errorf("bench: --batch-rows %d out of range 0..1000000", c.BatchRows)
	case c.FreshRate < 0 || c.FreshRate > 1_000_000:
		return fmt.Errorf("bench: --fresh-rate %.0f out of range 0..1000000", c.FreshRate)
	}
	return c.Peer.validate()
}

// has reports whether phase p runs.
func (c *Config) has(p string) bool { return len(c.Only) == 0 || slices.Contains(c.Only, p) }

const (
	avroTopic = "agentrail.events"
	jsonTopic = "bench.events.json"
)

// env is what every phase uses: the broker, the server, a connection.
type env struct {
	cfg    Config
	kc     kafkacfg.Config
	ch     *chserver.Process
	broker *exec.Cmd
	conn   driver.Conn
	adm    *kadm.Client
	cl     *kgo.Client
	close  func()
}

// Run runs the configured phases and prints the results.
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	began := time.Now()
	e, err := setup(ctx, cfg)
	if err != nil {
		return err
	}
	defer e.close()
	out := cfg.Out
	fmt.Fprintf(out, "agentrail bench: %s\n%s\n%d events × %d runs; phases: %s\n\n",
		machine(), mergePriority(e.ch.Pid()), cfg.Events, cfg.Runs, strings.Join(cfg.phases(), ", "))
	var took []string
	phase := func(name string, start time.Time) {
		took = append(took, fmt.Sprintf("%s %s", name, time.Since(start).Round(time.Second)))
	}

	var r results
	if cfg.has("ours") || cfg.has("peer") {
		start := time.Now()
		gen, err := e.produce(ctx)
		if err != nil {
			return fmt.Errorf("bench: load: %w", err)
		}
		fmt.Fprintf(out, "loaded %d events into the broker once, for every run (Avro %.0f B/event, canonical JSON %.0f B/event) in %s\n",
			cfg.Events, gen.avroBytes/float64(cfg.Events), gen.jsonBytes/float64(cfg.Events), gen.took.Round(time.Millisecond))
		phase("load", start)
	}
	for i := range cfg.Runs {
		if cfg.has("ours") {
			start := time.Now()
			o, err := e.runOurs(ctx, i)
			if err != nil {
				return fmt.Errorf("bench: ours run %d: %w", i+1, err)
			}
			fmt.Fprintf(out, "run %d: ours %s\n", i+1, o)
			r.ours = append(r.ours, o)
			phase(fmt.Sprintf("ours#%d", i+1), start)
			db := fmt.Sprintf("bench_ours_%d", i)
			if i == 0 && cfg.has("storage") {
				start := time.Now()
				if r.storage, err = e.storage(ctx, db); err != nil {
					return fmt.Errorf("bench: storage: %w", err)
				}
				phase("storage", start)
			}
			if err := e.retire(ctx, db); err != nil {
				return err
			}
		}
		if cfg.has("peer") {
			start := time.Now()
			p, err := e.runPeer(ctx, i)
			if err != nil {
				return fmt.Errorf("bench: peer run %d: %w", i+1, err)
			}
			fmt.Fprintf(out, "run %d: peer %s\n", i+1, p)
			r.peer = append(r.peer, p)
			phase(fmt.Sprintf("peer#%d", i+1), start)
			if err := e.retire(ctx, fmt.Sprintf("bench_peer_%d", i)); err != nil {
				return err
			}
		}
	}
	if cfg.has("fresh") {
		start := time.Now()
		rate := cfg.FreshRate
		if rate == 0 {
			rate = 5000
			if len(r.ours) > 0 {
				rate = summarize(r.oursRates()).median / 2
			}
		}
		if r.fresh, err = e.freshness(ctx, rate); err != nil {
			return fmt.Errorf("bench: freshness: %w", err)
		}
		phase("fresh", start)
		if err := e.retire(ctx, "bench_fresh"); err != nil {
			return err
		}
	}
	if cfg.has("producer") {
		start := time.Now()
		if r.block, err = producerBlock(ctx); err != nil {
			return fmt.Errorf("bench: producer block: %w", err)
		}
		phase("producer", start)
	}
	if cfg.has("queries") {
		start := time.Now()
		if r.queries, err = e.analystQueries(ctx); err != nil {
			return fmt.Errorf("bench: analyst queries: %w", err)
		}
		phase("queries", start)
	}
	fmt.Fprintln(out)
	r.print(out, cfg)
	fmt.Fprintf(out, "\npeer settings: %s\n", cfg.Peer)
	fmt.Fprintf(out, "took %s: %s\n", time.Since(began).Round(time.Second), strings.Join(took, ", "))
	return nil
}

func (c *Config) phases() []string {
	var ps []string
	for _, p := range Phases {
		if c.has(p) {
			ps = append(ps, p)
		}
	}
	return ps
}

// setup starts the broker and ClickHouse as child processes of their own,
// so that each one's CPU is measured apart from ingest's (this process).
func setup(ctx context.Context, cfg Config) (*env, error) {
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	var kc kafkacfg.Config
	kc.Defaults()
	bcmd, addr, err := startBroker(ctx, cfg)
	if err != nil {
		return nil, err
	}
	stopBroker := func() {
		_ = bcmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = bcmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = bcmd.Process.Kill()
			<-done
		}
	}
	kc.Brokers = []string{addr}
	tcp, err1 := chserver.FreePort()
	httpPort, err2 := chserver.FreePort()
	if err := errors.Join(err1, err2); err != nil {
		stopBroker()
		return nil, err
	}
	ch, err := chserver.StartProcess(ctx, cfg.Bin, chserver.Config{DataDir: filepath.Join(cfg.Dir, "clickhouse"),
		TCPPort: tcp, HTTPPort: httpPort, Logger: cfg.Log, SystemLogs: cfg.CHProfile})
	if err != nil {
		stopBroker()
		return nil, err
	}
	conn, err := chstore.Open(ctx, chstore.Config{Addr: []string{ch.Addr()}, Database: "default", Username: "default"})
	if err != nil {
		_ = ch.Kill()
		stopBroker()
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(4<<20), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		conn.Close()
		_ = ch.Kill()
		stopBroker()
		return nil, err
	}
	e := &env{cfg: cfg, kc: kc, ch: ch, broker: bcmd, conn: conn, cl: cl, adm: kadm.NewClient(cl)}
	e.close = func() {
		cl.Close()
		conn.Close()
		stop, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = ch.Stop(stop)
		stopBroker()
	}
	if err := kafkacfg.EnsureTopics(ctx, cl, 12, avroTopic, jsonTopic, kc.Topics.DeadLetter); err != nil {
		e.close()
		return nil, err
	}
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&chVersion); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// startBroker runs `agentrail broker` in memory on a free port and waits
// until it accepts connections.
func startBroker(ctx context.Context, cfg Config) (*exec.Cmd, string, error) {
	port, err := chserver.FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(cfg.Bin, "broker", "--port", strconv.Itoa(port), "--data-dir", "", "--partitions", "12")
	logf, err := os.Create(filepath.Join(cfg.Dir, "broker.log"))
	if err != nil {
		return nil, "", err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, "", fmt.Errorf("bench: start broker: %w", err)
	}
	logf.Close() // the child has its own descriptor
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return cmd, addr, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, "", fmt.Errorf("bench: broker on %s not ready in 30s (see %s): %w", addr, filepath.Join(cfg.Dir, "broker.log"), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type generated struct {
	avroBytes, jsonBytes float64
	took                 time.Duration
}

// produce loads the same simulated events into the Avro topic (ours) and
// the canonical-JSON topic (the peer), keyed by trace id, in the order the
// fleet made them.
func (e *env) produce(ctx context.Context) (generated, error) {
	var g generated
	start := time.Now()
	var mu sync.Mutex // franz-go calls promises on its own goroutine
	var firstErr error
	promise := func(_ *kgo.Record, err error) {
		mu.Lock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	// A week of the fleet's life: event times spread evenly over the last
	// seven days, as a real backlog would be, rather than millions of
	// actions by 35 agents within the same minutes (which would measure the
	// anomaly rules on an impossible burst, not the pipeline).
	from := time.Now().UTC().Add(-loadSpan)
	err := loadEvents(ctx, e.cfg.Events, from, func(c *loadChunk) {
		for i := range c.events {
			key := []byte(c.events[i].TraceID)
			e.cl.Produce(ctx, &kgo.Record{Topic: avroTopic, Key: key, Value: c.avro[i]}, promise)
			e.cl.Produce(ctx, &kgo.Record{Topic: jsonTopic, Key: key, Value: c.json[i]}, promise)
			g.avroBytes += float64(len(c.avro[i]))
			g.jsonBytes += float64(len(c.json[i]))
		}
	})
	if err != nil {
		return g, err
	}
	if err := e.cl.Flush(ctx); err != nil {
		return g, err
	}
	g.took = time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	return g, firstErr
}

// loadSpan is the event times' spread in the loaded events.
const loadSpan = 7 * 24 * time.Hour

// loadEvents makes n simulated events, their times spread evenly over
// loadSpan after from, encodes each as Avro and as canonical JSON, and
// hands them to sink in chunks, in the order the fleet made them. The fleet
// is one seeded sequence, so it runs on this goroutine; encoding, most of
// the work, runs on one worker per CPU, and sink runs on a goroutine of its
// own, one chunk at a time, so the load takes a small share of the
// benchmark's 15 minutes (docs/PERFORMANCE.md, "The latest full run").
func loadEvents(ctx context.Context, n int, from time.Time, sink func(*loadChunk)) error {
	fleet := simulate.New(loadFleet)
	at := from
	step := loadSpan / time.Duration(n/3+1)

	workers := runtime.GOMAXPROCS(0)
	todo := make(chan *loadChunk, 2*workers)
	inOrder := make(chan *loadChunk, 2*workers)
	for range workers {
		go func() {
			enc := schemas.NewSingleObjectEncoder()
			for c := range todo {
				c.encode(enc)
			}
		}()
	}
	// The sink drains inOrder to the end, even after an error, so that
	// this loop never blocks on it.
	sunk := make(chan error, 1)
	go func() {
		var err error
		for c := range inOrder {
			<-c.done
			if err == nil {
				err = c.err
			}
			if err == nil {
				sink(c)
			}
		}
		sunk <- err
	}()

	made := 0
	for made < n && ctx.Err() == nil {
		c := &loadChunk{done: make(chan struct{})}
		for len(c.events) < loadChunkEvents && made < n {
			at = at.Add(step)
			tr := fleet.NextTrace(at)
			tr = tr[:min(len(tr), n-made)]
			c.events = append(c.events, tr...)
			made += len(tr)
		}
		todo <- c
		inOrder <- c
	}
	close(todo)
	close(inOrder)
	if err := <-sunk; err != nil {
		return err
	}
	return ctx.Err()
}

// loadFleet makes the loaded events: the same ones in every benchmark.
var loadFleet = simulate.Config{Seed: 2026, ReorderRate: simulate.DefaultReorderRate}

// loadChunkEvents is how many events a load worker encodes at a time.
const loadChunkEvents = 2000

// loadChunk is a run of consecutive events with both of their encodings.
type loadChunk struct {
	events     []schemas.Event
	avro, json [][]byte
	err        error
	done       chan struct{} // closed once encoded
}

func (c *loadChunk) encode(enc *schemas.Encoder) {
	defer close(c.done)
	c.avro = make([][]byte, len(c.events))
	c.json = make([][]byte, len(c.events))
	for i := range c.events {
		ev := &c.events[i]
		var err error
		if c.avro[i], err = enc.AppendEncode(nil, ev); err != nil {
			c.err = fmt.Errorf("event %s: avro: %w", ev.EventID, err)
			return
		}
		if c.json[i], err = schemas.AppendJSON(nil, ev); err != nil {
			c.err = fmt.Errorf("event %s: json: %w", ev.EventID, err)
			return
		}
	}
}

type throughput struct {
	rate    float64 // events/s
	cpu     cpuPerEvent
	elapsed time.Duration
	// The merges the run's inserts left behind, measured after it (settle).
	merges    cpuPerEvent
	mergeWait time.Duration
}

// withMerges is t's CPU per event and its merges' after the run.
func (t throughput) withMerges() cpuPerEvent { return t.cpu.plus(t.merges) }

// String is the run's line: its rate, its CPU, and its merges' after it.
func (t throughput) String() string {
	return fmt.Sprintf("%.0f events/s, CPU-µs/event %s; merges after the run %.1f more (ClickHouse %.1f) in %s",
		t.rate, t.cpu, t.merges.total, t.merges.clickhouse, t.mergeWait.Round(100*time.Millisecond))
}

// retire drops a measured run's database, so that the merges ClickHouse
// would still run on its tables do not take CPU from the next phase (each
// phase counts all of ClickHouse's CPU as its own). With Config.Keep it
// says where the database stays instead.
func (e *env) retire(ctx context.Context, db string) error {
	if e.cfg.Keep {
		fmt.Fprintf(e.cfg.Out, "kept database %s in %s\n", db, filepath.Join(e.cfg.Dir, "clickhouse"))
		return nil
	}
	if err := e.conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" SYNC"); err != nil {
		return fmt.Errorf("bench: drop %s after its run: %w", db, err)
	}
	return nil
}

// runOurs ingests every event into a fresh database with the in-ingest
// stages on, timing until the group has committed the end of every
// partition (a batch commits only after ClickHouse acknowledged it).
func (e *env) runOurs(ctx context.Context, i int) (throughput, error) {
	db := fmt.Sprintf("bench_ours_%d", i)
	cfg := consumers.Config{Kafka: e.kc, ClickHouse: chstore.Config{Addr: []string{e.ch.Addr()}, Database: db},
		Signatures: consumers.SignatureConfig{Mode: consumers.SignaturesOff}} // unsigned, like the Kafka engine's input
	cfg.Ingest.BatchRows = e.cfg.BatchRows
	cfg.Defaults()
	cfg.Ingest.Group = fmt.Sprintf("bench-ours-%d", i)
	if _, err := chstore.Migrate(ctx, e.conn, db); err != nil {
		return throughput{}, err
	}
	reg := prometheus.NewRegistry()
	// The in-ingest stages (correlation, anomaly rules) with their
	// defaults, wired as `agentrail ingest` wires them.
	in, err := pipeline.NewIngest(ctx, pipeline.Config{Config: cfg}, reg, e.cfg.Log)
	if err != nil {
		return throughput{}, err
	}
	defer in.Close(context.Background())
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	cpu0, err := e.cpuNow()
	if err != nil {
		stop()
		return throughput{}, err
	}
	start := time.Now()
	go func() { done <- in.Run(runCtx) }()
	err = e.waitCommitted(ctx, cfg.Ingest.Group, avroTopic, done)
	elapsed := time.Since(start)
	cpu1, cerr := e.cpuNow()
	stop()
	<-done
	if err := errors.Join(err, cerr); err != nil {
		return throughput{}, err
	}
	if e.cfg.CHProfile {
		e.chProfile(ctx, fmt.Sprintf("ours run %d", i+1), db, start)
	}
	var stored uint64
	if err := e.conn.QueryRow(ctx, "SELECT count() FROM "+db+".v_events").Scan(&stored); err != nil {
		return throughput{}, err
	}
	if int(stored) != e.cfg.Events {
		return throughput{}, fmt.Errorf("ours stored %d events, want %d", stored, e.cfg.Events)
	}
	merges, wait, err := e.settle(ctx, db)
	if err != nil {
		return throughput{}, err
	}
	return throughput{rate: float64(e.cfg.Events) / elapsed.Seconds(), cpu: cpu1.sub(cpu0).per(e.cfg.Events), elapsed: elapsed,
		merges: merges.per(e.cfg.Events), mergeWait: wait}, nil
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

// machine describes where the benchmark runs: CPU model and count, memory,
// Go and ClickHouse versions.
func machine() string {
	mem := "unknown memory"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
					mem = fmt.Sprintf("%.1f GiB RAM", kb/(1<<20))
				}
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s, GOMAXPROCS %d, %s, ClickHouse %s (libchdb %s)",
		runtime.NumCPU(), cpuModel(), mem, runtime.GOMAXPROCS(0), runtime.Version(), chVersion, chserver.LibVersion)
}

// mergePriority says whether ClickHouse runs its merges below inserts and
// queries, as the figures in docs/PERFORMANCE.md assume: without it,
// freshness and alert latency suffer most.
func mergePriority(pid int) string {
	below, err := chserver.MergesBelowInserts(pid)
	switch {
	case err != nil:
		return "ClickHouse merge priority unknown: " + err.Error()
	case below:
		return "ClickHouse merges at nice 10, below inserts and queries (the server holds CAP_SYS_NICE)"
	default:
		return "ClickHouse merges at the same priority as inserts: the server lacks CAP_SYS_NICE, so freshness and alert latency may be worse than docs/PERFORMANCE.md reports"
	}
}

// chVersion is the engine's version, as `SELECT version()` prints it;
// filled by setup.
var chVersion = "?"

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
