package ledger

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/kafkacfg"
)

// Deps are what a Ledger writes to and reads from.
type Deps struct {
	Kafka    kafkacfg.Config // brokers and topic names (events, ledger)
	Conn     driver.Conn     // ClickHouse
	Database string
	Group    string // the ingest consumer group, whose committed offsets bound sealing
}

// Ledger appends signed entries to the chain: seals (Run, Seal) and
// retention records (BeginChange). One Ledger serializes its own appends;
// across processes a Kafka transactional id fences all but the newest
// writer, so the chain never forks (a fenced writer re-reads the head and
// retries).
type Ledger struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	key   ed25519.PrivateKey
	keyID string
	now   func() time.Time
	m     metrics
	// hook, if set, runs at named points of an append ("committed": on the
	// topic, not yet in the table); an error aborts there, as a crash would.
	hook func(point string) error

	mu       sync.Mutex
	cl       *kgo.Client // transactional producer; nil until (re)connected
	head     *Entry      // last entry; nil until synced
	frontier map[int32]int64
	closed   bool
}

type metrics struct {
	entries  *prometheus.CounterVec
	rows     prometheus.Counter
	lastSeal prometheus.Gauge
	errors   prometheus.Counter
}

// Option adjusts a Ledger.
type Option func(*Ledger)

// WithClock replaces time.Now for entry times.
func WithClock(now func() time.Time) Option { return func(l *Ledger) { l.now = now } }

// WithHook runs fn at named points of an append (tests inject crashes).
func WithHook(fn func(point string) error) Option { return func(l *Ledger) { l.hook = fn } }

// WithKey signs with k instead of the key the config names.
func WithKey(k ed25519.PrivateKey) Option { return func(l *Ledger) { l.key = k } }

// New returns a Ledger. It needs the signing key: without one it refuses to
// start (an unsigned chain could be rewritten by anyone who can write to
// ClickHouse and Kafka).
func New(cfg Config, deps Deps, reg prometheus.Registerer, log *slog.Logger, opts ...Option) (*Ledger, error) {
	cfg.Defaults()
	if deps.Conn == nil || deps.Database == "" || deps.Group == "" {
		return nil, errors.New("ledger: a ClickHouse connection, database and ingest group are required")
	}
	deps.Kafka.Defaults()
	l := &Ledger{cfg: cfg, deps: deps, log: log, now: time.Now}
	for _, o := range opts {
		o(l)
	}
	if l.key == nil {
		k, err := cfg.PrivateKey()
		if err != nil {
			return nil, err
		}
		l.key = k
	}
	l.keyID = KeyID(l.key.Public().(ed25519.PublicKey))
	l.m = metrics{
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentrail_ledger_entries_total",
			Help: "Chain entries appended, by kind."}, []string{"kind"}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{Name: "agentrail_ledger_sealed_rows_total",
			Help: "Event rows sealed."}),
		lastSeal: prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentrail_ledger_last_seal_timestamp_seconds",
			Help: "When the last seal was appended."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "agentrail_ledger_errors_total",
			Help: "Seal or append attempts that failed (retried at the next interval)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{l.m.entries, l.m.rows, l.m.lastSeal, l.m.errors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("ledger: register metrics: %w", err)
			}
		}
	}
	return l, nil
}

// KeyID is the id of the key this Ledger signs with.
func (l *Ledger) KeyID() string { return l.keyID }

// Close releases the Kafka client. Idempotent.
func (l *Ledger) Close(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.disconnect()
	return nil
}

func (l *Ledger) disconnect() {
	if l.cl != nil {
		l.cl.Close()
		l.cl = nil
	}
	l.head = nil
}

func (l *Ledger) topic() string { return l.deps.Kafka.Topics.Ledger }

// connect makes this process the chain's writer: a transactional producer
// whose id is shared by every writer of the database (initializing it
// fences the others and aborts their open transaction), then sync. Callers
// hold mu.
func (l *Ledger) connect(ctx context.Context) error {
	if l.closed {
		return errors.New("ledger: closed")
	}
	if l.cl != nil && l.head != nil {
		return nil
	}
	l.disconnect()
	opts, err := l.deps.Kafka.Opts()
	if err != nil {
		return err
	}
	opts = append(opts,
		kgo.TransactionalID("agentrail-ledger-"+l.deps.Database),
		kgo.TransactionTimeout(30*time.Second),
		kgo.DefaultProduceTopic(l.topic()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("ledger: kafka client: %w", err)
	}
	if err := kafkacfg.EnsureTopics(ctx, cl, 1, l.topic()); err != nil {
		cl.Close()
		return err
	}
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		return fmt.Errorf("ledger: initialize transactional producer: %w", err)
	}
	l.cl = cl
	if err := l.sync(ctx); err != nil {
		l.disconnect()
		return err
	}
	return nil
}

// sync brings the table and the topic to the same head. An entry on the
// topic and not in the table (a writer stopped between the two) is copied
// into the table; one in the table and not on the topic is produced again.
// Two different entries with one seq are a fork: sync refuses to go on.
func (l *Ledger) sync(ctx context.Context) error {
	tableHead, err := tableHead(ctx, l.deps.Conn, l.deps.Database)
	if err != nil {
		return err
	}
	var from uint64 = 1
	if tableHead != nil {
		from = tableHead.Seq
	}
	base, err := l.deps.Kafka.Opts()
	if err != nil {
		return err
	}
	topicTail, err := readTopicFrom(ctx, kadm.NewClient(l.cl), base, l.topic(), from)
	if err != nil {
		return err
	}
	head := tableHead
	for _, e := range topicTail {
		switch {
		case head != nil && e.Seq <= head.Seq:
			if e.Seq == head.Seq && e.Hash != head.Hash {
				return fmt.Errorf("ledger: fork at seq %d: the table and the topic hold different entries; run agentrail verify", e.Seq)
			}
			continue
		case (head == nil && e.Seq != 1) || (head != nil && (e.Seq != head.Seq+1 || e.PrevHash != head.Hash)):
			return fmt.Errorf("ledger: the topic's entry %d does not follow the head (seq %d); run agentrail verify", e.Seq, seqOf(head))
		}
		if err := l.insert(ctx, e); err != nil {
			return err
		}
		l.log.Info("ledger: completed an entry the table was missing", "seq", e.Seq)
		head = e
	}
	topicMax := uint64(0)
	if n := len(topicTail); n > 0 {
		topicMax = topicTail[n-1].Seq
	}
	if head != nil && topicMax < head.Seq {
		missing, err := readTable(ctx, l.deps.Conn, l.deps.Database, topicMax+1, head.Seq)
		if err != nil {
			return err
		}
		if err := l.produce(ctx, missing...); err != nil {
			return err
		}
		l.log.Info("ledger: produced entries the topic was missing", "from", topicMax+1, "to", head.Seq)
	}
	l.head = head
	l.frontier, err = lastFrontier(ctx, l.deps.Conn, l.deps.Database)
	return err
}

func seqOf(e *Entry) uint64 {
	if e == nil {
		return 0
	}
	return e.Seq
}

// hookError is a test hook's stop: a crash, which nothing retries.
type hookError struct{ error }

func (h hookError) Unwrap() error { return h.error }

// append adds one entry after the head. Callers hold mu.
func (l *Ledger) append(ctx context.Context, kind string, body any) (*Entry, error) {
	if err := l.connect(ctx); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("ledger: encode %s body: %w", kind, err)
	}
	e := &Entry{Seq: 1, Kind: kind, At: l.now(), PrevHash: genesis, Body: string(raw)}
	if l.head != nil {
		e.Seq, e.PrevHash = l.head.Seq+1, l.head.Hash
		if !e.At.After(l.head.At) {
			e.At = l.head.At.Add(time.Microsecond) // entry times never go back
		}
	}
	e.seal(l.key, l.keyID)
	if err := l.produce(ctx, e); err != nil {
		l.disconnect() // fenced or broken: the next append re-reads the head
		return nil, err
	}
	if l.hook != nil {
		if err := l.hook("committed"); err != nil {
			l.disconnect()
			return nil, hookError{err}
		}
	}
	if err := l.insert(ctx, e); err != nil {
		l.disconnect() // the next sync copies it from the topic
		return nil, err
	}
	l.head = e
	l.m.entries.WithLabelValues(kind).Inc()
	return e, nil
}

// produce writes entries to the topic in one transaction.
func (l *Ledger) produce(ctx context.Context, es ...*Entry) error {
	if len(es) == 0 {
		return nil
	}
	if err := l.cl.BeginTransaction(); err != nil {
		return fmt.Errorf("ledger: begin transaction: %w", err)
	}
	recs := make([]*kgo.Record, len(es))
	for i, e := range es {
		v, err := json.Marshal(e)
		if err != nil {
			return err
		}
		recs[i] = &kgo.Record{Topic: l.topic(), Partition: 0, Key: []byte(strconv.FormatUint(e.Seq, 10)), Value: v}
	}
	perr := l.cl.ProduceSync(ctx, recs...).FirstErr()
	try := kgo.TryCommit
	if perr != nil {
		try = kgo.TryAbort
	}
	eerr := l.cl.EndTransaction(ctx, try)
	if err := errors.Join(perr, eerr); err != nil {
		return fmt.Errorf("ledger: produce to %s: %w", l.topic(), err)
	}
	return nil
}

// insert writes an entry into the ledger table, and its ranges' new states
// into ledger_ranges.
func (l *Ledger) insert(ctx context.Context, e *Entry) error {
	db := l.deps.Database
	// A native batch, so the entry time keeps its microseconds.
	eb, err := l.deps.Conn.PrepareBatch(ctx, `INSERT INTO `+db+`.ledger (seq, kind, at, prev_hash, entry_hash, key_id, signature, body)`)
	if err != nil {
		return fmt.Errorf("ledger: insert entry %d: %w", e.Seq, err)
	}
	if err := eb.Append(e.Seq, e.Kind, e.At, e.PrevHash, e.Hash, e.KeyID, e.Signature, e.Body); err != nil {
		_ = eb.Abort()
		return fmt.Errorf("ledger: insert entry %d: %w", e.Seq, err)
	}
	if err := eb.Send(); err != nil {
		return fmt.Errorf("ledger: insert entry %d: %w", e.Seq, err)
	}
	groups, err := rangesOf(e)
	if err != nil {
		return err
	}
	b, err := l.deps.Conn.PrepareBatch(ctx, `INSERT INTO `+db+`.ledger_ranges (kafka_partition, offset_from, offset_to, seq, kind, rows, digest, columns, at)`)
	if err != nil {
		return fmt.Errorf("ledger: index entry %d: %w", e.Seq, err)
	}
	n := 0
	for _, g := range groups {
		for _, r := range g.Ranges {
			if err := b.Append(r.Partition, r.From, r.To, e.Seq, e.Kind, r.Rows, r.Digest, g.Columns, e.At); err != nil {
				_ = b.Abort()
				return fmt.Errorf("ledger: index entry %d: %w", e.Seq, err)
			}
			n++
		}
	}
	if n == 0 {
		return b.Abort()
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("ledger: index entry %d: %w", e.Seq, err)
	}
	return nil
}

// rangeGroup is ranges hashed over one column list.
type rangeGroup struct {
	Columns []string
	Ranges  []Range
}

// rangesOf returns the new range states an entry sets.
func rangesOf(e *Entry) ([]rangeGroup, error) {
	switch e.Kind {
	case KindSeal:
		var b SealBody
		if err := json.Unmarshal([]byte(e.Body), &b); err != nil {
			return nil, fmt.Errorf("ledger: entry %d: seal body: %w", e.Seq, err)
		}
		return []rangeGroup{{b.Columns, b.Ranges}}, nil
	case KindRetention:
		var b RetentionBody
		if err := json.Unmarshal([]byte(e.Body), &b); err != nil {
			return nil, fmt.Errorf("ledger: entry %d: retention body: %w", e.Seq, err)
		}
		var out []rangeGroup
		for _, g := range b.Groups {
			rg := rangeGroup{Columns: g.Columns}
			for _, r := range g.Ranges {
				rg.Ranges = append(rg.Ranges, r.After)
			}
			out = append(out, rg)
		}
		return out, nil
	}
	return nil, fmt.Errorf("ledger: entry %d: unknown kind %q", e.Seq, e.Kind)
}

const entryColumns = "seq, kind, at, prev_hash, entry_hash, key_id, signature, body"

func scanEntry(rows driver.Rows) (*Entry, error) {
	var e Entry
	if err := rows.Scan(&e.Seq, &e.Kind, &e.At, &e.PrevHash, &e.Hash, &e.KeyID, &e.Signature, &e.Body); err != nil {
		return nil, err
	}
	e.At = e.At.UTC()
	return &e, nil
}

func tableHead(ctx context.Context, conn driver.Conn, db string) (*Entry, error) {
	es, err := queryEntries(ctx, conn, "SELECT "+entryColumns+" FROM "+db+".ledger ORDER BY seq DESC LIMIT 1")
	if err != nil || len(es) == 0 {
		return nil, err
	}
	return es[0], nil
}

func readTable(ctx context.Context, conn driver.Conn, db string, from, to uint64) ([]*Entry, error) {
	return queryEntries(ctx, conn, "SELECT "+entryColumns+" FROM "+db+".ledger WHERE seq BETWEEN ? AND ? ORDER BY seq LIMIT 1 BY seq", from, to)
}

func queryEntries(ctx context.Context, conn driver.Conn, q string, args ...any) ([]*Entry, error) {
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("ledger: read ledger table: %w", err)
	}
	defer rows.Close()
	var out []*Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("ledger: read ledger table: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// lastFrontier is the sealed frontier the newest seal records.
func lastFrontier(ctx context.Context, conn driver.Conn, db string) (map[int32]int64, error) {
	es, err := queryEntries(ctx, conn, "SELECT "+entryColumns+" FROM "+db+".ledger WHERE kind = 'seal' ORDER BY seq DESC LIMIT 1")
	if err != nil {
		return nil, err
	}
	f := map[int32]int64{}
	if len(es) == 0 {
		return f, nil
	}
	var b SealBody
	if err := json.Unmarshal([]byte(es[0].Body), &b); err != nil {
		return nil, fmt.Errorf("ledger: entry %d: seal body: %w", es[0].Seq, err)
	}
	for _, pf := range b.Frontier {
		f[pf.Partition] = pf.Offset
	}
	return f, nil
}

// readTopicFrom reads the ledger topic's committed entries with seq >= from.
// It starts near the end and steps back until it reaches seq from (or the
// start), so a restart reads a few records, not the whole chain.
func readTopicFrom(ctx context.Context, adm *kadm.Client, base []kgo.Opt, topic string, from uint64) ([]*Entry, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("ledger: list end offsets of %s: %w", topic, err)
	}
	o, ok := ends.Lookup(topic, 0)
	if !ok || o.Err != nil {
		return nil, fmt.Errorf("ledger: end offset of %s: %v", topic, o.Err)
	}
	end := o.Offset
	back := int64(64)
	for {
		start := max(0, end-back)
		es, err := ReadTopic(ctx, base, topic, start, end)
		if err != nil {
			return nil, err
		}
		if start == 0 || (len(es) > 0 && es[0].Seq <= from) {
			out := es[:0]
			for _, e := range es {
				if e.Seq >= from {
					out = append(out, e)
				}
			}
			return out, nil
		}
		back *= 4
	}
}

// ReadTopic reads the committed entries at offsets [start, end) of the
// ledger topic's partition 0 (end from ListEndOffsets), with a client made
// from base (kafkacfg options, not transactional).
func ReadTopic(ctx context.Context, base []kgo.Opt, topic string, start, end int64) ([]*Entry, error) {
	if end <= start {
		return nil, nil
	}
	opts := append(append([]kgo.Opt(nil), base...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(start)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("ledger: kafka reader: %w", err)
	}
	defer cl.Close()
	var out []*Entry
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			return nil, fmt.Errorf("ledger: read %s: %w", topic, ferr)
		}
		n, last := 0, int64(-1)
		var perr error
		fs.EachRecord(func(r *kgo.Record) {
			n++
			last = r.Offset
			var e Entry
			if err := json.Unmarshal(r.Value, &e); err != nil {
				perr = fmt.Errorf("ledger: %s offset %d: not a ledger entry: %w", topic, r.Offset, err)
				return
			}
			e.At = e.At.UTC()
			out = append(out, &e)
		})
		if perr != nil {
			return nil, perr
		}
		// The last transaction's marker is at end-1, its record at end-2;
		// a quiet second means the rest are markers or aborted records.
		if n == 0 || last >= end-2 {
			break
		}
	}
	return out, nil
}
