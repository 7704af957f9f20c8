package anomaly

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the stage's Prometheus metrics (listed in the package
// comment). Label values are rule names and severities from the rule file
// (at most MaxRules) and fixed outcome words.
type metrics struct {
	alerts, updates          *prometheus.CounterVec
	events                   *prometheus.CounterVec
	late, evicted, truncated *prometheus.CounterVec
	groups                   *prometheus.GaugeVec
	traceEvictions           prometheus.Counter
	watermark                prometheus.Gauge
	restores                 *prometheus.CounterVec
	restoreSecs              prometheus.Histogram
	restored                 prometheus.Counter
	reloadOK, reloadTS       prometheus.Gauge
	reloads                  *prometheus.CounterVec
	webhook                  *prometheus.CounterVec
	webhookQueue             prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &metrics{
		alerts:    counter("agentrail_alerts_total", "Alerts raised (updates of an open alert not included), by rule and severity.", "rule", "severity"),
		updates:   counter("agentrail_anomaly_alert_updates_total", "Updates of open alerts (the same alert_id, a higher version), by rule.", "rule"),
		events:    counter("agentrail_anomaly_events_total", "Events seen by the rules, by outcome.", "outcome"),
		late:      counter("agentrail_anomaly_late_events_total", "Events older than the watermark (newest event time minus the allowed lateness), not added to windows, by rule.", "rule"),
		evicted:   counter("agentrail_anomaly_evicted_groups_total", "Groups evicted from memory at anomaly.max_groups_per_rule, least recently used first, by rule.", "rule"),
		truncated: counter("agentrail_anomaly_truncated_windows_total", "Window entries dropped at anomaly.max_events_per_group, by rule.", "rule"),
		groups: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agentrail_anomaly_groups",
			Help: "Groups (agents, approvers, ...) held in memory, by rule."}, []string{"rule"}),
		traceEvictions: prometheus.NewCounter(prometheus.CounterOpts{Name: "agentrail_anomaly_trace_index_evictions_total",
			Help: "Traces forgotten at anomaly.max_traces; their later decisions, approvals and results cannot be tied to the intent."}),
		watermark: prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentrail_anomaly_watermark_timestamp_seconds",
			Help: "Event-time watermark: events before it are late."}),
		restores: counter("agentrail_anomaly_restores_total", "State rebuilds from ClickHouse, by reason.", "reason"),
		restoreSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agentrail_anomaly_restore_seconds",
			Help: "Time to rebuild the rules' state from ClickHouse.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{Name: "agentrail_anomaly_restored_events_total",
			Help: "Events replayed from ClickHouse to rebuild state."}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentrail_rules_reload_success",
			Help: "1 if the last load of the rule file succeeded, 0 if it was refused (the previous rules stay in force)."}),
		reloadTS: prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentrail_rules_reload_timestamp_seconds",
			Help: "Unix time of the last successful load of the rule file."}),
		reloads: counter("agentrail_rules_reloads_total", "Loads of the rule file, by outcome.", "outcome"),
		webhook: counter("agentrail_anomaly_webhook_total", "Alerts posted to the webhook, by outcome (dropped: the queue was full).", "outcome"),
		webhookQueue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentrail_anomaly_webhook_queue",
			Help: "Alerts waiting for the webhook."}),
	}
	for _, c := range []prometheus.Collector{m.alerts, m.updates, m.events, m.late, m.evicted, m.truncated, m.groups,
		m.traceEvictions, m.watermark, m.restores, m.restoreSecs, m.restored, m.reloadOK, m.reloadTS, m.reloads,
		m.webhook, m.webhookQueue} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("anomaly: register metrics: %w", err)
		}
	}
	return m, nil
}
