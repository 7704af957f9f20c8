package anomaly

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

// webhook posts new alerts as JSON, one request per alert, from its own
// goroutine: ingest only puts the alert in a bounded queue and never waits.
// A full queue drops the alert, counted and logged; an alert that fails
// every attempt is counted and logged too. Delivery is at least once
// (receivers deduplicate by alert_id and version).
type webhook struct {
	cfg    WebhookConfig
	auth   string
	client *http.Client
	q      chan Alert
	m      *metrics
	log    *slog.Logger

	mu        sync.Mutex
	dropped   int       // since the last warning
	lastWarn  time.Time // of a drop warning
	sleepFunc func(ctx context.Context, d time.Duration) bool
}

func newWebhook(cfg WebhookConfig, m *metrics, log *slog.Logger) (*webhook, error) {
	w := &webhook{cfg: cfg, client: &http.Client{Timeout: cfg.Timeout}, q: make(chan Alert, cfg.QueueSize), m: m, log: log, sleepFunc: sleepCtx}
	if cfg.AuthorizationEnv != "" {
		v, ok := os.LookupEnv(cfg.AuthorizationEnv)
		if !ok {
			return nil, fmt.Errorf("anomaly: webhook.authorization_env: environment variable %s is not set", cfg.AuthorizationEnv)
		}
		w.auth = v
	}
	return w, nil
}

// enqueue never blocks.
func (w *webhook) enqueue(a Alert) {
	select {
	case w.q <- a:
		w.m.webhookQueue.Set(float64(len(w.q)))
	default:
		w.m.webhook.WithLabelValues("dropped").Inc()
		w.mu.Lock()
		w.dropped++
		if time.Since(w.lastWarn) >= 10*time.Second {
			w.log.Warn("webhook queue full: alerts dropped from the webhook (they are in ClickHouse and on the alerts topic)",
				"dropped", w.dropped, "queue_size", w.cfg.QueueSize, "url", w.cfg.URL)
			w.dropped, w.lastWarn = 0, time.Now()
		}
		w.mu.Unlock()
	}
}

func (w *webhook) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-w.q:
			w.m.webhookQueue.Set(float64(len(w.q)))
			w.send(ctx, a)
		}
	}
}

// drain sends what is queued until ctx ends.
func (w *webhook) drain(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-w.q:
			w.send(ctx, a)
		default:
			return
		}
	}
}

func (w *webhook) send(ctx context.Context, a Alert) {
	body := jsonLine(a)
	backoff := w.cfg.Backoff
	var last error
	for attempt := 1; attempt <= w.cfg.MaxAttempts; attempt++ {
		if attempt > 1 {
			if !w.sleepFunc(ctx, backoff) {
				break
			}
			backoff *= 2
		}
		retry, err := w.post(ctx, body)
		if err == nil {
			w.m.webhook.WithLabelValues("sent").Inc()
			return
		}
		last = err
		if !retry {
			break
		}
	}
	w.m.webhook.WithLabelValues("failed").Inc()
	w.log.Warn("webhook failed; the alert is in ClickHouse and on the alerts topic", "alert_id", a.ID, "rule", a.Rule, "err", last)
}

// post makes one attempt; retry says whether another could succeed.
func (w *webhook) post(ctx context.Context, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "agentrail-anomaly")
	if w.auth != "" {
		req.Header.Set("Authorization", w.auth)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return true, err
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("webhook answered %s", resp.Status)
	}
	return false, fmt.Errorf("webhook answered %s", resp.Status)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
