// Package anomaly evaluates rules over the live event stream, in event time,
// and raises alerts: retry bursts, out-of-hours actions, denial spikes, first
// use of a tool, probing after a deny, and approval fatigue.
//
// Engine is the pure rule evaluator: Observe feeds it one event and returns
// the alerts raised or updated by it; Advance moves its clock. It does no I/O
// and is deterministic, so rules are tested with an injected clock, and the
// same engine runs live (Processor, inside ingest on every batch), in
// backtests over ClickHouse (Backtest), and in `agentrail rules check`.
//
// Processor adapts batches to the engine. Its alerts are made durable with
// the batch: rows in the ClickHouse table alerts (a ReplacingMergeTree keyed
// on alert_id: an ongoing burst is one alert whose version grows), records on
// the alerts topic (produced in the batch's Kafka transaction), Prometheus
// counters, and optionally a webhook. Its state is bounded in memory
// (Config.MaxGroupsPerRule groups per rule, least recently used evicted and
// counted) and is rebuilt from ClickHouse when the process starts, when a
// batch is redone, and when partitions move: prior state is exactly the
// events below each partition's first offset in the batch, and the alerts
// still open in the alerts table. docs/RULES.md describes the rule file.
//
// Metrics:
//
//	agentrail_alerts_total{rule,severity}            alerts raised (not updates)
//	agentrail_anomaly_alert_updates_total{rule}      updates of open alerts
//	agentrail_anomaly_events_total{outcome="evaluated|already_restored"}
//	agentrail_anomaly_late_events_total{rule}        events older than the watermark, not added to windows
//	agentrail_anomaly_evicted_groups_total{rule}     groups evicted at the per-rule bound
//	agentrail_anomaly_truncated_windows_total{rule}  window entries dropped at max_events_per_group
//	agentrail_anomaly_groups{rule}                   groups held in memory
//	agentrail_anomaly_trace_index_evictions_total    traces forgotten at max_traces
//	agentrail_anomaly_watermark_timestamp_seconds    event-time watermark
//	agentrail_anomaly_restores_total{reason="start|redo|revoked|reload"}
//	agentrail_anomaly_restore_seconds (histogram)
//	agentrail_anomaly_restored_events_total
//	agentrail_rules_reload_success                   1 if the last rule (re)load succeeded, else 0
//	agentrail_rules_reload_timestamp_seconds         time of the last successful (re)load
//	agentrail_rules_reloads_total{outcome="ok|error"}
//	agentrail_anomaly_webhook_total{outcome="sent|failed|dropped"}
//	agentrail_anomaly_webhook_queue                  alerts waiting for the webhook
//
// It has no work that falls due on the clock alone (so it is not a
// consumers.Ticker): an alert is raised or updated by the event that
// crosses its threshold, in that event's batch, and Advance only forgets
// state behind the watermark.
//
// It deliberately does not: touch signals (the binary maps SIGHUP to
// Reload), read Kafka itself (ingest hands it batches), or decide what an
// alert means for a trace (correlation does). Rules see the partitions their
// ingest member owns; with one member that is the whole stream (see
// docs/RULES.md for several members).
package anomaly

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Config configures the anomaly stage: the `anomaly` section of the pipeline
// config. The rules themselves live in their own file (RulesFile).
type Config struct {
	// Disabled switches the stage off.
	Disabled bool `yaml:"disabled"`
	// RulesFile is the rule file; "" uses the built-in rules, which are
	// deployments/rules.yaml.
	RulesFile string `yaml:"rules_file"`
	// DisableWatch stops reloading RulesFile when it changes on disk.
	DisableWatch bool `yaml:"disable_watch"`
	// AlertTopic is the Kafka topic alerts are produced to, keyed by alert_id.
	// In the pipeline config it is kafka.topics.alerts; the key alert_topic
	// here is its old name, read for one release with a warning.
	AlertTopic string `yaml:"alert_topic"`
	// MaxGroupsPerRule bounds each rule's groups (agents, approvers, ...) in
	// memory; the least recently used group is evicted and counted.
	MaxGroupsPerRule int `yaml:"max_groups_per_rule"`
	// MaxTraces bounds the index of recent traces that links decisions,
	// approvals and results to their intent.
	MaxTraces int `yaml:"max_traces"`
	// MaxEventsPerGroup bounds the events one group's window holds; no
	// threshold may exceed it.
	MaxEventsPerGroup int `yaml:"max_events_per_group"`
	// MaxEventIDs caps the event ids an alert carries.
	MaxEventIDs int `yaml:"max_event_ids"`
	// Webhook optionally posts every new alert as JSON.
	Webhook WebhookConfig `yaml:"webhook"`
}

// WebhookConfig posts new alerts to an HTTP endpoint, off the ingest path.
type WebhookConfig struct {
	URL string `yaml:"url"` // "" disables the webhook
	// AuthorizationEnv names an environment variable whose value is sent as
	// the Authorization header (secrets never live in the config file).
	AuthorizationEnv string        `yaml:"authorization_env"`
	Timeout          time.Duration `yaml:"timeout"`      // per attempt
	MaxAttempts      int           `yaml:"max_attempts"` // then the alert is counted as failed
	Backoff          time.Duration `yaml:"backoff"`      // before the second attempt, doubling
	QueueSize        int           `yaml:"queue_size"`   // alerts waiting; beyond it they are dropped and counted
}

// Defaults fills unset fields, in one place.
func (c *Config) Defaults() {
	if c.AlertTopic == "" {
		c.AlertTopic = "agentrail.alerts"
	}
	if c.MaxGroupsPerRule == 0 {
		c.MaxGroupsPerRule = 250_000
	}
	if c.MaxTraces == 0 {
		c.MaxTraces = 200_000
	}
	if c.MaxEventsPerGroup == 0 {
		c.MaxEventsPerGroup = 4096
	}
	if c.MaxEventIDs == 0 {
		c.MaxEventIDs = 20
	}
	w := &c.Webhook
	if w.Timeout == 0 {
		w.Timeout = 5 * time.Second
	}
	if w.MaxAttempts == 0 {
		w.MaxAttempts = 3
	}
	if w.Backoff == 0 {
		w.Backoff = time.Second
	}
	if w.QueueSize == 0 {
		w.QueueSize = 1000
	}
}

// Validate checks the settings without I/O; call Defaults first.
func (c *Config) Validate() error {
	w := c.Webhook
	switch {
	case c.AlertTopic == "":
		return errors.New("anomaly.alert_topic: is empty")
	case c.MaxGroupsPerRule < 100 || c.MaxGroupsPerRule > 10_000_000:
		return fmt.Errorf("anomaly.max_groups_per_rule: %d out of range 100..10000000", c.MaxGroupsPerRule)
	case c.MaxTraces < 100 || c.MaxTraces > 10_000_000:
		return fmt.Errorf("anomaly.max_traces: %d out of range 100..10000000", c.MaxTraces)
	case c.MaxEventsPerGroup < 16 || c.MaxEventsPerGroup > 1_000_000:
		return fmt.Errorf("anomaly.max_events_per_group: %d out of range 16..1000000", c.MaxEventsPerGroup)
	case c.MaxEventIDs < 1 || c.MaxEventIDs > 1000:
		return fmt.Errorf("anomaly.max_event_ids: %d out of range 1..1000", c.MaxEventIDs)
	case w.Timeout < 100*time.Millisecond || w.Timeout > time.Minute:
		return fmt.Errorf("anomaly.webhook.timeout: %s out of range 100ms..1m", w.Timeout)
	case w.MaxAttempts < 1 || w.MaxAttempts > 10:
		return fmt.Errorf("anomaly.webhook.max_attempts: %d out of range 1..10", w.MaxAttempts)
	case w.Backoff < 10*time.Millisecond || w.Backoff > time.Minute:
		return fmt.Errorf("anomaly.webhook.backoff: %s out of range 10ms..1m", w.Backoff)
	case w.QueueSize < 1 || w.QueueSize > 100_000:
		return fmt.Errorf("anomaly.webhook.queue_size: %d out of range 1..100000", w.QueueSize)
	}
	if w.URL != "" {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("anomaly.webhook.url: must be an absolute http:// or https:// URL")
		}
	}
	return nil
}

// limits are the engine's memory bounds, from Config.
type limits struct {
	maxGroups, maxTraces, maxEvents, maxIDs int
}

func (c *Config) limits() limits {
	return limits{maxGroups: c.MaxGroupsPerRule, maxTraces: c.MaxTraces, maxEvents: c.MaxEventsPerGroup, maxIDs: c.MaxEventIDs}
}

// DefaultLimits are the engine bounds of a default Config.
func defaultLimits() limits {
	var c Config
	c.Defaults()
	return c.limits()
}
