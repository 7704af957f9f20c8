package anomaly

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/schemas"
)

// busyRules fire often on randomStream: low thresholds, every kind, other
// groupings, scopes and tumbling windows than the built-in rules.
const busyRules = testCalendars + `
allowed_lateness: 10m
rules:
  - name: retry
    kind: retry_burst
    window: {size: 2m}
    threshold: 4
    after_failure_threshold: 2
  - name: retry-tool
    kind: retry_burst
    group_by: [team, tool, action_class]
    window: {size: 5m, type: tumbling}
    threshold: 6
  - name: ooh
    kind: out_of_hours
    consequential: {min_tier: 2, action_classes: [delete]}
    window: {size: 30m}
    threshold: 2
    suppress: 10m
  - name: ooh-one
    kind: out_of_hours
    group_by: [team, tool]
    consequential: {min_tier: 3}
    calendar_by: [team]
  - name: denials
    kind: denial_spike
    group_by: [agent, policy_id]
    window: {size: 5m}
    threshold: 3
    factor: 1.5
    baseline: 1h
  - name: denials-tier
    kind: denial_spike
    group_by: [tier]
    scope: {tiers: [2, 3]}
    window: {size: 2m, type: tumbling}
    threshold: 4
    factor: 1
    baseline: 20m
  - name: first
    kind: first_use
    item: tool
    history: 2h
    min_agent_events: 5
  - name: first-class
    kind: first_use
    scope: {action_classes: [delete, access_grant]}
    item: action_class
    history: 1h
    min_agent_age: 10m
  - name: probe
    kind: probing_after_deny
    window: {size: 1m}
    threshold: 3
  - name: probe-tool
    kind: probing_after_deny
    item: tool_action
    scope: {teams: [finance, devops]}
    window: {size: 3m}
    threshold: 4
    suppress: 5m
  - name: volume
    kind: approval_fatigue
    group_by: [approver, team]
    approver_kinds: [human, agent]
    window: {size: 10m}
    threshold: 4
  - name: stamp
    kind: approval_fatigue
    measure: speed
    min_read_time: 30s
    window: {size: 10m, type: tumbling}
    threshold: 2
`

// randomStream is a few agents' traces over a few hours, the way ingest
// receives them: intents, decisions (some denied, some asking for
// approval), approvals by a few approvers (some fast), results (some
// failed), actions repeated with the same digest, business hours and
// nights, events delivered up to 15 minutes late (some beyond the allowed
// lateness), redelivered, and an event time now and then ahead of the
// ingest clock.
func randomStream(seed uint64, n int) []delivery {
	r := rand.New(rand.NewPCG(seed, 31))
	b := &evb{}
	at := wed.Add(-time.Duration(r.IntN(20)) * time.Hour)
	teams := []string{"finance", "support", "devops", "sales"}
	tools := []struct {
		tool, action, class string
		tier                int32
	}{{"ledger", "read", "read", 1}, {"email", "send", "send", 2}, {"crm", "update", "update", 2},
		{"payments", "refund", "refund", 3}, {"iam", "grant", "access_grant", 3}, {"storage", "delete", "delete", 2}}
	approvers := []string{"ann@acme.test", "bob@acme.test", "ci-bot"}
	type repeat struct {
		agent, team string
		tool        int
		target      string
	}
	var last []repeat
	var out []delivery
	for len(out) < n {
		at = at.Add(time.Duration(r.ExpFloat64() * float64(4*time.Second)))
		if r.IntN(400) == 0 {
			at = at.Add(time.Duration(r.IntN(90)) * time.Minute) // a quiet spell
		}
		var rp repeat
		if len(last) > 0 && r.IntN(3) == 0 {
			rp = last[r.IntN(len(last))] // the same action again: the same digest
		} else {
			a := r.IntN(6)
			rp = repeat{agent: fmt.Sprintf("bot-%d", a), team: teams[a%len(teams)], tool: r.IntN(len(tools)), target: fmt.Sprintf("obj:%d", r.IntN(8))}
			if len(last) < 12 {
				last = append(last, rp)
			} else {
				last[r.IntN(len(last))] = rp
			}
		}
		tl := tools[rp.tool]
		in := b.intent(rp.agent, rp.team, at, tl.tool, tl.action, rp.target, tl.tier, tl.class)
		if r.IntN(5) == 0 {
			in.RequestedBy, in.Decision = "nina@acme.test", nil
		}
		trace := []*schemas.Event{in}
		step := func() time.Time { return at.Add(time.Duration(r.IntN(4000)) * time.Millisecond) }
		switch x := r.IntN(10); {
		case x < 3:
			trace = append(trace, b.decision(in, step(), schemas.OutcomeDeny))
			trace = append(trace, b.result(in, step().Add(time.Second), schemas.ResultBlocked))
		case x < 6:
			trace = append(trace, b.decision(in, step(), schemas.OutcomeRequireApproval))
			if r.IntN(4) > 0 {
				trace = append(trace, b.approval(in, step(), schemas.ApprovalRequested, "", ""))
			}
			kind := schemas.PrincipalHuman
			if r.IntN(5) == 0 {
				kind = schemas.PrincipalAgent
			}
			status := schemas.ApprovalGranted
			if r.IntN(4) == 0 {
				status = schemas.ApprovalRejected
			}
			ap := b.approval(in, at.Add(time.Duration(r.IntN(60))*time.Second), status, approvers[r.IntN(len(approvers))], kind)
			trace = append(trace, ap)
			trace = append(trace, b.result(in, ap.Time.Add(time.Second), schemas.ResultSuccess))
		default:
			trace = append(trace, b.decision(in, step(), schemas.OutcomeAllow))
			status := schemas.ResultSuccess
			if r.IntN(4) == 0 {
				status = []string{schemas.ResultFailure, schemas.ResultError}[r.IntN(2)]
			}
			trace = append(trace, b.result(in, step().Add(time.Second), status))
		}
		deliver := at.Add(5 * time.Second)
		if r.IntN(10) == 0 {
			deliver = deliver.Add(time.Duration(r.IntN(15)) * time.Minute) // late
		}
		if r.IntN(50) == 0 {
			deliver = deliver.Add(-time.Minute) // the producer's clock is ahead
		}
		for _, e := range trace {
			out = append(out, delivery{*e, deliver})
			if r.IntN(40) == 0 {
				out = append(out, delivery{*e, deliver.Add(time.Duration(r.IntN(120)) * time.Second)}) // redelivered
			}
		}
	}
	return byDelivery(out)
}

// streamTranscript runs a stream through a Processor (no ClickHouse) the
// way ingest does, in batches of random size polled partition by
// partition, with a batch now and then delivered again (a redo) and the
// Processor now and then replaced (a restart), and writes down everything
// it returned (cfg bounds its state): every alert record, the engine's totals after each batch,
// and the metrics at the end. Two implementations of the stage are
// equivalent on the stream when their transcripts are equal.
func streamTranscript(t testing.TB, rules string, cfg Config, ds []delivery, seed uint64) string {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 77))
	var sb strings.Builder
	h := &harness{t: t}
	recs := h.place(ds)
	reg := prometheus.NewRegistry()
	newProc := func() *Processor {
		reg = prometheus.NewRegistry()
		p, err := New(cfg, nil, "db", reg, quiet)
		if err != nil {
			t.Fatal(err)
		}
		p.en, err = newEngine(mustRules(t, rules), p.cfg.limits())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := newProc()
	var prev []consumers.Accepted
	for i := 0; i < len(recs); {
		n := 1 + r.IntN(400)
		polled := append([]consumers.Accepted(nil), recs[i:min(i+n, len(recs))]...)
		if len(prev) > 0 && r.IntN(15) == 0 {
			polled = append(prev, polled...) // the previous batch again, with this one
		}
		sortByPartition(polled)
		now := ds[min(i+n, len(ds))-1].at
		bt := batch(polled, now)
		if r.IntN(25) == 0 {
			// A restart. Without ClickHouse nothing is restored; what a
			// restore would have marked as evaluated already is set here:
			// some partitions' records up to a little past this batch.
			p = newProc()
			for part := range int32(partitions) {
				if r.IntN(3) == 0 {
					p.skipUpTo[part] = bt.FirstOffset[part] + int64(r.IntN(30))
				}
			}
		}
		out, err := p.Process(context.Background(), bt)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sb, "batch %d..%d: %d records\n", i, i+n, len(out.Records))
		for _, rec := range out.Records {
			fmt.Fprintf(&sb, "%s v%s %s\n", rec.Key, rec.Headers[1].Value, rec.Value)
		}
		for _, ins := range out.Inserts {
			v, err := json.Marshal(ins)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&sb, "insert %s\n", v)
		}
		fmt.Fprintf(&sb, "stats %+v\n", p.en.Stats())
		prev, i = polled, i+n
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.Contains(mf.GetName(), "seconds") {
			continue // wall-clock times
		}
		if _, err := expfmt.MetricFamilyToText(&sb, mf); err != nil {
			t.Fatal(err)
		}
	}
	return sb.String()
}

// sortByPartition orders records the way a poll returns them: partition by
// partition, each in offset order.
func sortByPartition(recs []consumers.Accepted) {
	for i := 1; i < len(recs); i++ {
		for j := i; j > 0 && recs[j-1].Partition > recs[j].Partition; j-- {
			recs[j-1], recs[j] = recs[j], recs[j-1]
		}
	}
}

// The stage's output must not depend on anything but its input: a batch
// redone after a crash has to yield the same alerts, versions and totals
// as its first run did. Two transcripts of the same random stream, with
// the same redos and restarts, must be equal, byte for byte.
func TestStreamTranscriptIsDeterministic(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		ds := randomStream(seed, 6000)
		first := streamTranscript(t, busyRules, Config{}, ds, seed)
		second := streamTranscript(t, busyRules, Config{}, ds, seed)
		if first != second {
			a, b := strings.Split(first, "\n"), strings.Split(second, "\n")
			for i := range min(len(a), len(b)) {
				if a[i] != b[i] {
					t.Fatalf("seed %d: transcripts differ at line %d:\n first: %s\nsecond: %s", seed, i+1, a[i], b[i])
				}
			}
			t.Fatalf("seed %d: transcripts differ in length: %d and %d lines", seed, len(a), len(b))
		}
		if n := strings.Count(first, `{"alert_id":`); n < 100 {
			t.Fatalf("seed %d: %d alert records, want at least 100 for the comparison to mean something", seed, n)
		}
	}
}
