package consumers

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	records     *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	batches     prometheus.Counter
	batchRows   prometheus.Histogram
	insertSecs  prometheus.Histogram
	retries     *prometheus.CounterVec
	lastCommit  prometheus.Gauge
	aborted     prometheus.Counter
	ticks       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentrail_ingest_records_total", Help: "Records consumed, by outcome.",
		}, []string{"outcome"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentrail_ingest_dead_letters_total", Help: "Records sent to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentrail_ingest_batches_total", Help: "Batches committed.",
		}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentrail_ingest_batch_rows", Help: "Records per committed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		insertSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentrail_ingest_insert_seconds", Help: "Time to insert one batch into ClickHouse.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentrail_ingest_retries_total", Help: "Retried operations, by stage.",
		}, []string{"stage"}),
		lastCommit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentrail_ingest_last_commit_timestamp_seconds", Help: "Unix time of the last committed batch.",
		}),
		aborted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentrail_ingest_aborted_batches_total", Help: "Batch transactions aborted (partitions moved or producing failed); the batch is consumed again.",
		}),
		ticks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentrail_ingest_ticks_total", Help: "Ticks whose output (work due on ingest's clock) was committed.",
		}),
	}
	for _, c := range []prometheus.Collector{m.records, m.deadLetters, m.batches, m.batchRows, m.insertSecs, m.retries, m.lastCommit, m.aborted, m.ticks} {
		if err := reg.Register(c); err != nil {
			return m, fmt.Errorf("consumers: register metrics: %w", err)
		}
	}
	return m, nil
}
