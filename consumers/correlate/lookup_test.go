package correlate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update to accept):\n%s", path, got)
	}
}

// TestLookupTimeline correlates a trace whose payload changed after the
// approval and whose approval was given by the requester, then reads it
// back as `agentrail trace` shows it, in text and JSON.
func TestLookupTimeline(t *testing.T) {
	h := newHarness(t)
	c := h.correlator(testConfig())
	id := traceID(41)
	now := t0.Add(time.Hour)
	evs := replace(approved(),
		approvalEv("ev-3", "6m2s", 3, schemas.ApprovalGranted, alice),
		resultEv("ev-4", "6m12s", 3, schemas.ResultSuccess, digestB))
	conf := 0.82
	evs[0].Intent.ModelID, evs[0].Intent.PromptVersion, evs[0].Intent.Confidence = "m-large", "p7", &conf
	evs[1].Decision.Reason = "refunds over 100 EUR need a finance approver"
	evs[2].Approval.Channel, evs[2].Approval.ApproverRole, evs[2].Approval.Comment = "slack", "ap-manager", "ok"
	evs[3].Result.SideEffects = []string{"email:msg-1f3a"}
	s := newStream(1)
	s.add(retrace(id, evs...)...)
	s.add(retrace(id, evs[3])...) // delivered twice
	h.step(c, makeBatch(s.evs[:3], now), true)
	h.step(c, makeBatch(s.evs[3:], now.Add(time.Second)), true)

	rep, err := Lookup(context.Background(), h.conn, h.db, id, now.Add(time.Hour), DefaultAbandonAfter)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Events) != 4 || len(rep.Violations) != 2 || len(rep.Unreported) != 0 || rep.State != StateCompleted {
		t.Fatalf("report: %d events, %d violations, %d unreported, state %s", len(rep.Events), len(rep.Violations), len(rep.Unreported), rep.State)
	}
	rep.QueryMS = 0
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	golden(t, "trace.txt", text.Bytes())
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "trace.json", append(js, '\n'))
	if bytes.Contains(js, []byte("120.00")) || bytes.Contains(text.Bytes(), []byte("120.00")) {
		t.Error("the report shows a parameter value")
	}

	if _, err := Lookup(context.Background(), h.conn, h.db, traceID(999), now, DefaultAbandonAfter); !errors.Is(err, ErrTraceNotFound) {
		t.Fatalf("unknown trace: %v, want ErrTraceNotFound", err)
	}
}
