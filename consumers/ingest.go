// Package consumers is agentrail's ingest stage: a Kafka consumer-group
// member that decodes, validates and writes every agent event to ClickHouse,
// and dead-letters what it cannot accept.
//
// Delivery: offsets are committed only after ClickHouse acknowledged the
// batch (and the dead-letter topic acknowledged the rejects), so a crash
// re-delivers at most the uncommitted batch; the events table collapses
// re-delivered events by event_id (see docs/ARCHITECTURE.md). Rebalances are
// held while a batch is in flight, so a partition changes hands only at a
// committed boundary.
//
// Metrics:
//
//	agentrail_ingest_records_total{outcome="stored|dead_lettered|duplicate"}
//	agentrail_ingest_dead_letters_total{reason="oversize|decode|validation"}
//	agentrail_ingest_batches_total
//	agentrail_ingest_batch_rows (histogram)
//	agentrail_ingest_insert_seconds (histogram)
//	agentrail_ingest_retries_total{stage="decode|insert|dead_letter|commit"}
//	agentrail_ingest_last_commit_timestamp_seconds
package consumers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/schemas"
)

// Config configures ingest.
type Config struct {
	Kafka       kafkacfg.Config `yaml:"kafka"`
	ClickHouse  chstore.Config  `yaml:"clickhouse"`
	RegistryURL string          `yaml:"registry_url"`
	Ingest      IngestConfig    `yaml:"ingest"`
}

// IngestConfig holds the ingest stage's own settings.
type IngestConfig struct {
	Group          string        `yaml:"group"`            // consumer group
	BatchRows      int           `yaml:"batch_rows"`       // flush at this many records
	BatchInterval  time.Duration `yaml:"batch_interval"`   // or this long after the batch's first record
	MaxRecordBytes int           `yaml:"max_record_bytes"` // larger records are dead-lettered
	MaxFuture      time.Duration `yaml:"max_future"`       // event_time ahead of now (clock skew)
	MaxPast        time.Duration `yaml:"max_past"`         // event_time behind now (late, replayed)
	// SessionTimeout is how long the group waits for a silent member
	// (a crashed process) before giving its partitions to others.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// InstanceID, if set, makes this a static group member: a restarted
	// process with the same id takes its partitions back at once, without
	// a rebalance (use the pod or host name).
	InstanceID string `yaml:"instance_id"`
}

// Defaults fills unset fields, in one place.
func (c *Config) Defaults() {
	c.Kafka.Defaults()
	c.ClickHouse.Defaults()
	in := &c.Ingest
	if in.Group == "" {
		in.Group = "agentrail-ingest"
	}
	if in.BatchRows == 0 {
		in.BatchRows = 20000
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
}

// Validate checks the settings without I/O; call Defaults first.
func (c *Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if err := c.ClickHouse.Validate(); err != nil {
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
	}
	return nil
}

// Ingest consumes agent events into ClickHouse.
type Ingest struct {
	cfg       Config
	log       *slog.Logger
	cl        *kgo.Client
	ch        driver.Conn
	dec       *schemas.Decoder
	now       func() time.Time
	m         metrics
	done      chan struct{}
	closeOnce sync.Once

	procs     []Processor
	lim       schemas.Limits
	insertSQL string
	dlSQL     string
}

type metrics struct {
	records     *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	batches     prometheus.Counter
	batchRows   prometheus.Histogram
	insertSecs  prometheus.Histogram
	retries     *prometheus.CounterVec
	lastCommit  prometheus.Gauge
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
			Name: "agentrail_ingest_last_commit_timestamp_seconds", Help: "Unix time of the last offset commit.",
		}),
	}
	for _, c := range []prometheus.Collector{m.records, m.deadLetters, m.batches, m.batchRows, m.insertSecs, m.retries, m.lastCommit} {
		if err := reg.Register(c); err != nil {
			return m, fmt.Errorf("consumers: register metrics: %w", err)
		}
	}
	return m, nil
}

// Option adjusts an Ingest for tests.
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
	kopts, err := cfg.Kafka.Opts()
	if err != nil {
		return nil, err
	}
	kopts = append(kopts,
		kgo.ConsumerGroup(cfg.Ingest.Group),
		kgo.ConsumeTopics(cfg.Kafka.Topics.Events),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxBytes(32<<20),
		kgo.SessionTimeout(cfg.Ingest.SessionTimeout),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)
	if cfg.Ingest.InstanceID != "" {
		kopts = append(kopts, kgo.InstanceID(cfg.Ingest.InstanceID))
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("consumers: kafka client: %w", err)
	}
	ch, err := chstore.Open(ctx, cfg.ClickHouse)
	if err != nil {
		cl.Close()
		return nil, err
	}
	db := cfg.ClickHouse.Database
	in := &Ingest{
		cfg: cfg, log: log, cl: cl, ch: ch, dec: dec, now: time.Now, m: m, done: make(chan struct{}),
		lim:       schemas.Limits{MaxFuture: cfg.Ingest.MaxFuture, MaxPast: cfg.Ingest.MaxPast, MaxString: schemas.DefaultLimits.MaxString},
		insertSQL: "INSERT INTO " + db + ".events (" + joinColumns(insertColumns) + ")",
		dlSQL:     "INSERT INTO " + db + ".dead_letters (topic, partition, offset, reason_class, field, reason, raw_bytes, raw_sha256)",
	}
	for _, o := range opts {
		o(in)
	}
	return in, nil
}

func joinColumns(cols []string) string {
	s := ""
	for i, c := range cols {
		if i > 0 {
			s += ", "
		}
		s += c
	}
	return s
}

// batch is what one poll-accumulate-flush cycle carries.
type batch struct {
	rows  eventColumns
	seen  map[string]struct{} // event ids in this batch
	dead  []deadLetter
	count int // records consumed
	first time.Time
}

type deadLetter struct {
	rec   *kgo.Record
	class string // oversize, decode, validation
	field string
	err   error
}

// Run consumes until ctx ends. It returns nil on a clean stop; offsets of a
// batch not yet written are not committed, so it is re-delivered.
func (in *Ingest) Run(ctx context.Context) error {
	defer close(in.done)
	b := &batch{seen: make(map[string]struct{})}
	for {
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if b.count > 0 {
			pollCtx, cancel = context.WithDeadline(ctx, b.first.Add(in.cfg.Ingest.BatchInterval))
		}
		fetches := in.cl.PollRecords(pollCtx, in.cfg.Ingest.BatchRows-b.count)
		cancel()
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				in.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		var err error
		fetches.EachRecord(func(r *kgo.Record) {
			if err == nil {
				err = in.accept(ctx, b, r)
			}
		})
		if err != nil {
			return err // ctx ended while a decode was being retried
		}
		if b.count == 0 {
			in.cl.AllowRebalance()
			continue
		}
		if b.count < in.cfg.Ingest.BatchRows && in.now().Before(b.first.Add(in.cfg.Ingest.BatchInterval)) {
			continue
		}
		if err := in.flush(ctx, b); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		b = &batch{seen: make(map[string]struct{}, len(b.seen))}
		in.cl.AllowRebalance()
	}
}

// accept decodes and validates one record into the batch or its dead letters.
func (in *Ingest) accept(ctx context.Context, b *batch, r *kgo.Record) error {
	if b.count == 0 {
		b.first = in.now()
	}
	b.count++
	if len(r.Value) > in.cfg.Ingest.MaxRecordBytes {
		b.dead = append(b.dead, deadLetter{rec: r, class: "oversize",
			err: fmt.Errorf("record is %d bytes, larger than ingest.max_record_bytes %d", len(r.Value), in.cfg.Ingest.MaxRecordBytes)})
		return nil
	}
	var e schemas.Event
	var decErr error
	err := retry(ctx, in, "decode", func() error {
		decErr = in.dec.Decode(ctx, r.Value, &e)
		if decErr != nil && !errors.Is(decErr, schemas.ErrMalformed) {
			return decErr // transient: the schema registry did not answer
		}
		return nil
	})
	if err != nil {
		return err
	}
	if decErr != nil {
		b.dead = append(b.dead, deadLetter{rec: r, class: "decode", err: decErr})
		return nil
	}
	if err := schemas.Validate(&e, in.now(), in.lim); err != nil {
		var ve *schemas.ValidationError
		field := ""
		if errors.As(err, &ve) {
			field = ve.Field
		}
		b.dead = append(b.dead, deadLetter{rec: r, class: "validation", field: field, err: err})
		return nil
	}
	if _, dup := b.seen[e.EventID]; dup {
		in.m.records.WithLabelValues("duplicate").Inc()
		return nil
	}
	b.seen[e.EventID] = struct{}{}
	b.rows.add(&e, r.Partition, r.Offset)
	return nil
}

// flush makes the batch durable, then commits its offsets: dead letters to
// their topic, rows to ClickHouse, offsets to Kafka, in that order. Each step
// is retried with backoff until it succeeds or ctx ends; while it retries no
// more records are polled, so memory stays bounded by one batch.
func (in *Ingest) flush(ctx context.Context, b *batch) error {
	if len(b.dead) > 0 {
		recs := make([]*kgo.Record, len(b.dead))
		for i, d := range b.dead {
			recs[i] = in.deadLetterRecord(d)
		}
		if err := retry(ctx, in, "dead_letter", func() error {
			return in.cl.ProduceSync(ctx, recs...).FirstErr()
		}); err != nil {
			return err
		}
	}
	start := time.Now()
	if err := retry(ctx, in, "insert", func() error { return in.insert(ctx, b) }); err != nil {
		return err
	}
	in.m.insertSecs.Observe(time.Since(start).Seconds())
	// A commit can fail for good when the group moved on (the member was
	// fenced); the batch is then re-delivered to the new owner and collapsed
	// by event_id, so a bounded number of attempts is enough.
	err := retryN(ctx, in, "commit", 5, func() error { return in.cl.CommitUncommittedOffsets(ctx) })
	if err != nil && ctx.Err() == nil {
		in.log.Warn("offset commit failed; the batch will be re-delivered and deduplicated", "err", err)
	} else if err == nil {
		in.m.lastCommit.SetToCurrentTime()
	}
	stored := b.rows.len()
	in.m.records.WithLabelValues("stored").Add(float64(stored))
	in.m.records.WithLabelValues("dead_lettered").Add(float64(len(b.dead)))
	for _, d := range b.dead {
		in.m.deadLetters.WithLabelValues(d.class).Inc()
	}
	in.m.batches.Inc()
	in.m.batchRows.Observe(float64(b.count))
	return nil
}

func (in *Ingest) insert(ctx context.Context, b *batch) error {
	if b.rows.len() > 0 {
		if err := in.send(ctx, in.insertSQL, b.rows.values()); err != nil {
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
			reasons = append(reasons, d.err.Error())
			sizes = append(sizes, uint32(len(d.rec.Value)))
			sums = append(sums, hex.EncodeToString(sum[:]))
		}
		if err := in.send(ctx, in.dlSQL, []any{topics, parts, offsets, classes, fields, reasons, sizes, sums}); err != nil {
			return fmt.Errorf("insert %d dead letters: %w", len(b.dead), err)
		}
	}
	return nil
}

// send inserts whole columns in one native batch.
func (in *Ingest) send(ctx context.Context, query string, cols []any) error {
	batch, err := in.ch.PrepareBatch(ctx, query)
	if err != nil {
		return err
	}
	for i, col := range cols {
		if err := batch.Column(i).Append(col); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return batch.Send()
}

// Dead-letter record headers.
const (
	HeaderReason      = "agentrail.reason"
	HeaderReasonClass = "agentrail.reason_class"
	HeaderField       = "agentrail.field"
	HeaderSource      = "agentrail.source" // topic/partition/offset of the original
)

func (in *Ingest) deadLetterRecord(d deadLetter) *kgo.Record {
	src := d.rec.Topic + "/" + strconv.Itoa(int(d.rec.Partition)) + "/" + strconv.FormatInt(d.rec.Offset, 10)
	return &kgo.Record{
		Topic: in.cfg.Kafka.Topics.DeadLetter,
		Key:   d.rec.Key,
		Value: d.rec.Value,
		Headers: []kgo.RecordHeader{
			{Key: HeaderReason, Value: []byte(d.err.Error())},
			{Key: HeaderReasonClass, Value: []byte(d.class)},
			{Key: HeaderField, Value: []byte(d.field)},
			{Key: HeaderSource, Value: []byte(src)},
		},
	}
}

// retry runs fn until it succeeds or ctx ends, backing off from 100ms to 5s.
func retry(ctx context.Context, in *Ingest, stage string, fn func() error) error {
	return retryN(ctx, in, stage, 0, fn)
}

// retryN is retry with at most n attempts (0: unbounded).
func retryN(ctx context.Context, in *Ingest, stage string, n int, fn func() error) error {
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
		if n > 0 && attempt >= n {
			return err
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

// Close leaves the consumer group and closes the connections. Call it after
// Run returned; it is idempotent.
func (in *Ingest) Close(ctx context.Context) error {
	in.closeOnce.Do(func() {
		in.cl.CloseAllowingRebalance()
		_ = in.ch.Close()
	})
	return nil
}
