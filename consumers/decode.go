package consumers

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers/redact"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// decodeChunk is how many records a decode worker takes at a time: large
// enough to make the hand-over negligible, small enough that the columns are
// built while the later chunks are still being decoded.
const decodeChunk = 512

// decode turns the batch's records into accepted events (columns and the
// processors' view) and dead letters, in poll order. prepare runs on up to
// GOMAXPROCS goroutines; this goroutine takes their chunks in order, drops
// repeated event ids (the first in poll order is kept) and appends the
// events to the columns, while later chunks are still being decoded. An
// error means ctx ended while a transient decode failure was retried.
func (in *Ingest) decode(ctx context.Context, b *batch) error {
	n := len(b.recs)
	slots := make([]Accepted, n)
	reds := make([][]redact.Redaction, n)
	verdicts := make([]signing.Verdict, n)
	chunks := (n + decodeChunk - 1) / decodeChunk
	type chunk struct {
		dead []int // indexes into slots of records not accepted, with their dead letters
		dls  []deadLetter
		err  error
		done chan struct{}
	}
	cs := make([]chunk, chunks)
	work := func(k int) {
		c := &cs[k]
		for i := k * decodeChunk; i < min(n, (k+1)*decodeChunk); i++ {
			d, err := in.prepare(ctx, b.recs[i], &slots[i], &reds[i], &verdicts[i])
			if err != nil {
				c.err = err
				break
			}
			if d.class != "" {
				c.dead = append(c.dead, i)
				c.dls = append(c.dls, d)
			}
		}
		close(c.done)
	}
	for k := range cs {
		cs[k].done = make(chan struct{})
	}
	var wg sync.WaitGroup
	if workers := min(runtime.GOMAXPROCS(0), chunks); workers > 1 {
		var next atomic.Int64
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := int(next.Add(1) - 1); k < chunks; k = int(next.Add(1) - 1) {
					work(k)
				}
			}()
		}
	} else {
		for k := range cs {
			work(k)
		}
	}
	defer wg.Wait() // workers write into slots; never leave them running

	b.rows = in.rows
	b.rows.reset()
	seen := make(map[string]struct{}, n)
	kept, dups := 0, 0
	for k := range cs {
		c := &cs[k]
		<-c.done
		if c.err != nil {
			return c.err
		}
		next := 0 // into c.dead
		for i := k * decodeChunk; i < min(n, (k+1)*decodeChunk); i++ {
			if next < len(c.dead) && c.dead[next] == i {
				b.dead = append(b.dead, c.dls[next])
				next++
				continue
			}
			a := &slots[i]
			if v := verdicts[i]; !v.Genuine() {
				b.quarantine(b.recs[i], &a.Event, v)
				continue
			}
			if _, dup := seen[a.EventID]; dup {
				dups++
				continue
			}
			seen[a.EventID] = struct{}{}
			b.rows.add(&a.Event, reds[i], a.Partition, a.Offset, verdicts[i].KeyID)
			if kept != i {
				slots[kept] = *a
			}
			kept++
		}
	}
	if dups > 0 {
		in.m.records.WithLabelValues("duplicate").Add(float64(dups))
	}
	if len(in.procs) > 0 {
		b.events = slots[:kept]
	}
	return nil
}

// prepare verifies the signature of, decodes, validates, redacts and checks
// the claims of one record into a, stamped with its place in the topic, with
// what redaction did (*reds) and the signature's verdict (*v). It is
// ingest's per-record work, safe to run on several goroutines at once.
//
// The signature comes first, over the record's exact bytes (verify.go): a
// record whose signature does not verify is quarantined whatever its bytes
// are (*v says why, a holds what it claims, if anything), and only one whose
// signature verifies (or any, with signatures off) is decoded and validated.
// A record that cannot be accepted is returned as a dead letter (class
// set). The error is non-nil only when ctx ended while a transient decode
// failure (schema registry) was retried.
func (in *Ingest) prepare(ctx context.Context, r *kgo.Record, a *Accepted, reds *[]redact.Redaction, v *signing.Verdict) (deadLetter, error) {
	a.Partition, a.Offset = r.Partition, r.Offset
	if len(r.Value) > in.cfg.Ingest.MaxRecordBytes {
		return deadLetter{rec: r, class: "oversize",
			err: fmt.Errorf("record is %d bytes, larger than ingest.max_record_bytes %d", len(r.Value), in.cfg.Ingest.MaxRecordBytes)}, nil
	}
	ver := in.sig.v.Load() // nil with signatures off
	if *v = in.verifySignature(ver, r); !v.Genuine() {
		*reds = nil
		return deadLetter{}, in.describeQuarantined(ctx, r, a, reds, v) // verify.go
	}
	e := &a.Event
	invalid, decErr, err := in.decodeValid(ctx, r, e)
	if err != nil {
		return deadLetter{}, err
	}
	if invalid != nil {
		return deadLetter{rec: r, class: "validation", field: invalid.Field, err: decErr}, nil
	}
	if decErr != nil {
		return deadLetter{rec: r, class: "decode", err: decErr}, nil
	}
	// Redaction first: nothing keeps the event before it, the quarantine
	// included (the signature covers the record's bytes, not the event).
	*reds = in.redact(e)             // redaction.go
	*v = in.verifyClaims(ver, *v, e) // verify.go
	return deadLetter{}, nil
}

// decodeValid decodes and validates r's value into e in one pass (strings
// are checked as they are read). A malformed value is decErr; one that
// decodes but is not valid is also invalid. err is non-nil only when ctx
// ended while a transient failure (the schema registry did not answer) was
// retried.
func (in *Ingest) decodeValid(ctx context.Context, r *kgo.Record, e *schemas.Event) (invalid *schemas.ValidationError, decErr, err error) {
	err = retry(ctx, in, "decode", func() error {
		invalid = nil
		decErr = in.dec.DecodeValid(ctx, r.Value, e, in.now(), in.lim)
		if decErr != nil && !errors.Is(decErr, schemas.ErrMalformed) && !errors.As(decErr, &invalid) {
			return decErr // transient
		}
		return nil
	})
	return invalid, decErr, err
}
