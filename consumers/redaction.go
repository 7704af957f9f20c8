package consumers

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/consumers/redact"
	"github.com/agentrail/agentrail/schemas"
)

// Redaction in ingest: every accepted event is redacted before its row is
// added to the batch (so before ClickHouse, the processors and their logs
// see it), and every dead letter is redacted before it is produced or
// inserted (deadletter.go). See consumers/redact and docs/ARCHITECTURE.md.

// redaction is ingest's redaction state.
type redaction struct {
	r     *redact.Redactor
	count *prometheus.CounterVec // agentrail_ingest_redactions_total{rule,action}
}

func newRedaction(cfg redact.Config, reg prometheus.Registerer, log *slog.Logger) (redaction, error) {
	r, err := redact.New(cfg)
	if err != nil {
		return redaction{}, fmt.Errorf("consumers: %w", err)
	}
	log.Info("redaction before storage", "config", r.Summary())
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentrail_ingest_redactions_total",
		Help: "Fields redacted in accepted events, by rule or detector and action (a re-consumed batch counts again).",
	}, []string{"rule", "action"})
	if err := reg.Register(c); err != nil {
		return redaction{}, fmt.Errorf("consumers: register metrics: %w", err)
	}
	return redaction{r: r, count: c}, nil
}

// redact redacts an accepted event in place and returns what it redacted.
// action_digest is left as the producer computed it, over the raw payload.
func (in *Ingest) redact(e *schemas.Event) []redact.Redaction {
	reds := in.red.r.Redact(e)
	for _, rd := range reds {
		in.red.count.WithLabelValues(rd.Rule, rd.Action).Inc()
	}
	return reds
}
