package ledger

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// PartitionOffset is one partition's sealed end.
type PartitionOffset struct {
	Partition int32 `json:"p"`
	Offset    int64 `json:"o"`
}

// SealBody is a seal entry's content: the ranges it seals, each partition's
// sealed end after it, and the columns the row hashes cover.
type SealBody struct {
	Topic    string            `json:"topic"`
	Group    string            `json:"group"`
	Columns  []string          `json:"columns"`
	Frontier []PartitionOffset `json:"frontier"`
	Ranges   []Range           `json:"ranges"`
}

// maxBlocks bounds one seal's work per partition; a backlog takes several
// seals, appended back to back.
const maxBlocks = 16

// SealResult counts what Seal appended.
type SealResult struct {
	Entries int
	Ranges  int
	Rows    uint64
	Skipped string // why nothing was sealed, if something was due
}

// Run seals every Interval until ctx ends. Failures are logged, counted and
// retried at the next interval; what was not sealed stays due.
func (l *Ledger) Run(ctx context.Context) error {
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		if res, err := l.Seal(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			l.m.errors.Inc()
			l.log.Warn("ledger: seal failed; retrying at the next interval", "err", err)
		} else if res.Entries > 0 {
			l.log.Info("ledger: sealed", "entries", res.Entries, "ranges", res.Ranges, "rows", res.Rows, "head", l.Head())
		} else if res.Skipped != "" {
			l.log.Info("ledger: seal skipped", "reason", res.Skipped)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Head returns the seq of the last entry this Ledger knows of.
func (l *Ledger) Head() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return seqOf(l.head)
}

// Seal seals, per partition of the events topic, the offsets from the sealed
// end up to the ingest group's committed offset (rows below it are durable),
// appending as many seal entries as that takes.
func (l *Ledger) Seal(ctx context.Context) (SealResult, error) {
	var res SealResult
	retried := false
	for {
		more, err := l.sealOnce(ctx, &res)
		var crash hookError
		if err != nil && !retried && ctx.Err() == nil && !errors.As(err, &crash) {
			// Most often another writer (a retention run) fenced this one:
			// the next try takes over again with the head re-read.
			retried = true
			l.log.Info("ledger: seal failed; retrying once", "err", err)
			continue
		}
		if err != nil || !more {
			return res, err
		}
	}
}

func (l *Ledger) sealOnce(ctx context.Context, res *SealResult) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.connect(ctx); err != nil {
		return false, err
	}
	committed, err := l.committed(ctx)
	if err != nil {
		return false, err
	}
	var due []span
	for p, c := range committed {
		if f := l.frontier[p]; c > f {
			due = append(due, span{p, f, c})
		}
	}
	if len(due) == 0 {
		return false, nil
	}
	// A retention run in another process changes rows it then records:
	// sealing meanwhile could seal a state it is about to change.
	if running, err := l.retentionRunning(ctx); err != nil {
		return false, err
	} else if running {
		res.Skipped = "a retention run is in progress"
		return false, nil
	}
	sort.Slice(due, func(i, j int) bool { return due[i].p < due[j].p })
	cols, err := Columns(ctx, l.deps.Conn, l.deps.Database)
	if err != nil {
		return false, err
	}
	first, err := l.firstOffsets(ctx, due)
	if err != nil {
		return false, err
	}
	var pieces []Range
	newF := map[int32]int64{}
	more := false
	for _, s := range due {
		start, end := s.from, s.to
		m, any := first[s.p]
		if !any {
			// No row at all: one empty range asserts that none appears.
			pieces = append(pieces, Range{Partition: s.p, From: start, To: end})
			newF[s.p] = end
			continue
		}
		if b := m - m%BlockSize; b > start {
			pieces = append(pieces, Range{Partition: s.p, From: start, To: b})
			start = b
		}
		if limit := start - start%BlockSize + maxBlocks*BlockSize; end > limit {
			end, more = limit, true
		}
		for from := start; from < end; {
			to := min(end, from-from%BlockSize+BlockSize)
			pieces = append(pieces, Range{Partition: s.p, From: from, To: to})
			from = to
		}
		newF[s.p] = end
	}
	states, err := computeStates(ctx, l.deps.Conn, l.deps.Database, cols, pieces, "")
	if err != nil {
		return false, err
	}
	body := SealBody{Topic: l.deps.Kafka.Topics.Events, Group: l.deps.Group, Columns: cols}
	var rows uint64
	for _, pc := range pieces {
		r := states[pc.key()]
		rows += r.Rows
		// Adjacent empty ranges become one (an empty range's digest does
		// not depend on its bounds).
		if n := len(body.Ranges); n > 0 && r.Rows == 0 {
			if prev := &body.Ranges[n-1]; prev.Partition == r.Partition && prev.Rows == 0 && prev.To == r.From {
				prev.To = r.To
				continue
			}
		}
		body.Ranges = append(body.Ranges, r)
	}
	frontier := map[int32]int64{}
	for p, o := range l.frontier {
		frontier[p] = o
	}
	for p, o := range newF {
		frontier[p] = o
	}
	for p := range committed {
		if _, ok := frontier[p]; !ok {
			frontier[p] = 0 // sealed, so far, up to its start
		}
	}
	for p, o := range frontier {
		body.Frontier = append(body.Frontier, PartitionOffset{p, o})
	}
	sort.Slice(body.Frontier, func(i, j int) bool { return body.Frontier[i].Partition < body.Frontier[j].Partition })
	if _, err := l.append(ctx, KindSeal, body); err != nil {
		return false, err
	}
	l.frontier = frontier
	res.Entries++
	res.Ranges += len(body.Ranges)
	res.Rows += rows
	l.m.rows.Add(float64(rows))
	l.m.lastSeal.SetToCurrentTime()
	return more, nil
}

// committed returns the ingest group's committed offset for every partition
// of the events topic (0 where it committed none).
func (l *Ledger) committed(ctx context.Context) (map[int32]int64, error) {
	adm := kadm.NewClient(l.cl)
	topic := l.deps.Kafka.Topics.Events
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("ledger: list partitions of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Topic == topic && o.Err == nil {
			out[o.Partition] = 0
		}
	})
	offs, err := adm.FetchOffsets(ctx, l.deps.Group)
	if err != nil {
		return nil, fmt.Errorf("ledger: committed offsets of group %s: %w", l.deps.Group, err)
	}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out, nil
}

// firstOffsets returns, per span, the lowest offset any stored row has in it.
func (l *Ledger) firstOffsets(ctx context.Context, ss []span) (map[int32]int64, error) {
	rows, err := l.deps.Conn.Query(ctx, "SELECT kafka_partition, min(kafka_offset) FROM "+l.deps.Database+".events WHERE "+
		spanCond(ss)+" GROUP BY kafka_partition")
	if err != nil {
		return nil, fmt.Errorf("ledger: find first rows: %w", err)
	}
	defer rows.Close()
	out := map[int32]int64{}
	for rows.Next() {
		var p int32
		var o int64
		if err := rows.Scan(&p, &o); err != nil {
			return nil, fmt.Errorf("ledger: find first rows: %w", err)
		}
		out[p] = o
	}
	return out, rows.Err()
}

func (l *Ledger) retentionRunning(ctx context.Context) (bool, error) {
	var n uint64
	if err := l.deps.Conn.QueryRow(ctx, "SELECT count() FROM "+l.deps.Database+".retention_runs FINAL WHERE status = 'running' AND started_at > now64(3) - INTERVAL 1 HOUR").Scan(&n); err != nil {
		return false, fmt.Errorf("ledger: check for a running retention run: %w", err)
	}
	return n > 0, nil
}
