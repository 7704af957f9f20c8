package correlate

import (
	"context"
	"testing"
	"time"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/schemas"
)

func testConfig() Config {
	var c Config
	c.SettleAfter = time.Minute
	c.MaxTraces = 100
	c.Defaults()
	return c
}

// retrace gives a test trace's events another trace id.
func retrace(id string, evs ...schemas.Event) []schemas.Event {
	out := make([]schemas.Event, len(evs))
	for i, e := range evs {
		e.TraceID = id
		e.EventID = id[28:] + "-" + e.EventID
		out[i] = e
	}
	return out
}

// TestProcessorSettlesMissingEvidence: a result without its approval is
// flagged only once settle_after has passed without the approval arriving;
// an approval given before the execution but delivered after it clears it.
func TestProcessorSettlesMissingEvidence(t *testing.T) {
	h := newHarness(t)
	c := h.correlator(testConfig())
	missing, late, filler := traceID(1), traceID(2), traceID(3)
	now := t0.Add(time.Hour)
	base := approved()
	// Everything in partition 0, in this delivery order.
	var recs []consumers.Accepted
	add := func(evs ...schemas.Event) []consumers.Accepted {
		var out []consumers.Accepted
		for _, e := range evs {
			a := consumers.Accepted{Event: e, Partition: 0, Offset: int64(len(recs))}
			recs = append(recs, a)
			out = append(out, a)
		}
		return out
	}
	b1 := add(append(retrace(missing, base[0], base[1], base[3]), retrace(late, base[0], base[1], base[3])...)...)
	b2 := add(retrace(late, base[2])...) // the approval, 09:36:02, after the 09:36:12 result
	b3 := add(retrace(filler, base[0])...)
	b4 := add(retrace(filler, base[1])...)

	if out := h.step(c, makeBatch(b1, now), true); len(out.Records) != 0 {
		t.Fatalf("batch 1 emitted %d violations before they settled", len(out.Records))
	}
	if len(c.pending) != 2 {
		t.Fatalf("pending = %d, want 2", len(c.pending))
	}
	if out := h.step(c, makeBatch(b2, now.Add(5*time.Second)), true); len(out.Records) != 0 {
		t.Fatalf("the late approval emitted %d violations", len(out.Records))
	}
	if out := h.step(c, makeBatch(b3, now.Add(30*time.Second)), true); len(out.Records) != 0 {
		t.Fatalf("emitted %d violations before settle_after", len(out.Records))
	}
	out := h.step(c, makeBatch(b4, now.Add(61*time.Second)), true)
	got := recordsByViolation(t, out.Records)
	if len(got) != 1 || got[found{missing, KindExecutedWithoutApproval}] != 1 {
		t.Fatalf("after settle_after: %v, want only %s executed_without_approval", got, missing)
	}
	// Nothing again, in this process or the next.
	more := add(retrace(filler, base[2], base[3])...)
	if out := h.step(c, makeBatch(more[:1], now.Add(5*time.Minute)), true); len(out.Records) != 0 {
		t.Fatalf("emitted again: %v", recordsByViolation(t, out.Records))
	}
	c2 := h.correlator(testConfig())
	if out := h.step(c2, makeBatch(more[1:], now.Add(6*time.Minute)), true); len(out.Records) != 0 {
		t.Fatalf("a restarted correlator emitted again: %v", recordsByViolation(t, out.Records))
	}
	compare(t, "table", tableViolations(t, h.conn, h.db), map[found]bool{{missing, KindExecutedWithoutApproval}: true})

	// The analysts' views agree.
	ctx := context.Background()
	var state string
	var kinds []string
	if err := h.conn.QueryRow(ctx, "SELECT state, violations FROM "+h.db+".v_traces WHERE trace_id = ?", missing).Scan(&state, &kinds); err != nil {
		t.Fatal(err)
	}
	if state != StateCompleted || len(kinds) != 1 || kinds[0] != string(KindExecutedWithoutApproval) {
		t.Errorf("v_traces %s: state %s, violations %v", missing, state, kinds)
	}
	var approver string
	var waitMS *int64
	if err := h.conn.QueryRow(ctx, "SELECT approver, approval_wait_ms FROM "+h.db+".v_traces WHERE trace_id = ?", late).Scan(&approver, &waitMS); err != nil {
		t.Fatal(err)
	}
	if approver != bob || waitMS == nil || *waitMS != 361973 {
		t.Errorf("v_traces %s: approver %q, approval wait %v ms", late, approver, waitMS)
	}
}

// TestProcessorPendingSurvivesRestart: a violation waiting to settle when
// the process stops is emitted by the next process.
func TestProcessorPendingSurvivesRestart(t *testing.T) {
	h := newHarness(t)
	missing, filler := traceID(1), traceID(2)
	now := t0.Add(time.Hour)
	base := approved()
	s := newStream(1)
	s.add(retrace(missing, base[0], base[1], base[3])...)
	s.add(retrace(filler, base[0])...)
	s.add(retrace(filler, base[1])...)
	bs := s.batches(3, now, 0)
	c1 := h.correlator(testConfig())
	if out := h.step(c1, bs[0], true); len(out.Records) != 0 {
		t.Fatal("emitted before settling")
	}
	c2 := h.correlator(testConfig())
	bs[1].Now = now.Add(2 * time.Minute)
	got := recordsByViolation(t, h.step(c2, bs[1], true).Records)
	if got[found{missing, KindExecutedWithoutApproval}] != 1 || len(got) != 1 {
		t.Fatalf("restarted correlator emitted %v, want the settled violation", got)
	}
}

// TestProcessorRestartsRedosAndRebalances replays a simulated fleet with
// every violation planted through correlators that crash mid-batch, restart,
// redo batches, lose partitions and evict traces at a small max_traces: the
// committed records and the table hold every planted violation exactly
// once, as an uninterrupted run does.
func TestProcessorRestartsRedosAndRebalances(t *testing.T) {
	n, tail := 600, 60
	if testing.Short() {
		n = 300
	}
	fx := newFixture(t, 5, n, tail, 0.03, t0.Add(-2*time.Hour))
	s := newStream(4)
	s.add(fx.events...)
	bs := s.batches(160, t0, 3*time.Second)
	last := bs[len(bs)-1]
	last.Now = last.Now.Add(10 * time.Minute) // the tail settles everything

	t.Run("uninterrupted", func(t *testing.T) {
		h := newHarness(t)
		c := h.correlator(testConfig())
		for _, b := range bs {
			h.step(c, b, true)
		}
		if len(c.pending) != 0 {
			t.Fatalf("%d traces still pending", len(c.pending))
		}
		compare(t, "records", recordsByViolation(t, h.committed), fx.planted)
		compare(t, "table", tableViolations(t, h.conn, h.db), fx.planted)
		var traces uint64
		if err := h.conn.QueryRow(context.Background(), "SELECT count() FROM "+h.db+".v_traces").Scan(&traces); err != nil {
			t.Fatal(err)
		}
		if int(traces) != len(fx.traces) {
			t.Errorf("v_traces holds %d traces, want %d", traces, len(fx.traces))
		}
		t.Logf("%d events in %d batches, %d traces, %d violations planted", len(fx.events), len(bs), len(fx.traces), len(fx.planted))
	})

	t.Run("crashes", func(t *testing.T) {
		h := newHarness(t)
		c := h.correlator(testConfig())
		for i, b := range bs {
			switch {
			case i%7 == 3:
				// The process dies after the inserts, before the commit; a
				// new one redoes the batch, polling it in two halves.
				h.step(c, b, false)
				c = h.correlator(testConfig())
				half := len(b.Events) / 2
				h.step(c, makeBatch(b.Events[:half], b.Now), true)
				h.step(c, makeBatch(b.Events[half:], b.Now), true)
				continue
			case i%11 == 5:
				// Ingest retries the batch in the same process.
				h.step(c, b, false)
			case i%13 == 8:
				c.PartitionsRevoked([]int32{1, 2})
			}
			h.step(c, b, true)
		}
		compare(t, "records", recordsByViolation(t, h.committed), fx.planted)
		compare(t, "table", tableViolations(t, h.conn, h.db), fx.planted)
	})
}

// TestProcessorRedoShorterBatch: a crashed batch emitted a violation (its
// row reached ClickHouse, its record never reached Kafka); the new process
// polls the redo in two parts, and the violation becomes derivable only in
// the second. The crashed batch's row must not count as emitted.
func TestProcessorRedoShorterBatch(t *testing.T) {
	h := newHarness(t)
	denied, filler := traceID(1), traceID(2)
	now := t0.Add(time.Hour)
	s := newStream(1)
	s.add(retrace(denied, intentEv("ev-1", "0s", 2, digestA), decisionEv("ev-2", "27ms", 2, schemas.OutcomeDeny, 12))...)
	s.add(retrace(filler, intentEv("ev-1", "1s", 1, digestA))...)
	s.add(retrace(denied, resultEv("ev-4", "2s", 2, schemas.ResultSuccess, digestA))...)
	c := h.correlator(testConfig())
	h.step(c, makeBatch(s.evs[:2], now), true)
	if out := h.step(c, makeBatch(s.evs[2:], now), false); len(out.Records) != 1 {
		t.Fatalf("the crashed batch emitted %d violations, want 1", len(out.Records))
	}
	c = h.correlator(testConfig())
	h.step(c, makeBatch(s.evs[2:3], now), true)
	h.step(c, makeBatch(s.evs[3:], now), true)
	compare(t, "records", recordsByViolation(t, h.committed), map[found]bool{{denied, KindExecutedAfterDeny}: true})
}

// TestProcessorRetriedBatch: ingest retries a batch in the same process
// after a violation settled in it; the retry emits it again (the first
// attempt's records were not committed), and the next batch does not.
func TestProcessorRetriedBatch(t *testing.T) {
	h := newHarness(t)
	missing, filler := traceID(1), traceID(2)
	now := t0.Add(time.Hour)
	base := approved()
	s := newStream(1)
	s.add(retrace(missing, base[0], base[1], base[3])...)
	s.add(retrace(filler, base[0], base[1], base[2])...)
	c := h.correlator(testConfig())
	h.step(c, makeBatch(s.evs[:3], now), true)
	later := now.Add(2 * time.Minute)
	if out := h.step(c, makeBatch(s.evs[3:5], later), false); len(out.Records) != 1 {
		t.Fatalf("the settled violation was emitted %d times, want 1", len(out.Records))
	}
	h.step(c, makeBatch(s.evs[3:5], later), true)
	h.step(c, makeBatch(s.evs[5:], later), true)
	compare(t, "records", recordsByViolation(t, h.committed), map[found]bool{{missing, KindExecutedWithoutApproval}: true})
}

// TestAnalystViews: the states v_traces computes from the clock, and the
// open approvals. Event times are around the wall clock, which the views'
// now64() reads.
func TestAnalystViews(t *testing.T) {
	h := newHarness(t)
	c := h.correlator(testConfig())
	now := time.Now().UTC().Truncate(time.Second)
	shift := func(d time.Duration, evs ...schemas.Event) []schemas.Event {
		for i := range evs {
			evs[i].Time = evs[i].Time.Add(now.Sub(t0) + d)
			if a := evs[i].Approval; a != nil && a.ExpiresAt != nil {
				x := a.ExpiresAt.Add(now.Sub(t0) + d)
				a.ExpiresAt = &x
			}
		}
		return evs
	}
	base := approved()
	waiting, granted, done, silent := traceID(1), traceID(2), traceID(3), traceID(4)
	s := newStream(2)
	s.add(retrace(waiting, shift(-time.Hour, base[0], base[1])...)...)
	s.add(retrace(granted, shift(-10*time.Minute, base[0], base[1], base[2])...)...)
	s.add(retrace(done, shift(-time.Hour, approved()...)...)...)
	s.add(retrace(silent, shift(-48*time.Hour, intentEv("ev-1", "0s", 1, digestA), decisionEv("ev-2", "27ms", 1, schemas.OutcomeAllow, 12))...)...)
	h.step(c, makeBatch(s.evs, now), true)

	ctx := context.Background()
	states := map[string]string{}
	rows, err := h.conn.Query(ctx, "SELECT trace_id, state FROM "+h.db+".v_traces")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			t.Fatal(err)
		}
		states[id] = st
	}
	rows.Close()
	want := map[string]string{waiting: StateOpen, granted: StateOpen, done: StateCompleted, silent: StateAbandoned}
	for id, st := range want {
		if states[id] != st {
			t.Errorf("v_traces: %s is %q, want %q", id, states[id], st)
		}
	}

	open := map[string]string{}
	rows, err = h.conn.Query(ctx, "SELECT trace_id, open_kind, waiting_s FROM "+h.db+".v_open_approvals")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, kind string
		var waited int64
		if err := rows.Scan(&id, &kind, &waited); err != nil {
			t.Fatal(err)
		}
		open[id] = kind
		if waited <= 0 {
			t.Errorf("v_open_approvals: %s waited %ds", id, waited)
		}
	}
	rows.Close()
	if len(open) != 2 || open[waiting] != "awaiting_approval" || open[granted] != "granted_unused" {
		t.Errorf("v_open_approvals = %v, want %s awaiting_approval and %s granted_unused", open, waiting, granted)
	}
}
