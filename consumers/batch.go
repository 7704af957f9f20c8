package consumers

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

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
