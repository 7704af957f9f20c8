package redact

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

// BenchmarkRedact redacts the simulated fleet's events (which carry a few
// e-mail addresses, a card number, a phone number and an API key among
// ordinary parameters and rationales) with the default detectors, with
// pseudonyms, and with rules. ns/op and allocs/op are per event.
func BenchmarkRedact(b *testing.B) {
	events := simulate.New(simulate.Config{Seed: 7}).Events(4096, time.Now())
	b.Setenv("AGENTRAIL_BENCH_SECRET", testSecret)
	configs := []struct {
		name string
		cfg  Config
	}{
		{"detectors-mask", Config{}},
		{"detectors-pseudonym", Config{SecretEnv: "AGENTRAIL_BENCH_SECRET"}},
		{"rules-and-detectors", Config{SecretEnv: "AGENTRAIL_BENCH_SECRET", Rules: []Rule{
			{Name: "requester", Paths: []string{"requested_by", "approver"}, Action: ActionPseudonym},
			{Name: "payments", Tools: []string{"payments"}, Paths: []string{"parameters.invoice", "context.*"}, Action: ActionMask},
			{Name: "recipients", Tools: []string{"email", "invoices"}, Paths: []string{"parameters.to"}, Action: ActionPseudonym},
		}}},
	}
	for _, c := range configs {
		b.Run(c.name, func(b *testing.B) {
			r, err := New(c.cfg)
			if err != nil {
				b.Fatal(err)
			}
			batch := make([]schemas.Event, len(events))
			redacted := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i % len(events)
				if k == 0 {
					b.StopTimer()
					for j := range events {
						batch[j] = clone(events[j])
					}
					b.StartTimer()
				}
				if r.Redact(&batch[k]) != nil {
					redacted++
				}
			}
			b.ReportMetric(float64(redacted)/float64(b.N), "redacted/event")
		})
	}
}

// clone copies what Redact may change.
func clone(e schemas.Event) schemas.Event {
	e.Labels = maps.Clone(e.Labels)
	if e.Intent != nil {
		in := *e.Intent
		in.Parameters, in.Context = maps.Clone(in.Parameters), maps.Clone(in.Context)
		in.EvidenceIDs = slices.Clone(in.EvidenceIDs)
		e.Intent = &in
	}
	if e.Decision != nil {
		d := *e.Decision
		e.Decision = &d
	}
	if e.Approval != nil {
		a := *e.Approval
		e.Approval = &a
	}
	if e.Result != nil {
		r := *e.Result
		r.SideEffects = slices.Clone(r.SideEffects)
		e.Result = &r
	}
	return e
}
