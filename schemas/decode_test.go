package schemas_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

// decodeCorpus returns framed records of the latest schema: simulated
// events (with planted anomalies, reordered and duplicated ones), the edge
// cases of edgeEvents and moreEdgeEvents, each as the hand-written encoder
// writes it and as hamba/avro writes it (maps in Go's random order), and
// the v1 golden record.
func decodeCorpus(t testing.TB, n int) [][]byte {
	t.Helper()
	events := append(simulatedEvents(t, 11, n), moreEdgeEvents()...)
	enc := schemas.NewSingleObjectEncoder()
	var out [][]byte
	for i := range events {
		b, err := enc.AppendEncode(nil, &events[i])
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		out = append(out, b)
		if i%10 == 0 || i >= n {
			out = append(out, hambaEncode(t, &events[i]))
		}
	}
	v1, err := os.ReadFile(filepath.Join("testdata", "intent.v1.avro"))
	if err != nil {
		t.Fatal(err)
	}
	return append(out, v1)
}

// moreEdgeEvents adds to edgeEvents: an event with every string empty and
// no optional field, one with every optional field and unicode everywhere,
// maps over several blocks, special doubles, and times before 1970 and far
// ahead.
func moreEdgeEvents() []schemas.Event {
	var out []schemas.Event
	bare := schemas.Event{Type: schemas.TypeIntent, Intent: &schemas.Intent{}}
	out = append(out, bare)
	for _, typ := range []schemas.EventType{schemas.TypeDecision, schemas.TypeApproval, schemas.TypeResult} {
		e := schemas.Event{Type: typ}
		switch typ {
		case schemas.TypeDecision:
			e.Decision = &schemas.Decision{Outcome: schemas.OutcomeAllow}
		case schemas.TypeApproval:
			e.Approval = &schemas.Approval{Status: schemas.ApprovalRequested}
		case schemas.TypeResult:
			e.Result = &schemas.Result{Status: schemas.ResultFailure}
		}
		out = append(out, e)
	}
	out = append(out, schemas.Event{Type: schemas.TypeResult}) // no body at all
	u := "ünïcödé ✓ 日本語 🚀 \u0000 \u200b"
	big := map[string]string{}
	for i := range 333 {
		big[fmt.Sprintf("%s-%d", u, i)] = strings.Repeat(u, i%7)
	}
	for _, c := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), math.SmallestNonzeroFloat64, 1} {
		conf := c
		out = append(out, schemas.Event{
			EventID: u, TraceID: u, SpanID: u, Type: schemas.TypeIntent,
			Time:        time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC),
			Agent:       schemas.Agent{ID: u, Version: u, Team: u, Environment: u, Tenant: u},
			RequestedBy: u, Tier: math.MinInt32,
			Producer:  schemas.Producer{Name: u, Version: u, Host: u},
			SessionID: u, Labels: big,
			Intent: &schemas.Intent{Tool: u, Action: u, Target: u, ActionClass: u, Tier: math.MaxInt32,
				Parameters: big, ActionDigest: u, Rationale: u, Context: map[string]string{u: u},
				ModelID: u, PromptVersion: u, EvidenceIDs: []string{"", u, ""}, Confidence: &conf},
		})
	}
	quota := int64(math.MinInt64)
	far := time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
	out = append(out,
		schemas.Event{Type: schemas.TypeDecision, Time: far, Decision: &schemas.Decision{
			Outcome: schemas.OutcomeRequireApproval, PolicyVersion: math.MaxInt64, Tier: -1, RemainingQuota: &quota}},
		schemas.Event{Type: schemas.TypeApproval, Approval: &schemas.Approval{
			Status: schemas.ApprovalRejected, ApproverKind: schemas.PrincipalAgent, Scope: schemas.ScopeBundle,
			ExpiresAt: &far, Channel: u, Comment: strings.Repeat(u, 500)}},
		schemas.Event{Type: schemas.TypeResult, Result: &schemas.Result{
			Status: schemas.ResultSuccess, SideEffects: make([]string, 1000), DurationUS: math.MinInt64}},
	)
	return out
}

// TestDecodeLatestMatchesHamba: on simulated and edge-case records the
// hand-written decoder accepts them all and returns exactly hamba/avro's
// event, nil and empty collections alike, not aliasing the record's bytes.
func TestDecodeLatestMatchesHamba(t *testing.T) {
	dec, err := schemas.NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	corpus := decodeCorpus(t, 20_000)
	for i, b := range corpus {
		ok, diff := schemas.CompareDecoders(dec, b)
		if diff != nil {
			t.Fatalf("record %d (%d bytes): %v", i, len(b), diff)
		}
		if !ok {
			t.Fatalf("record %d (%d bytes) rejected by both decoders", i, len(b))
		}
	}
	t.Logf("%d records", len(corpus))
}

// TestDecodeLatestMutations: every truncation, deletion, insertion and
// several replacements of every byte of a few records are accepted or
// rejected alike by both decoders, with the same event when accepted.
func TestDecodeLatestMutations(t *testing.T) {
	dec, err := schemas.NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	enc := schemas.NewSingleObjectEncoder()
	var seeds [][]byte
	for _, e := range append(simulate.New(simulate.Config{Seed: 5}).Events(8, time.Now()), moreEdgeEvents()[:5]...) {
		b, err := enc.AppendEncode(nil, &e)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	accepted, rejected := 0, 0
	check := func(what string, b []byte) {
		t.Helper()
		ok, diff := schemas.CompareDecoders(dec, b)
		if diff != nil {
			t.Fatalf("%s: %v\nrecord % x", what, diff, b)
		}
		if ok {
			accepted++
		} else {
			rejected++
		}
	}
	for s, seed := range seeds {
		for i := 10; i < len(seed); i++ {
			check(fmt.Sprintf("seed %d truncated at %d", s, i), bytes.Clone(seed[:i]))
			check(fmt.Sprintf("seed %d without byte %d", s, i), append(bytes.Clone(seed[:i]), seed[i+1:]...))
			for _, v := range []byte{0x00, 0x01, 0x02, 0x03, 0x7f, 0x80, 0xff, seed[i] + 1, seed[i] - 1, seed[i] + 2} {
				m := bytes.Clone(seed)
				m[i] = v
				check(fmt.Sprintf("seed %d byte %d = %#x", s, i, v), m)
				check(fmt.Sprintf("seed %d %#x inserted at %d", s, v, i), append(append(bytes.Clone(seed[:i]), v), seed[i:]...))
			}
		}
	}
	// Both outcomes must have happened many times, or the test proved
	// little.
	if accepted < 1000 || rejected < 1000 {
		t.Fatalf("accepted %d, rejected %d mutants: want both over 1000", accepted, rejected)
	}
	t.Logf("%d mutants accepted, %d rejected alike", accepted, rejected)
}

// payload builds a latest-schema record by hand, for the inputs neither
// encoder writes.
type payload []byte

func latestRecord() payload {
	fp := schemas.Latest().Fingerprint
	return append(payload{0xC3, 0x01}, fp[:]...)
}

func (p payload) long(v int64) payload {
	return binary.AppendUvarint(p, uint64(v<<1)^uint64(v>>63))
}

func (p payload) str(s string) payload { return append(p.long(int64(len(s))), s...) }

func (p payload) raw(b ...byte) payload { return append(p, b...) }

// envelope writes an event's fields up to session_id (event_type intent).
func (p payload) envelope() payload {
	p = p.str("ev").str("4bf92f3577b34da6a3ce929d0e0e4736").str("").long(0).long(1_700_000_000_000_000)
	p = p.str("a").str("").str("t").str("").str("")
	p = p.str("").long(1).str("").str("").str("")
	return p.str("")
}

// intentTo writes labels (empty) and an intent up to, not including,
// evidence_ids.
func (p payload) intentTo() payload {
	p = p.long(0).long(1)
	return p.str("tool").str("act").str("").str("read").long(1).long(0).str("d").str("").long(0).str("").str("")
}

// TestDecodeLatestHostile: hand-made records that no encoder writes: both
// decoders agree, and the hand-written one's error names the field.
func TestDecodeLatestHostile(t *testing.T) {
	dec, err := schemas.NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	nulls := []byte{0, 0, 0, 0}
	const maxVarint = 0xff // a 10-byte varint of all ones: -2^63 zig-zagged
	minLong := []byte{maxVarint, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}
	cases := []struct {
		name string
		b    payload
		want string // "" = accepted
	}{
		{"valid", latestRecord().envelope().long(0).raw(nulls...), ""},
		{"negative string length", latestRecord().str("ev").long(-1), "field trace_id: negative string length"},
		{"string length past the end", latestRecord().long(1 << 19), "field event_id: string length 524288 beyond"},
		{"string over 1 MiB", latestRecord().long(1<<20 + 1), "field event_id: string length 1048577 over the limit"},
		{"huge string length", latestRecord().long(1 << 60), "field event_id: string length"},
		{"varint of 11 bytes", latestRecord().raw(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00), "field event_id: varint longer than 10 bytes"},
		{"truncated varint", latestRecord().raw(0x80), "field event_id: truncated varint"},
		{"enum index out of range", latestRecord().str("e").str("t").str("").long(4), "field event_type: enum index 4"},
		{"negative enum index", latestRecord().str("e").str("t").str("").long(-1), "field event_type: enum index -1"},
		{"int of 6 bytes", latestRecord().str("e").str("t").str("").raw(0x80, 0x80, 0x80, 0x80, 0x80, 0x00), "field event_type: int varint longer than 5 bytes"},
		// hamba drops the bits of a varint beyond the type's width.
		{"int with high bits", latestRecord().envelope().long(0).raw(0x02).str("tool").str("act").str("").str("read").raw(0xff, 0xff, 0xff, 0xff, 0x7f).
			long(0).str("d").str("").long(0).str("").str("").long(0).long(0).raw(0, 0, 0), ""},
		{"long with high bits", latestRecord().str("e").str("t").str("").long(0).raw(0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f).
			str("a").str("").str("t").str("").str("").str("").long(1).str("").str("").str("").str("").long(0).raw(nulls...), ""},
		{"union index 2", latestRecord().envelope().long(0).long(2), "field intent: union index 2"},
		{"negative union index", latestRecord().envelope().long(0).long(0).long(-1), "field policy_decision: union index -1"},
		{"map count past the end", latestRecord().envelope().long(1 << 40), "field labels: map block of 1099511627776 entries"},
		{"negative map key length", latestRecord().envelope().long(1).long(-3).str("v"), "field labels: map key: negative string length"},
		{"map value past the end", latestRecord().envelope().long(1).str("k").long(50).raw(1, 2), "field labels: map value: string length 50 beyond"},
		{"map with a duplicate key", latestRecord().envelope().long(-2).long(6).str("k").str("1").str("k").str("2").long(0).raw(nulls...), ""},
		{"map block of -2^63 entries", latestRecord().envelope().raw(minLong...).long(0).long(1).str("k").str("v").long(0).raw(nulls...), ""},
		{"map block size truncated", latestRecord().envelope().long(-1), "field labels: truncated varint"},
		{"array of 2^20+1 items", latestRecord().envelope().intentTo().long(1<<20 + 1), "field intent.evidence_ids: array of more than 1048576 items"},
		{"array past the end", latestRecord().envelope().intentTo().long(5).str("a"), "field intent.evidence_ids: array block of 5 items beyond"},
		{"array block of -2^63 items", latestRecord().envelope().intentTo().raw(minLong...).long(0).long(0).long(0).raw(0, 0, 0), "field intent.evidence_ids: array block count overflows"},
		{"array counts past 2^63", latestRecord().envelope().intentTo().long(1).str("a").long(math.MaxInt64).long(0).long(0).raw(0, 0, 0), "field intent.evidence_ids: array"},
		{"negative array item length", latestRecord().envelope().intentTo().long(1).long(-1), "field intent.evidence_ids: array item: negative string length"},
		{"truncated double", latestRecord().envelope().intentTo().long(0).long(1).raw(1, 2, 3), "field intent.confidence: truncated double"},
		{"trailing byte", latestRecord().envelope().long(0).raw(nulls...).raw(0), "trailing bytes after the record (1)"},
		{"empty payload", latestRecord(), "field event_id: truncated varint"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, diff := schemas.CompareDecoders(dec, bytes.Clone(tc.b))
			if diff != nil {
				t.Fatal(diff)
			}
			var e schemas.Event
			err := dec.Decode(context.Background(), tc.b, &e)
			if tc.want == "" {
				if err != nil || !ok {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, schemas.ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrMalformed containing %q", err, tc.want)
			}
		})
	}
}

// TestDecodeLatestAllocs: the hand-written decoder allocates a handful of
// times per event; hamba/avro allocated about four times as often.
func TestDecodeLatestAllocs(t *testing.T) {
	dec, err := schemas.NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := simulatedRecords(t, 500)
	ctx := context.Background()
	var e schemas.Event
	for _, tc := range []struct {
		name   string
		decode func(context.Context, []byte, *schemas.Event) error
	}{{"agentrail", dec.Decode}, {"hamba", dec.DecodeHamba}} {
		i := 0
		allocs := testing.AllocsPerRun(len(recs), func() {
			if err := tc.decode(ctx, recs[i%len(recs)], &e); err != nil {
				t.Fatal(err)
			}
			i++
		})
		t.Logf("%s: %.2f allocations per event", tc.name, allocs)
		if tc.name == "agentrail" && allocs > 6 {
			t.Fatalf("Decode allocates %.2f times per event, want at most 6", allocs)
		}
	}
}

func simulatedRecords(t testing.TB, n int) [][]byte {
	t.Helper()
	events := simulate.New(simulate.Config{Seed: 3}).Events(n, time.Now())
	enc := schemas.NewSingleObjectEncoder()
	recs := make([][]byte, len(events))
	for i := range events {
		b, err := enc.AppendEncode(nil, &events[i])
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = b
	}
	return recs
}

// BenchmarkDecode compares the hand-written decoder (Decode, the latest
// schema) with hamba/avro's (what Decode used before) on simulated records,
// and DecodeValid with Decode followed by Validate.
// proc-cpu-ns/op is the CPU time of the whole process per record, the
// collector's included, and not the time spent waiting for a CPU on a busy
// machine, which ns/op counts.
func BenchmarkDecode(b *testing.B) {
	dec, err := schemas.NewDecoder(nil)
	if err != nil {
		b.Fatal(err)
	}
	recs := simulatedRecords(b, 1000)
	ctx := context.Background()
	now := time.Now()
	for _, bc := range []struct {
		name   string
		decode func(context.Context, []byte, *schemas.Event) error
	}{
		{"agentrail", dec.Decode},
		{"hamba", dec.DecodeHamba},
		// As ingest used to: decode, then validate.
		{"agentrail-then-validate", func(ctx context.Context, b []byte, e *schemas.Event) error {
			if err := dec.Decode(ctx, b, e); err != nil {
				return err
			}
			return schemas.Validate(e, now, schemas.Limits{})
		}},
		// As ingest does: both in one pass.
		{"agentrail-valid", func(ctx context.Context, b []byte, e *schemas.Event) error {
			return dec.DecodeValid(ctx, b, e, now, schemas.Limits{})
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var e schemas.Event
			b.ReportAllocs()
			i := 0
			cpu := procCPU()
			for b.Loop() {
				if err := bc.decode(ctx, recs[i%len(recs)], &e); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64((procCPU()-cpu).Nanoseconds())/float64(b.N), "proc-cpu-ns/op")
		})
	}
}

// procCPU is the user and system CPU time of the process so far.
func procCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
