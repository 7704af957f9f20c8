// Package consumers is agentrail's ingest stage: a Kafka consumer-group
// member that verifies the signature of (package signing, before anything
// is decoded), decodes, validates and writes every agent event to
// ClickHouse, quarantines what is not shown to come from the agent it names
// (verify.go), and dead-letters what it cannot decode or validate.
//
// Delivery: a batch's offsets are committed only after ClickHouse
// acknowledged its rows, in one Kafka transaction with the batch's dead
// letters and the records its Processors emit. A crash or a rebalance before
// that commit redoes the batch; the events table collapses re-delivered
// events by event_id (see docs/ARCHITECTURE.md), and the transaction keeps
// the emitted records exactly once for read_committed consumers. A broker
// that goes away does not stop ingest: ClickHouse outages are retried in
// place, and a transaction the broker could not end is given up with its
// Kafka session, which is made again, and the batch is consumed again (see
// commit).
//
// Metrics:
//
//	agentrail_ingest_records_total{outcome="stored|dead_lettered|duplicate|quarantined"}
//	agentrail_ingest_dead_letters_total{reason="oversize|decode|validation"}
//	agentrail_ingest_batches_total
//	agentrail_ingest_batch_rows (histogram)
//	agentrail_ingest_insert_seconds (histogram)
//	agentrail_ingest_retries_total{stage="decode|insert|process|process_insert|produce|commit"}
//	agentrail_ingest_last_commit_timestamp_seconds
//	agentrail_ingest_aborted_batches_total
//	agentrail_ingest_ticks_total                 ticks that committed what Tickers emitted (tick.go)
//	agentrail_ingest_redactions_total{rule,action} (redaction.go)
//	agentrail_ingest_quarantined_total{reason}   (signing.Reasons; see verify.go)
//	agentrail_ingest_legacy_fingerprint_records_total{schema_version} (fingerprint.go)
//	agentrail_ingest_signature_keys
//	agentrail_ingest_signature_keys_reload_success
package consumers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/agentrail/agentrail/consumers/redact"
	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// Config configures ingest.
type Config struct {
	Kafka       kafkacfg.Config `yaml:"kafka"`
	ClickHouse  chstore.Config  `yaml:"clickhouse"`
	RegistryURL string          `yaml:"registry_url"`
	Ingest      IngestConfig    `yaml:"ingest"`
	Redaction   redact.Config   `yaml:"redaction"` // before storage: consumers/redaction.go
	Signatures  SignatureConfig `yaml:"signatures"`
}

// IngestConfig holds the ingest stage's own settings.
type IngestConfig struct {
	Group          string        `yaml:"group"`            // consumer group
	BatchRows      int           `yaml:"batch_rows"`       // flush at this many records
	BatchInterval  time.Duration `yaml:"batch_interval"`   // or this long after its oldest record was produced
	MaxRecordBytes int           `yaml:"max_record_bytes"` // larger records are dead-lettered
	MaxFuture      time.Duration `yaml:"max_future"`       // event_time ahead of now (clock skew)
	MaxPast        time.Duration `yaml:"max_past"`         // event_time behind now (late, replayed)
	// SessionTimeout is how long the group waits for a silent member
	// (a crashed process) before giving its partitions to others.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// RebalanceTimeout is how long the group waits for its members to
	// rejoin when one arrives or leaves; a crashed member is waited for
	// this long, so keep it short: members here rejoin at once.
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
	// InstanceID, if set, makes this a static group member: a restarted
	// process with the same id takes its partitions back at once, without
	// a rebalance (use the pod or host name).
	InstanceID string `yaml:"instance_id"`
	// GCPercent is the Go garbage collector's target (GOGC) for the
	// process ingest runs in, set when ingest starts unless the GOGC
	// environment variable is: ingest holds a large, long-lived state (the
	// trace and rule caches) and allocates per batch, so collecting less
	// often saves CPU for more heap. 0 leaves the runtime's setting.
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimitMB is the Go runtime's soft memory limit (GOMEMLIMIT) for
	// the process ingest runs in, in MiB, set when ingest starts unless
	// the GOMEMLIMIT environment variable is. With gc_percent 400 the heap
	// may grow to five times what is live; the limit makes the collector
	// run earlier instead once the heap nears it, so batch_rows can stay
	// large (fewer, bigger parts for ClickHouse to merge) without the
	// process growing with it. Keep it below the memory the process may
	// use: past it the runtime spends up to half the CPU collecting. 0
	// leaves the runtime's setting: the limit trades CPU for memory
	// (docs/PERFORMANCE-HISTORY.md, "100,000 rows with a memory limit"),
	// so it is the operator's choice.
	MemoryLimitMB int `yaml:"memory_limit_mb"`
	// TickInterval is how often, between batches and when idle, ingest
	// runs the processors' work that falls due on its clock (tick.go):
	// a violation whose settle_after passed is reported within about this
	// long even when no further event arrives.
	TickInterval time.Duration `yaml:"tick_interval"`
}

// Defaults fills unset fields, in one place.
func (c *Config) Defaults() {
	c.Kafka.Defaults()
	c.ClickHouse.Defaults()
	c.Redaction.Defaults()
	c.Signatures.defaults()
	in := &c.Ingest
	if in.Group == "" {
		in.Group = "agentrail-ingest"
	}
	if in.BatchRows == 0 {
		// Each batch is one insert, so one new part per partition of
		// events and traces; bigger parts are merged fewer times, which
		// is why the default is 50,000 and not 20,000. 100,000 costs
		// ClickHouse less again but raises the measured maximum, and
		// with it the half load, past what a 2-core host sustains at the
		// freshness target (docs/PERFORMANCE-HISTORY.md, "Batch size:
		// bigger parts, fewer merges"). Memory holds one batch; under a
		// light load batch_interval flushes first.
		in.BatchRows = 50000
	}
	if in.BatchInterval == 0 {
		in.BatchInterval = 250 * time.Millisecond
	}
	if in.MaxRecordBytes == 0 {
		in.MaxRecordBytes = 1 << 20
	}
	if in.MaxFuture == 0 {
		in.MaxFuture = schemas.DefaultLimits.MaxFuture
	}
	if in.MaxPast == 0 {
		in.MaxPast = schemas.DefaultLimits.MaxPast
	}
	if in.SessionTimeout == 0 {
		in.SessionTimeout = 10 * time.Second
	}
	if in.RebalanceTimeout == 0 {
		in.RebalanceTimeout = 15 * time.Second
	}
	if in.GCPercent == 0 {
		in.GCPercent = 400
	}
	if in.TickInterval == 0 {
		in.TickInterval = time.Second
	}
}

// Validate checks the settings without I/O; call Defaults first.
func (c *Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if err := c.ClickHouse.Validate(); err != nil {
		return err
	}
	if err := c.Redaction.Validate(); err != nil {
		return err
	}
	if err := c.Signatures.validate(); err != nil {
		return err
	}
	in := c.Ingest
	switch {
	case in.Group == "":
		return errors.New("ingest.group: is empty")
	case in.BatchRows < 1 || in.BatchRows > 1_000_000:
		return fmt.Errorf("ingest.batch_rows: %d out of range 1..1000000", in.BatchRows)
	case in.BatchInterval < time.Millisecond || in.BatchInterval > time.Minute:
		return fmt.Errorf("ingest.batch_interval: %s out of range 1ms..1m", in.BatchInterval)
	case in.MaxRecordBytes < 1024 || in.MaxRecordBytes > 16<<20:
		return fmt.Errorf("ingest.max_record_bytes: %d out of range 1024..16777216", in.MaxRecordBytes)
	case in.MaxFuture < 0:
		return errors.New("ingest.max_future: must be >= 0")
	case in.MaxPast <= 0:
		return errors.New("ingest.max_past: must be > 0")
	case in.SessionTimeout < 6*time.Second || in.SessionTimeout > 5*time.Minute:
		// Kafka brokers refuse session timeouts under 6s by default.
		return fmt.Errorf("ingest.session_timeout: %s out of range 6s..5m", in.SessionTimeout)
	case in.RebalanceTimeout < 5*time.Second || in.RebalanceTimeout > 10*time.Minute:
		return fmt.Errorf("ingest.rebalance_timeout: %s out of range 5s..10m", in.RebalanceTimeout)
	case in.TickInterval < 10*time.Millisecond || in.TickInterval > time.Minute:
		return fmt.Errorf("ingest.tick_interval: %s out of range 10ms..1m", in.TickInterval)
	case in.GCPercent < 25 || in.GCPercent > 2000:
		return fmt.Errorf("ingest.gc_percent: %d out of range 25..2000", in.GCPercent)
	case in.MemoryLimitMB != 0 && (in.MemoryLimitMB < 256 || in.MemoryLimitMB > 1<<20):
		return fmt.Errorf("ingest.memory_limit_mb: %d out of range 256..1048576 (or 0: the runtime's)", in.MemoryLimitMB)
	}
	return nil
}

// Ingest consumes agent events into ClickHouse.
type Ingest struct {
	cfg       Config
	log       *slog.Logger
	sess      *kgo.GroupTransactSession // replaced by renewSession, on Run's goroutine
	cl        *kgo.Client               // sess's client
	kopts     []kgo.Opt                 // sess's options, to make it again
	txnFails  int                       // transactions lost in a row (renewSession's backoff)
	dec       *schemas.Decoder
	now       func() time.Time
	m         metrics
	done      chan struct{}
	closeOnce sync.Once

	procs    []Processor
	tickers  []Ticker  // the procs that are Tickers (tick.go)
	lastTick time.Time // wall clock of the last tick
	red      redaction
	sig      *signatures // verify.go

	legacy legacyFingerprints // fingerprint.go

	revokedMu sync.Mutex
	revokedPs []int32        // partitions revoked since the last batch
	owned     map[int32]bool // events partitions assigned (guarded by revokedMu)
	lim       schemas.Limits
	dlTable   string

	// The inserts: ch-go, on its own connection, from columns reused
	// batch after batch (columns.go for the events, inserts.go for the
	// rest). Used by one insert at a time: the quarantine's, then the
	// events' and dead letters', then the processors'.
	native      nativeConn
	rows        *eventColumns
	eventsTable string
	stage       insertColumns
}

type metrics struct {
	records     *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	batches     prometheus.Counter
	batchRows   prometheus.Histogram
	insertSecs  prometheus.Histogram
	retries     *prometheus.CounterVec
	lastCommit  prometheus.Gauge
	aborted     prometheus.Counter
	ticks       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentrail_ingest_records_total", Help: "Records consumed, by outcome.",
		}, []string{"outcome"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentrail_ingest_dead_letters_total", Help: "Records sent to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentrail_ingest_batches_total", Help: "Batches committed.",
		}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentrail_ingest_batch_rows", Help: "Records per committed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		insertSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentrail_ingest_insert_seconds", Help: "Time to insert one batch into ClickHouse.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentrail_ingest_retries_total", Help: "Retried operations, by stage.",
		}, []string{"stage"}),
		lastCommit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentrail_ingest_last_commit_timestamp_seconds", Help: "Unix time of the last committed batch.",
		}),
		aborted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentrail_ingest_aborted_batches_total", Help: "Batch transactions aborted (partitions moved or producing failed); the batch is consumed again.",
		}),
		ticks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentrail_ingest_ticks_total", Help: "Ticks whose output (work due on ingest's clock) was committed.",
		}),
	}
	for _, c := range []prometheus.Collector{m.records, m.deadLetters, m.batches, m.batchRows, m.insertSecs, m.retries, m.lastCommit, m.aborted, m.ticks} {
		if err := reg.Register(c); err != nil {
			return m, fmt.Errorf("consumers: register metrics: %w", err)
		}
	}
	return m, nil
}

// Option adjusts an Ingest: the stages it runs (WithProcessors, as package
// pipeline wires them) and, for tests, its clock (WithClock).
type Option func(*Ingest)

// WithProcessors adds stages that run on every batch (see Processor).
func WithProcessors(ps ...Processor) Option {
	return func(in *Ingest) { in.procs = append(in.procs, ps...) }
}

// WithClock replaces time.Now, which validation of event_time uses.
func WithClock(now func() time.Time) Option { return func(in *Ingest) { in.now = now } }

// New connects to Kafka and ClickHouse. It does not migrate: run
// chstore.Migrate first (agentrail ingest does).
func New(ctx context.Context, cfg Config, reg prometheus.Registerer, log *slog.Logger, opts ...Option) (*Ingest, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("consumers: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.Ingest.GCPercent)
	}
	if cfg.Ingest.MemoryLimitMB > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(cfg.Ingest.MemoryLimitMB) << 20)
	}
	red, err := newRedaction(cfg.Redaction, reg, log)
	if err != nil {
		return nil, err
	}
	sig, err := newSignatures(cfg.Signatures, reg, log)
	if err != nil {
		return nil, err
	}
	var src schemas.SchemaSource
	if cfg.RegistryURL != "" {
		rc, err := sr.NewClient(sr.URLs(cfg.RegistryURL))
		if err != nil {
			return nil, fmt.Errorf("consumers: schema registry client: %w", err)
		}
		src = rc
	}
	dec, err := schemas.NewDecoder(src)
	if err != nil {
		return nil, err
	}
	legacy, err := newLegacyFingerprints(reg)
	if err != nil {
		return nil, err
	}
	kopts, err := cfg.Kafka.Opts()
	if err != nil {
		return nil, err
	}
	in := &Ingest{cfg: cfg, log: log, dec: dec, now: time.Now, m: m, red: red, sig: sig, legacy: legacy, done: make(chan struct{})}
	kopts = append(kopts,
		kgo.ConsumerGroup(cfg.Ingest.Group),
		kgo.ConsumeTopics(cfg.Kafka.Topics.Events),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(32<<20),
		kgo.SessionTimeout(cfg.Ingest.SessionTimeout),
		kgo.RebalanceTimeout(cfg.Ingest.RebalanceTimeout),
		kgo.TransactionalID(transactionalID(cfg.Ingest)),
		// A batch's transaction is open only while its records are produced
		// and its offsets committed (milliseconds): a short timeout bounds
		// how long a killed process's dangling transaction holds up its
		// partitions' next owner (UNSTABLE_OFFSET_COMMIT until it expires).
		kgo.TransactionTimeout(10*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.OnPartitionsAssigned(in.assigned),
		kgo.OnPartitionsRevoked(in.revoked),
		kgo.OnPartitionsLost(in.revoked),
		// franz-go's warnings: a group or fetch that keeps failing (offsets
		// unstable, joins refused) shows in the log, not only as a stall.
		kgo.WithLogger(kafkacfg.Logger(log, kgo.LogLevelWarn)),
	)
	if cfg.Ingest.InstanceID != "" {
		kopts = append(kopts, kgo.InstanceID(cfg.Ingest.InstanceID))
	}
	sess, err := kgo.NewGroupTransactSession(kopts...)
	if err != nil {
		return nil, fmt.Errorf("consumers: kafka client: %w", err)
	}
	cl := sess.Client()
	nopts, err := chstore.NativeOptions(cfg.ClickHouse)
	if err == nil {
		// Connect now: a server or setting the native client cannot use
		// fails here, at start, rather than on the first batch.
		err = in.native.open(ctx, nopts)
	}
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("consumers: %w", err)
	}
	db := cfg.ClickHouse.Database
	in.sess, in.cl, in.kopts = sess, cl, kopts
	in.lim = schemas.Limits{MaxFuture: cfg.Ingest.MaxFuture, MaxPast: cfg.Ingest.MaxPast, MaxString: schemas.DefaultLimits.MaxString}
	in.rows = newEventColumns()
	in.eventsTable = db + ".events"
	in.dlTable = db + ".dead_letters"
	for _, o := range opts {
		o(in)
	}
	for _, p := range in.procs {
		if t, ok := p.(Ticker); ok {
			in.tickers = append(in.tickers, t)
		}
	}
	return in, nil
}

// batchTimes are when each step of a batch's flush ended (wall clock), for
// the debug log that tells where a slow batch spent its time.
type batchTimes struct {
	start, decoded, processed, inserted, staged, committed time.Time
	procs                                                  []time.Duration // each processor's Process, in order
}

// batch is what one poll-accumulate-flush cycle carries.
type batch struct {
	recs []*kgo.Record // polled, in poll order
	// first is when the batch's clock started: the earliest produce time
	// (record timestamp) among its records, clamped to the interval before
	// the first poll that returned any (wall clock). It flushes
	// BatchInterval after that.
	first  time.Time
	polled time.Time // wall clock of the first poll that returned records
	oldest time.Time // the earliest record timestamp, unclamped (the debug log's)
	t      batchTimes
	offset map[int32]int64 // first offset per partition

	// Filled by decode, in poll order.
	rows        *eventColumns // Ingest's, reset for this batch
	events      []Accepted    // the same events, for processors
	dead        []deadLetter
	quarantined []Quarantined // failed signature verification (verify.go)
}

func newBatch() *batch {
	return &batch{offset: make(map[int32]int64)}
}

// add takes one polled record into the batch, undecoded. now is the wall
// clock of the poll (not the injected clock: it sets a real poll deadline),
// interval the batch interval.
//
// The batch's clock starts at its oldest record's produce time, not when
// ingest first saw it: records that waited in Kafka while the previous batch
// was flushed have used up part of their interval already, so a batch of
// them flushes sooner and freshness stays near one interval plus one flush
// instead of one interval plus two. A producer clock that runs ahead or far
// behind cannot stretch the wait beyond the interval or turn it into
// batches of one: the start is clamped to [first poll − interval +
// catchUp, first poll].
//
// So even a batch whose first records are overdue waits catchUp after its
// first poll. That poll took the one fetch franz-go kept buffered while the
// previous batch was flushed, which holds only what had arrived when that
// flush began, and started the next fetch, which brings everything since.
// Flushing at once left that to the next batch, a whole flush later: under
// a steady load each batch then held records two or three flushes behind
// (docs/PERFORMANCE-HISTORY.md, "Freshness inside `make bench`").
func (b *batch) add(r *kgo.Record, now time.Time, interval time.Duration) {
	if len(b.recs) == 0 {
		b.polled, b.first, b.oldest = now, now, now
	}
	if r.Timestamp.Before(b.oldest) {
		b.oldest = r.Timestamp
	}
	if ts := r.Timestamp; ts.Before(b.first) {
		b.first = ts
		if floor := b.polled.Add(catchUp(interval) - interval); ts.Before(floor) {
			b.first = floor
		}
	}
	b.recs = append(b.recs, r)
	if _, ok := b.offset[r.Partition]; !ok {
		b.offset[r.Partition] = r.Offset
	}
}

// catchUp is the least a batch waits after its first poll: a fifth of the
// interval (50 ms by default).
func catchUp(interval time.Duration) time.Duration { return interval / 5 }

type deadLetter struct {
	rec   *kgo.Record
	class string // oversize, decode, validation; "" for an accepted record
	field string
	err   error
}

// Run consumes until ctx ends. It returns nil on a clean stop; offsets of a
// batch not yet written are not committed, so it is re-delivered.
//
// Polling stops while a batch is decoded and flushed: the batch's Kafka
// transaction commits every offset polled so far (and rewinds the fetch
// position to them), so records polled ahead would be committed before
// ClickHouse holds them. The work inside a batch runs in parallel instead:
// records are decoded on every core, and the processors run while the
// events are being inserted.
func (in *Ingest) Run(ctx context.Context) error {
	defer close(in.done)
	stopWatch := in.watchRegistry(ctx) // verify.go: reloads the signing keys
	defer stopWatch()
	b := newBatch()
	in.lastTick = time.Now()
	for {
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if len(b.recs) > 0 {
			pollCtx, cancel = context.WithDeadline(ctx, b.first.Add(in.cfg.Ingest.BatchInterval))
		} else if due, ok := in.tickDeadline(); ok {
			// Between batches: work due on ingest's clock (tick.go).
			if !time.Now().Before(due) {
				if err := in.tick(ctx); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				due, _ = in.tickDeadline()
			}
			pollCtx, cancel = context.WithDeadline(ctx, due)
		}
		fetches := in.cl.PollRecords(pollCtx, in.cfg.Ingest.BatchRows-len(b.recs))
		cancel()
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				in.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		now := time.Now()
		fetches.EachRecord(func(r *kgo.Record) { b.add(r, now, in.cfg.Ingest.BatchInterval) })
		if len(b.recs) == 0 {
			continue
		}
		if len(b.recs) < in.cfg.Ingest.BatchRows && time.Now().Before(b.first.Add(in.cfg.Ingest.BatchInterval)) {
			continue
		}
		b.t.start = time.Now()
		if err := in.decode(ctx, b); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		b.t.decoded = time.Now()
		if err := in.flush(ctx, b); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		b = newBatch()
	}
}

// decodeChunk is how many records a decode worker takes at a time: large
// enough to make the hand-over negligible, small enough that the columns are
// built while the later chunks are still being decoded.
const decodeChunk = 512

// decode turns the batch's records into accepted events (columns and the
// processors' view) and dead letters, in poll order. prepare runs on up to
// GOMAXPROCS goroutines; this goroutine takes their chunks in order, drops
// repeated event ids (the first in poll order is kept) and appends the
// events to the columns, while later chunks are still being decoded. An
// error means ctx ended while a transient decode failure was retried.
func (in *Ingest) decode(ctx context.Context, b *batch) error {
	n := len(b.recs)
	slots := make([]Accepted, n)
	reds := make([][]redact.Redaction, n)
	verdicts := make([]signing.Verdict, n)
	chunks := (n + decodeChunk - 1) / decodeChunk
	type chunk struct {
		dead []int // indexes into slots of records not accepted, with their dead letters
		dls  []deadLetter
		err  error
		done chan struct{}
	}
	cs := make([]chunk, chunks)
	work := func(k int) {
		c := &cs[k]
		for i := k * decodeChunk; i < min(n, (k+1)*decodeChunk); i++ {
			d, err := in.prepare(ctx, b.recs[i], &slots[i], &reds[i], &verdicts[i])
			if err != nil {
				c.err = err
				break
			}
			if d.class != "" {
				c.dead = append(c.dead, i)
				c.dls = append(c.dls, d)
			}
		}
		close(c.done)
	}
	for k := range cs {
		cs[k].done = make(chan struct{})
	}
	var wg sync.WaitGroup
	if workers := min(runtime.GOMAXPROCS(0), chunks); workers > 1 {
		var next atomic.Int64
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := int(next.Add(1) - 1); k < chunks; k = int(next.Add(1) - 1) {
					work(k)
				}
			}()
		}
	} else {
		for k := range cs {
			work(k)
		}
	}
	defer wg.Wait() // workers write into slots; never leave them running

	b.rows = in.rows
	b.rows.reset()
	seen := make(map[string]struct{}, n)
	kept, dups := 0, 0
	for k := range cs {
		c := &cs[k]
		<-c.done
		if c.err != nil {
			return c.err
		}
		next := 0 // into c.dead
		for i := k * decodeChunk; i < min(n, (k+1)*decodeChunk); i++ {
			if next < len(c.dead) && c.dead[next] == i {
				b.dead = append(b.dead, c.dls[next])
				next++
				continue
			}
			a := &slots[i]
			if v := verdicts[i]; !v.Genuine() {
				b.quarantine(b.recs[i], &a.Event, v)
				continue
			}
			if _, dup := seen[a.EventID]; dup {
				dups++
				continue
			}
			seen[a.EventID] = struct{}{}
			b.rows.add(&a.Event, reds[i], a.Partition, a.Offset, verdicts[i].KeyID)
			if kept != i {
				slots[kept] = *a
			}
			kept++
		}
	}
	if dups > 0 {
		in.m.records.WithLabelValues("duplicate").Add(float64(dups))
	}
	if len(in.procs) > 0 {
		b.events = slots[:kept]
	}
	return nil
}

// prepare verifies the signature of, decodes, validates, redacts and checks
// the claims of one record into a, stamped with its place in the topic, with
// what redaction did (*reds) and the signature's verdict (*v). It is
// ingest's per-record work, safe to run on several goroutines at once.
//
// The signature comes first, over the record's exact bytes (verify.go): a
// record whose signature does not verify is quarantined whatever its bytes
// are (*v says why, a holds what it claims, if anything), and only one whose
// signature verifies (or any, with signatures off) is decoded and validated.
// A record that cannot be accepted is returned as a dead letter (class
// set). The error is non-nil only when ctx ended while a transient decode
// failure (schema registry) was retried.
func (in *Ingest) prepare(ctx context.Context, r *kgo.Record, a *Accepted, reds *[]redact.Redaction, v *signing.Verdict) (deadLetter, error) {
	a.Partition, a.Offset = r.Partition, r.Offset
	if len(r.Value) > in.cfg.Ingest.MaxRecordBytes {
		return deadLetter{rec: r, class: "oversize",
			err: fmt.Errorf("record is %d bytes, larger than ingest.max_record_bytes %d", len(r.Value), in.cfg.Ingest.MaxRecordBytes)}, nil
	}
	ver := in.sig.v.Load() // nil with signatures off
	if *v = in.verifySignature(ver, r); !v.Genuine() {
		*reds = nil
		return deadLetter{}, in.describeQuarantined(ctx, r, a, reds, v) // verify.go
	}
	e := &a.Event
	invalid, decErr, err := in.decodeValid(ctx, r, e)
	if err != nil {
		return deadLetter{}, err
	}
	if invalid != nil {
		return deadLetter{rec: r, class: "validation", field: invalid.Field, err: decErr}, nil
	}
	if decErr != nil {
		return deadLetter{rec: r, class: "decode", err: decErr}, nil
	}
	// Redaction first: nothing keeps the event before it, the quarantine
	// included (the signature covers the record's bytes, not the event).
	*reds = in.redact(e)             // redaction.go
	*v = in.verifyClaims(ver, *v, e) // verify.go
	return deadLetter{}, nil
}

// decodeValid decodes and validates r's value into e in one pass (strings
// are checked as they are read). A malformed value is decErr; one that
// decodes but is not valid is also invalid. err is non-nil only when ctx
// ended while a transient failure (the schema registry did not answer) was
// retried.
func (in *Ingest) decodeValid(ctx context.Context, r *kgo.Record, e *schemas.Event) (invalid *schemas.ValidationError, decErr, err error) {
	err = retry(ctx, in, "decode", func() error {
		invalid = nil
		decErr = in.dec.DecodeValid(ctx, r.Value, e, in.now(), in.lim)
		if decErr != nil && !errors.Is(decErr, schemas.ErrMalformed) && !errors.As(decErr, &invalid) {
			return decErr // transient
		}
		return nil
	})
	return invalid, decErr, err
}

// flush makes the batch durable, then commits its offsets:
//
//  1. the events and dead-letter rows into ClickHouse, while every
//     Processor runs on the batch;
//  2. once both are done, the processors' inserts into ClickHouse;
//  3. one Kafka transaction with the dead letters, the processors' records
//     and the offset commit.
//
// Steps 1 and 2 are retried with backoff until they succeed or ctx ends;
// meanwhile nothing more is polled, so memory stays bounded by one batch, and
// no transaction is open, so a long ClickHouse outage cannot time one out.
// If the transaction aborts (a rebalance took the partitions), the session
// rewinds to the committed offsets and the batch is consumed again: the
// inserts are idempotent and the records were never visible.
func (in *Ingest) flush(ctx context.Context, b *batch) error {
	// The processors run while the events are inserted: ClickHouse works
	// on the insert while this process works on the stages. A processor
	// reads only what earlier batches committed (offsets below
	// FirstOffset), so it does not need this batch's rows in ClickHouse;
	// its own inserts wait for the events' insert, and the commit for both.
	// Except the quarantined records (rare): the anomaly rules count a
	// group's quarantined events back from that table (anomaly/quarantine.go).
	if err := retry(ctx, in, "insert", func() error { return in.insertQuarantine(ctx, b) }); err != nil {
		return err
	}
	inserted := make(chan error, 1)
	go func() {
		start := time.Now()
		err := retry(ctx, in, "insert", func() error { return in.insert(ctx, b) })
		if err == nil {
			in.m.insertSecs.Observe(time.Since(start).Seconds())
		}
		inserted <- err
	}()
	outs, procErr := in.process(ctx, b)
	b.t.processed = time.Now()
	if err := <-inserted; err != nil {
		return err
	}
	if procErr != nil {
		return procErr
	}
	b.t.inserted = time.Now()

	recs := make([]*kgo.Record, 0, len(b.dead))
	for _, d := range b.dead {
		recs = append(recs, in.deadLetterRecord(d))
	}
	for i, out := range outs {
		p := in.procs[i]
		for _, ins := range out.Inserts {
			// Columns a slice of a type with no column (a bug in the
			// processor) fail the same way every time: no retry.
			q, n, err := in.stage.query(ins)
			if err != nil {
				return fmt.Errorf("processor %s: %w", p.Name(), err)
			}
			if n == 0 {
				continue
			}
			if err := retry(ctx, in, "process_insert", func() error {
				if err := in.native.do(ctx, q); err != nil {
					return fmt.Errorf("processor %s: insert into %s: %w", p.Name(), ins.Table, err)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		recs = append(recs, out.Records...)
	}
	b.t.staged = time.Now()

	outcome, err := in.commit(ctx, recs)
	if err != nil {
		return err
	}
	b.t.committed = time.Now()
	switch outcome {
	case txnAborted:
		in.m.aborted.Inc()
		in.log.Info("batch transaction aborted (partitions moved); it will be consumed again", "records", len(b.recs))
		return nil
	case txnLost:
		in.m.aborted.Inc()
		return nil // renewSession logged it
	}
	in.m.lastCommit.SetToCurrentTime()
	in.m.records.WithLabelValues("stored").Add(float64(b.rows.len()))
	in.m.records.WithLabelValues("dead_lettered").Add(float64(len(b.dead)))
	for _, d := range b.dead {
		in.m.deadLetters.WithLabelValues(d.class).Inc()
	}
	in.countQuarantined(b)
	in.countLegacyFingerprints(b) // fingerprint.go
	in.m.batches.Inc()
	in.m.batchRows.Observe(float64(len(b.recs)))
	if in.log.Enabled(ctx, slog.LevelDebug) {
		t := b.t
		in.log.Debug("batch committed", "records", len(b.recs),
			"waited", t.start.Sub(b.first), "decode", t.decoded.Sub(t.start),
			"stages", t.processed.Sub(t.decoded), "each_stage", t.procs, "insert_done", t.inserted.Sub(t.decoded),
			"stage_inserts", t.staged.Sub(t.inserted), "commit", t.committed.Sub(t.staged),
			"oldest_age", t.committed.Sub(b.first), "oldest_produced", t.committed.Sub(b.oldest),
			"polled_after", b.polled.Sub(b.oldest))
	}
	return nil
}

// process runs every Processor on the batch, in order; outs[i] is
// in.procs[i]'s output.
func (in *Ingest) process(ctx context.Context, b *batch) ([]Output, error) {
	if len(in.procs) == 0 {
		return nil, nil
	}
	in.applyRevocations()
	pb := &Batch{Events: b.events, Quarantined: b.quarantined, FirstOffset: b.offset, Now: in.now(), ReadCommitted: in.readCommitted}
	outs := make([]Output, len(in.procs))
	b.t.procs = b.t.procs[:0]
	for i, p := range in.procs {
		start := time.Now()
		err := retry(ctx, in, "process", func() error {
			var err error
			outs[i], err = p.Process(ctx, pb)
			if err != nil {
				return fmt.Errorf("processor %s: %w", p.Name(), err)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		b.t.procs = append(b.t.procs, time.Since(start))
	}
	return outs, nil
}

// txnOutcome is how a batch's transaction ended.
type txnOutcome int

const (
	txnCommitted txnOutcome = iota
	txnAborted              // partitions moved, or producing failed: the session rewound
	txnLost                 // the broker could not end it: the session was made again
)

// commit produces recs and commits the consumed offsets in one transaction.
//
// When Begin or End fails because the broker is unreachable, restarted, or
// lost or fenced the transaction (brokerGone), ingest does not stop: no
// error from End is retryable on the same client, and franz-go's maintainer
// says to make the client again (twmb/franz-go#855), so renewSession closes
// the session and makes a new one, with backoff. The batch's rows are in
// ClickHouse and its offsets are not committed (or, if the broker committed
// and only the answer was lost, they are, and nothing is redone): the new
// session consumes from the committed offsets, and the batch's rows are
// inserted again, which the events table collapses. Any other error
// (authorization, configuration) is returned: no retry fixes it.
func (in *Ingest) commit(ctx context.Context, recs []*kgo.Record) (txnOutcome, error) {
	if err := in.sess.Begin(); err != nil {
		return in.txnFailed(ctx, "begin", err)
	}
	var produceErr error
	if len(recs) > 0 {
		if produceErr = in.produce(ctx, recs); ctx.Err() != nil {
			return txnAborted, ctx.Err() // stopping: Close fails what is left
		}
	}
	try := kgo.TryCommit
	if produceErr != nil {
		try = kgo.TryAbort
	}
	committed, err := in.sess.End(ctx, try)
	if err != nil {
		return in.txnFailed(ctx, "end", err)
	}
	in.txnFails = 0
	if produceErr != nil {
		in.log.Warn("producing the batch's records failed; transaction aborted, the batch will be consumed again", "err", produceErr)
		in.m.retries.WithLabelValues("produce").Inc()
		return txnAborted, nil
	}
	if !committed {
		return txnAborted, nil
	}
	return txnCommitted, nil
}

// produce sends recs in the open transaction and waits for them, or for ctx
// to end. A broker that is down makes the wait as long as the outage:
// franz-go keeps a record it sent to a broker that went away until the
// broker answers (an idempotent producer cannot tell whether it was
// written), whatever ctx says, so a stop does not wait for it; Close fails
// what is left.
func (in *Ingest) produce(ctx context.Context, recs []*kgo.Record) error {
	res := make(chan error, 1)
	sess := in.sess
	go func() { res <- sess.ProduceSync(ctx, recs...).FirstErr() }()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// txnFailed handles a failed Begin or End (step): a stop (ctx ended) or an
// error no retry fixes is returned; a broker gone is recovered from by
// renewing the session.
func (in *Ingest) txnFailed(ctx context.Context, step string, err error) (txnOutcome, error) {
	if ctx.Err() != nil {
		return txnLost, ctx.Err()
	}
	if !brokerGone(err) {
		return txnLost, fmt.Errorf("consumers: %s transaction: %w", step, err)
	}
	in.m.retries.WithLabelValues("commit").Inc()
	in.txnFails++
	backoff := min(100*time.Millisecond<<min(in.txnFails-1, 6), 5*time.Second)
	in.log.Warn("batch transaction failed: the Kafka broker is unreachable or lost the transaction; "+
		"the batch is stored in ClickHouse, its offsets are not committed; making a new Kafka session, the batch will be consumed again",
		"step", step, "attempt", in.txnFails, "backoff", backoff, "err", err)
	if err := in.renewSession(ctx, backoff); err != nil {
		return txnLost, err
	}
	return txnLost, nil
}

// leaveBudget bounds how long a session given up waits to leave the group:
// leaving needs the broker, which may be gone. A member that could not
// leave is dropped by the group after its session timeout.
const leaveBudget = 3 * time.Second

// renewSession closes the session and makes a new one with the same options
// (the same transactional id, so the new producer fences the old one and
// aborts any transaction it left open), after waiting backoff. The new
// session joins the group and consumes from the committed offsets once the
// broker is back. It returns an error only when ctx ended, or when the
// options, valid at New, no longer make a client.
func (in *Ingest) renewSession(ctx context.Context, backoff time.Duration) error {
	in.closeSession(ctx)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(backoff):
	}
	sess, err := kgo.NewGroupTransactSession(in.kopts...)
	if err != nil {
		return fmt.Errorf("consumers: kafka client: %w", err)
	}
	in.sess, in.cl = sess, sess.Client()
	return nil
}

// closeSession leaves the group, waiting at most leaveBudget or until ctx
// ends, and closes the session.
func (in *Ingest) closeSession(ctx context.Context) {
	if in.sess == nil {
		return // Run stopped while renewing it
	}
	lctx, cancel := context.WithTimeout(ctx, leaveBudget)
	_ = in.cl.LeaveGroupContext(lctx)
	cancel()
	in.sess.Close()
	in.sess, in.cl = nil, nil
	in.revokedMu.Lock()
	in.owned = nil // a new session is assigned afresh
	in.revokedMu.Unlock()
}

// brokerGone reports whether a failed Begin or End is about the broker:
// unreachable or restarted, out of retries, or the transaction's state lost,
// fenced or aborted on its side. A new session recovers from these once the
// broker is back. Authorization and configuration errors, and anything not
// known to be about the broker, are not.
func brokerGone(err error) bool {
	for _, fatal := range []error{kerr.TransactionalIDAuthorizationFailed, kerr.GroupAuthorizationFailed,
		kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed, kerr.SaslAuthenticationFailed,
		kerr.UnsupportedVersion, kerr.InvalidTransactionTimeout, kerr.FencedInstanceID} {
		if errors.Is(err, fatal) {
			return false // FencedInstanceID: two members were given one instance_id
		}
	}
	var ne net.Error
	if kgo.IsRetryableBrokerErr(err) || errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, kgo.ErrRecordTimeout) || errors.Is(err, kgo.ErrRecordRetries) {
		return true
	}
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		return false
	}
	if ke.Retriable {
		return true // coordinator moving or loading, not enough replicas, timeouts, ...
	}
	switch ke {
	case kerr.ProducerFenced, kerr.InvalidProducerEpoch, kerr.InvalidProducerIDMapping, kerr.UnknownProducerID,
		kerr.InvalidTxnState, kerr.TransactionAbortable, kerr.OperationNotAttempted, kerr.ConcurrentTransactions,
		kerr.TransactionCoordinatorFenced, kerr.UnknownServerError,
		kerr.IllegalGeneration, kerr.UnknownMemberID, kerr.RebalanceInProgress, kerr.StaleMemberEpoch, kerr.GroupIDNotFound:
		return true
	}
	return false
}

// revoked records partitions this member lost; the processors hear of them
// before the next batch (the callback runs on franz-go's goroutine, and
// processors are not safe for concurrent use).
func (in *Ingest) revoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	in.log.Info("partitions revoked", "partitions", lost[in.cfg.Kafka.Topics.Events])
	in.revokedMu.Lock()
	in.revokedPs = append(in.revokedPs, lost[in.cfg.Kafka.Topics.Events]...)
	for _, p := range lost[in.cfg.Kafka.Topics.Events] {
		delete(in.owned, p)
	}
	in.revokedMu.Unlock()
}

// assigned logs the partitions this member was given (in a cooperative
// rebalance, only the new ones) and adds them to those ticks cover.
func (in *Ingest) assigned(_ context.Context, _ *kgo.Client, got map[string][]int32) {
	in.log.Info("partitions assigned", "partitions", got[in.cfg.Kafka.Topics.Events])
	in.revokedMu.Lock()
	if in.owned == nil {
		in.owned = map[int32]bool{}
	}
	for _, p := range got[in.cfg.Kafka.Topics.Events] {
		in.owned[p] = true
	}
	in.revokedMu.Unlock()
}

func (in *Ingest) applyRevocations() {
	in.revokedMu.Lock()
	ps := in.revokedPs
	in.revokedPs = nil
	in.revokedMu.Unlock()
	if len(ps) == 0 {
		return
	}
	for _, p := range in.procs {
		p.PartitionsRevoked(ps)
	}
}

// transactionalID names this member's Kafka transactions. A static member
// keeps its id across restarts, so a restart fences and aborts the
// transaction its previous incarnation left open; otherwise the id is unique
// per process and a dangling transaction expires by the transaction timeout.
func transactionalID(c IngestConfig) string {
	if c.InstanceID != "" {
		return c.Group + "-" + c.InstanceID
	}
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return c.Group + "-" + host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

func (in *Ingest) insert(ctx context.Context, b *batch) error {
	if b.rows.len() > 0 {
		if err := in.native.do(ctx, b.rows.query(in.eventsTable)); err != nil {
			return fmt.Errorf("insert %d events: %w", b.rows.len(), err)
		}
	}
	if len(b.dead) > 0 {
		var (
			topics, classes, fields, reasons, sums []string
			parts                                  []int32
			offsets                                []int64
			sizes                                  []uint32
		)
		for _, d := range b.dead {
			sum := sha256.Sum256(d.rec.Value)
			topics = append(topics, d.rec.Topic)
			parts = append(parts, d.rec.Partition)
			offsets = append(offsets, d.rec.Offset)
			classes = append(classes, d.class)
			fields = append(fields, d.field)
			reasons = append(reasons, in.reasonText(d))
			sizes = append(sizes, uint32(len(d.rec.Value)))
			sums = append(sums, hex.EncodeToString(sum[:]))
		}
		if err := in.send(ctx, Insert{Table: in.dlTable, Columns: deadLetterColumns,
			Values: []any{topics, parts, offsets, classes, fields, reasons, sizes, sums}}); err != nil {
			return fmt.Errorf("insert %d dead letters: %w", len(b.dead), err)
		}
	}
	return nil
}

// send inserts whole columns, once, on the events insert's connection
// (inserts.go).
func (in *Ingest) send(ctx context.Context, ins Insert) error {
	q, n, err := in.stage.query(ins)
	if err != nil || n == 0 {
		return err
	}
	return in.native.do(ctx, q)
}

// deadLetterColumns are the dead_letters columns ingest writes.
var deadLetterColumns = []string{"topic", "partition", "offset", "reason_class", "field", "reason", "raw_bytes", "raw_sha256"}

// nativeConn is the ch-go connection of ingest's inserts. A failed query
// may leave it mid-protocol, so any error closes it and the next query
// (the retry) dials again.
type nativeConn struct {
	opts []ch.Options
	c    *ch.Client
	born time.Time
}

// nativeConnMaxAge replaces a connection this old before its next query,
// as clickhouse-go's pool does (ConnMaxLifetime): a server-side idle
// timeout then never costs a failed insert.
const nativeConnMaxAge = time.Hour

func (n *nativeConn) open(ctx context.Context, opts []ch.Options) error {
	n.opts = opts
	c, err := chstore.DialNative(ctx, opts)
	if err != nil {
		return err
	}
	n.c, n.born = c, time.Now()
	return nil
}

func (n *nativeConn) do(ctx context.Context, q ch.Query) error {
	if n.c != nil && (n.c.IsClosed() || time.Since(n.born) > nativeConnMaxAge) {
		n.close()
	}
	if n.c == nil {
		if err := n.open(ctx, n.opts); err != nil {
			return err
		}
	}
	if err := n.c.Do(ctx, q); err != nil {
		n.close()
		return err
	}
	return nil
}

func (n *nativeConn) close() {
	if n.c != nil {
		_ = n.c.Close()
		n.c = nil
	}
}

// insertSettings apply to every insert ingest makes. optimize_on_insert=0:
// ClickHouse would otherwise run the table engine's merge over each inserted
// block (ReplacingMergeTree: collapse equal sort keys), which cost more than
// half of the server's CPU per event and can find nothing to collapse in a
// batch whose event_ids ingest already made unique; duplicates across
// batches are collapsed by background merges and FINAL, as before.
//
// low_cardinality_allow_in_native_format=0: the server asks for
// LowCardinality columns as plain String and builds the dictionaries
// itself, so every insert (ch-go: columns.go, inserts.go) sends them as
// String columns. (When the inserts went through clickhouse-go, this also
// avoided its LowCardinality append: reflection and an interface-keyed map
// per value.)
var insertSettings = clickhouse.Settings{"optimize_on_insert": 0, "low_cardinality_allow_in_native_format": 0}

// Dead-letter record headers.
const (
	HeaderReason      = "agentrail.reason"
	HeaderReasonClass = "agentrail.reason_class"
	HeaderField       = "agentrail.field"
	HeaderSource      = "agentrail.source" // topic/partition/offset of the original
)

// deadLetterRecord is the dead-letter copy of a rejected record: redacted
// (deadLetterValue), with the reason and where the original is.
func (in *Ingest) deadLetterRecord(d deadLetter) *kgo.Record {
	src := d.rec.Topic + "/" + strconv.Itoa(int(d.rec.Partition)) + "/" + strconv.FormatInt(d.rec.Offset, 10)
	value, hdrs := in.deadLetterValue(d)
	return &kgo.Record{
		Topic: in.cfg.Kafka.Topics.DeadLetter,
		Key:   in.red.r.ScrubBytes(d.rec.Key),
		Value: value,
		Headers: append([]kgo.RecordHeader{
			{Key: HeaderReason, Value: []byte(in.reasonText(d))},
			{Key: HeaderReasonClass, Value: []byte(d.class)},
			{Key: HeaderField, Value: []byte(d.field)},
			{Key: HeaderSource, Value: []byte(src)},
		}, hdrs...),
	}
}

// retry runs fn until it succeeds or ctx ends, backing off from 100ms to 5s.
func retry(ctx context.Context, in *Ingest, stage string, fn func() error) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			if attempt > 1 {
				in.log.Info("recovered", "stage", stage, "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		in.m.retries.WithLabelValues(stage).Inc()
		if attempt == 1 || attempt%10 == 0 {
			in.log.Warn("retrying", "stage", stage, "attempt", attempt, "backoff", backoff, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Close leaves the consumer group (waiting for the broker at most
// leaveBudget, or until ctx ends) and closes the connections. Call it after
// Run returned; it is idempotent.
func (in *Ingest) Close(ctx context.Context) error {
	in.closeOnce.Do(func() {
		in.closeSession(ctx)
		in.native.close()
	})
	return nil
}
