package consumers

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Ticker is a Processor with work that falls due on ingest's clock rather
// than with an event (correlation's violations waiting for settle_after).
// Between batches, at most every ingest.tick_interval, ingest calls Tick
// with a Batch that carries no events and, as FirstOffset, the committed
// offset of every partition this member owns: a batch with no records,
// starting where the next one will. Its Output goes through the same steps
// as a batch's (ClickHouse inserts, then one Kafka transaction; no offsets
// move). If that transaction does not commit, ingest calls
// PartitionsRevoked for the tick's partitions, so the Ticker rebuilds them
// from ClickHouse before it acts on them again.
//
// A tick costs nothing per record: it runs only between batches, and only
// when its interval has passed.
type Ticker interface {
	Processor
	Tick(ctx context.Context, b *Batch) (Output, error)
}

// tickDeadline is when the next tick falls due; false without Tickers.
func (in *Ingest) tickDeadline() (time.Time, bool) {
	if len(in.tickers) == 0 {
		return time.Time{}, false
	}
	return in.lastTick.Add(in.cfg.Ingest.TickInterval), true
}

// tick runs every Ticker on an empty batch at the committed offsets of the
// owned partitions and commits what they emit (see Ticker). Called between
// batches on Run's goroutine.
func (in *Ingest) tick(ctx context.Context) error {
	in.lastTick = time.Now()
	in.applyRevocations()
	first := in.ownedCommitted()
	if len(first) == 0 {
		return nil
	}
	pb := &Batch{FirstOffset: first, Now: in.now(), ReadCommitted: in.readCommitted}
	var recs []*kgo.Record
	for _, t := range in.tickers {
		var out Output
		if err := retry(ctx, in, "tick", func() error {
			var err error
			out, err = t.Tick(ctx, pb)
			if err != nil {
				return fmt.Errorf("processor %s: tick: %w", t.Name(), err)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, ins := range out.Inserts {
			q, n, err := in.stage.query(ins)
			if err != nil {
				return fmt.Errorf("processor %s: %w", t.Name(), err)
			}
			if n == 0 {
				continue
			}
			if err := retry(ctx, in, "process_insert", func() error {
				if err := in.native.do(ctx, q); err != nil {
					return fmt.Errorf("processor %s: insert into %s: %w", t.Name(), ins.Table, err)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		recs = append(recs, out.Records...)
	}
	if len(recs) == 0 {
		return nil
	}
	outcome, err := in.commit(ctx, recs)
	if err != nil {
		return err
	}
	if outcome != txnCommitted {
		in.m.aborted.Inc()
		ps := make([]int32, 0, len(first))
		for p := range first {
			ps = append(ps, p)
		}
		for _, t := range in.tickers {
			t.PartitionsRevoked(ps)
		}
		in.log.Info("tick transaction did not commit; its partitions are rebuilt before the next tick", "partitions", ps)
		return nil
	}
	in.m.ticks.Inc()
	in.m.lastCommit.SetToCurrentTime()
	return nil
}

// ownedCommitted returns the committed offset of every events partition
// this member owns and has a committed offset for.
func (in *Ingest) ownedCommitted() map[int32]int64 {
	committed := in.cl.CommittedOffsets()[in.cfg.Kafka.Topics.Events]
	in.revokedMu.Lock()
	defer in.revokedMu.Unlock()
	out := make(map[int32]int64, len(in.owned))
	for p := range in.owned {
		if eo, ok := committed[p]; ok && eo.Offset >= 0 {
			out[p] = eo.Offset
		}
	}
	return out
}

// readCommitted calls fn with every record of topic, as a read_committed
// consumer sees it, from the first record stamped at or after since up to
// the partitions' last stable offsets (Batch.ReadCommitted). It uses a
// client of its own, without group or transaction.
func (in *Ingest) readCommitted(ctx context.Context, topic string, since time.Time, fn func(*kgo.Record)) error {
	opts, err := in.cfg.Kafka.Opts()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("consumers: read %s: %w", topic, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("consumers: read %s: offsets after %s: %w", topic, since.UTC().Format(time.RFC3339), err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("consumers: read %s: last stable offsets: %w", topic, err)
	}
	from := map[int32]kgo.Offset{}
	left := map[int32]int64{} // partition -> last offset to read
	starts.Each(func(o kadm.ListedOffset) {
		end, ok := ends.Lookup(topic, o.Partition)
		if ok && o.Offset >= 0 && o.Offset < end.Offset {
			from[o.Partition] = kgo.NewOffset().At(o.Offset)
			left[o.Partition] = end.Offset - 1
		}
	})
	if len(from) == 0 {
		return nil
	}
	rd, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return fmt.Errorf("consumers: read %s: %w", topic, err)
	}
	defer rd.Close()
	// Aborted records and transaction markers are never delivered, so a
	// partition may end before its last offset shows: a fetch that brings
	// nothing for readIdle ends the read.
	for len(left) > 0 {
		pctx, cancel := context.WithTimeout(ctx, readIdle)
		fs := rd.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			last, ok := left[r.Partition]
			if !ok {
				return
			}
			n++
			if r.Offset <= last {
				fn(r)
			}
			if r.Offset >= last {
				delete(left, r.Partition)
			}
		})
		if n == 0 {
			return nil
		}
	}
	return nil
}

// readIdle is how long readCommitted waits for a fetch that brings nothing
// before it takes the topic as read.
const readIdle = 2 * time.Second
