package producers

import (
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// fixtureNow is shortly after the fixture's events.
var fixtureNow = func() time.Time { return time.Date(2026, 11, 16, 10, 0, 0, 0, time.UTC) }

func TestReplayFixture(t *testing.T) {
	f, err := os.Open("testdata/replay.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []string
	rep, err := Replay(context.Background(), f, func(_ context.Context, e *schemas.Event) error {
		got = append(got, e.EventID)
		return nil
	}, fixtureNow)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ev-1", "ev-2", "ev-3", "ev-4", "ev-5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
	if rep.Read != 12 || rep.Published != 5 || rep.Rejected != 7 {
		t.Errorf("report read %d, published %d, rejected %d; want 12, 5, 7", rep.Read, rep.Published, rep.Rejected)
	}
	want := []struct {
		line  int
		field string
	}{
		{6, "field trace_id:"},
		{7, "field tier:"},
		{8, "truncated"},
		{9, "field approval.status:"},
		{11, "field secret_field: unknown field"},
		{13, "field event_time:"},
		{14, "field intent.confidence:"},
	}
	if len(rep.Rejections) != len(want) {
		t.Fatalf("rejections %+v, want %d", rep.Rejections, len(want))
	}
	for i, w := range want {
		r := rep.Rejections[i]
		if r.Line != w.line || !strings.Contains(r.Reason, w.field) {
			t.Errorf("rejection %d = line %d %q, want line %d naming %q", i, r.Line, r.Reason, w.line, w.field)
		}
		// The fixture hides a card-like number in every bad value: a
		// reason must never repeat it.
		if strings.Contains(r.Reason, "4111") || strings.Contains(r.Reason, "pending") || strings.Contains(r.Reason, "yesterday") {
			t.Errorf("line %d reason %q echoes the value", r.Line, r.Reason)
		}
	}
}

func TestReplayEmitErrors(t *testing.T) {
	line := mustRead(t, "testdata/replay.jsonl")[0] + "\n"
	tests := []struct {
		name          string
		input         string
		emit          func(calls int) error
		wantPublished int
		wantRejected  int
		wantErr       string
	}{
		{"buffer full is retried", line, func(calls int) error {
			if calls < 3 {
				return ErrBufferFull
			}
			return nil
		}, 1, 0, ""},
		{"unavailable stops the replay", line + line, func(int) error {
			return &unavailableError{cause: errors.New("dial refused")}
		}, 0, 0, "line 1: producers: kafka unavailable: dial refused"},
		{"emitter's own validation rejects the line", line, func(int) error {
			return &schemas.ValidationError{Field: "event_time", Reason: "is too old"}
		}, 0, 1, ""},
		{"line too long", strings.Repeat(" ", MaxReplayLine+2) + "\n", func(int) error { return nil }, 0, 0, "line longer than"},
		{"crlf and blank lines", "\r\n" + strings.TrimSuffix(line, "\n") + "\r\n\n", func(int) error { return nil }, 1, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			rep, err := Replay(context.Background(), strings.NewReader(tc.input), func(context.Context, *schemas.Event) error {
				calls++
				return tc.emit(calls)
			}, fixtureNow)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if rep.Published != tc.wantPublished || rep.Rejected != tc.wantRejected {
				t.Fatalf("published %d, rejected %d; want %d, %d", rep.Published, rep.Rejected, tc.wantPublished, tc.wantRejected)
			}
		})
	}
}

// TestReplayIntoKafka replays the fixture through a real Emitter and reads
// the good events back.
func TestReplayIntoKafka(t *testing.T) {
	c := startBroker(t)
	em, _ := newTestEmitter(t, c.ListenAddrs(), nil)
	f, err := os.Open("testdata/replay.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The fixture's times are fixed; the Emitter validates against the
	// wall clock, so move them to now to keep the test from ageing.
	shift := time.Since(fixtureNow())
	rep, err := Replay(context.Background(), f, func(ctx context.Context, e *schemas.Event) error {
		e.Time = e.Time.Add(shift)
		return em.Emit(ctx, e)
	}, fixtureNow)
	if err != nil || rep.Published != 5 {
		t.Fatalf("replay: %+v, %v; want 5 published", rep, err)
	}
	must(t, em.Flush(context.Background()))
	recs := consume(t, c.ListenAddrs(), 5)
	dec, _ := schemas.NewDecoder(nil)
	var last schemas.Event
	if err := dec.Decode(context.Background(), recs[4].Value, &last); err != nil {
		t.Fatal(err)
	}
	// The approval without approver_kind and scope was written with the
	// schema's defaults.
	if last.EventID != "ev-5" || last.Approval.ApproverKind != schemas.PrincipalHuman || last.Approval.Scope != schemas.ScopeSingle {
		t.Fatalf("last record %s approval %+v", last.EventID, last.Approval)
	}
}

func mustRead(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(b), "\n")
}
