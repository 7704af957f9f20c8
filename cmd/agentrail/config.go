package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/agentrail/agentrail/anomaly"
	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/consumers/correlate"
	"github.com/agentrail/agentrail/ledger"
	"github.com/agentrail/agentrail/reports"
)

// pipelineConfig is the whole YAML file: the connection and ingest settings
// at the top level, and one section per stage.
type pipelineConfig struct {
	consumers.Config `yaml:",inline"`
	Correlation      correlate.Config `yaml:"correlation"`
	Anomaly          anomaly.Config   `yaml:"anomaly"`
	Reports          reports.Config   `yaml:"reports"`
	Ledger           ledger.Config    `yaml:"ledger"`
}

// Defaults fills every section's unset fields.
func (c *pipelineConfig) Defaults() {
	c.Config.Defaults()
	c.Correlation.Defaults()
	c.Anomaly.Defaults()
	c.Reports.Defaults()
	c.Ledger.Defaults()
}

// Validate checks every section without I/O.
func (c *pipelineConfig) Validate() error {
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

// loadConfig reads the pipeline's YAML config strictly: an unknown or
// mistyped key is an error with its line. An empty path means all defaults.
func loadConfig(path string) (pipelineConfig, error) {
	if path == "" {
		return parseConfig(nil, "")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return pipelineConfig{}, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(raw, path)
}

// parseConfig decodes raw (the file named name) strictly and fills defaults.
func parseConfig(raw []byte, name string) (pipelineConfig, error) {
	var cfg pipelineConfig
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("config %s: %w", name, err)
	}
	cfg.Defaults()
	return cfg, nil
}

// connFlags are the flags every command that talks to the pipeline shares;
// set flags override the config file.
type connFlags struct {
	config, brokers, clickhouse, database, registry string
}

func (f *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "YAML config file (see deployments/agentrail.yaml)")
	fs.StringVar(&f.brokers, "brokers", "", "comma-separated Kafka seed brokers (default 127.0.0.1:19092)")
	fs.StringVar(&f.clickhouse, "clickhouse", "", "comma-separated ClickHouse native addresses (default 127.0.0.1:19000)")
	fs.StringVar(&f.database, "database", "", "ClickHouse database (default agentrail)")
	fs.StringVar(&f.registry, "registry", "", "schema registry URL (optional)")
}

func (f *connFlags) load() (pipelineConfig, error) {
	cfg, err := loadConfig(f.config)
	if err != nil {
		return cfg, err
	}
	if f.brokers != "" {
		cfg.Kafka.Brokers = strings.Split(f.brokers, ",")
	}
	if f.clickhouse != "" {
		cfg.ClickHouse.Addr = strings.Split(f.clickhouse, ",")
	}
	if f.database != "" {
		cfg.ClickHouse.Database = f.database
	}
	if f.registry != "" {
		cfg.RegistryURL = f.registry
	}
	return cfg, cfg.Validate()
}

// parseFlags parses args, printing usage errors; it reports whether to go on.
func parseFlags(fs *flag.FlagSet, args []string) (ok bool, code int) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, 0
		}
		return false, 2
	}
	if fs.NArg() > 0 && fs.Name() != "replay" {
		fmt.Fprintf(os.Stderr, "agentrail %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return false, 2
	}
	return true, 0
}
