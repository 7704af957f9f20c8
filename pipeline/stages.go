package pipeline

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/anomaly"
	"github.com/agentrail/agentrail/consumers/correlate"
	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/kafkacfg"
)

// alertTopicPartitions: alerts are few; keyed by alert_id, an alert's
// versions stay in order on one partition.
const alertTopicPartitions = 3

// newCorrelator builds the trace-correlation stage (consumers/correlate)
// from the correlation section and kafka.topics.violations: it creates the
// violations topic if needed and opens the stage's own ClickHouse
// connection, closed with the stage.
func newCorrelator(ctx context.Context, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*stage, error) {
	cc := cfg.Correlation
	cc.ViolationTopic = cfg.Kafka.Topics.Violations
	cc.Defaults()
	if cc.Disabled {
		return nil, nil
	}
	if err := cc.Validate(); err != nil {
		return nil, err
	}
	if err := ensureTopic(ctx, cfg.Kafka, 12, cc.ViolationTopic); err != nil {
		return nil, fmt.Errorf("correlation: %w", err)
	}
	conn, err := chstore.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return nil, fmt.Errorf("correlation: %w", err)
	}
	c, err := correlate.New(cc, conn, cfg.ClickHouse.Database, reg, log)
	if err != nil {
		conn.Close()
		return nil, err
	}
	log.Info("correlation enabled", "violation_topic", cc.ViolationTopic, "max_traces", cc.MaxTraces,
		"settle_after", cc.SettleAfter, "abandon_after", cc.AbandonAfter)
	return &stage{name: "correlation", proc: c, close: func(context.Context) error { return conn.Close() }}, nil
}

// newAnomalyEngine builds the anomaly-rules stage (anomaly/) from the
// anomaly section: the rules of anomaly.rules_file (or the built-in
// deployments/rules.yaml) evaluated on every batch, alerts to the alerts
// table and to kafka.topics.alerts. Run watches the rule file (a change
// reloads it) and delivers webhooks; Reload reloads the rules by hand.
func newAnomalyEngine(ctx context.Context, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*stage, error) {
	if cfg.Anomaly.Disabled {
		return nil, nil
	}
	ac := cfg.Anomaly
	ac.AlertTopic = cfg.Kafka.Topics.Alerts
	ac.Defaults()
	if err := ensureTopic(ctx, cfg.Kafka, alertTopicPartitions, ac.AlertTopic); err != nil {
		return nil, fmt.Errorf("anomaly: %w", err)
	}
	conn, err := chstore.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return nil, fmt.Errorf("anomaly: %w", err)
	}
	p, err := anomaly.New(ac, conn, cfg.ClickHouse.Database, reg, log)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &stage{
		name:   "anomaly",
		proc:   p,
		run:    p.Run,
		reload: p.Reload,
		close: func(ctx context.Context) error {
			err := p.Close(ctx) // drains the webhook queue within ctx
			conn.Close()
			return err
		},
	}, nil
}

func ensureTopic(ctx context.Context, kc kafkacfg.Config, partitions int32, topic string) error {
	cl, err := KafkaClient(kc)
	if err != nil {
		return err
	}
	defer cl.Close()
	return kafkacfg.EnsureTopics(ctx, cl, partitions, topic)
}
