package anomaly

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

// delivery is an event and when it reached ingest.
type delivery struct {
	ev schemas.Event
	at time.Time
}

// tracesPerSecond is the background's pace in event time: one action per
// agent per minute or so for the default fleet of 35 agents.
const tracesPerSecond = 0.5

// background is the fleet at work between from and to: traces at random
// (Poisson) times, each delivered whole when its last event happened, the
// way the simulator delivers them, with its default share of reordered and
// duplicated events.
func background(f *simulate.Fleet, r *rand.Rand, from, to time.Time) []delivery {
	var out []delivery
	for now := from; now.Before(to); now = now.Add(time.Duration(r.ExpFloat64() / tracesPerSecond * float64(time.Second))) {
		for _, e := range f.NextTrace(now) {
			out = append(out, delivery{e, now})
		}
	}
	return out
}

// planted delivers each planted trace a second after its last event.
func planted(as []*simulate.Anomaly) []delivery {
	var out []delivery
	for _, a := range as {
		for _, tr := range a.Traces {
			last := tr[0].Time
			for _, e := range tr {
				if e.Time.After(last) {
					last = e.Time
				}
			}
			for _, e := range tr {
				out = append(out, delivery{e, last.Add(time.Second)})
			}
		}
	}
	return out
}

func byDelivery(ds []delivery) []delivery {
	slices.SortStableFunc(ds, func(a, b delivery) int { return a.at.Compare(b.at) })
	return ds
}

// fleetScenario is three business days of the default fleet: Monday and
// Tuesday as history, Wednesday as the live day with one anomaly of every
// kind planted in it, plus an out-of-hours action that evening.
type fleetScenario struct {
	history, live []delivery
	anomalies     []*simulate.Anomaly
	liveFrom      time.Time
}

// day's business hours in UTC that every team of deployments/rules.yaml
// shares (Berlin 07:00-20:00 CET, New York 07:00-20:00 EST), less the hour
// of approval delay the simulator back-dates intents by.
func workday(d time.Time) (time.Time, time.Time) {
	return d.Add(12*time.Hour + 50*time.Minute), d.Add(18*time.Hour + 55*time.Minute)
}

func newFleetScenario(t testing.TB, seed uint64) *fleetScenario {
	t.Helper()
	f := simulate.New(simulate.Config{Seed: seed, ReorderRate: simulate.DefaultReorderRate, DuplicateRate: simulate.DefaultDuplicateRate})
	r := rand.New(rand.NewPCG(seed, 99))
	mon := time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC)
	var s fleetScenario
	for d := range 2 {
		from, to := workday(mon.AddDate(0, 0, d))
		s.history = append(s.history, background(f, r, from, to)...)
	}
	wed := mon.AddDate(0, 0, 2)
	from, to := workday(wed)
	s.liveFrom = from
	rs := DefaultRules()
	ooh := wed.Add(21*time.Hour + 10*time.Minute)
	if out, known := rs.OutOfHours("finance", "maria.lopez@acme.example", ooh); !out || !known {
		t.Fatalf("%s is not out of finance's hours by the default rules", ooh)
	}
	var err error
	s.anomalies, err = f.PlantAll(wed.Add(13*time.Hour+40*time.Minute), 25*time.Minute, ooh, "finance")
	if err != nil {
		t.Fatal(err)
	}
	s.live = byDelivery(append(background(f, r, from, to), planted(s.anomalies)...))
	return &s
}

var (
	scenarioMu    sync.Mutex
	scenarioCache = map[uint64]*fleetScenario{}
)

// fleetScenarioFor builds a scenario once per seed for the whole package.
func fleetScenarioFor(t testing.TB, seed uint64) *fleetScenario {
	scenarioMu.Lock()
	defer scenarioMu.Unlock()
	if s, ok := scenarioCache[seed]; ok {
		return s
	}
	s := newFleetScenario(t, seed)
	scenarioCache[seed] = s
	return s
}

// expectedRule is the rule of deployments/rules.yaml that catches each
// planted anomaly.
var expectedRule = map[string]string{
	simulate.AnomalyRetryBurst:    "retry-burst",
	simulate.AnomalyOutOfHours:    "out-of-hours",
	simulate.AnomalyDenialSpike:   "denial-spike",
	simulate.AnomalyFirstUse:      "first-use",
	simulate.AnomalyProbing:       "probing-after-deny",
	simulate.AnomalyApprovalFlood: "approval-overload",
	simulate.AnomalyRubberStamp:   "approval-rubber-stamp",
}

// checkAlerts asserts that every planted anomaly raised exactly one alert of
// its rule about its agent or approver, and that nothing else raised any.
func checkAlerts(t *testing.T, s *fleetScenario, alerts []Alert) {
	t.Helper()
	matched := map[string]bool{}
	var problems []string
	for _, a := range s.anomalies {
		who := "agent=" + a.Agent
		if a.Approver != "" {
			who = "approver=" + a.Approver
		}
		var mine []Alert
		for _, al := range alerts {
			if al.Rule == expectedRule[a.Kind] && strings.HasPrefix(al.GroupKey, who) {
				mine = append(mine, al)
				matched[al.ID] = true
			}
		}
		if len(mine) != 1 {
			problems = append(problems, fmt.Sprintf("planted %s by %s raised %d alerts of rule %s, want 1:%s", a.Kind, who, len(mine), expectedRule[a.Kind], summaries(mine)))
			continue
		}
		// The alert leads to the planted events (its window may hold the
		// agent's or approver's ordinary events too).
		if !slices.ContainsFunc(a.Events(), func(e schemas.Event) bool { return slices.Contains(mine[0].EventIDs, e.EventID) }) {
			problems = append(problems, fmt.Sprintf("alert %s of planted %s names none of the planted events", mine[0].ID, a.Kind))
		}
	}
	for _, al := range alerts {
		if !matched[al.ID] {
			problems = append(problems, fmt.Sprintf("the background raised %s v%d %s: %s", al.Rule, al.Version, al.GroupKey, al.Summary))
		}
	}
	if len(problems) > 0 {
		t.Fatalf("%d problems:\n%s", len(problems), strings.Join(problems, "\n"))
	}
}

// latestVersions keeps the last version of each alert.
func latestVersions(as []Alert) []Alert {
	idx := map[string]int{}
	var out []Alert
	for _, a := range as {
		if i, ok := idx[a.ID]; ok {
			out[i] = a
			continue
		}
		idx[a.ID] = len(out)
		out = append(out, a)
	}
	return out
}

// The default rules on the simulated fleet, in memory: the engine learns
// from two days of history, then every anomaly planted on the third day
// raises exactly one alert and the background none.
func TestDefaultRulesOnSimulatedFleet(t *testing.T) {
	s := fleetScenarioFor(t, 11)
	en, err := NewEngine(DefaultRules(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	var learning []Alert
	for i := range s.history {
		en.Advance(s.history[i].at)
		learning = append(learning, en.Observe(&s.history[i].ev)...)
	}
	for _, a := range latestVersions(learning) {
		if a.Rule != "first-use" {
			t.Errorf("history raised %s: %s", a.Rule, a.Summary)
		}
	}
	var got []Alert
	for i := range s.live {
		en.Advance(s.live[i].at)
		got = append(got, en.Observe(&s.live[i].ev)...)
	}
	t.Logf("%d history events (%d first-use alerts while learning), %d live events, %d alert updates",
		len(s.history), len(latestVersions(learning)), len(s.live), len(got))
	checkAlerts(t, s, latestVersions(got))
}
