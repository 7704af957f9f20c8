// Package producers is the Go SDK an agent embeds to publish its evidence:
// an Emitter that validates, encodes and asynchronously produces the four
// event types (intent, policy decision, approval, result) to Kafka, keyed by
// trace id so every event of a trace stays in one partition, in order. It
// also holds W3C trace-context helpers and Replay, which republishes
// canonical-JSON event files. With Config.Signer or Config.Signing set, every
// event is signed with its agent's key (package signing, docs/KEYS.md).
//
// An Emitter never blocks its caller longer than Config.BlockLimit and never
// drops an event silently: an event it cannot take is refused with an error
// (ErrBufferFull, ErrUnavailable, a *schemas.ValidationError), and an event
// it took but could not deliver is counted and reported to
// Config.OnDeliveryError.
//
// Metrics (registered on the prometheus.Registerer given to New):
//
//	agentrail_producer_events_total{type}      events accepted for delivery, by event type
//	agentrail_producer_errors_total{reason}    events refused or lost: buffer_full, unavailable, invalid, delivery
//	agentrail_producer_buffered_records        events accepted and not yet acknowledged by Kafka
package producers

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// SDKName and SDKVersion identify this SDK in the producer field of events.
const (
	SDKName    = "agentrail-go"
	SDKVersion = "0.1.0"
)

// KafkaConfig is how an Emitter reaches Kafka: seed brokers, TLS, SASL and
// topic names, with the same YAML keys as the services' kafka section. The
// names below let code in another module set every field; KafkaOpts on
// Config takes whatever franz-go option these do not cover.
type (
	KafkaConfig = kafkacfg.Config
	KafkaTLS    = kafkacfg.TLSConfig
	KafkaSASL   = kafkacfg.SASL
	KafkaTopics = kafkacfg.Topics
)

// Config configures an Emitter. Zero values take the defaults in Defaults.
type Config struct {
	Kafka KafkaConfig `yaml:"kafka"`
	// KafkaOpts are extra franz-go client options, applied after those
	// built from Kafka and the Emitter's own, so they can override either:
	// a tls.Config of the agent's own (kgo.DialTLSConfig), a SASL
	// mechanism Kafka does not name (kgo.SASL), a dialer or hooks. Options
	// that break the Emitter's guarantees (kgo.DefaultProduceTopic,
	// kgo.MaxBufferedRecords, kgo.RecordDeliveryTimeout) should be left
	// alone.
	KafkaOpts []kgo.Opt `yaml:"-"`
	// RegistryURL is the schema registry. When set, the Event schema is
	// registered there and records use the Confluent framing; when empty,
	// records use the Avro single-object encoding.
	RegistryURL string `yaml:"registry_url"`
	// Producer is stamped on every event the typed methods build.
	Producer schemas.Producer `yaml:"producer"`
	// Agent is the default identity of the acting agent.
	Agent schemas.Agent `yaml:"agent"`

	// MaxBufferedRecords bounds the events accepted and not yet
	// acknowledged by Kafka.
	MaxBufferedRecords int `yaml:"max_buffered_records"`
	// BlockLimit is the longest any call may wait for buffer space.
	BlockLimit time.Duration `yaml:"block_limit"`
	// DeliveryTimeout is how long an accepted event may wait for Kafka
	// before it is failed and reported.
	DeliveryTimeout time.Duration `yaml:"delivery_timeout"`
	// Linger is how long a batch waits for more events before it is sent.
	Linger time.Duration `yaml:"linger"`
	// ProbeInterval is how often, while deliveries fail, the Emitter asks
	// Kafka whether the events topic is reachable again.
	ProbeInterval time.Duration `yaml:"probe_interval"`

	// OnDeliveryError, if set, is called with the event id of every
	// accepted event that could not be delivered. It runs on the delivery
	// goroutine: it must return quickly and must not call the Emitter.
	OnDeliveryError func(eventID string, err error) `yaml:"-"`

	// Signer signs every event (package signing): the agent's own key, or
	// a signing.Keyring in a process that emits for several agents. An
	// event whose agent it has no key for is refused. nil: Signing, if
	// set, is loaded into one; else events go unsigned (ingest in enforce
	// mode quarantines them).
	Signer signing.EventSigner `yaml:"-"`
	// Signing names Agent's key: its registered id, algorithm, and the
	// file or environment variable holding the private key.
	Signing *signing.SignerConfig `yaml:"signing"`
}

// Defaults for Config.
const (
	DefaultMaxBufferedRecords = 10000
	DefaultBlockLimit         = 50 * time.Millisecond
	DefaultDeliveryTimeout    = 30 * time.Second
	DefaultLinger             = 5 * time.Millisecond
	DefaultProbeInterval      = time.Second
)

// Defaults fills the unset fields of c. It is the only place defaults are
// decided.
func (c *Config) Defaults() {
	c.Kafka.Defaults()
	if c.MaxBufferedRecords == 0 {
		c.MaxBufferedRecords = DefaultMaxBufferedRecords
	}
	if c.BlockLimit == 0 {
		c.BlockLimit = DefaultBlockLimit
	}
	if c.DeliveryTimeout == 0 {
		c.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.Producer.Name == "" {
		c.Producer.Name = SDKName
		if c.Producer.Version == "" {
			c.Producer.Version = SDKVersion
		}
	}
	if c.Producer.Host == "" {
		c.Producer.Host, _ = os.Hostname()
	}
}

// Validate checks c, after Defaults, without any I/O. The error names the
// bad field and its allowed range.
func (c *Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return fmt.Errorf("producers: config: %w", err)
	}
	if c.RegistryURL != "" {
		u, err := url.Parse(c.RegistryURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("producers: config: registry_url must be an http:// or https:// URL with a host")
		}
	}
	switch {
	case c.MaxBufferedRecords < 1 || c.MaxBufferedRecords > 10_000_000:
		return fmt.Errorf("producers: config: max_buffered_records %d out of range 1..10000000", c.MaxBufferedRecords)
	case c.BlockLimit < time.Millisecond || c.BlockLimit > time.Minute:
		return fmt.Errorf("producers: config: block_limit %s out of range 1ms..1m", c.BlockLimit)
	case c.DeliveryTimeout < time.Second || c.DeliveryTimeout > 24*time.Hour:
		// franz-go refuses delivery timeouts under a second.
		return fmt.Errorf("producers: config: delivery_timeout %s out of range 1s..24h", c.DeliveryTimeout)
	case c.Linger < 0 || c.Linger > 10*time.Second:
		return fmt.Errorf("producers: config: linger %s out of range 0..10s", c.Linger)
	case c.ProbeInterval < 10*time.Millisecond || c.ProbeInterval > 10*time.Minute:
		return fmt.Errorf("producers: config: probe_interval %s out of range 10ms..10m", c.ProbeInterval)
	}
	return c.validateSigning()
}
