package pipeline

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"

	"go.yaml.in/yaml/v3"

	"github.com/agentrail/agentrail/anomaly"
	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/consumers/correlate"
	"github.com/agentrail/agentrail/gateway"
	"github.com/agentrail/agentrail/ledger"
	"github.com/agentrail/agentrail/reports"
)

// Config is the whole YAML file (deployments/agentrail.yaml): the
// connection and ingest settings at the top level, and one section per
// stage.
type Config struct {
	consumers.Config `yaml:",inline"`
	Correlation      correlate.Config `yaml:"correlation"`
	Anomaly          anomaly.Config   `yaml:"anomaly"`
	Reports          reports.Config   `yaml:"reports"`
	Ledger           ledger.Config    `yaml:"ledger"`
	Gateway          gateway.Config   `yaml:"gateway"`
}

// Defaults fills every section's unset fields. The stage sections' topic
// keys (anomaly.alert_topic, correlation.violation_topic) are the old names
// of kafka.topics.alerts and .violations: they take kafka.topics' value,
// and a config built in Go that sets only the old field keeps it.
func (c *Config) Defaults() {
	for _, m := range movedTopics(c) {
		if *m.dest == "" {
			*m.dest = *m.oldVal
		}
	}
	c.Config.Defaults()
	c.Correlation.Defaults()
	c.Anomaly.Defaults()
	c.Reports.Defaults()
	c.Ledger.Defaults()
	// The gateway checks events as ingest will: the same registry, the
	// same event-time bounds, the same cluster.
	g := &c.Gateway
	if g.RegistryFile == "" {
		g.RegistryFile = c.Signatures.RegistryFile
	}
	if g.MaxFuture == 0 {
		g.MaxFuture = c.Ingest.MaxFuture
	}
	if g.MaxPast == 0 {
		g.MaxPast = c.Ingest.MaxPast
	}
	g.Kafka = c.Kafka
	g.Defaults()
	for _, m := range movedTopics(c) {
		*m.oldVal = *m.dest
	}
}

// Validate checks every section without I/O.
func (c *Config) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	for _, m := range movedTopics(c) {
		if *m.oldVal != *m.dest {
			return fmt.Errorf("%s: %q differs from %s %q; set only %s", m.old, *m.oldVal, m.new, *m.dest, m.new)
		}
	}
	if err := c.Correlation.Validate(); err != nil {
		return err
	}
	if err := c.Anomaly.Validate(); err != nil {
		return err
	}
	if err := c.Reports.Validate(); err != nil {
		return err
	}
	if err := c.Ledger.Validate(); err != nil {
		return err
	}
	return c.Gateway.Validate()
}

// ConfigEnv names the environment variable holding the config file's path
// when none is given.
const ConfigEnv = "AGENTRAIL_CONFIG"

// Load reads the YAML config at path strictly: an unknown or mistyped key
// is an error with its line. An empty path means the file named by
// $AGENTRAIL_CONFIG, or all defaults when that is unset or empty. The
// result has its defaults filled and is not yet validated. Old spellings
// the file may still use are logged as warnings on slog's default logger;
// LoadWithWarnings returns them instead.
func Load(path string) (Config, error) {
	cfg, warns, err := LoadWithWarnings(path)
	logWarnings(warns)
	return cfg, err
}

// LoadWithWarnings is Load returning the warnings instead of logging them.
func LoadWithWarnings(path string) (Config, []Warning, error) {
	if path == "" {
		path = os.Getenv(ConfigEnv)
	}
	if path == "" {
		return ParseWithWarnings(nil, "")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("read config: %w", err)
	}
	return ParseWithWarnings(raw, path)
}

// Parse decodes raw (the file named name) strictly and fills defaults,
// logging warnings as Load does.
func Parse(raw []byte, name string) (Config, error) {
	cfg, warns, err := ParseWithWarnings(raw, name)
	logWarnings(warns)
	return cfg, err
}

// ParseWithWarnings decodes raw (the file named name) strictly and fills
// defaults. Durations are read in the grammar of internal/duration (Go's
// units plus d and w; retention periods in d, w, mo, y). The warnings name
// every old spelling or moved key the file uses, and what to write instead.
func ParseWithWarnings(raw []byte, name string) (Config, []Warning, error) {
	var cfg Config
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return cfg, nil, fmt.Errorf("config %s: %w", name, err)
	}
	c := &checker{lines: map[string]int{}}
	c.walk(&root, reflect.TypeFor[Config](), "")
	if err := c.err(); err != nil {
		return cfg, nil, fmt.Errorf("config %s: %w", name, err)
	}
	if len(root.Content) > 0 {
		if err := root.Decode(&cfg); err != nil {
			return cfg, nil, fmt.Errorf("config %s: %w", name, err)
		}
	}
	c.moveTopics(&cfg)
	if err := c.err(); err != nil {
		return cfg, nil, fmt.Errorf("config %s: %w", name, err)
	}
	for i := range c.warns {
		c.warns[i].File = name
	}
	cfg.Defaults()
	return cfg, c.warns, nil
}

func logWarnings(warns []Warning) {
	for _, w := range warns {
		slog.Warn(w.Message, "config", w.File, "line", w.Line)
	}
}
