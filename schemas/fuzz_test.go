package schemas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the wire decoder, as a whole record
// and as the payload of a record framed with the latest schema: the
// hand-written decoder (Decode) and hamba/avro's (DecodeHamba) must accept
// and reject the same records and decode them to the same event
// (CompareDecoders), never panic, and mark what they reject permanent (no
// registry is involved); DecodeValid must agree with Decode then Validate.
// The seeds are valid records of every type and of the edge cases (empty
// and absent fields, maps over one block, unicode, a NaN), so that even a
// short run mutates real records.
func FuzzDecode(f *testing.F) {
	enc := NewSingleObjectEncoder()
	for _, e := range fuzzSeedEvents() {
		b, err := enc.AppendEncode(nil, e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[10:]) // the payload alone, which the target also frames
	}
	if v1, err := os.ReadFile(filepath.Join("testdata", "intent.v1.avro")); err == nil {
		f.Add(v1)
	}
	f.Add([]byte{0xC3, 0x01})
	f.Add([]byte{0x00, 0, 0, 0, 1, 2})
	dec, err := NewDecoder(nil)
	if err != nil {
		f.Fatal(err)
	}
	fp := Latest().Fingerprint
	header := append([]byte{singleObject0, singleObject1}, fp[:]...)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, rec := range [][]byte{bytes.Clone(b), append(bytes.Clone(header), b...)} {
			if _, diff := CompareDecoders(dec, rec); diff != nil {
				t.Fatalf("%v\nrecord % x", diff, rec)
			}
			// DecodeValid is Decode then Validate, error for error.
			var e, ev Event
			werr := dec.Decode(context.Background(), rec, &e)
			if werr == nil {
				werr = Validate(&e, t0, Limits{})
			}
			if gerr := dec.DecodeValid(context.Background(), rec, &ev, t0, Limits{}); fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("DecodeValid: %v; Decode and Validate: %v\nrecord % x", gerr, werr, rec)
			}
		}
	})
}

// fuzzSeedEvents are the sample events and edge cases of the decoder.
func fuzzSeedEvents() []*Event {
	events := sampleEvents()
	bare := &Event{Type: TypeIntent, Intent: &Intent{}}
	none := &Event{Type: TypeResult}
	u := "ünïcödé ✓ 日本語 🚀"
	nan := math.NaN()
	big := map[string]string{}
	for i := range 120 {
		big[fmt.Sprintf("k%d", i)] = u[:i%len(u)]
	}
	wide := *events[0]
	in := *wide.Intent
	in.Parameters, in.Confidence, in.EvidenceIDs, in.Rationale = big, &nan, []string{"", u}, u
	wide.Intent, wide.Labels, wide.SessionID = &in, map[string]string{u: u, "": ""}, u
	res := *events[3]
	r := *res.Result
	r.SideEffects = nil
	res.Result = &r
	ap := *events[2]
	a := *ap.Approval
	a.ExpiresAt, a.ApproverKind, a.Scope = nil, PrincipalService, ScopeTimeWindow
	ap.Approval = &a
	de := *events[1]
	d := *de.Decision
	d.RemainingQuota = nil
	de.Decision = &d
	return append(events, bare, none, &wide, &res, &ap, &de)
}

// FuzzParseJSON feeds arbitrary lines to the canonical JSON parser.
func FuzzParseJSON(f *testing.F) {
	for _, e := range sampleEvents() {
		b, _ := AppendJSON(nil, e)
		f.Add(b)
	}
	f.Add([]byte(`{"event_time":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseJSON(b)
		if err == nil {
			_ = Validate(e, t0, Limits{})
		}
	})
}

// FuzzDecodeJSON feeds arbitrary bytes to the wire decoder's JSON framing:
// it never panics, marks everything it rejects permanent, names no value
// it was given, and agrees with ParseJSON; DecodeValid is Decode then
// Validate. Seeds: testdata/fuzz/FuzzDecodeJSON and every seed event.
func FuzzDecodeJSON(f *testing.F) {
	for _, e := range fuzzSeedEvents() {
		if b, err := AppendJSON(nil, e); err == nil { // not the NaN: JSON has none
			f.Add(b[1:])
		}
	}
	dec, err := NewDecoder(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rec := append([]byte{'{'}, b...)
		var e, ev Event
		werr := dec.Decode(context.Background(), rec, &e)
		if werr != nil && !errors.Is(werr, ErrMalformed) {
			t.Fatalf("transient error for a json record: %v", werr)
		}
		if _, perr := ParseJSON(rec); (perr == nil) != (werr == nil) {
			t.Fatalf("ParseJSON %v, Decode %v", perr, werr)
		}
		if werr == nil {
			werr = Validate(&e, t0, Limits{})
		}
		if gerr := dec.DecodeValid(context.Background(), rec, &ev, t0, Limits{}); fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("DecodeValid: %v; Decode and Validate: %v\nrecord %q", gerr, werr, rec)
		}
	})
}
