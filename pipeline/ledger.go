package pipeline

import (
	"log/slog"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/ledger"
)

// NewLedger returns the chain writer the ledger section describes, sealing
// what the ingest group committed to the events in conn's database (it
// needs the signing key, from the config or ledger.WithKey).
func NewLedger(cfg Config, conn driver.Conn, reg prometheus.Registerer, log *slog.Logger, opts ...ledger.Option) (*ledger.Ledger, error) {
	return ledger.New(cfg.Ledger, ledger.Deps{Kafka: cfg.Kafka, Conn: conn, Database: cfg.ClickHouse.Database, Group: cfg.Ingest.Group},
		reg, log, opts...)
}
