package gateway

import (
	"fmt"
	"time"

	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// Config is the gateway's configuration (the `gateway` section).
type Config struct {
	// Listen is the address to serve on, host:port.
	Listen string `yaml:"listen"`
	// TLS serves HTTPS with this certificate and key when both are set.
	TLS TLSConfig `yaml:"tls"`
	// RegistryFile is the agent registry whose keys verify events, as
	// ingest's signatures.registry_file. It is read once, at New.
	RegistryFile string `yaml:"registry_file"`
	// ClockSkew is allowed around a key's validity, against event_time.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// MaxFuture and MaxPast bound event_time against the gateway's clock,
	// as ingest.max_future and ingest.max_past do in ingest: set them
	// alike, or an accepted event may be dead-lettered by ingest.
	MaxFuture time.Duration `yaml:"max_future"`
	MaxPast   time.Duration `yaml:"max_past"`
	// MaxBodyBytes bounds one request's body (413 beyond).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxLineBytes bounds one NDJSON line (the line is rejected beyond).
	MaxLineBytes int `yaml:"max_line_bytes"`
	// MaxLines bounds the lines of one request (413 beyond).
	MaxLines int `yaml:"max_lines"`
	// MaxInFlightBytes bounds the bodies held at once, read or waiting
	// for Kafka; a request that does not fit is answered 503 at once.
	MaxInFlightBytes int64 `yaml:"max_in_flight_bytes"`
	// ProduceTimeout is how long a request waits for Kafka's
	// acknowledgement before it is answered 503 (the events may still
	// land: they are idempotent by event_id, a retry is safe).
	ProduceTimeout time.Duration `yaml:"produce_timeout"`
	// RetryAfter is the Retry-After of a 503.
	RetryAfter time.Duration `yaml:"retry_after"`
	// DrainTimeout bounds how long Run waits for requests in flight when
	// its context ends.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// Kafka is the cluster the events are produced to (topics.events):
	// in agentrail.yaml, the top-level kafka section (pipeline.Config
	// fills it in), so the gateway and ingest cannot disagree on it.
	Kafka kafkacfg.Config `yaml:"-"`
}

// TLSConfig names the server's certificate and key files (PEM).
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Defaults.
const (
	DefaultListen           = "127.0.0.1:8088"
	DefaultMaxBodyBytes     = 4 << 20
	DefaultMaxLineBytes     = 512 << 10 // under Kafka's default 1 MB message limit
	DefaultMaxLines         = 1000
	DefaultMaxInFlightBytes = 64 << 20
)

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.RegistryFile == "" {
		c.RegistryFile = "deployments/registry.yaml"
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = signing.DefaultSkew
	}
	if c.MaxFuture == 0 {
		c.MaxFuture = schemas.DefaultLimits.MaxFuture
	}
	if c.MaxPast == 0 {
		c.MaxPast = schemas.DefaultLimits.MaxPast
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = DefaultMaxLineBytes
	}
	if c.MaxLines == 0 {
		c.MaxLines = DefaultMaxLines
	}
	if c.MaxInFlightBytes == 0 {
		c.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = 10 * time.Second
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 15 * time.Second
	}
	c.Kafka.Defaults()
}

// Validate checks c without I/O.
func (c *Config) Validate() error {
	switch {
	case c.Listen == "":
		return fmt.Errorf("gateway.listen: is required")
	case (c.TLS.CertFile == "") != (c.TLS.KeyFile == ""):
		return fmt.Errorf("gateway.tls: set both cert_file and key_file, or neither")
	case c.RegistryFile == "":
		return fmt.Errorf("gateway.registry_file: is required")
	case c.ClockSkew < 0 || c.ClockSkew > time.Hour:
		return fmt.Errorf("gateway.clock_skew: %s out of range 0..1h", c.ClockSkew)
	case c.MaxFuture < 0 || c.MaxPast < 0:
		return fmt.Errorf("gateway.max_future, max_past: must not be negative")
	case c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 1<<30:
		return fmt.Errorf("gateway.max_body_bytes: %d out of range 1024..%d", c.MaxBodyBytes, 1<<30)
	case c.MaxLineBytes < 256 || int64(c.MaxLineBytes) > c.MaxBodyBytes:
		return fmt.Errorf("gateway.max_line_bytes: %d out of range 256..max_body_bytes (%d)", c.MaxLineBytes, c.MaxBodyBytes)
	case c.MaxLines < 1 || c.MaxLines > 100000:
		return fmt.Errorf("gateway.max_lines: %d out of range 1..100000", c.MaxLines)
	case c.MaxInFlightBytes < c.MaxBodyBytes:
		return fmt.Errorf("gateway.max_in_flight_bytes: %d is less than max_body_bytes (%d)", c.MaxInFlightBytes, c.MaxBodyBytes)
	case c.ProduceTimeout < time.Second || c.ProduceTimeout > 5*time.Minute:
		return fmt.Errorf("gateway.produce_timeout: %s out of range 1s..5m", c.ProduceTimeout)
	case c.RetryAfter < time.Second || c.RetryAfter > time.Hour:
		return fmt.Errorf("gateway.retry_after: %s out of range 1s..1h", c.RetryAfter)
	case c.DrainTimeout < 0 || c.DrainTimeout > 10*time.Minute:
		return fmt.Errorf("gateway.drain_timeout: %s out of range 0..10m", c.DrainTimeout)
	}
	if err := c.Kafka.Validate(); err != nil {
		return fmt.Errorf("gateway.kafka: %w", err)
	}
	return nil
}
