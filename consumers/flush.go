package consumers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/chstore"
)

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
