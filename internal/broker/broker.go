// Package broker runs the embedded Kafka broker: franz-go's kfake, which
// speaks the real Kafka protocol on 127.0.0.1, with its on-disk persistence
// so topics, records and group offsets survive a restart.
//
// It is for the demo, tests and single-machine trials. It deliberately does
// not replicate, and production points agentrail at a real Kafka cluster.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Config sets up the embedded broker.
type Config struct {
	Port       int    // listen port on 127.0.0.1; 0 picks a free one
	DataDir    string // persistence directory; "" keeps everything in memory
	SyncWrites bool   // fsync every produced batch (slower, survives a machine crash)
	Partitions int32  // partitions of created topics; 0 means 12
	Topics     []string
}

// Validate checks the config without I/O.
func (c Config) Validate() error {
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("broker: port %d out of range 0..65535", c.Port)
	}
	if c.Partitions < 0 || c.Partitions > 1000 {
		return fmt.Errorf("broker: partitions %d out of range 0..1000 (0 means 12)", c.Partitions)
	}
	return nil
}

// Start starts the broker and returns once it listens. Close the cluster to
// stop it; with a DataDir, Close flushes it to disk.
func Start(cfg Config) (*kfake.Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 12
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(cfg.Port),
		kfake.DefaultNumPartitions(int(cfg.Partitions)),
		kfake.AllowAutoTopicCreation(),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	if len(cfg.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(cfg.Partitions, cfg.Topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: start: %w", err)
	}
	return c, nil
}

// Run serves the broker until ctx ends, then closes it.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	c, err := Start(cfg)
	if err != nil {
		return err
	}
	log.Info("kafka broker listening", "addrs", c.ListenAddrs(), "data_dir", cfg.DataDir, "sync_writes", cfg.SyncWrites)
	<-ctx.Done()
	c.Close()
	log.Info("kafka broker stopped")
	if errors.Is(context.Cause(ctx), context.Canceled) {
		return nil
	}
	return context.Cause(ctx)
}
