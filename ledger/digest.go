package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// BlockSize aligns ranges: a range never crosses a multiple of BlockSize,
// so within one range an offset is named by its two bucket numbers
// (offset mod 32, offset/32 mod 32).
const BlockSize = 1024

const dimBuckets = 32

// excludedColumns are the stored columns a row's hash leaves out: they differ
// between re-delivered copies of one event, which FINAL picks among.
var excludedColumns = []string{"ingested_at", "dedup_rank"}

// Range is the sealed state of one Kafka partition's offsets [From, To).
type Range struct {
	Partition int32  `json:"p"`
	From      int64  `json:"from"`
	To        int64  `json:"to"`
	Rows      uint64 `json:"rows"`
	Digest    string `json:"digest"`            // hex SHA-256 over (offset, row hash) in offset order
	Buckets   string `json:"buckets,omitempty"` // base64: 64 × (rows uint32, fingerprint uint32); absent when Rows is 0
}

// key identifies a range.
type key struct {
	p    int32
	from int64
}

func (r Range) key() key { return key{r.Partition, r.From} }

func (r Range) String() string {
	return fmt.Sprintf("partition %d offsets %d-%d", r.Partition, r.From, r.To)
}

// state accumulates a range's digest and buckets from its rows in order.
type state struct {
	rows    uint64
	h       hash.Hash
	buckets [2 * dimBuckets]bucket
}

type bucket struct{ n, fp uint32 }

func newState() *state { return &state{h: sha256.New()} }

func bucketsOf(off int64) (int, int) {
	return int(off % dimBuckets), dimBuckets + int((off/dimBuckets)%dimBuckets)
}

func (s *state) add(off int64, rowHash []byte) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(off))
	s.h.Write(b[:])
	s.h.Write(rowHash)
	s.rows++
	fp := binary.BigEndian.Uint32(rowHash[:4])
	i, j := bucketsOf(off)
	s.buckets[i].n++
	s.buckets[i].fp += fp
	s.buckets[j].n++
	s.buckets[j].fp += fp
}

func (s *state) rng(p int32, from, to int64) Range {
	r := Range{Partition: p, From: from, To: to, Rows: s.rows, Digest: hex.EncodeToString(s.h.Sum(nil))}
	if s.rows > 0 {
		r.Buckets = encodeBuckets(s.buckets)
	}
	return r
}

func encodeBuckets(bs [2 * dimBuckets]bucket) string {
	out := make([]byte, 0, 8*len(bs))
	for _, b := range bs {
		out = binary.BigEndian.AppendUint32(out, b.n)
		out = binary.BigEndian.AppendUint32(out, b.fp)
	}
	return base64.StdEncoding.EncodeToString(out)
}

func decodeBuckets(s string) ([2 * dimBuckets]bucket, bool) {
	var bs [2 * dimBuckets]bucket
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != 8*len(bs) {
		return bs, false
	}
	for i := range bs {
		bs[i] = bucket{binary.BigEndian.Uint32(raw[8*i:]), binary.BigEndian.Uint32(raw[8*i+4:])}
	}
	return bs, true
}

// columnRE admits plain identifiers and a Nested column's parts (redactions.path).
var columnRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63})?$`)

// Columns lists the events columns a row hash covers: every stored column
// (ordinary, DEFAULT and MATERIALIZED) except ingested_at and dedup_rank, in
// table order. Columns added later are covered from the next seal on.
func Columns(ctx context.Context, conn driver.Conn, db string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT name FROM system.columns WHERE database = ? AND table = 'events'
		AND default_kind NOT IN ('ALIAS', 'EPHEMERAL') AND name NOT IN (?) ORDER BY position`, db, excludedColumns)
	if err != nil {
		return nil, fmt.Errorf("ledger: list events columns: %w", err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("ledger: list events columns: %w", err)
		}
		if !columnRE.MatchString(c) {
			return nil, fmt.Errorf("ledger: events column %q is not an identifier; refusing to hash it", c)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: list events columns: %w", err)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("ledger: table %s.events not found", db)
	}
	return cols, nil
}

// rowHashExpr is the SQL for one row's SHA-256 over its RowBinary encoding:
// ClickHouse's documented, type-exact binary format, so every value and its
// type take part, and no text formatting can drift.
func rowHashExpr(cols []string) string {
	return "hex(SHA256(formatRow('RowBinary', `" + strings.Join(cols, "`, `") + "`)))"
}

// span is a contiguous offset interval of one partition.
type span struct {
	p        int32
	from, to int64
}

// spans coalesces ranges into as few offset intervals as possible.
func spans(rs []Range) []span {
	sorted := append([]Range(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Partition != sorted[j].Partition {
			return sorted[i].Partition < sorted[j].Partition
		}
		return sorted[i].From < sorted[j].From
	})
	var out []span
	for _, r := range sorted {
		if n := len(out); n > 0 && out[n-1].p == r.Partition && out[n-1].to >= r.From {
			out[n-1].to = max(out[n-1].to, r.To)
			continue
		}
		out = append(out, span{r.Partition, r.From, r.To})
	}
	return out
}

func spanCond(ss []span) string {
	if len(ss) == 0 {
		return "0"
	}
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = "(kafka_partition = " + strconv.Itoa(int(s.p)) + " AND kafka_offset >= " + strconv.FormatInt(s.from, 10) +
			" AND kafka_offset < " + strconv.FormatInt(s.to, 10) + ")"
	}
	return strings.Join(parts, " OR ")
}

// finalSettings keep FINAL exact: filters on kafka_offset (not in the sort
// key) must apply after rows are collapsed, or a later duplicate of an event
// would stand in for its first copy until the merge.
func finalCtx(ctx context.Context) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"optimize_move_to_prewhere_if_final": 0,
		"apply_prewhere_after_final":         1,
	}))
}

// row is one stored event as a range sees it.
type row struct {
	p       int32
	off     int64
	hash    []byte
	eventID string
}

// scanRows streams the rows of events (as FINAL shows them) in the given
// spans, in (partition, offset, hash) order, with extra SQL conditions.
func scanRows(ctx context.Context, conn driver.Conn, db string, cols []string, ss []span, extra string, fn func(row) error) error {
	if len(ss) == 0 {
		return nil
	}
	q := "SELECT kafka_partition, kafka_offset, " + rowHashExpr(cols) + " AS h, event_id FROM " + db + ".events FINAL WHERE (" +
		spanCond(ss) + ")"
	if extra != "" {
		q += " AND " + extra
	}
	q += " ORDER BY kafka_partition, kafka_offset, h"
	rows, err := conn.Query(finalCtx(ctx), q)
	if err != nil {
		return fmt.Errorf("ledger: read events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r row
		var h string
		if err := rows.Scan(&r.p, &r.off, &h, &r.eventID); err != nil {
			return fmt.Errorf("ledger: read events: %w", err)
		}
		if r.hash, err = hex.DecodeString(h); err != nil || len(r.hash) != sha256.Size {
			return errors.New("ledger: read events: row hash is not SHA-256")
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("ledger: read events: %w", err)
	}
	return nil
}

// computeStates returns the current state of each range (bounds taken from
// rs), all hashed over cols, plus rows in the spans that fall in no range.
// extra restricts the rows (retention: only the partitions acted on).
func computeStates(ctx context.Context, conn driver.Conn, db string, cols []string, rs []Range, extra string) (map[key]Range, error) {
	byP := map[int32][]Range{}
	for _, r := range rs {
		byP[r.Partition] = append(byP[r.Partition], r)
	}
	for _, l := range byP {
		sort.Slice(l, func(i, j int) bool { return l[i].From < l[j].From })
	}
	states := map[key]*state{}
	find := func(p int32, off int64) (Range, bool) {
		l := byP[p]
		i := sort.Search(len(l), func(i int) bool { return l[i].To > off })
		if i < len(l) && l[i].From <= off {
			return l[i], true
		}
		return Range{}, false
	}
	err := scanRows(ctx, conn, db, cols, spans(rs), extra, func(r row) error {
		rg, ok := find(r.p, r.off)
		if !ok {
			return nil
		}
		s := states[rg.key()]
		if s == nil {
			s = newState()
			states[rg.key()] = s
		}
		s.add(r.off, r.hash)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[key]Range, len(rs))
	for _, r := range rs {
		s := states[r.key()]
		if s == nil {
			s = newState()
		}
		out[r.key()] = s.rng(r.Partition, r.From, r.To)
	}
	return out, nil
}

func columnsKey(cols []string) string { return strings.Join(cols, ",") }
