package anomaly

import (
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

func TestRetryBurst(t *testing.T) {
	rules := func(window string) string {
		return `
rules:
  - name: retry
    kind: retry_burst
    window: ` + window + `
    threshold: 5
    after_failure_threshold: 3
`
	}
	sliding, tumbling := "{size: 2m}", "{size: 2m, type: tumbling}"
	// attempt returns n attempts of the same action, gap apart from start.
	attempts := func(b *evb, n int, start time.Time, gap time.Duration) []*schemas.Event {
		var out []*schemas.Event
		for i := range n {
			out = append(out, b.intent("bot-1", "finance", start.Add(time.Duration(i)*gap), "payments", "refund", "charge:1", 3, "refund"))
		}
		return out
	}
	tests := []struct {
		name      string
		window    string
		events    func(b *evb) []*schemas.Event
		wantFires int // alerts raised or updated
		wantObs   float64
	}{
		{"one below the threshold", sliding, func(b *evb) []*schemas.Event { return attempts(b, 4, wed, 10*time.Second) }, 0, 0},
		{"at the threshold", sliding, func(b *evb) []*schemas.Event { return attempts(b, 5, wed, 10*time.Second) }, 1, 5},
		{"spread wider than the window", sliding, func(b *evb) []*schemas.Event {
			return attempts(b, 5, wed, 30*time.Second+time.Microsecond) // the 5th is 2m+4µs after the 1st
		}, 0, 0},
		{"exactly the window wide", sliding, func(b *evb) []*schemas.Event {
			// (t-2m, t]: the first attempt at exactly t-2m is outside.
			return attempts(b, 5, wed, 30*time.Second)
		}, 0, 0},
		{"other actions do not count", sliding, func(b *evb) []*schemas.Event {
			evs := attempts(b, 4, wed, time.Second)
			return append(evs, b.intent("bot-1", "finance", wed.Add(5*time.Second), "payments", "refund", "charge:2", 3, "refund"))
		}, 0, 0},
		{"a redelivered attempt counts once", sliding, func(b *evb) []*schemas.Event {
			evs := attempts(b, 4, wed, time.Second)
			dup := *evs[3]
			return append(evs, &dup)
		}, 0, 0},
		{"after a failure the lower threshold applies", sliding, func(b *evb) []*schemas.Event {
			evs := attempts(b, 3, wed, 10*time.Second)
			fail := b.result(evs[0], wed.Add(time.Second), schemas.ResultError)
			return []*schemas.Event{evs[0], fail, evs[1], evs[2]}
		}, 1, 3},
		{"after a denial the lower threshold applies", sliding, func(b *evb) []*schemas.Event {
			evs := attempts(b, 3, wed, 10*time.Second)
			deny := b.decision(evs[0], wed.Add(time.Millisecond), schemas.OutcomeDeny)
			return []*schemas.Event{evs[0], deny, evs[1], evs[2]}
		}, 1, 3},
		{"a failure after the last attempt is not a retry", sliding, func(b *evb) []*schemas.Event {
			evs := attempts(b, 3, wed, 10*time.Second)
			return append(evs, b.result(evs[2], wed.Add(21*time.Second), schemas.ResultFailure))
		}, 0, 0},
		{"tumbling windows split a burst at their boundary", tumbling, func(b *evb) []*schemas.Event {
			return attempts(b, 6, wed.Add(2*time.Minute-30*time.Second), 10*time.Second) // 3 before 14:02, 3 after
		}, 0, 0},
		{"the same burst in a sliding window", sliding, func(b *evb) []*schemas.Event {
			return attempts(b, 6, wed.Add(2*time.Minute-30*time.Second), 10*time.Second)
		}, 2, 6},
		{"tumbling at the threshold", tumbling, func(b *evb) []*schemas.Event { return attempts(b, 5, wed, 10*time.Second) }, 1, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			en := mustEngine(t, rules(tc.window))
			got := feed(en, tc.events(&evb{})...)
			if len(got) != tc.wantFires {
				t.Fatalf("%d alert updates, want %d:%s", len(got), tc.wantFires, summaries(got))
			}
			if len(got) == 0 {
				return
			}
			if distinctIDs(got) != 1 {
				t.Fatalf("%d distinct alerts, want 1:%s", distinctIDs(got), summaries(got))
			}
			last := got[len(got)-1]
			if last.Observed != tc.wantObs || int(last.Observed) != len(last.EventIDs) {
				t.Fatalf("observed %v with %d event ids, want %v", last.Observed, len(last.EventIDs), tc.wantObs)
			}
			if !strings.Contains(last.GroupKey, "agent=bot-1") || !strings.Contains(last.GroupKey, "action_digest=") {
				t.Fatalf("group key %q", last.GroupKey)
			}
		})
	}
}

func TestOutOfHours(t *testing.T) {
	src := testCalendars + `
rules:
  - name: ooh
    kind: out_of_hours
    consequential: {min_tier: 2, action_classes: [delete]}
`
	berlin, _ := time.LoadLocation("Europe/Berlin")
	at := func(y int, m time.Month, d, hh, mm int) time.Time { return time.Date(y, m, d, hh, mm, 0, 0, berlin) }
	tests := []struct {
		name  string
		team  string
		human string
		at    time.Time
		tier  int32
		class string
		want  bool
	}{
		{"in hours", "finance", "alice@acme.test", at(2026, 11, 18, 9, 0), 3, "refund", false},
		{"one minute before opening", "finance", "alice@acme.test", at(2026, 11, 18, 7, 59), 3, "refund", true},
		{"at opening", "finance", "alice@acme.test", at(2026, 11, 18, 8, 0), 3, "refund", false},
		{"at closing", "finance", "alice@acme.test", at(2026, 11, 18, 18, 0), 3, "refund", true},
		{"saturday", "finance", "alice@acme.test", at(2026, 11, 21, 11, 0), 3, "refund", true},
		{"holiday", "finance", "alice@acme.test", at(2026, 12, 24, 11, 0), 3, "refund", true},
		{"tier 1 is not consequential", "finance", "alice@acme.test", at(2026, 11, 21, 11, 0), 1, "read", false},
		{"a tier 1 delete is", "finance", "alice@acme.test", at(2026, 11, 21, 11, 0), 1, "delete", true},
		{"the requester's hours come first", "finance", "nina@acme.test", at(2026, 11, 18, 9, 0), 3, "refund", true}, // 03:00 in New York
		{"the team's zone", "support", "alice@acme.test", at(2026, 11, 18, 15, 0), 3, "refund", false},               // 09:00 in New York
		{"no calendar for the team", "legal", "alice@acme.test", at(2026, 11, 21, 11, 0), 3, "refund", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			en := mustEngine(t, src)
			var b evb
			e := b.intent("bot-1", tc.team, tc.at, "payments", "refund", "charge:1", tc.tier, tc.class)
			e.RequestedBy = tc.human
			got := feed(en, e)
			if (len(got) == 1) != tc.want || len(got) > 1 {
				t.Fatalf("%d alerts, want fired=%v:%s", len(got), tc.want, summaries(got))
			}
		})
	}
}

// With a threshold above one, the out-of-hours actions of a group are
// counted in the window: one below does not fire.
func TestOutOfHoursThreshold(t *testing.T) {
	en := mustEngine(t, testCalendars+`
rules:
  - name: ooh
    kind: out_of_hours
    threshold: 3
    window: {size: 30m}
`)
	var b evb
	sat := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	act := func(at time.Time) *schemas.Event {
		return b.intent("bot-1", "finance", at, "payments", "refund", "charge:"+at.Format("1504"), 3, "refund")
	}
	if got := feed(en, act(sat), act(sat.Add(10*time.Minute)), act(sat.Add(45*time.Minute))); len(got) != 0 {
		t.Fatalf("at most two in any 30 minutes fired:%s", summaries(got))
	}
	// A third arrives out of order, within the lateness: the window
	// (09:50, 10:20] now holds three.
	got := feed(en, act(sat.Add(20*time.Minute)))
	if len(got) != 1 || got[0].Observed != 3 || got[0].Threshold != 3 || !got[0].WindowEnd.Equal(sat.Add(20*time.Minute)) {
		t.Fatalf("the third within 30 minutes: %s", summaries(got))
	}
}

func TestCalendarAcrossDST(t *testing.T) {
	rs := mustRules(t, `
calendars:
  berlin: {time_zone: Europe/Berlin, hours: "08:00-18:00"}
  new-york: {time_zone: America/New_York, hours: "08:00-18:00"}
  berlin-night: {time_zone: Europe/Berlin, days: [mon, tue, wed, thu, fri, sat, sun], hours: "02:00-03:00"}
  new-york-night: {time_zone: America/New_York, days: [mon, tue, wed, thu, fri, sat, sun], hours: "01:00-02:00"}
  night-shift: {time_zone: Europe/Berlin, days: [fri], hours: "22:00-06:00"}
business_hours: {default: berlin}
rules: [{name: ooh, kind: out_of_hours}]
`)
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		cal  string
		at   string
		open bool
		why  string
	}{
		// Europe/Berlin leaves summer time on Sunday 2026-10-25 at 03:00 CEST.
		{"berlin", "2026-10-23T06:30:00Z", true, "Friday 08:30 CEST"},
		{"berlin", "2026-10-26T06:30:00Z", false, "Monday 07:30 CET: the same UTC time is now before opening"},
		{"berlin", "2026-10-26T07:00:00Z", true, "Monday 08:00 CET"},
		{"berlin", "2026-10-23T16:30:00Z", false, "Friday 18:30 CEST"},
		{"berlin", "2026-10-26T16:30:00Z", true, "Monday 17:30 CET"},
		// The repeated hour 02:00-03:00 happens twice on 2026-10-25.
		{"berlin-night", "2026-10-25T00:30:00Z", true, "02:30 CEST"},
		{"berlin-night", "2026-10-25T01:30:00Z", true, "02:30 CET, an hour later in UTC"},
		{"berlin-night", "2026-10-25T02:30:00Z", false, "03:30 CET"},
		// America/New_York leaves daylight time on Sunday 2026-11-01 at 02:00 EDT.
		{"new-york", "2026-10-30T12:30:00Z", true, "Friday 08:30 EDT"},
		{"new-york", "2026-11-02T12:30:00Z", false, "Monday 07:30 EST"},
		{"new-york", "2026-11-02T13:00:00Z", true, "Monday 08:00 EST"},
		{"new-york-night", "2026-11-01T05:30:00Z", true, "01:30 EDT"},
		{"new-york-night", "2026-11-01T06:30:00Z", true, "01:30 EST, the hour repeated"},
		{"new-york-night", "2026-11-01T07:30:00Z", false, "02:30 EST"},
		// A shift that wraps midnight belongs to the day it starts.
		{"night-shift", "2026-11-20T22:30:00Z", true, "Friday 23:30"},
		{"night-shift", "2026-11-21T04:30:00Z", true, "Saturday 05:30, Friday's shift"},
		{"night-shift", "2026-11-21T05:30:00Z", false, "Saturday 06:30"},
		{"night-shift", "2026-11-21T22:30:00Z", false, "Saturday 23:30"},
	}
	for _, tc := range tests {
		t.Run(tc.cal+" "+tc.why, func(t *testing.T) {
			if got := rs.calendars[tc.cal].open(utc(tc.at)); got != tc.open {
				t.Fatalf("open(%s) = %v, want %v (%s)", tc.at, got, tc.open, tc.why)
			}
		})
	}
}

func TestDenialSpike(t *testing.T) {
	src := `
rules:
  - name: denials
    kind: denial_spike
    window: {size: 10m}
    threshold: 5
    factor: 3
    baseline: 1h
`
	deny := func(b *evb, agent string, at time.Time) []*schemas.Event {
		in := b.intent(agent, "finance", at, "payments", "refund", "charge:"+at.Format("150405.000000"), 3, "refund")
		return []*schemas.Event{in, b.decision(in, at.Add(time.Millisecond), schemas.OutcomeDeny)}
	}
	burst := func(b *evb, agent string, start time.Time, n int) []*schemas.Event {
		var out []*schemas.Event
		for i := range n {
			out = append(out, deny(b, agent, start.Add(time.Duration(i)*20*time.Second))...)
		}
		return out
	}
	// history gives agent a baseline of per denials in each of six
	// 10-minute buckets: the hour before the bucket holding the start of a
	// window that ends a few minutes after start.
	history := func(b *evb, agent string, start time.Time, per int) []*schemas.Event {
		var out []*schemas.Event
		for k := 7; k >= 2; k-- {
			bucket := start.Truncate(10 * time.Minute).Add(-time.Duration(k) * 10 * time.Minute)
			out = append(out, burst(b, agent, bucket.Add(time.Minute), per)...)
		}
		return out
	}
	tests := []struct {
		name    string
		events  func(b *evb) []*schemas.Event
		wantObs float64 // 0: no alert
		wantThr float64
	}{
		{"quiet agent one below", func(b *evb) []*schemas.Event { return burst(b, "quiet", wed, 4) }, 0, 0},
		{"quiet agent at the absolute threshold", func(b *evb) []*schemas.Event { return burst(b, "quiet", wed, 5) }, 5, 5},
		{"noisy agent above the absolute threshold, below 3x its baseline", func(b *evb) []*schemas.Event {
			return append(history(b, "noisy", wed, 4), burst(b, "noisy", wed, 11)...)
		}, 0, 0},
		{"noisy agent at 3x its baseline", func(b *evb) []*schemas.Event {
			return append(history(b, "noisy", wed, 4), burst(b, "noisy", wed, 12)...)
		}, 12, 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			en := mustEngine(t, src)
			got := feed(en, tc.events(&evb{})...)
			if tc.wantObs == 0 {
				if len(got) > 0 {
					t.Fatalf("want no alert, got:%s", summaries(got))
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("%d alert updates, want 1:%s", len(got), summaries(got))
			}
			if got[0].Observed != tc.wantObs || got[0].Threshold != tc.wantThr {
				t.Fatalf("observed %v threshold %v, want %v and %v (%s)", got[0].Observed, got[0].Threshold, tc.wantObs, tc.wantThr, got[0].Summary)
			}
		})
	}
}

func TestFirstUse(t *testing.T) {
	src := `
rules:
  - name: first
    kind: first_use
    history: 30d
    min_agent_events: 3
`
	use := func(b *evb, at time.Time, tool string) *schemas.Event {
		return b.intent("bot-1", "finance", at, tool, "run", "x", 2, "write")
	}
	tests := []struct {
		name  string
		tools []string
		gaps  []time.Duration // before each use
		want  int
	}{
		{"new tool once the agent has a track record", []string{"a", "a", "a", "b"}, nil, 1},
		{"still learning: one use short", []string{"a", "a", "b"}, nil, 0},
		{"known tools only", []string{"a", "b", "a", "b", "a"}, nil, 0},
		{"a second use of the new tool does not fire again", []string{"a", "a", "a", "b", "b"}, nil, 1},
		{"unused for longer than the history", []string{"a", "b", "a", "a", "b"},
			[]time.Duration{0, 0, 0, 0, 31 * 24 * time.Hour}, 1},
		{"unused for just under the history", []string{"a", "b", "a", "a", "b"},
			[]time.Duration{0, 0, 0, 0, 30*24*time.Hour - time.Hour}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			en := mustEngine(t, src)
			var b evb
			at := wed
			var got []Alert
			for i, tool := range tc.tools {
				if tc.gaps != nil {
					at = at.Add(tc.gaps[i])
				}
				at = at.Add(time.Minute)
				got = append(got, en.Observe(use(&b, at, tool))...)
			}
			if len(got) != tc.want {
				t.Fatalf("%d alerts, want %d:%s", len(got), tc.want, summaries(got))
			}
			if len(got) > 0 && !strings.Contains(got[0].GroupKey, "item=b.run") {
				t.Fatalf("group key %q, want the new item", got[0].GroupKey)
			}
		})
	}
}

func TestProbingAfterDeny(t *testing.T) {
	src := `
allowed_lateness: 10m
rules:
  - name: probe
    kind: probing_after_deny
    window: {size: 1m}
    threshold: 4
`
	try := func(b *evb, at time.Time, target string) *schemas.Event {
		return b.intent("bot-1", "devops", at, "iam", "grant", target, 3, "access_grant")
	}
	denyAt := func(b *evb, at time.Time) []*schemas.Event {
		in := try(b, at.Add(-time.Second), "role:admin")
		return []*schemas.Event{in, b.decision(in, at, schemas.OutcomeDeny)}
	}
	tries := func(b *evb, start time.Time, targets ...string) []*schemas.Event {
		var out []*schemas.Event
		for i, tg := range targets {
			out = append(out, try(b, start.Add(time.Duration(i+1)*5*time.Second), tg))
		}
		return out
	}
	tests := []struct {
		name   string
		events func(b *evb) []*schemas.Event
		want   float64 // distinct items at the alert; 0 none
	}{
		{"three distinct after a deny", func(b *evb) []*schemas.Event {
			return append(denyAt(b, wed), tries(b, wed, "a", "b", "c")...)
		}, 0},
		{"four distinct after a deny", func(b *evb) []*schemas.Event {
			return append(denyAt(b, wed), tries(b, wed, "a", "b", "c", "d")...)
		}, 4},
		{"repeats are not distinct", func(b *evb) []*schemas.Event {
			return append(denyAt(b, wed), tries(b, wed, "a", "b", "a", "c", "b")...)
		}, 0},
		{"no deny, no probing", func(b *evb) []*schemas.Event { return tries(b, wed, "a", "b", "c", "d", "e") }, 0},
		{"tries before the deny do not count", func(b *evb) []*schemas.Event {
			return append(tries(b, wed.Add(-time.Minute), "a", "b", "c"), append(denyAt(b, wed), tries(b, wed, "d", "e", "f")...)...)
		}, 0},
		{"the 4th exactly at the end of the window", func(b *evb) []*schemas.Event {
			return append(denyAt(b, wed), tries(b, wed.Add(40*time.Second), "a", "b", "c", "d")...) // the 4th at +60s
		}, 4},
		{"the 4th just after the window", func(b *evb) []*schemas.Event {
			return append(denyAt(b, wed), tries(b, wed.Add(40*time.Second+time.Microsecond), "a", "b", "c", "d")...)
		}, 0},
		{"a deny that arrives after the tries it preceded", func(b *evb) []*schemas.Event {
			return append(tries(b, wed, "a", "b", "c", "d"), denyAt(b, wed)...)
		}, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			en := mustEngine(t, src)
			got := feed(en, tc.events(&evb{})...)
			if tc.want == 0 {
				if len(got) > 0 {
					t.Fatalf("want none:%s", summaries(got))
				}
				return
			}
			if len(got) == 0 || got[len(got)-1].Observed != tc.want || distinctIDs(got) != 1 {
				t.Fatalf("want one alert observing %v:%s", tc.want, summaries(got))
			}
		})
	}
}

func TestApprovalFatigue(t *testing.T) {
	src := `
rules:
  - name: overload
    kind: approval_fatigue
    measure: volume
    window: {size: 1h}
    threshold: 3
  - name: rubber-stamp
    kind: approval_fatigue
    measure: speed
    min_read_time: 10s
    window: {size: 1h}
    threshold: 2
`
	type ap struct {
		status, kind string
		read         time.Duration
	}
	run := func(aps []ap) []Alert {
		en := mustEngine(t, src)
		var b evb
		var got []Alert
		for i, a := range aps {
			at := wed.Add(time.Duration(i) * 5 * time.Minute)
			in := b.intent("bot-1", "finance", at, "payments", "refund", "charge:"+string(rune('a'+i)), 3, "refund")
			de := b.decision(in, at.Add(time.Millisecond), schemas.OutcomeRequireApproval)
			got = append(got, feed(en, in, de, b.approval(in, de.Time.Add(a.read), a.status, "dana@acme.test", a.kind))...)
		}
		return got
	}
	slow, fast := 3*time.Minute, 9*time.Second
	tests := []struct {
		name      string
		aps       []ap
		wantRules map[string]float64 // rule -> observed at the last update
	}{
		{"two decisions", []ap{{"granted", "human", slow}, {"rejected", "human", slow}}, nil},
		{"three decisions", []ap{{"granted", "human", slow}, {"rejected", "human", slow}, {"granted", "human", slow}},
			map[string]float64{"overload": 3}},
		{"requests and expiries are not decisions", []ap{{"granted", "human", slow}, {"requested", "human", slow}, {"expired", "human", slow}, {"granted", "human", slow}}, nil},
		{"services are not people", []ap{{"granted", "service", fast}, {"granted", "service", fast}, {"granted", "human", slow}}, nil},
		{"one fast approval", []ap{{"granted", "human", fast}, {"granted", "human", 10 * time.Second}}, nil},
		{"two fast approvals", []ap{{"granted", "human", fast}, {"granted", "human", fast}},
			map[string]float64{"rubber-stamp": 2}},
		{"fast rejections are not rubber stamps", []ap{{"rejected", "human", fast}, {"rejected", "human", fast}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := run(tc.aps)
			byRule := map[string]float64{}
			for _, a := range got {
				byRule[a.Rule] = a.Observed
			}
			if len(byRule) != len(tc.wantRules) {
				t.Fatalf("alerts by rule %v, want %v:%s", byRule, tc.wantRules, summaries(got))
			}
			for r, obs := range tc.wantRules {
				if byRule[r] != obs {
					t.Fatalf("rule %s observed %v, want %v:%s", r, byRule[r], obs, summaries(got))
				}
			}
		})
	}
}

// An ongoing burst is one alert, updated; after a quiet suppression period
// the next burst is a new alert.
func TestSuppression(t *testing.T) {
	en := mustEngine(t, `
rules:
  - name: retry
    kind: retry_burst
    window: {size: 1m}
    threshold: 3
    suppress: 10m
`)
	var b evb
	at := wed
	var got []Alert
	for i := range 1000 { // one attempt every 2s for 33 minutes
		at = wed.Add(time.Duration(i) * 2 * time.Second)
		got = append(got, en.Observe(b.intent("bot-1", "finance", at, "t", "a", "x", 2, "write"))...)
	}
	if n := distinctIDs(got); n != 1 {
		t.Fatalf("a 33-minute burst raised %d alerts, want 1", n)
	}
	last := got[len(got)-1]
	if last.Version != uint64(len(got)) || last.Version < 900 {
		t.Fatalf("alert version %d after %d updates", last.Version, len(got))
	}
	if !last.FirstSeen.Equal(wed.Add(4*time.Second)) || !last.LastSeen.Equal(at) || len(last.EventIDs) != 20 {
		t.Fatalf("first %s last %s ids %d", last.FirstSeen, last.LastSeen, len(last.EventIDs))
	}
	// 9 minutes of quiet: still suppressed, the alert is updated.
	at = at.Add(9 * time.Minute)
	var more []Alert
	for i := range 3 {
		more = append(more, en.Observe(b.intent("bot-1", "finance", at.Add(time.Duration(i)*time.Second), "t", "a", "x", 2, "write"))...)
	}
	if len(more) != 1 || more[0].ID != last.ID {
		t.Fatalf("a burst within the suppression period: %d alerts, same id %v", len(more), len(more) == 1 && more[0].ID == last.ID)
	}
	// 11 minutes of quiet: a new alert.
	at = more[0].LastSeen.Add(11 * time.Minute)
	for i := range 3 {
		more = append(more, en.Observe(b.intent("bot-1", "finance", at.Add(time.Duration(i)*time.Second), "t", "a", "x", 2, "write"))...)
	}
	if len(more) != 2 || more[1].ID == last.ID || more[1].Version != 1 {
		t.Fatalf("after the suppression period: want a new alert, got %s", summaries(more))
	}
}

func TestLateEvents(t *testing.T) {
	en := mustEngine(t, testCalendars+`
allowed_lateness: 10m
rules:
  - name: retry
    kind: retry_burst
    window: {size: 1h}
    threshold: 3
  - name: ooh
    kind: out_of_hours
`)
	var b evb
	attempt := func(at time.Time) *schemas.Event {
		return b.intent("bot-1", "finance", at, "t", "a", "x", 1, "read")
	}
	// Two attempts, then the stream moves 30 minutes on.
	feed(en, attempt(wed), attempt(wed.Add(time.Minute)), b.intent("other", "finance", wed.Add(30*time.Minute), "t", "a", "y", 1, "read"))
	if wm := en.Watermark(); !wm.Equal(wed.Add(20 * time.Minute)) {
		t.Fatalf("watermark %s, want newest event time minus 10m", wm)
	}
	// Within the lateness: counted in its window, fires.
	got := feed(en, attempt(wed.Add(25*time.Minute)))
	if len(got) != 1 || got[0].Observed != 3 {
		t.Fatalf("an event within the allowed lateness: %s", summaries(got))
	}
	// Behind the watermark: not counted, but reported on the alert and in
	// the counters.
	got = feed(en, attempt(wed.Add(2*time.Minute)))
	if len(got) != 0 {
		t.Fatalf("a late event changed the window:%s", summaries(got))
	}
	st := en.Stats()
	if st.Rules[0].Late != 1 {
		t.Fatalf("late events counted %d, want 1", st.Rules[0].Late)
	}
	got = feed(en, attempt(wed.Add(26*time.Minute)))
	if len(got) != 1 || got[0].LateEvents != 1 || got[0].Observed != 4 {
		t.Fatalf("the next update: %+v", got)
	}
	// A late out-of-hours action still fires: lateness cannot change a
	// one-event finding.
	sat := time.Date(2026, 11, 14, 11, 0, 0, 0, time.UTC)
	got = feed(en, b.intent("bot-2", "finance", sat, "payments", "refund", "c", 3, "refund"))
	if len(got) != 1 || got[0].Rule != "ooh" || got[0].LateEvents != 1 {
		t.Fatalf("late out-of-hours action: %+v", got)
	}
}

// A producer whose clock runs ahead does not move the watermark past the
// host's clock.
func TestClockCeiling(t *testing.T) {
	en := mustEngine(t, `
allowed_lateness: 10m
rules: [{name: r, kind: retry_burst, window: {size: 1m}, threshold: 2}]
`)
	var b evb
	en.Advance(wed)
	feed(en, b.intent("skewed", "x", wed.Add(50*time.Minute), "t", "a", "x", 1, "read"))
	if wm := en.Watermark(); !wm.Equal(wed.Add(-10 * time.Minute)) {
		t.Fatalf("watermark %s, want the host clock minus the lateness", wm)
	}
}

func TestGroupBound(t *testing.T) {
	rs := mustRules(t, `rules: [{name: r, kind: retry_burst, window: {size: 1m}, threshold: 2}]`)
	en, err := NewEngine(rs, Config{MaxGroupsPerRule: 100})
	if err != nil {
		t.Fatal(err)
	}
	var b evb
	for i := range 150 {
		en.Observe(b.intent("agent-"+string(rune('A'+i%26))+string(rune('a'+i/26)), "x", wed.Add(time.Duration(i)*time.Millisecond), "t", "a", "x", 1, "read"))
	}
	st := en.Stats().Rules[0]
	if st.Groups != 100 || st.Evicted != 50 {
		t.Fatalf("groups %d evicted %d, want 100 and 50", st.Groups, st.Evicted)
	}
	// State the watermark passed is forgotten.
	en.Observe(b.intent("late-comer", "x", wed.Add(3*time.Hour), "t", "a", "x", 1, "read"))
	en.Advance(wed.Add(3 * time.Hour))
	if st := en.Stats().Rules[0]; st.Groups != 1 {
		t.Fatalf("%d groups after the watermark passed them, want 1", st.Groups)
	}
}
