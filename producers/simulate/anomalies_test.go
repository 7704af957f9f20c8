package simulate

import (
	"reflect"
	"testing"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// Every planted anomaly is valid evidence, labelled, and has the shape its
// rule looks for.
func TestPlant(t *testing.T) {
	at := time.Date(2026, 11, 18, 14, 0, 0, 0, time.UTC)
	intents := func(a *Anomaly) []schemas.Event {
		var out []schemas.Event
		for _, e := range a.Events() {
			if e.Intent != nil {
				out = append(out, e)
			}
		}
		return out
	}
	decisions := func(a *Anomaly, outcome string) int {
		n := 0
		for _, e := range a.Events() {
			if e.Decision != nil && e.Decision.Outcome == outcome {
				n++
			}
		}
		return n
	}
	checks := map[string]func(t *testing.T, f *Fleet, a *Anomaly){
		AnomalyRetryBurst: func(t *testing.T, f *Fleet, a *Anomaly) {
			in := intents(a)
			if len(in) != 8 || a.End.Sub(a.Start) > 2*time.Minute {
				t.Fatalf("%d attempts over %s", len(in), a.End.Sub(a.Start))
			}
			for _, e := range in {
				if e.Intent.ActionDigest != in[0].Intent.ActionDigest || e.Agent.ID != a.Agent {
					t.Fatal("attempts differ")
				}
			}
			for _, e := range a.Events() {
				if e.Result != nil && e.Result.Status != schemas.ResultError {
					t.Fatal("an attempt did not fail")
				}
			}
		},
		AnomalyOutOfHours: func(t *testing.T, f *Fleet, a *Anomaly) {
			in := intents(a)
			if len(in) != 1 || !in[0].Time.Equal(at) || in[0].Tier != schemas.TierHigh || a.Team != "finance" {
				t.Fatalf("out-of-hours action: %+v", in)
			}
		},
		AnomalyDenialSpike: func(t *testing.T, f *Fleet, a *Anomaly) {
			if n := decisions(a, schemas.OutcomeDeny); n != 18 || a.End.Sub(a.Start) > 8*time.Minute {
				t.Fatalf("%d denials over %s", n, a.End.Sub(a.Start))
			}
		},
		AnomalyFirstUse: func(t *testing.T, f *Fleet, a *Anomaly) {
			in := intents(a)[0]
			for _, ag := range f.Agents() {
				if ag.Identity.ID != a.Agent {
					continue
				}
				for _, tl := range ag.team.Tools {
					if tl.Tool == in.Intent.Tool && tl.Action == in.Intent.Action {
						t.Fatalf("%s.%s is a tool of the agent's own team", tl.Tool, tl.Action)
					}
				}
			}
		},
		AnomalyProbing: func(t *testing.T, f *Fleet, a *Anomaly) {
			in := intents(a)
			first := a.Traces[0]
			if first[1].Decision == nil || first[1].Decision.Outcome != schemas.OutcomeDeny {
				t.Fatal("probing does not start with a denial")
			}
			seen := map[string]bool{}
			for _, e := range in[1:] {
				seen[e.Intent.Tool+" "+e.Intent.Target] = true
				if e.Time.Sub(first[1].Time) > time.Minute {
					t.Fatalf("a try %s after the denial", e.Time.Sub(first[1].Time))
				}
			}
			if len(seen) != 10 {
				t.Fatalf("%d distinct tool/targets tried, want 10", len(seen))
			}
		},
		AnomalyApprovalFlood: func(t *testing.T, f *Fleet, a *Anomaly) {
			n := 0
			for _, e := range a.Events() {
				if e.Approval != nil {
					n++
					if e.Approval.Approver != a.Approver {
						t.Fatal("another approver")
					}
				}
			}
			if n != 66 || a.End.Sub(a.Start) > 35*time.Minute {
				t.Fatalf("%d approvals over %s", n, a.End.Sub(a.Start))
			}
		},
		AnomalyRubberStamp: func(t *testing.T, f *Fleet, a *Anomaly) {
			for _, tr := range a.Traces {
				if d := tr[2].Time.Sub(tr[1].Time); tr[2].Approval == nil || d < 2*time.Second || d > 5*time.Second {
					t.Fatalf("approval %s after the request", d)
				}
			}
		},
	}
	for _, kind := range AnomalyKinds() {
		t.Run(kind, func(t *testing.T) {
			f := New(Config{Seed: 5})
			a, err := f.Plant(AnomalySpec{Kind: kind, At: at, Team: map[string]string{AnomalyOutOfHours: "finance"}[kind]})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range a.Events() {
				if err := schemas.Validate(&e, a.End, schemas.Limits{}); err != nil {
					t.Fatalf("planted event invalid: %v", err)
				}
				if e.Labels[PlantedLabel] != kind {
					t.Fatalf("planted event labelled %v", e.Labels)
				}
				if e.Approval != nil && e.Approval.Approver == e.RequestedBy {
					t.Fatal("an approver approved their own request")
				}
				if e.Time.Before(at) {
					t.Fatalf("event at %s, before At", e.Time)
				}
			}
			checks[kind](t, f, a)
		})
	}
}

func TestPlantAll(t *testing.T) {
	at := time.Date(2026, 11, 18, 14, 0, 0, 0, time.UTC)
	ooh := at.Add(8 * time.Hour)
	plant := func() []*Anomaly {
		as, err := New(Config{Seed: 8}).PlantAll(at, 2*time.Minute, ooh, "finance")
		if err != nil {
			t.Fatal(err)
		}
		return as
	}
	as := plant()
	if len(as) != len(AnomalyKinds()) {
		t.Fatalf("%d anomalies", len(as))
	}
	who := map[string]string{}
	for _, a := range as {
		for _, w := range []string{a.Agent, a.Approver} {
			if prev, ok := who[w]; ok && w != "" {
				t.Fatalf("%s acts in both %s and %s", w, prev, a.Kind)
			}
			who[w] = a.Kind
		}
		if a.Kind != AnomalyOutOfHours && a.End.After(at.Add(50*time.Minute)) {
			t.Fatalf("%s ends %s after start", a.Kind, a.End.Sub(at))
		}
	}
	if !reflect.DeepEqual(as, plant()) {
		t.Fatal("the same seed planted different anomalies")
	}
	if _, err := New(Config{Seed: 8}).Plant(AnomalySpec{Kind: "teleport", At: at}); err == nil {
		t.Fatal("an unknown kind planted")
	}
}
