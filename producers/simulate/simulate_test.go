package simulate

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"testing"
	"testing/synctest"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

var now0 = time.Date(2026, 11, 16, 9, 30, 0, 0, time.UTC)

// TestEveryEventValidates: every generated event passes the contract and
// encodes to Avro.
func TestEveryEventValidates(t *testing.T) {
	f := New(Config{Seed: 7, ReorderRate: DefaultReorderRate, DuplicateRate: DefaultDuplicateRate})
	enc := schemas.NewSingleObjectEncoder()
	now := now0
	for i := 0; i < 10000; i++ {
		evs := f.NextTrace(now)
		if len(evs) < 2 {
			t.Fatalf("trace %d has %d events, want at least intent and decision", i, len(evs))
		}
		for j := range evs {
			e := &evs[j]
			if err := schemas.Validate(e, now, schemas.Limits{}); err != nil {
				t.Fatalf("trace %d event %d (%s): %v", i, j, e.Type, err)
			}
			if _, err := enc.AppendEncode(nil, e); err != nil {
				t.Fatalf("trace %d event %d (%s) does not encode: %v", i, j, e.Type, err)
			}
			if e.Time.After(now) {
				t.Fatalf("trace %d event %d is %s after now", i, j, e.Time.Sub(now))
			}
			if e.TraceID != evs[0].TraceID {
				t.Fatalf("trace %d mixes trace ids", i)
			}
		}
		now = now.Add(100 * time.Millisecond)
	}
}

func TestDeterministic(t *testing.T) {
	gen := func(seed uint64) [][]schemas.Event {
		f := New(Config{Seed: seed, ReorderRate: 0.1, DuplicateRate: 0.05, Scenarios: mustParse(t, "approved_by_requester=0.1")})
		var out [][]schemas.Event
		for i := 0; i < 300; i++ {
			out = append(out, f.NextTrace(now0.Add(time.Duration(i)*time.Second)))
		}
		return out
	}
	a, b := gen(42), gen(42)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two fleets with seed 42 generated different traces")
	}
	if c := gen(43); reflect.DeepEqual(a, c) {
		t.Fatal("seeds 42 and 43 generated the same traces")
	}
}

// TestFleetShape checks the proportions that make the stream realistic:
// tiers, outcomes, approvals by someone else minutes later, event sizes.
func TestFleetShape(t *testing.T) {
	f := New(Config{Seed: 1})
	teams := map[string]int{}
	for _, a := range f.Agents() {
		teams[a.Identity.Team]++
	}
	if len(teams) < 5 {
		t.Errorf("%d teams, want at least 5", len(teams))
	}
	for team, n := range teams {
		if n < 3 || n > 10 {
			t.Errorf("team %s has %d agents, want 3..10", team, n)
		}
	}

	outcomes := map[string]int{}
	tiers := map[int32]int{}
	statuses := map[string]int{}
	var sizes []int
	for i := 0; i < 5000; i++ {
		tr := f.Next(now0)
		in, de := tr.Find(schemas.TypeIntent), tr.Find(schemas.TypeDecision)
		tiers[in.Tier]++
		outcomes[de.Decision.Outcome]++
		if in.Tier == schemas.TierHigh && de.Decision.Outcome == schemas.OutcomeAllow {
			t.Fatalf("tier 3 action allowed without approval")
		}
		if ap := tr.Find(schemas.TypeApproval); ap != nil {
			statuses[ap.Approval.Status]++
			if ap.Approval.Approver != "" && ap.Approval.Approver == tr.RequestedBy {
				t.Fatalf("approver is the requester without the scenario planted")
			}
			if d := ap.Time.Sub(de.Time); d < 10*time.Second || d > time.Hour {
				t.Fatalf("approval %s after the decision, want minutes", d)
			}
		}
		for j := range tr.Events {
			b, err := schemas.AppendJSON(nil, &tr.Events[j])
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, len(b))
		}
	}
	for tier := int32(1); tier <= 3; tier++ {
		if tiers[tier] == 0 {
			t.Errorf("no tier %d actions", tier)
		}
	}
	if outcomes[schemas.OutcomeAllow] < outcomes[schemas.OutcomeRequireApproval] || outcomes[schemas.OutcomeDeny] == 0 || outcomes[schemas.OutcomeRequireApproval] == 0 {
		t.Errorf("outcomes %v: want mostly allow, some deny and require_approval", outcomes)
	}
	if statuses[schemas.ApprovalGranted] < statuses[schemas.ApprovalRejected] || statuses[schemas.ApprovalRejected] == 0 || statuses[schemas.ApprovalExpired] == 0 {
		t.Errorf("approval statuses %v: want mostly granted, some rejected and expired", statuses)
	}
	sort.Ints(sizes)
	if med := sizes[len(sizes)/2]; med < 400 || med > 900 {
		t.Errorf("median canonical JSON event size %d bytes, want 400..900", med)
	}
}

func TestMess(t *testing.T) {
	f := New(Config{Seed: 3, ReorderRate: 0.2, DuplicateRate: 0.1})
	var reordered, dups int
	for i := 0; i < 2000; i++ {
		evs := f.NextTrace(now0)
		seen := map[string]bool{}
		var last time.Time
		out := false
		for _, e := range evs {
			if seen[e.EventID] {
				dups++ // a redelivery is late by nature: not a reorder
				continue
			}
			seen[e.EventID] = true
			out = out || e.Time.Before(last)
			last = e.Time
		}
		if out {
			reordered++
		}
	}
	if reordered < 200 || reordered > 600 {
		t.Errorf("%d of 2000 traces out of order, want about 20%%", reordered)
	}
	if dups < 400 || dups > 1200 {
		t.Errorf("%d duplicates in 2000 traces, want about 10%% of ~7000 events", dups)
	}

	clean := New(Config{Seed: 3})
	for i := 0; i < 2000; i++ {
		evs := clean.NextTrace(now0)
		for j := 1; j < len(evs); j++ {
			if evs[j].Time.Before(evs[j-1].Time) || evs[j].EventID == evs[j-1].EventID {
				t.Fatal("zero rates still reordered or duplicated")
			}
		}
	}
}

func mustParse(t *testing.T, s string) []Scenario {
	t.Helper()
	sc, err := ParseScenarios(s)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestScenarios(t *testing.T) {
	for _, name := range BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			f := New(Config{Seed: 9, Scenarios: mustParse(t, name+"=1")})
			planted := 0
			for i := 0; i < 500; i++ {
				tr := f.Next(now0)
				for j := range tr.Events {
					if err := schemas.Validate(&tr.Events[j], now0, schemas.Limits{}); err != nil {
						t.Fatalf("planted trace invalid: %v", err)
					}
				}
				if len(tr.Planted) == 0 {
					continue
				}
				planted++
				if !violates(name, tr) {
					t.Fatalf("trace says %s was planted but it does not show", name)
				}
			}
			if planted == 0 {
				t.Fatalf("rate 1 planted nothing in 500 traces")
			}
		})
	}
}

// violates checks the planted pattern is really in the trace.
func violates(name string, tr *Trace) bool {
	in, de, ap, res := tr.Find(schemas.TypeIntent), tr.Find(schemas.TypeDecision), tr.Find(schemas.TypeApproval), tr.Find(schemas.TypeResult)
	switch name {
	case "executed_without_approval":
		return de.Decision.Outcome == schemas.OutcomeRequireApproval && ap == nil && res.Result.Status == schemas.ResultSuccess
	case "approved_by_requester":
		return ap.Approval.Approver == tr.RequestedBy
	case "payload_differs":
		return res.Result.ActionDigest != in.Intent.ActionDigest
	case "executed_despite_deny":
		return de.Decision.Outcome == schemas.OutcomeDeny && res.Result.Status == schemas.ResultSuccess
	}
	return false
}

func TestParseScenarios(t *testing.T) {
	tests := []struct {
		name, in string
		want     int
		wantErr  bool
	}{
		{"empty", "", 0, false},
		{"two", "approved_by_requester=0.01, payload_differs=0.002", 2, false},
		{"unknown", "teleport=0.1", 0, true},
		{"no rate", "payload_differs", 0, true},
		{"rate above 1", "payload_differs=2", 0, true},
		{"bad rate", "payload_differs=x", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseScenarios(tc.in)
			if (err != nil) != tc.wantErr || len(got) != tc.want {
				t.Fatalf("ParseScenarios(%q) = %d scenarios, %v; want %d, error %v", tc.in, len(got), err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestRunPaces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := New(Config{Seed: 5})
		var times []time.Time
		emit := func(_ context.Context, e *schemas.Event) error {
			times = append(times, time.Now())
			return nil
		}
		st, err := f.Run(t.Context(), emit, 100, 10*time.Second, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		// 100 events/s for 10s; the event due exactly at the deadline may
		// or may not make it.
		if st.Events < 1000 || st.Events > 1001 {
			t.Fatalf("delivered %d events in 10s at 100/s, want 1000", st.Events)
		}
		if got := times[len(times)-1].Sub(times[0]); got < 9*time.Second {
			t.Fatalf("events spread over %s, want about 10s", got)
		}
		sum := 0
		for _, n := range st.ByType {
			sum += n
		}
		if sum != st.Events || st.Traces == 0 {
			t.Fatalf("stats inconsistent: %+v", st)
		}
	})
}

func TestRunStops(t *testing.T) {
	f := New(Config{Seed: 5})
	n := 0
	emit := func(context.Context, *schemas.Event) error {
		if n == 250 {
			return ErrStop
		}
		n++
		return nil
	}
	st, err := f.Run(context.Background(), emit, 0, 0, nil)
	if err != nil || st.Events != 250 {
		t.Fatalf("Run = %d events, %v; want 250, nil", st.Events, err)
	}

	calls := 0
	st, err = f.Run(context.Background(), func(context.Context, *schemas.Event) error {
		calls++
		switch {
		case calls%2 == 1:
			return busy{}
		case calls >= 20:
			return ErrStop
		}
		return nil
	}, 0, 0, nil)
	if err != nil || st.Events != 9 || st.Retries != 10 {
		t.Fatalf("Run with backpressure = %d events, %d retries, %v; want 9, 10, nil", st.Events, st.Retries, err)
	}

	boom := errors.New("boom")
	_, err = f.Run(context.Background(), func(context.Context, *schemas.Event) error { return boom }, 0, 0, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("Run error %v, want it to wrap the emit error", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Run(ctx, emit, 0, 0, nil); err != nil {
		t.Fatalf("Run on a canceled context: %v, want nil", err)
	}
}

func BenchmarkNextTrace(b *testing.B) {
	f := New(Config{Seed: 1, ReorderRate: DefaultReorderRate, DuplicateRate: DefaultDuplicateRate})
	b.ReportAllocs()
	for b.Loop() {
		f.NextTrace(now0)
	}
}

// busy is backpressure, as the producer SDK's ErrBufferFull reports it.
type busy struct{}

func (busy) Error() string   { return "busy" }
func (busy) Temporary() bool { return true }
