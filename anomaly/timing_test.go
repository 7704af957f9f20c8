package anomaly

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/schemas"
)

// crossing is a stream whose last event makes a rule's count reach its
// threshold; every event before it stays below.
type crossing struct {
	name, rules string
	events      func(b *evb) []*schemas.Event
	rule        string
	observed    float64
}

func crossings() []crossing {
	attempt := func(b *evb, at time.Time) *schemas.Event {
		return b.intent("bot-1", "finance", at, "payments", "refund", "charge:1", 3, "refund")
	}
	probe := func(b *evb, at time.Time, target string) *schemas.Event {
		return b.intent("bot-1", "devops", at, "iam", "grant", target, 3, "access_grant")
	}
	denied := func(b *evb, at time.Time) []*schemas.Event {
		in := probe(b, at.Add(-time.Second), "role:admin")
		return []*schemas.Event{in, b.decision(in, at, schemas.OutcomeDeny)}
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	night := time.Date(2026, 11, 18, 23, 0, 0, 0, berlin)
	return []crossing{
		{"retry_burst: the attempt at the threshold", `
rules:
  - {name: retry, kind: retry_burst, window: {size: 2m}, threshold: 4}
`, func(b *evb) []*schemas.Event {
			var out []*schemas.Event
			for i := range 4 {
				out = append(out, attempt(b, wed.Add(time.Duration(i)*10*time.Second)))
			}
			return out
		}, "retry", 4},
		{"retry_burst: a failure arriving after later attempts lowers the threshold", `
rules:
  - {name: retry, kind: retry_burst, window: {size: 2m}, threshold: 5, after_failure_threshold: 3}
`, func(b *evb) []*schemas.Event {
			// Three attempts in 20s, then one three minutes on; the first
			// attempt's failure comes in last. The window ending at the
			// newest attempt does not hold the failure; the one ending at
			// the third attempt does, with three attempts.
			a1, a2, a3 := attempt(b, wed), attempt(b, wed.Add(10*time.Second)), attempt(b, wed.Add(20*time.Second))
			a4 := attempt(b, wed.Add(3*time.Minute))
			return []*schemas.Event{a1, a2, a3, a4, b.result(a1, wed.Add(time.Second), schemas.ResultError)}
		}, "retry", 3},
		{"retry_burst, tumbling: a late failure in the attempts' slot", `
rules:
  - {name: retry, kind: retry_burst, window: {size: 2m, type: tumbling}, threshold: 5, after_failure_threshold: 3}
`, func(b *evb) []*schemas.Event {
			a1, a2, a3 := attempt(b, wed), attempt(b, wed.Add(10*time.Second)), attempt(b, wed.Add(20*time.Second))
			a4 := attempt(b, wed.Add(3*time.Minute))
			return []*schemas.Event{a1, a2, a3, a4, b.result(a1, wed.Add(time.Second), schemas.ResultError)}
		}, "retry", 3},
		{"out_of_hours: the action itself", testCalendars + `
rules:
  - {name: ooh, kind: out_of_hours}
`, func(b *evb) []*schemas.Event {
			return []*schemas.Event{b.intent("bot-1", "finance", night, "payments", "refund", "charge:1", 3, "refund")}
		}, "ooh", 1},
		{"denial_spike: the denial at the threshold", `
rules:
  - {name: denials, kind: denial_spike, window: {size: 10m}, threshold: 3, factor: 3, baseline: 1h}
`, func(b *evb) []*schemas.Event {
			var out []*schemas.Event
			for i := range 3 {
				at := wed.Add(time.Duration(i) * 20 * time.Second)
				in := b.intent("bot-1", "finance", at, "payments", "refund", "charge:"+at.Format("150405"), 3, "refund")
				out = append(out, in, b.decision(in, at.Add(time.Millisecond), schemas.OutcomeDeny))
			}
			return out
		}, "denials", 3},
		{"first_use: the first use", `
rules:
  - {name: first, kind: first_use, history: 30d, min_agent_events: 2}
`, func(b *evb) []*schemas.Event {
			return []*schemas.Event{
				b.intent("bot-1", "finance", wed, "a", "run", "x", 2, "write"),
				b.intent("bot-1", "finance", wed.Add(time.Second), "a", "run", "x", 2, "write"),
				b.intent("bot-1", "finance", wed.Add(2*time.Second), "b", "run", "x", 2, "write"),
			}
		}, "first", 1},
		{"probing_after_deny: the try at the threshold", `
rules:
  - {name: probe, kind: probing_after_deny, window: {size: 1m}, threshold: 3}
`, func(b *evb) []*schemas.Event {
			return append(denied(b, wed), probe(b, wed.Add(5*time.Second), "a"), probe(b, wed.Add(10*time.Second), "b"),
				probe(b, wed.Add(15*time.Second), "c"))
		}, "probe", 3},
		{"probing_after_deny: a try arriving after later ones fills a later denial's window", `
allowed_lateness: 10m
rules:
  - {name: probe, kind: probing_after_deny, window: {size: 1m}, threshold: 4}
`, func(b *evb) []*schemas.Event {
			// Denials at 0s and 50s; tries c, d, e at 61-63s (only the
			// second denial's window) arrive before a at 55s (both
			// windows). With a, the second window holds four; the first
			// (which holds 55s and the second denial's own intent at 49s)
			// only two.
			evs := append(denied(b, wed), denied(b, wed.Add(50*time.Second))...)
			return append(evs, probe(b, wed.Add(61*time.Second), "c"), probe(b, wed.Add(62*time.Second), "d"),
				probe(b, wed.Add(63*time.Second), "e"), probe(b, wed.Add(55*time.Second), "a"))
		}, "probe", 4},
		{"approval_fatigue, volume: the decision at the threshold", `
rules:
  - {name: overload, kind: approval_fatigue, measure: volume, window: {size: 1h}, threshold: 3}
`, func(b *evb) []*schemas.Event {
			var out []*schemas.Event
			for i := range 3 {
				at := wed.Add(time.Duration(i) * 5 * time.Minute)
				in := b.intent("bot-1", "finance", at, "payments", "refund", "charge:"+at.Format("1504"), 3, "refund")
				out = append(out, in, b.approval(in, at.Add(time.Minute), schemas.ApprovalGranted, "dana@acme.test", ""))
			}
			return out
		}, "overload", 3},
		{"approval_fatigue, speed: the quick grant at the threshold", `
rules:
  - {name: stamp, kind: approval_fatigue, measure: speed, min_read_time: 10s, window: {size: 1h}, threshold: 2}
`, func(b *evb) []*schemas.Event {
			var out []*schemas.Event
			for i := range 2 {
				at := wed.Add(time.Duration(i) * 5 * time.Minute)
				in := b.intent("bot-1", "finance", at, "payments", "refund", "charge:"+at.Format("1504"), 3, "refund")
				de := b.decision(in, at.Add(time.Millisecond), schemas.OutcomeRequireApproval)
				out = append(out, in, de, b.approval(in, de.Time.Add(3*time.Second), schemas.ApprovalGranted, "dana@acme.test", ""))
			}
			return out
		}, "stamp", 2},
	}
}

// TestAlertOnCrossingEvent: every kind raises its alert when it observes
// the event that reaches the threshold, not later (when the watermark or
// the host's clock moves on).
func TestAlertOnCrossingEvent(t *testing.T) {
	for _, tc := range crossings() {
		t.Run(tc.name, func(t *testing.T) {
			en := mustEngine(t, tc.rules)
			evs := tc.events(&evb{})
			last := evs[len(evs)-1]
			if got := feed(en, evs[:len(evs)-1]...); len(got) > 0 {
				t.Fatalf("alerts before the crossing event:%s", summaries(got))
			}
			got := en.Observe(last)
			if len(got) != 1 || got[0].Rule != tc.rule || got[0].Version != 1 || got[0].Observed != tc.observed {
				t.Fatalf("the crossing event raised%s\nwant one new %s alert observing %v", summaries(got), tc.rule, tc.observed)
			}
		})
	}
}

// TestAlertInCrossingBatch: through the Processor, the alert is part of the
// output of the batch that carries the crossing event (its rows and
// records go out in that batch's transaction), with the event times far
// behind the batch's clock or close to it.
func TestAlertInCrossingBatch(t *testing.T) {
	for _, tc := range crossings() {
		for _, lag := range []time.Duration{time.Second, 30 * time.Minute} {
			t.Run(tc.name+"/lag "+lag.String(), func(t *testing.T) {
				cfg := Config{AlertTopic: "agentrail.alerts", RulesFile: writeRuleFile(t, tc.rules)}
				p, _ := stage(t, cfg)
				evs := tc.events(&evb{})
				newest := evs[0].Time
				for _, e := range evs {
					if e.Time.After(newest) {
						newest = e.Time
					}
				}
				batch := func(first int64, evs []*schemas.Event) *consumers.Batch {
					b := &consumers.Batch{FirstOffset: map[int32]int64{0: first}, Now: newest.Add(lag)}
					for i, e := range evs {
						b.Events = append(b.Events, consumers.Accepted{Event: *e, Partition: 0, Offset: first + int64(i)})
					}
					return b
				}
				n := int64(len(evs) - 1)
				out, err := p.Process(context.Background(), batch(0, evs[:n]))
				if err != nil {
					t.Fatal(err)
				}
				if len(out.Records) > 0 || len(out.Inserts) > 0 {
					t.Fatalf("batch before the crossing event has output: %d records", len(out.Records))
				}
				out, err = p.Process(context.Background(), batch(n, evs[n:]))
				if err != nil {
					t.Fatal(err)
				}
				if len(out.Records) != 1 || len(out.Inserts) != 1 {
					t.Fatalf("crossing batch: %d records, %d inserts; want 1 and 1", len(out.Records), len(out.Inserts))
				}
				var a Alert
				if err := json.Unmarshal(out.Records[0].Value, &a); err != nil {
					t.Fatal(err)
				}
				if a.Rule != tc.rule || a.Version != 1 || a.Observed != tc.observed {
					t.Fatalf("crossing batch alert %s v%d observed %v, want %s v1 observing %v", a.Rule, a.Version, a.Observed, tc.rule, tc.observed)
				}
			})
		}
	}
}

func writeRuleFile(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
