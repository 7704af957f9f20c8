package schemas

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

var t0 = time.Date(2026, 11, 16, 9, 30, 0, 123456000, time.UTC)

func sampleEvents() []*Event {
	conf := 0.82
	quota := int64(4)
	exp := t0.Add(time.Hour)
	env := func(id string, typ EventType, at time.Duration) Event {
		return Event{
			EventID: id, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
			Type: typ, Time: t0.Add(at), Tier: TierHigh,
			Agent:       Agent{ID: "billing-bot", Version: "1.4.2", Team: "finance", Environment: "prod", Tenant: "acme"},
			RequestedBy: "alice@acme.test",
			Producer:    Producer{Name: "agentrail-go", Version: "0.1.0", Host: "worker-7"},
		}
	}
	digest := ActionDigest("billing-bot", "payments", "refund", "order:991", map[string]string{"amount": "120.00"})
	in := env("ev-1", TypeIntent, 0)
	in.Intent = &Intent{Tool: "payments", Action: "refund", Target: "order:991", ActionClass: "refund", Tier: TierHigh,
		Parameters: map[string]string{"amount": "120.00"}, ActionDigest: digest, Rationale: "customer charged twice",
		Context: map[string]string{"ticket": "4471"}, ModelID: "m-large", PromptVersion: "p7",
		EvidenceIDs: []string{"doc-1", "doc-2"}, Confidence: &conf}
	de := env("ev-2", TypeDecision, time.Second)
	de.Decision = &Decision{Outcome: OutcomeRequireApproval, PolicyID: "refunds", PolicyVersion: 12, MatchedRule: "refund>100",
		Reason: "refunds above 100 need a human", Tier: TierHigh, RemainingQuota: &quota}
	ap := env("ev-3", TypeApproval, 5*time.Minute)
	ap.Approval = &Approval{ApprovalID: "apr-1", Status: ApprovalGranted, Approver: "bob@acme.test", ApproverRole: "finance-lead",
		ApproverKind: PrincipalHuman, ActionDigest: digest, Scope: ScopeSingle, ExpiresAt: &exp, Channel: "slack", Comment: "ok"}
	re := env("ev-4", TypeResult, 6*time.Minute)
	re.Result = &Result{Status: ResultSuccess, ActionDigest: digest, Executor: "billing-bot", ChangedResource: "order:991",
		SideEffects: []string{"refund:r-1"}, DurationUS: 420000}
	return []*Event{&in, &de, &ap, &re}
}

// normalize makes decoded and original events comparable: Avro has no nil
// maps or slices, and time zones are not on the wire.
func normalize(e *Event) {
	e.Time = e.Time.UTC()
	if len(e.Labels) == 0 {
		e.Labels = nil
	}
	if in := e.Intent; in != nil {
		if len(in.Parameters) == 0 {
			in.Parameters = nil
		}
		if len(in.Context) == 0 {
			in.Context = nil
		}
		if len(in.EvidenceIDs) == 0 {
			in.EvidenceIDs = nil
		}
	}
	if a := e.Approval; a != nil && a.ExpiresAt != nil {
		u := a.ExpiresAt.UTC()
		a.ExpiresAt = &u
	}
	if r := e.Result; r != nil && len(r.SideEffects) == 0 {
		r.SideEffects = nil
	}
}

func TestActionDigestVector(t *testing.T) {
	// Computed independently: Python's json.dumps(sort_keys=True,
	// separators=(",", ":"), ensure_ascii=False) and hashlib.sha256.
	got := ActionDigest("billing-bot", "email", "send", "mailbox:finance",
		map[string]string{"amount": "120.00", "to": "ops@example.com", "note": "line\nbreak \"q\" é"})
	const want = "a546bcd00d893b202d3003ec8b8fa91492891e246a33bdf9c866a594eafbe35a"
	if got != want {
		t.Fatalf("ActionDigest = %s, want %s", got, want)
	}
	if other := ActionDigest("billing-bot", "email", "send", "mailbox:finance", map[string]string{"amount": "120.01"}); other == got {
		t.Fatal("different parameters gave the same digest")
	}
}

func TestSingleObjectRoundTrip(t *testing.T) {
	dec, err := NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	enc := NewSingleObjectEncoder()
	for _, want := range sampleEvents() {
		t.Run(string(want.Type), func(t *testing.T) {
			b, err := enc.AppendEncode(nil, want)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != 0xC3 || b[1] != 0x01 {
				t.Fatalf("header = % x, want c3 01", b[:2])
			}
			var got Event
			if err := dec.Decode(context.Background(), b, &got); err != nil {
				t.Fatal(err)
			}
			normalize(&got)
			if !reflect.DeepEqual(&got, want) {
				t.Fatalf("round trip mismatch:\n got %+v\nwant %+v", got, *want)
			}
			if err := Validate(&got, t0, DefaultLimits); err != nil {
				t.Fatalf("sample does not validate: %v", err)
			}
		})
	}
}

// fakeRegistry serves the one endpoint the Decoder calls, from a map.
func fakeRegistry(t *testing.T, schemas map[int]string) *sr.Client {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id int
		if _, err := fmt.Sscanf(r.URL.Path, "/schemas/ids/%d/schema", &id); err != nil {
			http.NotFound(w, r)
			return
		}
		s, ok := schemas[id]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error_code":40403,"message":"Schema not found"}`)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		fmt.Fprint(w, s)
	}))
	t.Cleanup(srv.Close)
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestDecodeLatestVersion: the hand-written decoder is written for the
// latest schema; publishing a new version must come with its rewrite.
func TestDecodeLatestVersion(t *testing.T) {
	if Latest().N != decodeLatestVersion {
		t.Fatalf("latest schema is v%d, decodeLatest reads v%d: rewrite decode.go (and encode.go) for it", Latest().N, decodeLatestVersion)
	}
	dec, _ := NewDecoder(nil)
	if !dec.handWritten {
		t.Fatal("Decode does not use the hand-written decoder")
	}
}

func TestConfluentFraming(t *testing.T) {
	v1, _ := SchemaText(1)
	v2, _ := SchemaText(2)
	cl := fakeRegistry(t, map[int]string{7: v2, 3: v1})
	dec, err := NewDecoder(cl)
	if err != nil {
		t.Fatal(err)
	}
	want := sampleEvents()[0]
	b, err := NewConfluentEncoder(7).AppendEncode(nil, want)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0 || b[4] != 7 {
		t.Fatalf("header = % x, want 00 00 00 00 07", b[:5])
	}
	var got Event
	if err := dec.Decode(context.Background(), b, &got); err != nil {
		t.Fatal(err)
	}
	normalize(&got)
	if !reflect.DeepEqual(&got, want) {
		t.Fatalf("mismatch:\n got %+v\nwant %+v", got, *want)
	}
	// The registry's copy of the latest schema takes the hand-written
	// decoder (Decode compares the writer schema with the reader), v1's
	// does not.
	if s, err := dec.schemaByID(context.Background(), 7); err != nil || s != dec.reader {
		t.Fatalf("registry id 7 (v2) resolved to %v, %v: want the reader schema itself", s, err)
	}
	if s, err := dec.schemaByID(context.Background(), 3); err != nil || s == dec.reader {
		t.Fatalf("registry id 3 (v1) resolved to %v, %v: want a resolved schema", s, err)
	}

	// Unknown id: permanent. No registry: permanent.
	b[4] = 9
	if err := dec.Decode(context.Background(), b, &got); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unknown schema id: err = %v, want ErrMalformed", err)
	}
	noReg, _ := NewDecoder(nil)
	if err := noReg.Decode(context.Background(), b, &got); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "no registry") {
		t.Fatalf("no registry: err = %v", err)
	}
}

func TestRegistryUnreachableIsTransient(t *testing.T) {
	cl, err := sr.NewClient(sr.URLs("http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := NewDecoder(cl)
	b, _ := NewConfluentEncoder(5).AppendEncode(nil, sampleEvents()[0])
	var got Event
	err = dec.Decode(context.Background(), b, &got)
	if err == nil || errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want a transient (not ErrMalformed) error", err)
	}
}

// TestBackwardCompatibility proves a record written with schema v1 is read by
// the latest schema, with v2's new fields at their defaults. The v1 bytes are
// a golden file: once published they must stay readable forever. It was
// written before agentrail followed the spec's fingerprint, so it carries
// v1's legacy fingerprint; the same payload framed with v1's spec
// fingerprint must read the same.
func TestBackwardCompatibility(t *testing.T) {
	v1 := Versions()[0]
	golden := filepath.Join("testdata", "intent.v1.avro")
	if *update {
		payload, err := avro.Marshal(v1.Schema, sampleEvents()[0])
		if err != nil {
			t.Fatal(err)
		}
		framed := append(append([]byte{0xC3, 0x01}, v1.LegacyFingerprint[:]...), payload...)
		if err := os.WriteFile(golden, framed, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./schemas -update once)", err)
	}
	if Latest().N == 1 || Latest().Fingerprint == v1.Fingerprint {
		t.Fatal("latest schema is v1: nothing to prove")
	}
	if !bytes.Equal(b[2:10], v1.LegacyFingerprint[:]) {
		t.Fatalf("golden v1 record carries fingerprint %x, want v1's legacy %x", b[2:10], v1.LegacyFingerprint)
	}
	spec := append(append([]byte{0xC3, 0x01}, v1.Fingerprint[:]...), b[10:]...)
	dec, _ := NewDecoder(nil)
	for _, tc := range []struct {
		name   string
		rec    []byte
		legacy int
	}{{"legacy fingerprint", b, 1}, {"spec fingerprint", spec, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := dec.LegacyVersion(tc.rec); got != tc.legacy {
				t.Fatalf("LegacyVersion = %d, want %d", got, tc.legacy)
			}
			var got Event
			if err := dec.Decode(context.Background(), tc.rec, &got); err != nil {
				t.Fatalf("v1 record not readable by v%d: %v", Latest().N, err)
			}
			normalize(&got)
			want := sampleEvents()[0]
			if !reflect.DeepEqual(&got, want) {
				t.Fatalf("v1 record read as\n %+v\nwant %+v", got, *want)
			}
			if got.SessionID != "" || got.Labels != nil {
				t.Fatalf("v2 fields not at their defaults: session_id=%q labels=%v", got.SessionID, got.Labels)
			}
		})
	}
}

// TestLegacyFingerprintV2 reads a latest-version record framed with v2's
// legacy fingerprint, as producers wrote it before: same event, counted as
// legacy; an encoder's own records are not.
func TestLegacyFingerprintV2(t *testing.T) {
	v := Latest()
	if v.Fingerprint == v.LegacyFingerprint {
		t.Fatal("spec and legacy fingerprints are equal: nothing to prove")
	}
	dec, _ := NewDecoder(nil)
	for _, e := range sampleEvents() {
		spec, err := NewSingleObjectEncoder().AppendEncode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(spec[2:10], v.Fingerprint[:]) || dec.LegacyVersion(spec) != 0 {
			t.Fatalf("encoder wrote fingerprint %x (legacy version %d), want the spec's %x", spec[2:10], dec.LegacyVersion(spec), v.Fingerprint)
		}
		legacy := append(append([]byte{0xC3, 0x01}, v.LegacyFingerprint[:]...), spec[10:]...)
		if got := dec.LegacyVersion(legacy); got != v.N {
			t.Fatalf("LegacyVersion = %d, want %d", got, v.N)
		}
		var a, b Event
		if err := dec.DecodeValid(context.Background(), spec, &a, e.Time, Limits{}); err != nil {
			t.Fatal(err)
		}
		if err := dec.DecodeValid(context.Background(), legacy, &b, e.Time, Limits{}); err != nil {
			t.Fatalf("legacy-framed %s: %v", e.Type, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("legacy-framed %s read as\n %+v\nwant %+v", e.Type, b, a)
		}
	}
}

// TestEncodeGolden pins the bytes the encoder writes for the sample events
// (plus one with several labels: map entries go in key order). A change here
// is a wire change: it must still decode with every published schema's
// reader, and be deliberate (-update).
func TestEncodeGolden(t *testing.T) {
	events := sampleEvents()
	labelled := *events[0]
	labelled.SessionID = "run-42"
	labelled.Labels = map[string]string{"zone": "eu", "app": "billing", "cost_center": "f-17"}
	events = append(events, &labelled)
	enc := NewSingleObjectEncoder()
	var got strings.Builder
	for _, e := range events {
		b, err := enc.AppendEncode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&got, "%s %x\n", e.Type, b)
	}
	golden := filepath.Join("testdata", "events.v2.avro.hex")
	if *update {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./schemas -update once)", err)
	}
	if got.String() != string(want) {
		t.Fatalf("encoded bytes changed; if intended, run with -update\n got %s\nwant %s", got.String(), want)
	}
}

func TestDecodeMalformed(t *testing.T) {
	dec, _ := NewDecoder(nil)
	good, _ := NewSingleObjectEncoder().AppendEncode(nil, sampleEvents()[0])
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "empty record"},
		{"unknown framing", []byte{0x5b, 0x22}, "unknown framing byte 0x5b"},
		{"json framing, truncated", []byte{0x7b, 0x22}, "decode json record"},
		{"short header", good[:6], "truncated single-object header"},
		{"unknown fingerprint", append([]byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}, good[10:]...), "unknown schema fingerprint"},
		{"truncated payload", good[:len(good)/2], "decode avro payload"},
		{"trailing bytes", append(append([]byte{}, good...), 0, 0), "trailing bytes"},
	}
	// Every truncation of a valid record is rejected, not decoded into an
	// event with empty fields.
	for n := 10; n < len(good); n++ {
		cases = append(cases, struct {
			name string
			b    []byte
			want string
		}{fmt.Sprintf("truncated at %d", n), good[:n], "decode avro payload"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e Event
			err := dec.Decode(context.Background(), tc.b, &e)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrMalformed containing %q", err, tc.want)
			}
		})
	}
}

type validateCase struct {
	name   string
	mutate func(e []*Event) *Event
	field  string // "" = valid
}

func validateCases() []validateCase {
	return []validateCase{
		{"valid intent", func(e []*Event) *Event { return e[0] }, ""},
		{"valid result", func(e []*Event) *Event { return e[3] }, ""},
		{"missing event_id", func(e []*Event) *Event { e[0].EventID = ""; return e[0] }, "event_id"},
		{"event_id with space", func(e []*Event) *Event { e[0].EventID = "a b"; return e[0] }, "event_id"},
		{"short trace_id", func(e []*Event) *Event { e[0].TraceID = "abc"; return e[0] }, "trace_id"},
		{"upper-case trace_id", func(e []*Event) *Event { e[0].TraceID = strings.ToUpper(e[0].TraceID); return e[0] }, "trace_id"},
		{"zero trace_id", func(e []*Event) *Event { e[0].TraceID = strings.Repeat("0", 32); return e[0] }, "trace_id"},
		{"bad span_id", func(e []*Event) *Event { e[0].SpanID = "xyz"; return e[0] }, "span_id"},
		{"far future", func(e []*Event) *Event { e[0].Time = t0.Add(2 * time.Hour); return e[0] }, "event_time"},
		{"far past", func(e []*Event) *Event { e[0].Time = t0.AddDate(-2, 0, 0); return e[0] }, "event_time"},
		{"zero time", func(e []*Event) *Event { e[0].Time = time.Time{}; return e[0] }, "event_time"},
		{"no agent", func(e []*Event) *Event { e[0].Agent.ID = ""; return e[0] }, "agent.agent_id"},
		{"no team", func(e []*Event) *Event { e[0].Agent.Team = ""; return e[0] }, "agent.team"},
		{"tier 4", func(e []*Event) *Event { e[0].Tier = 4; return e[0] }, "tier"},
		{"body mismatch", func(e []*Event) *Event { e[0].Type = TypeResult; return e[0] }, "result"},
		{"two bodies", func(e []*Event) *Event { e[0].Result = e[3].Result; return e[0] }, "event_type"},
		{"bad digest", func(e []*Event) *Event { e[0].Intent.ActionDigest = "abc"; return e[0] }, "intent.action_digest"},
		{"confidence > 1", func(e []*Event) *Event { c := 1.5; e[0].Intent.Confidence = &c; return e[0] }, "intent.confidence"},
		{"bad outcome", func(e []*Event) *Event { e[1].Decision.Outcome = "maybe"; return e[1] }, "policy_decision.outcome"},
		{"granted, no approver", func(e []*Event) *Event { e[2].Approval.Approver = ""; return e[2] }, "approval.approver"},
		{"granted, no digest", func(e []*Event) *Event { e[2].Approval.ActionDigest = ""; return e[2] }, "approval.action_digest"},
		{"time window, no digest", func(e []*Event) *Event {
			e[2].Approval.ActionDigest, e[2].Approval.Scope = "", ScopeTimeWindow
			return e[2]
		}, ""},
		{"bad result status", func(e []*Event) *Event { e[3].Result.Status = "ok"; return e[3] }, "result.status"},
		{"invalid utf-8", func(e []*Event) *Event { e[0].Intent.Rationale = "a\xffb"; return e[0] }, "intent.rationale"},
		{"invalid utf-8 in param", func(e []*Event) *Event { e[0].Intent.Parameters["x"] = "\xc3"; return e[0] }, "intent.parameters.x"},
		{"huge string", func(e []*Event) *Event { e[3].Result.ErrorMessage = strings.Repeat("x", 70000); return e[3] }, "result.error_message"},
		{"huge map value", func(e []*Event) *Event { e[0].Labels = map[string]string{"k": strings.Repeat("x", 70000)}; return e[0] }, "labels.k"},
		{"non-ascii utf-8", func(e []*Event) *Event { e[0].Intent.Rationale = "facture réglée, 12 €"; return e[0] }, ""},
		{"non-ascii utf-8 in param", func(e []*Event) *Event { e[0].Intent.Parameters["note"] = "naïve"; return e[0] }, ""},
		{"invalid utf-8 after valid non-ascii", func(e []*Event) *Event {
			e[3].Result.Executor = "zoë"
			e[3].Result.SideEffects = []string{"ok", "bad\xe2\x82"}
			return e[3]
		}, "result.side_effects[]"},
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range validateCases() {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.mutate(sampleEvents()), t0, Limits{})
			if tc.field == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field {
				t.Fatalf("err = %v, want ValidationError on field %s", err, tc.field)
			}
		})
	}
}

// TestAppendValidAgreesWithValidate: AppendValid refuses what Validate
// refuses, naming the same field and leaving dst as it was, and encodes what
// Validate accepts exactly as AppendEncode does.
func TestAppendValidAgreesWithValidate(t *testing.T) {
	enc := NewSingleObjectEncoder()
	prefix := []byte("key")
	for _, tc := range validateCases() {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.mutate(sampleEvents())
			got, err := enc.AppendValid(append([]byte(nil), prefix...), e, t0, Limits{})
			if tc.field != "" {
				var ve *ValidationError
				if !errors.As(err, &ve) || ve.Field != tc.field {
					t.Fatalf("err = %v, want ValidationError on field %s", err, tc.field)
				}
				if !bytes.Equal(got, prefix) {
					t.Fatalf("dst after a refusal = %q, want %q", got, prefix)
				}
				return
			}
			if err != nil {
				t.Fatalf("want valid, got %v", err)
			}
			want, err := enc.AppendEncode(append([]byte(nil), prefix...), e)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendValid wrote %x, AppendEncode %x", got, want)
			}
		})
	}
}

// TestAppendValidInAgrees: with an Envelope of the sample events' agent and
// producer, AppendValidIn refuses what AppendValid refuses, with the same
// error, and writes the same bytes, whether an event carries the envelope's
// agent and producer or others.
func TestAppendValidInAgrees(t *testing.T) {
	enc := NewSingleObjectEncoder()
	s := sampleEvents()[0]
	env, err := NewEnvelope(s.Agent, s.Producer, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	prefix := []byte("key")
	cases := append(validateCases(),
		validateCase{"agent version invalid utf-8", func(e []*Event) *Event { e[0].Agent.Version = "v\xff"; return e[0] }, "agent.agent_version"},
		validateCase{"producer host too long", func(e []*Event) *Event { e[3].Producer.Host = strings.Repeat("h", 70000); return e[3] }, "producer.host"},
		validateCase{"other agent", func(e []*Event) *Event { e[1].Agent = Agent{ID: "ops-bot", Team: "ops"}; return e[1] }, ""},
		validateCase{"other producer, non-ascii", func(e []*Event) *Event { e[2].Producer.Host = "hôte-7"; return e[2] }, ""},
		validateCase{"agent id with space", func(e []*Event) *Event { e[2].Agent.ID = "billing bot"; return e[2] }, "agent.agent_id"},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.mutate(sampleEvents())
			want, werr := enc.AppendValid(append([]byte(nil), prefix...), e, t0, Limits{})
			got, gerr := enc.AppendValidIn(append([]byte(nil), prefix...), e, t0, Limits{}, env)
			if fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("AppendValidIn: %v, AppendValid: %v", gerr, werr)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendValidIn wrote %x, AppendValid %x", got, want)
			}
			var ve *ValidationError
			if tc.field != "" && (!errors.As(gerr, &ve) || ve.Field != tc.field) {
				t.Fatalf("err = %v, want ValidationError on field %s", gerr, tc.field)
			}
			if tc.field == "" && gerr != nil {
				t.Fatalf("want valid, got %v", gerr)
			}
		})
	}
	t.Run("envelope made under other limits", func(t *testing.T) {
		long := s.Agent
		long.Version = strings.Repeat("v", 70000)
		big, err := NewEnvelope(long, s.Producer, Limits{MaxString: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		e := sampleEvents()[3]
		e.Agent = long
		_, err = enc.AppendValidIn(nil, e, t0, Limits{}, big)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != "agent.agent_version" {
			t.Fatalf("err = %v, want ValidationError on field agent.agent_version", err)
		}
	})
}

// TestDecodeValidAgrees: DecodeValid returns what Decode then Validate
// return, error for error, on records of the latest schema (each validation
// case, encoded as it is) and of the first one (decoded by hamba/avro), and
// under a smaller string limit, which the decode-time check must apply too.
func TestDecodeValidAgrees(t *testing.T) {
	enc := NewSingleObjectEncoder()
	dec, _ := NewDecoder(nil)
	ctx := context.Background()
	cases := append(validateCases(),
		validateCase{"agent version invalid utf-8", func(e []*Event) *Event { e[0].Agent.Version = "v\xff"; return e[0] }, "agent.agent_version"},
		validateCase{"label key invalid utf-8", func(e []*Event) *Event { e[1].Labels = map[string]string{"k\xff": "v"}; return e[1] }, "labels{}"},
	)
	// agree checks that both ways give the same error and event, and that
	// the error is a ValidationError on field (none if field is empty), or
	// ErrMalformed if field is "malformed".
	agree := func(t *testing.T, b []byte, lim Limits, field string) {
		t.Helper()
		var e1, e2 Event
		gerr := dec.DecodeValid(ctx, b, &e1, t0, lim)
		werr := dec.Decode(ctx, b, &e2)
		if werr == nil {
			werr = Validate(&e2, t0, lim)
		}
		if fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("DecodeValid: %v; Decode and Validate: %v", gerr, werr)
		}
		if !reflect.DeepEqual(&e1, &e2) {
			t.Fatalf("DecodeValid decoded %+v, Decode %+v", e1, e2)
		}
		var ve *ValidationError
		switch {
		case field == "malformed":
			if !errors.Is(gerr, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", gerr)
			}
		case field != "" && (!errors.As(gerr, &ve) || ve.Field != field):
			t.Fatalf("err = %v, want ValidationError on field %s", gerr, field)
		case field == "" && gerr != nil:
			t.Fatalf("want valid, got %v", gerr)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := enc.AppendEncode(nil, tc.mutate(sampleEvents()))
			if err != nil {
				t.Skipf("not encodable: %v", err) // an enum outside the schema
			}
			agree(t, b, Limits{}, tc.field)
		})
	}
	t.Run("string over a smaller limit", func(t *testing.T) {
		b, err := enc.AppendEncode(nil, sampleEvents()[0])
		if err != nil {
			t.Fatal(err)
		}
		agree(t, b, Limits{MaxString: 8}, "span_id")
	})
	t.Run("first schema version", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join("testdata", "intent.v1.avro"))
		if err != nil {
			t.Fatal(err)
		}
		agree(t, b, Limits{}, "")
	})
	t.Run("malformed", func(t *testing.T) {
		b, err := enc.AppendEncode(nil, sampleEvents()[3])
		if err != nil {
			t.Fatal(err)
		}
		agree(t, b[:len(b)-3], Limits{}, "malformed")
	})
}

// TestValidateMapErrorIsStable: of several bad map entries, Validate names
// the one with the least key, whatever order the map iterates in.
func TestValidateMapErrorIsStable(t *testing.T) {
	e := sampleEvents()[0]
	e.Intent.Parameters = map[string]string{}
	for i := range 40 {
		e.Intent.Parameters[fmt.Sprintf("k%02d", i)] = "bad\xff"
	}
	e.Intent.Parameters["a-fine"] = "ok"
	for range 50 {
		err := Validate(e, t0, Limits{})
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != "intent.parameters.k00" {
			t.Fatalf("err = %v, want the field intent.parameters.k00", err)
		}
	}
}

func TestNewEnvelopeErrors(t *testing.T) {
	s := sampleEvents()[0]
	for _, tc := range []struct {
		name  string
		edit  func(a *Agent, p *Producer)
		field string
	}{
		{"no agent id", func(a *Agent, p *Producer) { a.ID = "" }, "agent.agent_id"},
		{"agent id with space", func(a *Agent, p *Producer) { a.ID = "a b" }, "agent.agent_id"},
		{"no team", func(a *Agent, p *Producer) { a.Team = "" }, "agent.team"},
		{"tenant invalid utf-8", func(a *Agent, p *Producer) { a.Tenant = "ac\xc3" }, "agent.tenant"},
		{"producer version too long", func(a *Agent, p *Producer) { p.Version = strings.Repeat("1", 70000) }, "producer.version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, p := s.Agent, s.Producer
			tc.edit(&a, &p)
			_, err := NewEnvelope(a, p, Limits{})
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field {
				t.Fatalf("err = %v, want ValidationError on field %s", err, tc.field)
			}
		})
	}
}

func TestValidationErrorHidesValue(t *testing.T) {
	e := sampleEvents()[0]
	e.Intent.Rationale = "card 4111111111111111 \xff"
	err := Validate(e, t0, Limits{})
	if err == nil || strings.Contains(err.Error(), "4111") {
		t.Fatalf("err = %v: must fail without quoting the value", err)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, want := range sampleEvents() {
		b, err := AppendJSON(nil, want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseJSON(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		normalize(got)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("json round trip mismatch:\n got %+v\nwant %+v", *got, *want)
		}
	}
	golden := filepath.Join("testdata", "events.jsonl")
	var all []byte
	for _, e := range sampleEvents() {
		all, _ = AppendJSON(all, e)
		all = append(all, '\n')
	}
	if *update {
		if err := os.WriteFile(golden, all, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(all) {
		t.Fatalf("canonical JSON changed; if intended, run with -update and update schemas/README.md\n got %s\nwant %s", all, want)
	}
}

func TestParseJSONErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"event_id":"x","bogus":1}`, "field bogus: unknown field"},
		{`{"event_id":5}`, "field event_id: expected string"},
		{`{"event_id":"x"`, "truncated"},
		{`{"event_id":"x"} {}`, "trailing data"},
		{`{"event_time":"yesterday"}`, "event_time"},
	}
	for _, tc := range cases {
		_, err := ParseJSON([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseJSON(%s) err = %v, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

// An approval may leave approver_kind and scope empty (the contract allows
// it); they encode as the schema defaults and the caller's event is unchanged.
func TestApprovalEnumDefaults(t *testing.T) {
	ap := sampleEvents()[2]
	ap.Approval.ApproverKind, ap.Approval.Scope = "", ""
	if err := Validate(ap, t0, Limits{}); err != nil {
		t.Fatal(err)
	}
	b, err := NewSingleObjectEncoder().AppendEncode(nil, ap)
	if err != nil {
		t.Fatal(err)
	}
	if ap.Approval.ApproverKind != "" || ap.Approval.Scope != "" {
		t.Fatal("AppendEncode changed the caller's event")
	}
	dec, _ := NewDecoder(nil)
	var got Event
	if err := dec.Decode(context.Background(), b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Approval.ApproverKind != PrincipalHuman || got.Approval.Scope != ScopeSingle {
		t.Fatalf("decoded approver_kind %q scope %q, want human single", got.Approval.ApproverKind, got.Approval.Scope)
	}
}

func BenchmarkValidate(b *testing.B) {
	e := sampleEvents()[0]
	b.ReportAllocs()
	for b.Loop() {
		if err := Validate(e, t0, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
