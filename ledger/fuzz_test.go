package ledger

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// FuzzReplay feeds entry bodies as they could arrive from the ledger topic or
// an edited table to the chain replay verify runs: it must never panic, and a
// seal naming a column that is not a plain identifier (the names become SQL
// when the seal is recomputed) is reported and never replayed.
func FuzzReplay(f *testing.F) {
	seal, _ := json.Marshal(SealBody{Topic: "agentrail.events", Group: "agentrail-ingest",
		Columns: []string{"event_id", "trace_id"}, Frontier: []PartitionOffset{{Partition: 0, Offset: 10}},
		Ranges: []Range{{Partition: 0, From: 0, To: 10, Rows: 9}}})
	ret, _ := json.Marshal(RetentionBody{RunID: "r1"})
	f.Add(KindSeal, string(seal))
	f.Add(KindRetention, string(ret))
	f.Add(KindSeal, `{"columns":["a) FROM system.users --"],"ranges":[{"partition":0,"from":0,"to":1}]}`)
	f.Add("other", `{}`)
	f.Fuzz(func(t *testing.T, kind, body string) {
		e := &Entry{Seq: 1, Kind: kind, At: time.Unix(0, 0), PrevHash: genesis, Body: body}
		var rep Report
		states, _, _ := replay([]*Entry{e, e}, &rep)
		var b SealBody
		if kind != KindSeal || json.Unmarshal([]byte(body), &b) != nil {
			return
		}
		reported := false
		for _, p := range rep.Chain {
			reported = reported || strings.Contains(p.What, "not a plain identifier")
		}
		if _, plain := badColumn(b.Columns); plain == reported {
			t.Fatalf("columns %q: plain %v, reported %v", b.Columns, plain, reported)
		}
		if reported && len(states) > 0 {
			t.Fatalf("a seal with a bad column was replayed: %d ranges", len(states))
		}
	})
}
