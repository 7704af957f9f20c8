package main

import (
	"strings"

	"github.com/agentrail/agentrail/pipeline"
)

// connFlags are the flags every command that talks to the pipeline shares;
// set flags override the config file.
type connFlags struct {
	Config     string `name:"config" placeholder:"FILE" help:"YAML config file (see deployments/agentrail.yaml); default: the file $$AGENTRAIL_CONFIG names, else built-in defaults"`
	Brokers    string `name:"brokers" placeholder:"ADDRS" help:"comma-separated Kafka seed brokers (default 127.0.0.1:19092)"`
	ClickHouse string `name:"clickhouse" placeholder:"ADDRS" help:"comma-separated ClickHouse native addresses (default 127.0.0.1:19000)"`
	Database   string `name:"database" placeholder:"DB" help:"ClickHouse database (default agentrail)"`
	Registry   string `name:"registry" placeholder:"URL" help:"schema registry URL (optional)"`
}

func (f *connFlags) load() (pipeline.Config, error) {
	cfg, err := pipeline.Load(f.Config)
	if err != nil {
		return cfg, err
	}
	if f.Brokers != "" {
		cfg.Kafka.Brokers = strings.Split(f.Brokers, ",")
	}
	if f.ClickHouse != "" {
		cfg.ClickHouse.Addr = strings.Split(f.ClickHouse, ",")
	}
	if f.Database != "" {
		cfg.ClickHouse.Database = f.Database
	}
	if f.Registry != "" {
		cfg.RegistryURL = f.Registry
	}
	return cfg, cfg.Validate()
}
