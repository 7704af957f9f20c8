// Package kafkacfg turns agentrail's Kafka settings (seed brokers, TLS,
// SASL) into franz-go client options, names the topics, and creates them.
//
// It deliberately does not produce or consume, and does not read secrets
// from the config file: SASL passwords come from a file or an environment
// variable, so a config file can be shared and committed.
package kafkacfg

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// DefaultBroker is the embedded broker's address (agentrail broker).
const DefaultBroker = "127.0.0.1:19092"

// Config is how to reach a Kafka cluster.
type Config struct {
	Brokers  []string   `yaml:"brokers"`
	ClientID string     `yaml:"client_id"`
	TLS      *TLSConfig `yaml:"tls"`
	SASL     *SASL      `yaml:"sasl"`
	Topics   Topics     `yaml:"topics"`
}

// TLSConfig enables TLS to the brokers.
type TLSConfig struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// SASL authenticates to the brokers. The password is read from PasswordFile
// or, if that is empty, from the environment variable PasswordEnv.
type SASL struct {
	Mechanism    string `yaml:"mechanism"` // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
}

// Topics names the topics agentrail uses.
type Topics struct {
	Events     string `yaml:"events"`      // agent events, keyed by trace_id
	DeadLetter string `yaml:"dead_letter"` // records ingest could not accept, with the reason
	Ledger     string `yaml:"ledger"`      // the tamper-evidence chain (package ledger), one partition
	Alerts     string `yaml:"alerts"`      // anomaly alerts, keyed by alert_id
	Violations string `yaml:"violations"`  // correlation violations, keyed by trace_id
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if len(c.Brokers) == 0 {
		c.Brokers = []string{DefaultBroker}
	}
	if c.ClientID == "" {
		c.ClientID = "agentrail"
	}
	if c.Topics.Events == "" {
		c.Topics.Events = "agentrail.events"
	}
	if c.Topics.DeadLetter == "" {
		c.Topics.DeadLetter = "agentrail.events.dlq"
	}
	if c.Topics.Ledger == "" {
		c.Topics.Ledger = "agentrail.ledger"
	}
	if c.Topics.Alerts == "" {
		c.Topics.Alerts = "agentrail.alerts"
	}
	if c.Topics.Violations == "" {
		c.Topics.Violations = "agentrail.violations"
	}
}

// Validate checks the settings without any I/O.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka.brokers: at least one seed broker is required")
	}
	for i, b := range c.Brokers {
		if !strings.Contains(b, ":") {
			return fmt.Errorf("kafka.brokers[%d]: %q must be host:port", i, b)
		}
	}
	if c.SASL != nil {
		switch c.SASL.Mechanism {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		default:
			return fmt.Errorf("kafka.sasl.mechanism: %q must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASL.Mechanism)
		}
		if c.SASL.Username == "" {
			return errors.New("kafka.sasl.username: is empty")
		}
		if c.SASL.PasswordFile == "" && c.SASL.PasswordEnv == "" {
			return errors.New("kafka.sasl: set password_file or password_env (passwords are never read from the config file)")
		}
	}
	if c.TLS != nil && (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("kafka.tls: cert_file and key_file go together")
	}
	if c.Topics.Events == "" || c.Topics.DeadLetter == "" || c.Topics.Ledger == "" || c.Topics.Alerts == "" || c.Topics.Violations == "" {
		return errors.New("kafka.topics: events, dead_letter, ledger, alerts and violations must be named")
	}
	return nil
}

// Opts returns the franz-go options for a client of this cluster. It reads
// the CA, certificate and password files.
func (c *Config) Opts() ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(c.ClientID)}
	if c.TLS != nil {
		tc, err := c.TLS.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if c.SASL != nil {
		pass, err := c.SASL.password()
		if err != nil {
			return nil, err
		}
		switch c.SASL.Mechanism {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: c.SASL.Username, Pass: pass}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: c.SASL.Username, Pass: pass}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: c.SASL.Username, Pass: pass}.AsSha512Mechanism()))
		}
	}
	return opts, nil
}

func (t *TLSConfig) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafkacfg: read kafka.tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafkacfg: kafka.tls.ca_file %s holds no PEM certificate", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafkacfg: load kafka.tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (s *SASL) password() (string, error) {
	if s.PasswordFile != "" {
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("kafkacfg: read kafka.sasl.password_file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	p, ok := os.LookupEnv(s.PasswordEnv)
	if !ok {
		return "", fmt.Errorf("kafkacfg: kafka.sasl.password_env: environment variable %s is not set", s.PasswordEnv)
	}
	return p, nil
}

// EnsureTopics creates the named topics with the given partition count if
// they do not exist yet. Existing topics are left as they are.
func EnsureTopics(ctx context.Context, cl *kgo.Client, partitions int32, topics ...string) error {
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopics(ctx, partitions, -1, nil, topics...)
	if err != nil {
		return fmt.Errorf("kafkacfg: create topics: %w", err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("kafkacfg: create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// Logger passes franz-go's log lines at level and above to log, as
// "kafka client: ..." at the matching slog level.
func Logger(log *slog.Logger, level kgo.LogLevel) kgo.Logger { return slogLogger{log, level} }

type slogLogger struct {
	log   *slog.Logger
	level kgo.LogLevel
}

func (l slogLogger) Level() kgo.LogLevel { return l.level }

func (l slogLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	sl := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		sl = slog.LevelError
	case kgo.LogLevelWarn:
		sl = slog.LevelWarn
	case kgo.LogLevelInfo:
		sl = slog.LevelInfo
	}
	l.log.Log(context.Background(), sl, "kafka client: "+msg, keyvals...)
}
