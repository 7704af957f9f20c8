package ledger

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/kafkacfg"
)

// VerifyOptions says what to verify against what.
type VerifyOptions struct {
	Conn       driver.Conn
	Database   string
	PublicKeys []string
	// Kafka, if set, is used to compare the table's chain with the topic's
	// and to flag rows at offsets the events topic never had.
	Kafka *kafkacfg.Config
	// From and To bound the seals whose ranges are recomputed, by entry
	// time; zero means unbounded. The chain itself is always checked whole.
	From, To time.Time
}

// Report is what Verify found. OK is true when nothing failed.
type Report struct {
	OK       bool     `json:"ok"`
	Entries  int      `json:"entries"`
	FirstSeq uint64   `json:"first_seq"`
	LastSeq  uint64   `json:"last_seq"`
	KeyIDs   []string `json:"key_ids"`
	// Chain lists broken links, bad hashes or signatures, gaps and forks.
	Chain []Problem `json:"chain"`
	// Topic is the comparison with the ledger topic.
	Topic TopicCheck `json:"topic"`
	// Seals and Ranges count what was recomputed; Rows the rows expected.
	Seals     int            `json:"seals"`
	Ranges    int            `json:"ranges"`
	Rows      uint64         `json:"rows"`
	From      *time.Time     `json:"from,omitempty"`
	To        *time.Time     `json:"to,omitempty"`
	Retention int            `json:"retention_entries"`
	Changed   []RangeProblem `json:"changed"`
	// Foreign are rows no seal can cover: in partitions the chain never
	// sealed, or at offsets the events topic never reached.
	Foreign []Problem `json:"foreign"`
	// Unsealed counts rows above the sealed end: ingested since the last
	// seal (not a failure).
	Unsealed uint64 `json:"unsealed_rows"`
}

// Problem is one failure, with the entry it concerns (0 if none).
type Problem struct {
	Seq  uint64 `json:"seq,omitempty"`
	What string `json:"what"`
}

// TopicCheck is the comparison of the table's chain with the topic's.
type TopicCheck struct {
	Checked  bool      `json:"checked"`
	Entries  int       `json:"entries"`
	Err      string    `json:"error,omitempty"` // why it could not be checked
	Problems []Problem `json:"problems"`
}

// RangeProblem is a sealed range whose rows are no longer as sealed.
type RangeProblem struct {
	Seq       uint64      `json:"seq"`
	At        time.Time   `json:"sealed_at"`
	Partition int32       `json:"partition"`
	From      int64       `json:"from"`
	To        int64       `json:"to"`
	Expected  uint64      `json:"expected_rows"`
	Found     uint64      `json:"found_rows"`
	Altered   int         `json:"altered"`
	Removed   int         `json:"removed"`
	Added     int         `json:"added"`
	Rows      []RowChange `json:"rows"` // the rows located exactly
	Note      string      `json:"note,omitempty"`
}

// RowChange is one located row.
type RowChange struct {
	Offset  int64  `json:"offset"`
	Kind    string `json:"kind"`               // altered, removed, added
	EventID string `json:"event_id,omitempty"` // as stored now (absent for a removed row)
}

func (p RangeProblem) String() string {
	var parts []string
	for _, c := range []struct {
		n    int
		kind string
	}{{p.Altered, "altered"}, {p.Removed, "removed"}, {p.Added, "added"}} {
		if c.n > 0 {
			parts = append(parts, plural(c.n, "row")+" "+c.kind)
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "rows changed")
	}
	s := fmt.Sprintf("seal %d partition %d offsets %d-%d: %s (sealed %d rows, found %d)", p.Seq, p.Partition, p.From, p.To,
		strings.Join(parts, ", "), p.Expected, p.Found)
	var named []string
	for _, r := range p.Rows {
		n := r.Kind + " at offset " + strconv.FormatInt(r.Offset, 10)
		if r.EventID != "" {
			n += " (event_id " + r.EventID + ")"
		}
		named = append(named, n)
	}
	if len(named) > 0 {
		if len(named) > 5 {
			named = append(named[:5], fmt.Sprintf("and %d more", len(named)-5))
		}
		s += ": " + strings.Join(named, "; ")
	}
	if p.Note != "" {
		s += "; " + p.Note
	}
	return s
}

func plural(n int, w string) string {
	if n == 1 {
		return "1 " + w
	}
	return strconv.Itoa(n) + " " + w + "s"
}

// rstate is a range as the chain says it should be now.
type rstate struct {
	r    Range
	cols []string
	seq  uint64
	at   time.Time
	note string
}

// Verify checks the chain (hashes, links, signatures, no gaps or forks),
// compares it with the ledger topic, rebuilds every range's expected state
// from the seals and retention records, recomputes the ranges sealed in
// [From, To] from ClickHouse and names what changed.
func Verify(ctx context.Context, o VerifyOptions) (*Report, error) {
	keys := map[string]ed25519.PublicKey{}
	for i, s := range o.PublicKeys {
		k, err := ParsePublicKey(s)
		if err != nil {
			return nil, fmt.Errorf("ledger: ledger.public_keys[%d]: %w", i, err)
		}
		keys[KeyID(k)] = k
	}
	if len(keys) == 0 {
		return nil, errors.New("ledger: verify needs ledger.public_keys (the pipeline's public key)")
	}
	rep := &Report{Chain: []Problem{}, Changed: []RangeProblem{}, Foreign: []Problem{}, Topic: TopicCheck{Problems: []Problem{}}}
	for id := range keys {
		rep.KeyIDs = append(rep.KeyIDs, id)
	}
	sort.Strings(rep.KeyIDs)
	if !o.From.IsZero() {
		rep.From = &o.From
	}
	if !o.To.IsZero() {
		rep.To = &o.To
	}
	table, err := queryEntries(ctx, o.Conn, "SELECT "+entryColumns+" FROM "+o.Database+".ledger ORDER BY seq, entry_hash")
	if err != nil {
		return nil, err
	}
	chain := checkChain(table, keys, &rep.Chain)
	if len(chain) > 0 {
		rep.FirstSeq, rep.LastSeq = chain[0].Seq, chain[len(chain)-1].Seq
	}
	rep.Entries = len(chain)

	var endOffsets map[int32]int64
	if o.Kafka != nil {
		topicEntries, ends, err := readKafka(ctx, *o.Kafka)
		if err != nil {
			rep.Topic.Err = err.Error()
		} else {
			rep.Topic.Checked, rep.Topic.Entries, endOffsets = true, len(topicEntries), ends
			chain = compareTopic(chain, topicEntries, keys, &rep.Topic.Problems)
		}
	}

	states, frontier, seals := replay(chain, rep)
	rep.Seals = seals

	// Recompute the ranges sealed in the window, per column list.
	byCols := map[string][]*rstate{}
	for _, st := range states {
		if (!o.From.IsZero() && st.at.Before(o.From)) || (!o.To.IsZero() && st.at.After(o.To)) {
			continue
		}
		k := columnsKey(st.cols)
		byCols[k] = append(byCols[k], st)
	}
	colKeys := make([]string, 0, len(byCols))
	for k := range byCols {
		colKeys = append(colKeys, k)
	}
	sort.Strings(colKeys)
	for _, k := range colKeys {
		sts := byCols[k]
		sort.Slice(sts, func(i, j int) bool {
			a, b := sts[i].r, sts[j].r
			return a.Partition < b.Partition || (a.Partition == b.Partition && a.From < b.From)
		})
		cols := sts[0].cols
		for start := 0; start < len(sts); start += 512 {
			chunk := sts[start:min(len(sts), start+512)]
			rs := make([]Range, len(chunk))
			for i, st := range chunk {
				rs[i] = st.r
			}
			got, err := computeStates(ctx, o.Conn, o.Database, cols, rs, "")
			if err != nil {
				return nil, err
			}
			for _, st := range chunk {
				rep.Ranges++
				rep.Rows += st.r.Rows
				g := got[st.r.key()]
				if g.Rows == st.r.Rows && g.Digest == st.r.Digest && st.note == "" {
					continue
				}
				p := RangeProblem{Seq: st.seq, At: st.at, Partition: st.r.Partition, From: st.r.From, To: st.r.To,
					Expected: st.r.Rows, Found: g.Rows, Rows: []RowChange{}, Note: st.note}
				if g.Rows != st.r.Rows || g.Digest != st.r.Digest {
					if err := locate(ctx, o.Conn, o.Database, cols, st.r, g, &p); err != nil {
						return nil, err
					}
				}
				rep.Changed = append(rep.Changed, p)
			}
		}
	}
	sort.Slice(rep.Changed, func(i, j int) bool {
		a, b := rep.Changed[i], rep.Changed[j]
		return a.Seq < b.Seq || (a.Seq == b.Seq && (a.Partition < b.Partition || (a.Partition == b.Partition && a.From < b.From)))
	})
	if err := outsideRows(ctx, o.Conn, o.Database, frontier, endOffsets, rep); err != nil {
		return nil, err
	}
	rep.OK = len(rep.Chain) == 0 && len(rep.Topic.Problems) == 0 && len(rep.Changed) == 0 && len(rep.Foreign) == 0
	return rep, nil
}

// checkChain checks the table's entries and returns one entry per seq (the
// first when a seq is forked).
func checkChain(es []*Entry, keys map[string]ed25519.PublicKey, probs *[]Problem) []*Entry {
	var out []*Entry
	prevHash := genesis
	var expect uint64 = 1
	for i := 0; i < len(es); {
		e := es[i]
		j := i + 1
		forked := false
		for ; j < len(es) && es[j].Seq == e.Seq; j++ {
			if es[j].Hash != e.Hash {
				forked = true
			}
		}
		i = j
		if forked {
			*probs = append(*probs, Problem{e.Seq, "fork: the table holds different entries with this seq"})
		}
		if e.Seq > expect {
			what := fmt.Sprintf("entries %d-%d are missing (deleted from the table?)", expect, e.Seq-1)
			if e.Seq == expect+1 {
				what = fmt.Sprintf("entry %d is missing (deleted from the table?)", expect)
			}
			*probs = append(*probs, Problem{expect, what})
		} else if e.PrevHash != prevHash {
			*probs = append(*probs, Problem{e.Seq, fmt.Sprintf("chain broken: prev_hash does not match entry %d's hash", e.Seq-1)})
		}
		if e.ComputeHash() != e.Hash {
			*probs = append(*probs, Problem{e.Seq, "entry hash does not match its contents (the entry was edited)"})
		} else if err := e.checkSignature(keys); err != nil {
			*probs = append(*probs, Problem{e.Seq, "signature: " + err.Error()})
		}
		prevHash, expect = e.Hash, e.Seq+1
		out = append(out, e)
	}
	return out
}

// sound reports whether an entry's hash and signature hold.
func sound(e *Entry, keys map[string]ed25519.PublicKey) bool {
	return e.ComputeHash() == e.Hash && e.checkSignature(keys) == nil
}

// compareTopic compares the two copies and returns the chain to replay: the
// table's entries, with a sound topic copy standing in for an entry that is
// missing from the table or unsound there.
func compareTopic(table, topic []*Entry, keys map[string]ed25519.PublicKey, probs *[]Problem) []*Entry {
	bySeq := map[uint64]*Entry{}
	for _, e := range topic {
		if prev, ok := bySeq[e.Seq]; ok && prev.Hash != e.Hash {
			*probs = append(*probs, Problem{e.Seq, "fork: the topic holds different entries with this seq"})
			continue
		}
		bySeq[e.Seq] = e
	}
	seen := map[uint64]bool{}
	var out []*Entry
	for _, e := range table {
		seen[e.Seq] = true
		t, ok := bySeq[e.Seq]
		switch {
		case !ok:
			*probs = append(*probs, Problem{e.Seq, "in the table but not on the topic"})
		case t.Hash != e.Hash || t.Body != e.Body || t.Signature != e.Signature:
			*probs = append(*probs, Problem{e.Seq, "the table's entry differs from the topic's"})
			if !sound(e, keys) && sound(t, keys) {
				e = t
			}
		}
		out = append(out, e)
	}
	for _, e := range topic {
		if !seen[e.Seq] {
			seen[e.Seq] = true
			*probs = append(*probs, Problem{e.Seq, "on the topic but not in the table"})
			if sound(e, keys) {
				out = append(out, e)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// replay rebuilds every range's expected state from the entries, checking
// that seals tile each partition's offsets without gaps or overlaps.
func replay(chain []*Entry, rep *Report) (map[key]*rstate, map[int32]int64, int) {
	states := map[key]*rstate{}
	frontier := map[int32]int64{}
	seals := 0
	for _, e := range chain {
		switch e.Kind {
		case KindSeal:
			var b SealBody
			if err := json.Unmarshal([]byte(e.Body), &b); err != nil {
				rep.Chain = append(rep.Chain, Problem{e.Seq, "seal body is not valid JSON: " + err.Error()})
				continue
			}
			if c, ok := badColumn(b.Columns); !ok {
				// The columns become SQL when the seal is recomputed.
				rep.Chain = append(rep.Chain, Problem{e.Seq, fmt.Sprintf("seal names column %q, which is not a plain identifier", c)})
				continue
			}
			seals++
			for _, r := range b.Ranges {
				if f := frontier[r.Partition]; r.From != f {
					what := "gap"
					if r.From < f {
						what = "overlap"
					}
					rep.Chain = append(rep.Chain, Problem{e.Seq, fmt.Sprintf("%s: partition %d range starts at %d, sealed up to %d before", what, r.Partition, r.From, f)})
				}
				frontier[r.Partition] = r.To
				states[r.key()] = &rstate{r: r, cols: b.Columns, seq: e.Seq, at: e.At}
			}
			for _, pf := range b.Frontier {
				if frontier[pf.Partition] != pf.Offset {
					rep.Chain = append(rep.Chain, Problem{e.Seq, fmt.Sprintf("partition %d: seal says sealed up to %d, its ranges reach %d", pf.Partition, pf.Offset, frontier[pf.Partition])})
				}
				frontier[pf.Partition] = pf.Offset
			}
		case KindRetention:
			var b RetentionBody
			if err := json.Unmarshal([]byte(e.Body), &b); err != nil {
				rep.Chain = append(rep.Chain, Problem{e.Seq, "retention body is not valid JSON: " + err.Error()})
				continue
			}
			rep.Retention++
			for _, g := range b.Groups {
				for _, rr := range g.Ranges {
					st := states[rr.After.key()]
					if st == nil || st.r.To != rr.After.To {
						rep.Chain = append(rep.Chain, Problem{e.Seq, fmt.Sprintf("retention run %s records %s, which no seal covers", b.RunID, rr.After)})
						continue
					}
					if !slices.Equal(st.cols, g.Columns) {
						rep.Chain = append(rep.Chain, Problem{e.Seq, fmt.Sprintf("retention run %s hashed %s over other columns than its seal", b.RunID, rr.After)})
					}
					if rr.Before.Digest != st.r.Digest || rr.Before.Rows != st.r.Rows {
						st.note = fmt.Sprintf("changed before retention run %s (entry %d): it found %d rows where %d were expected",
							b.RunID, e.Seq, rr.Before.Rows, st.r.Rows)
					}
					st.r = rr.After
				}
			}
		default:
			rep.Chain = append(rep.Chain, Problem{e.Seq, fmt.Sprintf("unknown entry kind %q", e.Kind)})
		}
	}
	return states, frontier, seals
}

// locate names, as far as the buckets allow, the rows of r that changed.
func locate(ctx context.Context, conn driver.Conn, db string, cols []string, sealed, now Range, p *RangeProblem) error {
	var rows []row
	if err := scanRows(ctx, conn, db, cols, []span{{sealed.Partition, sealed.From, sealed.To}}, "", func(r row) error {
		rows = append(rows, r)
		return nil
	}); err != nil {
		return err
	}
	want, ok := decodeBuckets(sealed.Buckets)
	if !ok {
		// Sealed empty: everything found was added.
		for _, r := range rows {
			p.Rows = append(p.Rows, RowChange{r.off, "added", r.eventID})
		}
		p.Added = len(rows)
		return nil
	}
	cur := newState()
	at := map[int64][]row{}
	for _, r := range rows {
		cur.add(r.off, r.hash)
		at[r.off] = append(at[r.off], r)
	}
	var badA, badB []int
	delta := [2 * dimBuckets]int{}
	count := [2][3]int{} // per dimension: removed, added, altered
	for i := range want {
		if want[i] == cur.buckets[i] {
			continue
		}
		d := int(cur.buckets[i].n) - int(want[i].n)
		delta[i] = d
		dim := i / dimBuckets
		switch {
		case d < 0:
			count[dim][0] += -d
		case d > 0:
			count[dim][1] += d
		default:
			count[dim][2]++
		}
		if dim == 0 {
			badA = append(badA, i)
		} else {
			badB = append(badB, i-dimBuckets)
		}
	}
	p.Removed = max(count[0][0], count[1][0])
	p.Added = max(count[0][1], count[1][1])
	p.Altered = max(count[0][2], count[1][2])
	if d := int(now.Rows) - int(sealed.Rows); p.Removed-p.Added != -d {
		// Buckets cancelled out; the row counts still tell the net change.
		if d < 0 {
			p.Removed = max(p.Removed, -d)
		} else {
			p.Added = max(p.Added, d)
		}
	}
	if p.Removed+p.Added+p.Altered == 0 {
		p.Altered = 1 // digests differ though every bucket matches
	}
	// One bad bucket in either dimension names each changed offset exactly.
	if len(badA) != 1 && len(badB) != 1 {
		return nil
	}
	block := sealed.From - sealed.From%BlockSize
	for _, a := range badA {
		for _, b := range badB {
			off := block + int64(b*dimBuckets+a)
			if off < sealed.From || off >= sealed.To {
				continue
			}
			da, db := delta[a], delta[dimBuckets+b]
			switch {
			case da < 0 && db < 0 && len(at[off]) == 0:
				p.Rows = append(p.Rows, RowChange{Offset: off, Kind: "removed"})
			case da > 0 && db > 0:
				for _, r := range at[off] {
					p.Rows = append(p.Rows, RowChange{off, "added", r.eventID})
				}
			case da == 0 && db == 0 && len(at[off]) > 0:
				for _, r := range at[off] {
					p.Rows = append(p.Rows, RowChange{off, "altered", r.eventID})
				}
			}
		}
	}
	return nil
}

// outsideRows finds rows outside every sealed range: above a partition's
// sealed end (unsealed, normal), in partitions the chain never sealed, or at
// offsets the events topic never reached (both forged).
func outsideRows(ctx context.Context, conn driver.Conn, db string, frontier map[int32]int64, ends map[int32]int64, rep *Report) error {
	ps := make([]int32, 0, len(frontier))
	for p := range frontier {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	expr := "toInt64(-1)"
	if len(ps) > 0 {
		var b strings.Builder
		b.WriteString("toInt64(multiIf(")
		for _, p := range ps {
			fmt.Fprintf(&b, "kafka_partition = %d, %d, ", p, frontier[p])
		}
		b.WriteString("-1))")
		expr = b.String()
	}
	rows, err := conn.Query(ctx, "SELECT kafka_partition, "+expr+" AS f, count(), min(kafka_offset), max(kafka_offset) FROM "+db+
		".events WHERE f < 0 OR kafka_offset >= f GROUP BY kafka_partition, f ORDER BY kafka_partition")
	if err != nil {
		return fmt.Errorf("ledger: find unsealed rows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p int32
		var f, lo, hi int64
		var n uint64
		if err := rows.Scan(&p, &f, &n, &lo, &hi); err != nil {
			return fmt.Errorf("ledger: find unsealed rows: %w", err)
		}
		end, known := ends[p]
		switch {
		case ends != nil && (!known || hi >= end):
			rep.Foreign = append(rep.Foreign, Problem{What: fmt.Sprintf("%s in partition %d at offsets %d-%d, beyond the events topic's end (%d)",
				plural(int(n), "row"), p, lo, hi, end)})
		case f < 0 && ends == nil:
			rep.Foreign = append(rep.Foreign, Problem{What: fmt.Sprintf("%s in partition %d (offsets %d-%d), which no seal covers",
				plural(int(n), "row"), p, lo, hi)})
		default:
			rep.Unsealed += n
		}
	}
	return rows.Err()
}

// readKafka reads the ledger topic whole, and the events topic's end offsets.
func readKafka(ctx context.Context, kc kafkacfg.Config) ([]*Entry, map[int32]int64, error) {
	kc.Defaults()
	opts, err := kc.Opts()
	if err != nil {
		return nil, nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// An unreachable broker is a note in the report, not a long wait.
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(lctx, kc.Topics.Ledger, kc.Topics.Events)
	if err != nil {
		return nil, nil, fmt.Errorf("list end offsets: %w", err)
	}
	ctx, cancel2 := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel2()
	lo, ok := ends.Lookup(kc.Topics.Ledger, 0)
	if !ok || lo.Err != nil {
		return nil, nil, fmt.Errorf("topic %s: %v", kc.Topics.Ledger, lo.Err)
	}
	es, err := ReadTopic(ctx, opts, kc.Topics.Ledger, 0, lo.Offset)
	if err != nil {
		return nil, nil, err
	}
	evEnds := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Topic == kc.Topics.Events && o.Err == nil {
			evEnds[o.Partition] = o.Offset
		}
	})
	return es, evEnds, nil
}

// badColumn returns the first of cols that is not a plain identifier.
func badColumn(cols []string) (string, bool) {
	for _, c := range cols {
		if !columnRE.MatchString(c) {
			return c, false
		}
	}
	return "", true
}
