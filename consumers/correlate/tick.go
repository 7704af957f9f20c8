package correlate

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers"
)

// Tick implements consumers.Ticker: it settles the violations that are due
// in the partitions b names, with no events. b.FirstOffset holds each
// owned partition's committed offset, so the tick is a batch that starts
// where the next one will. A partition this process does not know yet
// (after a start or a rebalance with no traffic since) is initialized from
// ClickHouse first, which is how pending violations survive a restart into
// silence.
//
// A violation a tick emits carries a tick marker (tickOffset): its offset
// column holds -1 - F, F the committed offset the tick ran at. Batch markers
// are offsets >= 0, so the two never mix up. Every check "committed by an
// earlier batch" (offset < first) takes a tick marker as committed: a tick
// whose transaction did not commit makes ingest revoke its partitions, and
// they are initialized again before anything else is emitted for them. A
// tick marker at F or later when a partition is initialized is the one
// case ClickHouse cannot answer (no batch committed after the tick, so its
// transaction's fate is unknown): resolveTicks reads the violations topic.
func (c *Correlator) Tick(ctx context.Context, b *consumers.Batch) (consumers.Output, error) {
	c.applyRevoked()
	if !c.tickNeeded(b) {
		return consumers.Output{}, nil
	}
	bv := newBatchView(b)
	bv.tick = true
	if c.polAt.IsZero() || b.Now.Sub(c.polAt) >= c.cfg.PolicyRefresh {
		if err := c.loadPolicies(ctx); err != nil {
			return consumers.Output{}, err
		}
		c.polAt = b.Now
	}
	if err := c.initPartitions(ctx, bv); err != nil {
		return consumers.Output{}, err
	}
	due := map[string]bool{}
	for id, pe := range c.pending {
		if _, owned := b.FirstOffset[pe.partition]; owned && !pe.settleAt.After(b.Now) {
			due[id] = true
		}
	}
	if len(due) == 0 {
		c.m.pending.Set(float64(len(c.pending)))
		return consumers.Output{}, nil
	}
	dueIDs := sortedKeys(due)
	if err := c.restore(ctx, bv, dueIDs); err != nil {
		return consumers.Output{}, err
	}
	out := outputBuilder{tick: true}
	for _, id := range dueIDs {
		c.evaluate(bv, id, c.cache.get(id), nil, &out)
	}
	return c.finish(&out, b.Now)
}

// tickNeeded reports whether a tick has anything to do: a partition to
// initialize, or a pending violation due in an owned partition. It reads
// memory only, so an idle tick costs a map walk.
func (c *Correlator) tickNeeded(b *consumers.Batch) bool {
	for p, first := range b.FirstOffset {
		if ps := c.parts[p]; ps == nil || first <= ps.lastEnd {
			return true
		}
	}
	for _, pe := range c.pending {
		if _, owned := b.FirstOffset[pe.partition]; owned && !pe.settleAt.After(b.Now) {
			return true
		}
	}
	return false
}

// tickOffset is the marker offset of a violation a tick emitted at
// committed offset first; tickPosition inverts it.
func tickOffset(first int64) int64 { return -1 - first }
func tickPosition(off int64) int64 { return -1 - off }
func isTickMarker(off int64) bool  { return off < 0 }

// resolveTicks settles, for partitions being initialized, the violation
// rows ticks wrote at or after the partition's committed offset: no batch
// committed after them, so whether their Kafka transaction committed is
// known only to the violations topic. Those on the topic (read_committed)
// stay: they were emitted. The others are deleted, and their traces become
// pending again (initPartitions' next step), to be emitted once.
func (c *Correlator) resolveTicks(ctx context.Context, bv *batchView, fresh []int32) error {
	conds := make([]string, 0, len(fresh))
	for _, p := range fresh {
		conds = append(conds, fmt.Sprintf("(kafka_partition = %d AND kafka_offset < 0 AND kafka_offset <= %d)", p, tickOffset(bv.b.FirstOffset[p])))
	}
	rows, err := c.ch.Query(ctx, `SELECT violation_id, trace_id, kind, kafka_partition, kafka_offset, detected_at
		FROM `+c.db+`.violations FINAL WHERE `+strings.Join(conds, " OR "))
	if err != nil {
		return fmt.Errorf("correlate: look for unresolved tick violations: %w", err)
	}
	type tickRow struct {
		id, trace, kind string
		partition       int32
		offset          int64
		detected        time.Time
	}
	var open []tickRow
	for rows.Next() {
		var r tickRow
		if err := rows.Scan(&r.id, &r.trace, &r.kind, &r.partition, &r.offset, &r.detected); err != nil {
			rows.Close()
			return fmt.Errorf("correlate: look for unresolved tick violations: %w", err)
		}
		open = append(open, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("correlate: look for unresolved tick violations: %w", err)
	}
	if len(open) == 0 {
		return nil
	}
	if bv.b.ReadCommitted == nil {
		c.log.Warn("violations emitted by a tick cannot be checked against the violations topic (no reader); taken as emitted", "rows", len(open))
		return nil
	}
	since := open[0].detected
	want := map[string]bool{}
	for _, r := range open {
		since = minTime(since, r.detected)
		want[r.id] = true
	}
	found := map[string]bool{}
	err = bv.b.ReadCommitted(ctx, c.cfg.ViolationTopic, since.Add(-time.Second), func(r *kgo.Record) {
		var v struct {
			ID string `json:"violation_id"`
		}
		if json.Unmarshal(r.Value, &v) == nil && want[v.ID] {
			found[v.ID] = true
		}
	})
	if err != nil {
		return fmt.Errorf("correlate: check tick violations on %s: %w", c.cfg.ViolationTopic, err)
	}
	var gone []string
	for _, r := range open {
		if !found[r.id] {
			gone = append(gone, fmt.Sprintf("(trace_id = %s AND kind = %s AND kafka_partition = %d AND kafka_offset = %d)",
				quote(r.trace), quote(r.kind), r.partition, r.offset))
		}
	}
	if len(gone) > 0 {
		if err := c.ch.Exec(ctx, "DELETE FROM "+c.db+".violations WHERE "+strings.Join(gone, " OR ")); err != nil {
			return fmt.Errorf("correlate: delete %d violation rows of an uncommitted tick: %w", len(gone), err)
		}
	}
	c.log.Info("resolved violations of ticks against the violations topic", "rows", len(open), "committed", len(open)-len(gone), "redone", len(gone))
	return nil
}
