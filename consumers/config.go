package consumers

import (
	"errors"
	"fmt"
	"time"

	"github.com/agentrail/agentrail/consumers/redact"
	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/schemas"
)

// Config configures ingest.
type Config struct {
	Kafka       kafkacfg.Config `yaml:"kafka"`
	ClickHouse  chstore.Config  `yaml:"clickhouse"`
	RegistryURL string          `yaml:"registry_url"`
	Ingest      IngestConfig    `yaml:"ingest"`
	Redaction   redact.Config   `yaml:"redaction"` // before storage: consumers/redaction.go
	Signatures  SignatureConfig `yaml:"signatures"`
}

// IngestConfig holds the ingest stage's own settings.
type IngestConfig struct {
	Group          string        `yaml:"group"`            // consumer group
	BatchRows      int           `yaml:"batch_rows"`       // flush at this many records
	BatchInterval  time.Duration `yaml:"batch_interval"`   // or this long after its oldest record was produced
	MaxRecordBytes int           `yaml:"max_record_bytes"` // larger records are dead-lettered
	MaxFuture      time.Duration `yaml:"max_future"`       // event_time ahead of now (clock skew)
	MaxPast        time.Duration `yaml:"max_past"`         // event_time behind now (late, replayed)
	// SessionTimeout is how long the group waits for a silent member
	// (a crashed process) before giving its partitions to others.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// RebalanceTimeout is how long the group waits for its members to
	// rejoin when one arrives or leaves; a crashed member is waited for
	// this long, so keep it short: members here rejoin at once.
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
	// InstanceID, if set, makes this a static group member: a restarted
	// process with the same id takes its partitions back at once, without
	// a rebalance (use the pod or host name).
	InstanceID string `yaml:"instance_id"`
	// GCPercent is the Go garbage collector's target (GOGC) for the
	// process ingest runs in, set when ingest starts unless the GOGC
	// environment variable is: ingest holds a large, long-lived state (the
	// trace and rule caches) and allocates per batch, so collecting less
	// often saves CPU for more heap. 0 leaves the runtime's setting.
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimitMB is the Go runtime's soft memory limit (GOMEMLIMIT) for
	// the process ingest runs in, in MiB, set when ingest starts unless
	// the GOMEMLIMIT environment variable is. With gc_percent 400 the heap
	// may grow to five times what is live; the limit makes the collector
	// run earlier instead once the heap nears it, so batch_rows can stay
	// large (fewer, bigger parts for ClickHouse to merge) without the
	// process growing with it. Keep it below the memory the process may
	// use: past it the runtime spends up to half the CPU collecting. 0
	// leaves the runtime's setting: the limit trades CPU for memory
	// (docs/PERFORMANCE-HISTORY.md, "100,000 rows with a memory limit"),
	// so it is the operator's choice.
	MemoryLimitMB int `yaml:"memory_limit_mb"`
	// TickInterval is how often, between batches and when idle, ingest
	// runs the processors' work that falls due on its clock (tick.go):
	// a violation whose settle_after passed is reported within about this
	// long even when no further event arrives.
	TickInterval time.Duration `yaml:"tick_interval"`
}

// Defaults fills unset fields, in one place.
func (c *Config) Defaults() {
	c.Kafka.Defaults()
	c.ClickHouse.Defaults()
	c.Redaction.Defaults()
	c.Signatures.defaults()
	in := &c.Ingest
	if in.Group == "" {
		in.Group = "agentrail-ingest"
	}
	if in.BatchRows == 0 {
		// Each batch is one insert, so one new part per partition of
		// events and traces; bigger parts are merged fewer times, which
		// is why the default is 50,000 and not 20,000. 100,000 costs
		// ClickHouse less again but raises the measured maximum, and
		// with it the half load, past what a 2-core host sustains at the
		// freshness target (docs/PERFORMANCE-HISTORY.md, "Batch size:
		// bigger parts, fewer merges"). Memory holds one batch; under a
		// light load batch_interval flushes first.
		in.BatchRows = 50000
	}
	if in.BatchInterval == 0 {
		in.BatchInterval = 250 * time.Millisecond
	}
	if in.MaxRecordBytes == 0 {
		in.MaxRecordBytes = 1 << 20
	}
	if in.MaxFuture == 0 {
		in.MaxFuture = schemas.DefaultLimits.MaxFuture
	}
	if in.MaxPast == 0 {
		in.MaxPast = schemas.DefaultLimits.MaxPast
	}
	if in.SessionTimeout == 0 {
		in.SessionTimeout = 10 * time.Second
	}
	if in.RebalanceTimeout == 0 {
		in.RebalanceTimeout = 15 * time.Second
	}
	if in.GCPercent == 0 {
		in.GCPercent = 400
	}
	if in.TickInterval == 0 {
		in.TickInterval = time.Second
	}
}

// Validate checks the settings without I/O; call Defaults first.
func (c *Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if err := c.ClickHouse.Validate(); err != nil {
		return err
	}
	if err := c.Redaction.Validate(); err != nil {
		return err
	}
	if err := c.Signatures.validate(); err != nil {
		return err
	}
	in := c.Ingest
	switch {
	case in.Group == "":
		return errors.New("ingest.group: is empty")
	case in.BatchRows < 1 || in.BatchRows > 1_000_000:
		return fmt.Errorf("ingest.batch_rows: %d out of range 1..1000000", in.BatchRows)
	case in.BatchInterval < time.Millisecond || in.BatchInterval > time.Minute:
		return fmt.Errorf("ingest.batch_interval: %s out of range 1ms..1m", in.BatchInterval)
	case in.MaxRecordBytes < 1024 || in.MaxRecordBytes > 16<<20:
		return fmt.Errorf("ingest.max_record_bytes: %d out of range 1024..16777216", in.MaxRecordBytes)
	case in.MaxFuture < 0:
		return errors.New("ingest.max_future: must be >= 0")
	case in.MaxPast <= 0:
		return errors.New("ingest.max_past: must be > 0")
	case in.SessionTimeout < 6*time.Second || in.SessionTimeout > 5*time.Minute:
		// Kafka brokers refuse session timeouts under 6s by default.
		return fmt.Errorf("ingest.session_timeout: %s out of range 6s..5m", in.SessionTimeout)
	case in.RebalanceTimeout < 5*time.Second || in.RebalanceTimeout > 10*time.Minute:
		return fmt.Errorf("ingest.rebalance_timeout: %s out of range 5s..10m", in.RebalanceTimeout)
	case in.TickInterval < 10*time.Millisecond || in.TickInterval > time.Minute:
		return fmt.Errorf("ingest.tick_interval: %s out of range 10ms..1m", in.TickInterval)
	case in.GCPercent < 25 || in.GCPercent > 2000:
		return fmt.Errorf("ingest.gc_percent: %d out of range 25..2000", in.GCPercent)
	case in.MemoryLimitMB != 0 && (in.MemoryLimitMB < 256 || in.MemoryLimitMB > 1<<20):
		return fmt.Errorf("ingest.memory_limit_mb: %d out of range 256..1048576 (or 0: the runtime's)", in.MemoryLimitMB)
	}
	return nil
}
