package ledger

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// RetentionRange is what one retention step did to one sealed range: its
// state just before (recomputed then, so a change made earlier by someone
// else is not laundered: verify compares it with the chain's state), the
// rows of the range in the partitions acted on, and its state after.
type RetentionRange struct {
	Before  Range  `json:"before"`
	Touched Range  `json:"touched"`
	After   Range  `json:"after"`
	Removed uint64 `json:"removed"`   // rows gone
	Rewrote uint64 `json:"rewritten"` // rows re-stored by the step (fields cleared, or kept by a hold)
}

// RetentionGroup is ranges hashed over one column list.
type RetentionGroup struct {
	Columns []string         `json:"columns"`
	Ranges  []RetentionRange `json:"ranges"`
}

// RetentionBody is a retention entry's content.
type RetentionBody struct {
	RunID   string           `json:"run_id"`
	Actions []string         `json:"actions"` // "drop 1-20250106", "strip_fields 1-20250113", ...
	Removed uint64           `json:"removed"`
	Rewrote uint64           `json:"rewritten"`
	Groups  []RetentionGroup `json:"groups"`
}

// Change is a retention step in progress: BeginChange recorded the sealed
// ranges it may touch; Commit records what it did. Between the two the
// Ledger appends nothing else.
type Change struct {
	l      *Ledger
	ids    []string
	groups []*changeGroup
	done   bool
}

type changeGroup struct {
	cols            []string
	ranges          []Range // bounds
	before, touched map[key]Range
}

// BeginChange is called before retention drops or rewrites the events
// partitions ids: it computes the state of every sealed range with rows in
// them. Call Commit after the change, whether it succeeded or not.
func (l *Ledger) BeginChange(ctx context.Context, ids []string) (*Change, error) {
	for _, id := range ids {
		if !partitionIDRE.MatchString(id) {
			return nil, fmt.Errorf("ledger: events partition id %q is not tier-date (1-20250106)", id)
		}
	}
	l.mu.Lock()
	held := false
	defer func() {
		if !held {
			l.mu.Unlock()
		}
	}()
	// Take over as the writer now, with the head as it is now: another
	// process's sealer may have appended since this Ledger last wrote.
	l.disconnect()
	if err := l.connect(ctx); err != nil {
		return nil, err
	}
	db := l.deps.Database
	// Ranges never cross a block boundary (empty ranges aside, which hold
	// no rows to remove), so the blocks of the rows in ids find them.
	rows, err := l.deps.Conn.Query(ctx, `SELECT kafka_partition, offset_from, offset_to, columns FROM `+db+`.ledger_ranges FINAL
		WHERE (kafka_partition, intDiv(offset_from, `+fmt.Sprint(BlockSize)+`)) IN
			(SELECT DISTINCT kafka_partition, intDiv(kafka_offset, `+fmt.Sprint(BlockSize)+`) FROM `+db+`.events WHERE has(?, _partition_id))
		AND rows > 0`, ids)
	if err != nil {
		return nil, fmt.Errorf("ledger: find sealed ranges in partitions %v: %w", ids, err)
	}
	byCols := map[string]*changeGroup{}
	var order []string
	for rows.Next() {
		var r Range
		var cols []string
		if err := rows.Scan(&r.Partition, &r.From, &r.To, &cols); err != nil {
			rows.Close()
			return nil, fmt.Errorf("ledger: find sealed ranges: %w", err)
		}
		k := columnsKey(cols)
		g := byCols[k]
		if g == nil {
			g = &changeGroup{cols: cols}
			byCols[k] = g
			order = append(order, k)
		}
		g.ranges = append(g.ranges, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: find sealed ranges: %w", err)
	}
	c := &Change{l: l, ids: ids}
	for _, k := range order {
		g := byCols[k]
		if g.before, err = computeStates(ctx, l.deps.Conn, db, g.cols, g.ranges, ""); err != nil {
			return nil, err
		}
		if g.touched, err = computeStates(ctx, l.deps.Conn, db, g.cols, g.ranges, "has(['"+joinQuoted(ids)+"'], _partition_id)"); err != nil {
			return nil, err
		}
		c.groups = append(c.groups, g)
	}
	held = true
	return c, nil
}

var partitionIDRE = regexp.MustCompile(`^[0-9]+-[0-9]{8}$`)

func joinQuoted(ids []string) string { return strings.Join(ids, "', '") }

// Commit records what the step did: every range whose state changed, in one
// retention entry. It runs even after ctx ended (bounded), so a stopped run
// still records what it changed.
func (c *Change) Commit(ctx context.Context, runID string, actions []string) error {
	if c.done {
		return nil
	}
	c.done = true
	defer c.l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	body := RetentionBody{RunID: runID, Actions: actions}
	for _, g := range c.groups {
		after, err := computeStates(ctx, c.l.deps.Conn, c.l.deps.Database, g.cols, g.ranges, "")
		if err != nil {
			return err
		}
		rg := RetentionGroup{Columns: g.cols}
		for _, r := range g.ranges {
			b, t, a := g.before[r.key()], g.touched[r.key()], after[r.key()]
			if a.Digest == b.Digest {
				continue
			}
			b.Buckets, t.Buckets = "", "" // after's locate; these only account
			rr := RetentionRange{Before: b, Touched: t, After: a}
			if b.Rows > a.Rows {
				rr.Removed = b.Rows - a.Rows
			}
			if t.Rows > rr.Removed {
				rr.Rewrote = t.Rows - rr.Removed
			}
			body.Removed += rr.Removed
			body.Rewrote += rr.Rewrote
			rg.Ranges = append(rg.Ranges, rr)
		}
		sort.Slice(rg.Ranges, func(i, j int) bool {
			a, b := rg.Ranges[i].After, rg.Ranges[j].After
			return a.Partition < b.Partition || (a.Partition == b.Partition && a.From < b.From)
		})
		if len(rg.Ranges) > 0 {
			body.Groups = append(body.Groups, rg)
		}
	}
	if len(body.Groups) == 0 {
		return nil
	}
	// The change is made: keep trying to record it a while (a fenced or
	// disconnected writer reconnects on the next try).
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if _, err = c.l.append(ctx, KindRetention, body); err == nil {
			break
		}
		c.l.m.errors.Inc()
		c.l.log.Warn("ledger: record retention step; retrying", "run", runID, "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt+1) * time.Second):
		}
	}
	if err != nil {
		return fmt.Errorf("ledger: record retention run %s: %w", runID, err)
	}
	c.l.log.Info("ledger: recorded a retention step", "run", runID, "actions", len(actions), "removed", body.Removed, "rewritten", body.Rewrote)
	return nil
}
