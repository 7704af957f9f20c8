package schemas

import (
	"context"
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the wire decoder: it must never panic,
// and whatever it rejects must be marked permanent (no registry is involved).
func FuzzDecode(f *testing.F) {
	enc := NewSingleObjectEncoder()
	for _, e := range sampleEvents() {
		b, _ := enc.AppendEncode(nil, e)
		f.Add(b)
	}
	f.Add([]byte{0xC3, 0x01})
	f.Add([]byte{0x00, 0, 0, 0, 1, 2})
	dec, err := NewDecoder(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Event
		err := dec.Decode(context.Background(), b, &e)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("decode error not marked permanent: %v", err)
		}
		if err == nil {
			_ = Validate(&e, t0, Limits{})
		}
	})
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
