package anomaly

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

// TestThroughIngest runs the stage where it lives: inside the real ingest,
// fed by the real broker, writing to the real ClickHouse. A short
// background with three anomalies planted in it, produced as agents would;
// the alerts of exactly those three reach v_alerts and, through ingest's
// Kafka transactions, the alerts topic.
func TestThroughIngest(t *testing.T) {
	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter, "agentrail.alerts")
	kc.Brokers = []string{addr}
	chCfg, conn := testenv.ClickHouse(t)

	p, err := New(Config{}, conn, chCfg.Database, prometheus.NewRegistry(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in, err := consumers.New(ctx, consumers.Config{Kafka: kc, ClickHouse: chCfg, Signatures: consumers.SignatureConfig{Mode: consumers.SignaturesOff}}, prometheus.NewRegistry(), quiet,
		consumers.WithProcessors(p))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := in.Run(ctx); err != nil {
			t.Errorf("ingest: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = in.Close(context.Background())
	})

	// Twenty minutes of a Wednesday afternoon, and three anomalies in it.
	f := simulate.New(simulate.Config{Seed: 21})
	from := time.Date(2026, 11, 18, 14, 0, 0, 0, time.UTC)
	ds := background(f, rand.New(rand.NewPCG(21, 1)), from, from.Add(20*time.Minute))
	var anomalies []*simulate.Anomaly
	var avoid []string
	for i, kind := range []string{simulate.AnomalyRetryBurst, simulate.AnomalyDenialSpike, simulate.AnomalyRubberStamp} {
		a, err := f.Plant(simulate.AnomalySpec{Kind: kind, At: from.Add(time.Duration(3+3*i) * time.Minute), Avoid: avoid})
		if err != nil {
			t.Fatal(err)
		}
		anomalies = append(anomalies, a)
		avoid = append(avoid, a.Agent, a.Approver)
	}
	ds = byDelivery(append(ds, planted(anomalies)...))

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	enc := schemas.NewSingleObjectEncoder()
	var recs []*kgo.Record
	for i := range ds {
		b, err := enc.AppendEncode(nil, &ds[i].ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: kc.Topics.Events, Key: []byte(ds[i].ev.TraceID), Value: b})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	var alerts []Alert
	testenv.Eventually(t, 60*time.Second, "ingest to store every event", func() (bool, error) {
		var n uint64
		err := conn.QueryRow(context.Background(), "SELECT count() FROM "+chCfg.Database+".v_events").Scan(&n)
		return int(n) >= len(ds)-len(ds)/50, err // less the redelivered duplicates
	})
	testenv.Eventually(t, 30*time.Second, "three alerts in v_alerts", func() (bool, error) {
		alerts = tableAlerts(t, conn, chCfg.Database)
		return len(alerts) >= 3, nil
	})
	s := &fleetScenario{anomalies: anomalies}
	checkAlerts(t, s, alerts)
	onTopic := topicAlerts(t, addr, len(alerts))
	for _, a := range alerts {
		if got, ok := onTopic[a.ID]; !ok || got.Version != a.Version {
			t.Fatalf("alert %s v%d: on the topic %v v%d", a.ID, a.Version, ok, got.Version)
		}
	}
}
