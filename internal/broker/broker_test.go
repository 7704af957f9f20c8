package broker

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRestartKeepsDataAndOffsets: with a data directory, a restarted broker
// still has the topic's records and the group's committed offsets.
func TestRestartKeepsDataAndOffsets(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Partitions: 3, Topics: []string{"events"}, SyncWrites: true}
	c, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, &kgo.Record{Topic: "events", Key: []byte{byte(i)}, Value: []byte{byte(i)}})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, "events")
	if err != nil {
		t.Fatal(err)
	}
	// Commit the end of every partition for a group, as ingest would.
	commit := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) { commit.AddOffset(o.Topic, o.Partition, o.Offset, -1) })
	if _, err := adm.CommitOffsets(ctx, "g", commit); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	c.Close()

	c2, err := Start(cfg) // same directory, new process state
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	cl2, err := kgo.NewClient(kgo.SeedBrokers(c2.ListenAddrs()...), kgo.ConsumeTopics("events"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	got := 0
	for got < 100 && ctx.Err() == nil {
		got += len(cl2.PollFetches(ctx).Records())
	}
	if got != 100 {
		t.Fatalf("after restart: %d records, want 100", got)
	}
	offs, err := kadm.NewClient(cl2).FetchOffsets(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != 100 {
		t.Fatalf("after restart: group offsets sum to %d, want 100", sum)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{Port: -1}, {Port: 70000}, {Partitions: -1}, {Partitions: 5000}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
	if err := (Config{Port: 19092, Partitions: 12}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}
