package anomaly

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/testenv"
)

const retryRules = `
rules:
  - name: retry
    kind: retry_burst
    window: {size: 1m}
    threshold: %d
`

func writeRules(t *testing.T, path string, threshold int) {
	t.Helper()
	src := strings.Replace(retryRules, "%d", string(rune('0'+threshold)), 1)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// burstBatch is a batch of n attempts of the same action.
func burstBatch(n int, at time.Time, first int64) *consumers.Batch {
	var b evb
	batch := &consumers.Batch{FirstOffset: map[int32]int64{0: first}, Now: at.Add(time.Minute)}
	for i := range n {
		e := b.intent("bot-1", "finance", at.Add(time.Duration(i)*time.Second), "t", "a", "x", 2, "write")
		e.EventID = e.EventID + "-" + at.Format("150405")
		batch.Events = append(batch.Events, consumers.Accepted{Event: *e, Partition: 0, Offset: first + int64(i)})
	}
	return batch
}

// stage builds a Processor without ClickHouse (no restore) on a rule file.
func stage(t *testing.T, cfg Config) (*Processor, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := New(cfg, nil, "agentrail", reg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return p, reg
}

func TestWebhook(t *testing.T) {
	var mu sync.Mutex
	var got []Alert
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // the first attempt fails
			return
		}
		var a Alert
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &a); err != nil || r.Header.Get("Authorization") != "Bearer s3cret" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		got = append(got, a)
	}))
	defer srv.Close()
	t.Setenv("TEST_WEBHOOK_AUTH", "Bearer s3cret")
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	writeRules(t, rules, 3)
	p, reg := stage(t, Config{RulesFile: rules, DisableWatch: true,
		Webhook: WebhookConfig{URL: srv.URL, AuthorizationEnv: "TEST_WEBHOOK_AUTH", Backoff: 10 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	out, err := p.Process(ctx, burstBatch(5, wed, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Records) != 1 || len(out.Inserts) != 1 {
		t.Fatalf("one alert coalesced per batch: %d records, %d inserts", len(out.Records), len(out.Inserts))
	}
	testenv.Eventually(t, 5*time.Second, "the webhook to receive the alert", func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1, nil
	})
	cancel()
	<-done
	if got[0].Rule != "retry" || got[0].Observed != 5 || got[0].ID != string(out.Records[0].Key) {
		t.Fatalf("webhook body %+v", got[0])
	}
	if n := counterSum(t, reg, "agentrail_anomaly_webhook_total", map[string]string{"outcome": "sent"}); n != 1 {
		t.Fatalf("webhook sent counter %v", n)
	}
}

// A webhook that cannot keep up never blocks ingest: alerts beyond the
// queue are dropped and counted.
func TestWebhookQueueFull(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := newWebhook(WebhookConfig{URL: "http://127.0.0.1:1/", QueueSize: 2, Timeout: time.Second, MaxAttempts: 1, Backoff: time.Second}, m, quiet)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 5 {
		w.enqueue(Alert{ID: "a"}) // nobody is sending: the queue fills
	}
	if time.Since(start) > time.Second {
		t.Fatal("enqueue blocked")
	}
	if n := counterSum(t, reg, "agentrail_anomaly_webhook_total", map[string]string{"outcome": "dropped"}); n != 3 {
		t.Fatalf("dropped %v, want 3", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.drain(ctx) // nothing listens on port 1: both fail, counted
	if n := counterSum(t, reg, "agentrail_anomaly_webhook_total", map[string]string{"outcome": "failed"}); n != 2 {
		t.Fatalf("failed %v, want 2", n)
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	writeRules(t, rules, 5)
	p, reg := stage(t, Config{RulesFile: rules})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.watching
	reloadOK := func() float64 { return counterSum(t, reg, "agentrail_rules_reload_success", nil) }
	reloads := func(outcome string) float64 {
		return counterSum(t, reg, "agentrail_rules_reloads_total", map[string]string{"outcome": outcome})
	}

	// Four attempts do not reach the threshold of 5.
	if out, _ := p.Process(ctx, burstBatch(4, wed, 0)); len(out.Records) != 0 {
		t.Fatal("fired below the threshold")
	}
	// A broken file is refused: the rules in force stay.
	if err := os.WriteFile(rules, []byte("rules:\n  - name: retry\n    kind: retry_burst\n    threshold: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "the watcher to refuse the broken file", func() (bool, error) {
		return reloadOK() == 0 && reloads("error") >= 1, nil
	})
	if err := p.Reload(); err == nil || !strings.Contains(err.Error(), "rules[0].threshold") {
		t.Fatalf("Reload of a broken file: %v", err)
	}
	if out, _ := p.Process(ctx, burstBatch(4, wed.Add(time.Hour), 100)); len(out.Records) != 0 {
		t.Fatal("the broken file changed the rules")
	}
	// A good file with a lower threshold is picked up by the watcher and
	// applies from the next batch.
	writeRules(t, rules, 3)
	testenv.Eventually(t, 5*time.Second, "the watcher to load the new file", func() (bool, error) {
		return reloadOK() == 1, nil
	})
	out, err := p.Process(ctx, burstBatch(4, wed.Add(2*time.Hour), 200))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Records) != 1 || counterSum(t, reg, "agentrail_rules_reload_timestamp_seconds", nil) == 0 {
		t.Fatalf("after the reload: %d alerts", len(out.Records))
	}
	if r := p.Engine().Rules().compiled[0]; r.Threshold != 3 {
		t.Fatalf("threshold in force %d", r.Threshold)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A batch seen again (ingest redoing it) is recognised by its offsets and
// evaluated from a rebuilt state (here, without ClickHouse, an empty one),
// not counted twice.
func TestRedoIsNotCountedTwice(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	writeRules(t, rules, 5)
	p, reg := stage(t, Config{RulesFile: rules, DisableWatch: true})
	ctx := context.Background()
	b := burstBatch(3, wed, 0)
	for range 2 {
		out, err := p.Process(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Records) != 0 {
			t.Fatal("a redone batch of 3 attempts reached the threshold of 5")
		}
	}
	// The next batch continues from the state: 3 + 3 attempts fire.
	out, err := p.Process(ctx, burstBatch(3, wed.Add(10*time.Second), 3))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Records) != 1 {
		t.Fatalf("%d alerts after 6 attempts", len(out.Records))
	}
	if n := counterSum(t, reg, "agentrail_anomaly_events_total", map[string]string{"outcome": "evaluated"}); n != 9 {
		t.Fatalf("evaluated %v events, want 9", n)
	}
}
