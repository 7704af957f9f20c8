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
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/schemas"
)

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
