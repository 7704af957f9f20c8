package consumers

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/schemas"
)

// Processor is a stage that runs inside ingest on every batch: trace
// correlation and anomaly rules plug in here, so they see each event exactly
// when it becomes durable, and what they emit is committed with the batch.
//
// For each batch, ingest:
//  1. inserts the batch's events into ClickHouse;
//  2. calls every Processor's Process, in order;
//  3. applies their Inserts to ClickHouse (retried until they succeed, so
//     they must be idempotent: a ReplacingMergeTree keyed on the identity of
//     what they record);
//  4. produces their Records and commits the batch's offsets in one Kafka
//     transaction, so a read_committed consumer sees each record exactly
//     once, even when ingest crashes and redoes the batch.
//
// A crash anywhere before 4 redoes the whole batch, so Process must return
// the same output for the same batch and the same prior state. Prior state is
// what earlier batches committed: the events of each partition at offsets
// below Batch.FirstOffset[partition]. A Processor that keeps state in memory
// rebuilds it from ClickHouse by that rule (ReadEvents, PriorSQL) when it
// meets a trace (or group) it does not know, and forgets partitions on
// PartitionsRevoked.
type Processor interface {
	// Name identifies the processor in logs and metrics.
	Name() string
	// Process handles one batch. An error is retried with the whole batch;
	// return one only for transient failures (ClickHouse unreachable).
	Process(ctx context.Context, b *Batch) (Output, error)
	// PartitionsRevoked tells the processor that this member no longer owns
	// these partitions of the events topic.
	PartitionsRevoked(partitions []int32)
}

// Batch is what a Processor sees: the batch's accepted events, each once,
// and the events it quarantined (failed signature verification; not in
// Events, not stored as genuine).
type Batch struct {
	Events      []Accepted
	Quarantined []Quarantined
	// FirstOffset is, per partition of the events topic, the offset of the
	// first record in this batch: everything below it was committed by
	// earlier batches.
	FirstOffset map[int32]int64
	// Now is ingest's clock for this batch (injectable in tests).
	Now time.Time
	// ReadCommitted calls fn with every record of topic a read_committed
	// consumer sees, from the first stamped at or after since up to the
	// last stable offsets: a processor restoring partitions asks it whether
	// records a tick emitted were committed (see Ticker). Nil outside
	// ingest.
	ReadCommitted func(ctx context.Context, topic string, since time.Time, fn func(*kgo.Record)) error
}

// Accepted is a validated event with its place in the events topic.
type Accepted struct {
	schemas.Event
	Partition int32
	Offset    int64
}

// Output is what a Processor asks ingest to make durable with the batch.
type Output struct {
	Inserts []Insert
	Records []*kgo.Record
}

// Insert is one columnar insert into ClickHouse: Values[i] is the column
// Columns[i] as a slice, all of the same length.
type Insert struct {
	Table   string // database-qualified
	Columns []string
	Values  []any
}
