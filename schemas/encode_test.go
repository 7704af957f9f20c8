package schemas_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

// hambaEncode is the reference: hamba/avro's reflective encoder with the
// schema file, single-object framed, with the enum defaults the hand-written
// encoder applies.
func hambaEncode(t testing.TB, e *schemas.Event) []byte {
	t.Helper()
	if ap := e.Approval; ap != nil && (ap.ApproverKind == "" || ap.Scope == "") {
		cp, apc := *e, *ap
		if apc.ApproverKind == "" {
			apc.ApproverKind = schemas.PrincipalHuman
		}
		if apc.Scope == "" {
			apc.Scope = schemas.ScopeSingle
		}
		cp.Approval = &apc
		e = &cp
	}
	v := schemas.Latest()
	b, err := avro.Marshal(v.Schema, e)
	if err != nil {
		t.Fatalf("hamba: %v", err)
	}
	return append(append([]byte{0xC3, 0x01}, v.Fingerprint[:]...), b...)
}

// multiKey reports whether e has a map with two or more entries: hamba
// writes those in Go's random map order, ours in key order, so only their
// decoded values can be compared.
func multiKey(e *schemas.Event) bool {
	if len(e.Labels) > 1 {
		return true
	}
	if in := e.Intent; in != nil && (len(in.Parameters) > 1 || len(in.Context) > 1) {
		return true
	}
	return false
}

// edgeEvents are what the simulator does not produce: empty and nil
// collections, collections over one block (100 items), optional fields set,
// negative and large numbers, multi-byte strings, default enums.
func edgeEvents() []schemas.Event {
	t0 := time.Date(2026, 11, 16, 9, 30, 0, 123456789, time.UTC)
	env := schemas.Event{EventID: "ev-é-1", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Type: schemas.TypeIntent,
		Time: t0, Agent: schemas.Agent{ID: "a", Team: "t"}, Tier: 3, Labels: map[string]string{}}
	big := map[string]string{}
	var many []string
	for i := range 250 {
		big[fmt.Sprintf("k%03d", i)] = strings.Repeat("v", i)
		many = append(many, strings.Repeat("x", i))
	}
	conf, quota, exp := 0.0, int64(-5), time.Unix(-3, 5000).UTC()
	in := env
	in.Intent = &schemas.Intent{Tool: "日本語", Action: "a", ActionClass: "c", Tier: -1, Parameters: big,
		EvidenceIDs: many, Confidence: &conf, Context: map[string]string{"": ""}}
	de := env
	de.Type, de.Labels = schemas.TypeDecision, nil
	de.Decision = &schemas.Decision{Outcome: schemas.OutcomeDeny, PolicyVersion: 1 << 62, Tier: 1<<31 - 1, RemainingQuota: &quota}
	ap := env
	ap.Type = schemas.TypeApproval
	ap.Approval = &schemas.Approval{ApprovalID: "x", Status: schemas.ApprovalExpired, ExpiresAt: &exp}
	ap2 := env
	ap2.Type = schemas.TypeApproval
	ap2.Approval = &schemas.Approval{Status: schemas.ApprovalGranted, ApproverKind: schemas.PrincipalService, Scope: schemas.ScopeTimeWindow}
	re := env
	re.Type = schemas.TypeResult
	re.Result = &schemas.Result{Status: schemas.ResultBlocked, SideEffects: many[:100], DurationUS: -1}
	re2 := env
	re2.Type = schemas.TypeResult
	re2.Result = &schemas.Result{Status: schemas.ResultError, SideEffects: []string{}, ErrorMessage: strings.Repeat("m", 70000)}
	return []schemas.Event{in, de, ap, ap2, re, re2}
}

// simulatedEvents returns n events of a simulated fleet (reordered and
// duplicated at 1%), one planted anomaly of every kind, and edgeEvents.
func simulatedEvents(t testing.TB, seed uint64, n int) []schemas.Event {
	t.Helper()
	fleet := simulate.New(simulate.Config{Seed: seed, ReorderRate: 0.01, DuplicateRate: 0.01})
	events := fleet.Events(n, time.Now())
	for _, kind := range simulate.AnomalyKinds() {
		a, err := fleet.Plant(simulate.AnomalySpec{Kind: kind, At: time.Now()})
		if err != nil {
			t.Fatalf("plant %s: %v", kind, err)
		}
		events = append(events, a.Events()...)
	}
	return append(events, edgeEvents()...)
}

// TestEncoderMatchesHamba: the hand-written encoder writes hamba/avro's
// bytes for simulated and edge-case events (byte for byte when no map has
// two entries), and what it writes decodes to the event it was given.
func TestEncoderMatchesHamba(t *testing.T) {
	events := simulatedEvents(t, 7, 20_000)
	dec, err := schemas.NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	enc := schemas.NewSingleObjectEncoder()
	exact := 0
	for i := range events {
		e := &events[i]
		got, err := enc.AppendEncode(nil, e)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		want := hambaEncode(t, e)
		if !multiKey(e) {
			if !bytes.Equal(got, want) {
				t.Fatalf("event %d (%s): bytes differ from hamba/avro\n got % x\nwant % x", i, e.Type, got, want)
			}
			exact++
			continue
		}
		if len(got) != len(want) {
			t.Fatalf("event %d (%s): %d bytes, hamba/avro wrote %d", i, e.Type, len(got), len(want))
		}
		var a, b schemas.Event
		if err := dec.Decode(context.Background(), got, &a); err != nil {
			t.Fatalf("event %d: decode ours: %v", i, err)
		}
		if err := dec.Decode(context.Background(), want, &b); err != nil {
			t.Fatalf("event %d: decode hamba's: %v", i, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("event %d (%s): decodes differently from hamba/avro's bytes\n got %+v\nwant %+v", i, e.Type, a, b)
		}
	}
	// Proof that the byte-for-byte comparison covered most events, not a
	// handful.
	if exact < len(events)/2 {
		t.Fatalf("only %d of %d events compared byte for byte", exact, len(events))
	}
	t.Logf("%d events, %d byte for byte", len(events), exact)
}

// TestEncoderDeterministic: the same event encodes to the same bytes every
// time, whatever Go's map iteration order.
func TestEncoderDeterministic(t *testing.T) {
	e := edgeEvents()[0]
	e.Labels = map[string]string{"b": "2", "a": "1", "c": "3", "d": "4"}
	enc := schemas.NewSingleObjectEncoder()
	first, err := enc.AppendEncode(nil, &e)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		got, _ := enc.AppendEncode(nil, &e)
		if !bytes.Equal(got, first) {
			t.Fatal("encoding changed between calls")
		}
	}
}

// TestEncoderEnumErrors: a value outside an enum's symbols is refused with
// the field's name and without the value, and dst comes back unchanged.
func TestEncoderEnumErrors(t *testing.T) {
	const secret = "sk-live-123"
	base := edgeEvents()
	cases := []struct {
		name, field string
		ev          schemas.Event
	}{
		{"event type", "event_type", func() schemas.Event { e := base[0]; e.Type = secret; return e }()},
		{"outcome", "policy_decision.outcome", func() schemas.Event {
			e := base[1]
			d := *e.Decision
			d.Outcome = secret
			e.Decision = &d
			return e
		}()},
		{"approval status", "approval.status", func() schemas.Event {
			e := base[2]
			a := *e.Approval
			a.Status = secret
			e.Approval = &a
			return e
		}()},
		{"approver kind", "approval.approver_kind", func() schemas.Event {
			e := base[2]
			a := *e.Approval
			a.ApproverKind = secret
			e.Approval = &a
			return e
		}()},
		{"scope", "approval.scope", func() schemas.Event {
			e := base[2]
			a := *e.Approval
			a.Scope = secret
			e.Approval = &a
			return e
		}()},
		{"result status", "result.status", func() schemas.Event {
			e := base[4]
			r := *e.Result
			r.Status = secret
			e.Result = &r
			return e
		}()},
	}
	enc := schemas.NewSingleObjectEncoder()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("prefix")
			out, err := enc.AppendEncode(dst, &tc.ev)
			var ve *schemas.ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field {
				t.Fatalf("err = %v, want a ValidationError for field %s", err, tc.field)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error quotes the value: %v", err)
			}
			if string(out) != "prefix" {
				t.Fatalf("dst = %q after an error, want it unchanged", out)
			}
		})
	}
}

// TestEncoderNoAllocs: with room in dst, encoding allocates nothing.
func TestEncoderNoAllocs(t *testing.T) {
	events := simulate.New(simulate.Config{Seed: 3}).Events(200, time.Now())
	enc := schemas.NewSingleObjectEncoder()
	buf := make([]byte, 0, 64<<10)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		buf, _ = enc.AppendEncode(buf[:0], &events[i%len(events)])
		i++
	})
	if allocs != 0 {
		t.Fatalf("AppendEncode allocates %.1f times per event, want 0", allocs)
	}
}

// TestAppendValidSimulated: on simulated events AppendValid accepts what Validate accepts, writes AppendEncode's
// bytes, and allocates nothing.
func TestAppendValidSimulated(t *testing.T) {
	now := time.Now()
	events := simulate.New(simulate.Config{Seed: 3}).Events(2000, now)
	enc := schemas.NewSingleObjectEncoder()
	for i := range events {
		e := &events[i]
		want, err := enc.AppendEncode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		verr := schemas.Validate(e, now, schemas.Limits{})
		got, err := enc.AppendValid(nil, e, now, schemas.Limits{})
		if (verr == nil) != (err == nil) {
			t.Fatalf("event %d: Validate says %v, AppendValid %v", i, verr, err)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("event %d: AppendValid and AppendEncode differ", i)
		}
	}
	buf := make([]byte, 0, 64<<10)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		buf, _ = enc.AppendValid(buf[:0], &events[i%len(events)], now, schemas.Limits{})
		i++
	})
	if allocs != 0 {
		t.Fatalf("AppendValid allocates %.1f times per event, want 0", allocs)
	}
}

// BenchmarkEncode compares the hand-written encoder with hamba/avro's on
// simulated events.
func BenchmarkEncode(b *testing.B) {
	events := simulate.New(simulate.Config{Seed: 3}).Events(1000, time.Now())
	b.Run("agentrail", func(b *testing.B) {
		enc := schemas.NewSingleObjectEncoder()
		buf := make([]byte, 0, 4096)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			buf, _ = enc.AppendEncode(buf[:0], &events[i%len(events)])
			i++
		}
	})
	b.Run("agentrail-valid", func(b *testing.B) { // Validate and encode, as producers do
		enc := schemas.NewSingleObjectEncoder()
		buf := make([]byte, 0, 4096)
		now := time.Now()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			buf, _ = enc.AppendValid(buf[:0], &events[i%len(events)], now, schemas.Limits{})
			i++
		}
	})
	b.Run("hamba", func(b *testing.B) {
		s := schemas.Latest().Schema
		w := avro.NewWriter(nil, 4096)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			w.Reset(nil)
			w.WriteVal(s, &events[i%len(events)])
			i++
		}
	})
}
