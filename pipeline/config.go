package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/agentrail/agentrail/anomaly"
	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/consumers/correlate"
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
}

// Defaults fills every section's unset fields.
func (c *Config) Defaults() {
	c.Config.Defaults()
	c.Correlation.Defaults()
	c.Anomaly.Defaults()
	c.Reports.Defaults()
	c.Ledger.Defaults()
}

// Validate checks every section without I/O.
func (c *Config) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
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
	return c.Ledger.Validate()
}

// Load reads the YAML config at path strictly: an unknown or mistyped key
// is an error with its line. An empty path means all defaults. The result
// has its defaults filled and is not yet validated.
func Load(path string) (Config, error) {
	if path == "" {
		return Parse(nil, "")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return Parse(raw, path)
}

// Parse decodes raw (the file named name) strictly and fills defaults.
func Parse(raw []byte, name string) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("config %s: %w", name, err)
	}
	cfg.Defaults()
	return cfg, nil
}
