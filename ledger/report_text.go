package ledger

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteText prints what verify found, as `agentrail verify` does: each
// check's outcome, failures first and named.
func (r *Report) WriteText(w io.Writer) {
	status := "OK"
	if !r.OK {
		status = "FAILED"
	}
	window := "all seals"
	if r.From != nil || r.To != nil {
		f, t := "the first", "the last"
		if r.From != nil {
			f = r.From.Format(time.RFC3339)
		}
		if r.To != nil {
			t = r.To.Format(time.RFC3339)
		}
		window = "seals from " + f + " to " + t
	}
	fmt.Fprintf(w, "ledger: %d entries (seq %d-%d), signed by key %s\n", r.Entries, r.FirstSeq, r.LastSeq, strings.Join(r.KeyIDs, ", "))
	if len(r.Chain) == 0 {
		fmt.Fprintln(w, "chain: OK (hashes, links, signatures, contiguous ranges)")
	}
	for _, p := range r.Chain {
		fmt.Fprintf(w, "FAIL chain at entry %d: %s\n", p.Seq, p.What)
	}
	switch {
	case !r.Topic.Checked && r.Topic.Err != "":
		fmt.Fprintf(w, "topic: not compared (%s)\n", r.Topic.Err)
	case !r.Topic.Checked:
		fmt.Fprintln(w, "topic: not compared (--no-kafka)")
	case len(r.Topic.Problems) == 0:
		fmt.Fprintf(w, "topic: OK (%d entries, the same as the table's)\n", r.Topic.Entries)
	}
	for _, p := range r.Topic.Problems {
		fmt.Fprintf(w, "FAIL topic entry %d: %s\n", p.Seq, p.What)
	}
	fmt.Fprintf(w, "recomputed %s: %d ranges, %d rows sealed, %d retention entries applied\n", window, r.Ranges, r.Rows, r.Retention)
	for _, p := range r.Changed {
		fmt.Fprintf(w, "FAIL %s\n", p)
	}
	for _, p := range r.Foreign {
		fmt.Fprintf(w, "FAIL %s\n", p.What)
	}
	if r.Unsealed > 0 {
		fmt.Fprintf(w, "not yet sealed: %d rows above the sealed offsets\n", r.Unsealed)
	}
	fmt.Fprintf(w, "result: %s\n", status)
}
