package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/agentrail/agentrail/pipeline"
)

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

func (f *connFlags) load() (pipeline.Config, error) {
	cfg, err := pipeline.Load(f.config)
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
