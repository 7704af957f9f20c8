package schemas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// A record of the JSON framing decodes to the event its Avro framing
// decodes to, through Decode and DecodeValid alike.
func TestDecodeJSONFramingMatchesAvro(t *testing.T) {
	dec, err := NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	enc := NewSingleObjectEncoder()
	ctx := context.Background()
	for _, e := range fuzzSeedEvents() {
		js, err := AppendJSON(nil, e)
		if err != nil {
			continue // the NaN confidence: JSON has no NaN
		}
		if js[0] != '{' {
			t.Fatalf("json record starts with %q", js[0])
		}
		av, err := enc.AppendEncode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		var fromAvro, fromJSON, valid Event
		aerr := dec.Decode(ctx, av, &fromAvro)
		jerr := dec.Decode(ctx, js, &fromJSON)
		if aerr != nil || jerr != nil {
			t.Fatalf("event %s: avro %v, json %v", e.EventID, aerr, jerr)
		}
		// The JSON form omits empty optionals: compare what each framing
		// says, as JSON.
		a, _ := AppendJSON(nil, &fromAvro)
		j, _ := AppendJSON(nil, &fromJSON)
		if !bytes.Equal(a, j) {
			t.Errorf("event %s:\n avro %s\n json %s", e.EventID, a, j)
		}
		verr := dec.DecodeValid(ctx, js, &valid, t0, Limits{})
		if want := Validate(&fromJSON, t0, Limits{}); fmt.Sprint(verr) != fmt.Sprint(want) {
			t.Errorf("event %s: DecodeValid %v, Validate %v", e.EventID, verr, want)
		}
		if verr == nil && !reflect.DeepEqual(valid, fromJSON) {
			t.Errorf("event %s: DecodeValid and Decode differ", e.EventID)
		}
	}
}

// A JSON record that does not decode is malformed (permanent) with a
// *JSONError naming the field; one that decodes but breaks the contract is
// a *ValidationError with the field Avro's would name. Neither echoes the
// value.
func TestDecodeJSONFramingErrors(t *testing.T) {
	dec, err := NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "s3cr3t-VALUE"
	good, _ := AppendJSON(nil, sampleEvents()[0])
	cases := []struct {
		name, in  string
		malformed bool
		field     string
	}{
		{"syntax", `{"event_id":"` + secret + `",}`, true, ""},
		{"truncated", `{"event_id":"` + secret, true, ""},
		{"type", `{"event_id":"x","tier":"` + secret + `"}`, true, "tier"},
		{"time", `{"event_id":"x","event_time":"` + secret + `"}`, true, "event_time"},
		{"unknown field", `{"event_id":"x","bogus":"` + secret + `"}`, true, "bogus"},
		{"trailing", string(good) + `{"x":"` + secret + `"}`, true, ""},
		{"trace id", strings.Replace(string(good), "4bf92f3577b34da6a3ce929d0e0e4736", secret, 1), false, "trace_id"},
		{"digest", strings.Replace(string(good), `"action_digest":"c5fb8a38`, `"action_digest":"`+secret+`c5`, 1), false, "intent.action_digest"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e Event
			err := dec.DecodeValid(context.Background(), []byte(tc.in), &e, t0, Limits{})
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error echoes the value: %v", err)
			}
			var je *JSONError
			var ve *ValidationError
			switch {
			case tc.malformed && (!errors.Is(err, ErrMalformed) || !errors.As(err, &je) || je.Field != tc.field):
				t.Errorf("err = %v, want malformed naming field %q", err, tc.field)
			case !tc.malformed && (errors.Is(err, ErrMalformed) || !errors.As(err, &ve) || ve.Field != tc.field):
				t.Errorf("err = %v, want a validation error of %q", err, tc.field)
			}
		})
	}
}

// BenchmarkDecodeValidFramings: what ingest pays per event to decode and
// validate the same events in the JSON framing and in Avro's.
func BenchmarkDecodeValidFramings(b *testing.B) {
	dec, err := NewDecoder(nil)
	if err != nil {
		b.Fatal(err)
	}
	enc := NewSingleObjectEncoder()
	var avro, js [][]byte
	for _, e := range sampleEvents() {
		a, err := enc.AppendEncode(nil, e)
		if err != nil {
			b.Fatal(err)
		}
		j, err := AppendJSON(nil, e)
		if err != nil {
			b.Fatal(err)
		}
		avro, js = append(avro, a), append(js, j)
	}
	for _, bc := range []struct {
		name string
		recs [][]byte
	}{{"avro", avro}, {"json", js}} {
		b.Run(bc.name, func(b *testing.B) {
			var e Event
			var n int
			for i := 0; b.Loop(); i++ {
				rec := bc.recs[i%len(bc.recs)]
				n += len(rec)
				if err := dec.DecodeValid(context.Background(), rec, &e, t0, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(n / max(b.N, 1)))
		})
	}
}
