package consumers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// txnOutcome is how a batch's transaction ended.
type txnOutcome int

const (
	txnCommitted txnOutcome = iota
	txnAborted              // partitions moved, or producing failed: the session rewound
	txnLost                 // the broker could not end it: the session was made again
)

// commit produces recs and commits the consumed offsets in one transaction.
//
// When Begin or End fails because the broker is unreachable, restarted, or
// lost or fenced the transaction (brokerGone), ingest does not stop: no
// error from End is retryable on the same client, and franz-go's maintainer
// says to make the client again (twmb/franz-go#855), so renewSession closes
// the session and makes a new one, with backoff. The batch's rows are in
// ClickHouse and its offsets are not committed (or, if the broker committed
// and only the answer was lost, they are, and nothing is redone): the new
// session consumes from the committed offsets, and the batch's rows are
// inserted again, which the events table collapses. Any other error
// (authorization, configuration) is returned: no retry fixes it.
func (in *Ingest) commit(ctx context.Context, recs []*kgo.Record) (txnOutcome, error) {
	if err := in.sess.Begin(); err != nil {
		return in.txnFailed(ctx, "begin", err)
	}
	var produceErr error
	if len(recs) > 0 {
		if produceErr = in.produce(ctx, recs); ctx.Err() != nil {
			return txnAborted, ctx.Err() // stopping: Close fails what is left
		}
	}
	try := kgo.TryCommit
	if produceErr != nil {
		try = kgo.TryAbort
	}
	committed, err := in.sess.End(ctx, try)
	if err != nil {
		return in.txnFailed(ctx, "end", err)
	}
	in.txnFails = 0
	if produceErr != nil {
		in.log.Warn("producing the batch's records failed; transaction aborted, the batch will be consumed again", "err", produceErr)
		in.m.retries.WithLabelValues("produce").Inc()
		return txnAborted, nil
	}
	if !committed {
		return txnAborted, nil
	}
	return txnCommitted, nil
}

// produce sends recs in the open transaction and waits for them, or for ctx
// to end. A broker that is down makes the wait as long as the outage:
// franz-go keeps a record it sent to a broker that went away until the
// broker answers (an idempotent producer cannot tell whether it was
// written), whatever ctx says, so a stop does not wait for it; Close fails
// what is left.
func (in *Ingest) produce(ctx context.Context, recs []*kgo.Record) error {
	res := make(chan error, 1)
	sess := in.sess
	go func() { res <- sess.ProduceSync(ctx, recs...).FirstErr() }()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// txnFailed handles a failed Begin or End (step): a stop (ctx ended) or an
// error no retry fixes is returned; a broker gone is recovered from by
// renewing the session.
func (in *Ingest) txnFailed(ctx context.Context, step string, err error) (txnOutcome, error) {
	if ctx.Err() != nil {
		return txnLost, ctx.Err()
	}
	if !brokerGone(err) {
		return txnLost, fmt.Errorf("consumers: %s transaction: %w", step, err)
	}
	in.m.retries.WithLabelValues("commit").Inc()
	in.txnFails++
	backoff := min(100*time.Millisecond<<min(in.txnFails-1, 6), 5*time.Second)
	in.log.Warn("batch transaction failed: the Kafka broker is unreachable or lost the transaction; "+
		"the batch is stored in ClickHouse, its offsets are not committed; making a new Kafka session, the batch will be consumed again",
		"step", step, "attempt", in.txnFails, "backoff", backoff, "err", err)
	if err := in.renewSession(ctx, backoff); err != nil {
		return txnLost, err
	}
	return txnLost, nil
}

// leaveBudget bounds how long a session given up waits to leave the group:
// leaving needs the broker, which may be gone. A member that could not
// leave is dropped by the group after its session timeout.
const leaveBudget = 3 * time.Second

// renewSession closes the session and makes a new one with the same options
// (the same transactional id, so the new producer fences the old one and
// aborts any transaction it left open), after waiting backoff. The new
// session joins the group and consumes from the committed offsets once the
// broker is back. It returns an error only when ctx ended, or when the
// options, valid at New, no longer make a client.
func (in *Ingest) renewSession(ctx context.Context, backoff time.Duration) error {
	in.closeSession(ctx)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(backoff):
	}
	sess, err := kgo.NewGroupTransactSession(in.kopts...)
	if err != nil {
		return fmt.Errorf("consumers: kafka client: %w", err)
	}
	in.sess, in.cl = sess, sess.Client()
	return nil
}

// closeSession leaves the group, waiting at most leaveBudget or until ctx
// ends, and closes the session.
func (in *Ingest) closeSession(ctx context.Context) {
	if in.sess == nil {
		return // Run stopped while renewing it
	}
	lctx, cancel := context.WithTimeout(ctx, leaveBudget)
	_ = in.cl.LeaveGroupContext(lctx)
	cancel()
	in.sess.Close()
	in.sess, in.cl = nil, nil
	in.revokedMu.Lock()
	in.owned = nil // a new session is assigned afresh
	in.revokedMu.Unlock()
}

// brokerGone reports whether a failed Begin or End is about the broker:
// unreachable or restarted, out of retries, or the transaction's state lost,
// fenced or aborted on its side. A new session recovers from these once the
// broker is back. Authorization and configuration errors, and anything not
// known to be about the broker, are not.
func brokerGone(err error) bool {
	for _, fatal := range []error{kerr.TransactionalIDAuthorizationFailed, kerr.GroupAuthorizationFailed,
		kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed, kerr.SaslAuthenticationFailed,
		kerr.UnsupportedVersion, kerr.InvalidTransactionTimeout, kerr.FencedInstanceID} {
		if errors.Is(err, fatal) {
			return false // FencedInstanceID: two members were given one instance_id
		}
	}
	var ne net.Error
	if kgo.IsRetryableBrokerErr(err) || errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, kgo.ErrRecordTimeout) || errors.Is(err, kgo.ErrRecordRetries) {
		return true
	}
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		return false
	}
	if ke.Retriable {
		return true // coordinator moving or loading, not enough replicas, timeouts, ...
	}
	switch ke {
	case kerr.ProducerFenced, kerr.InvalidProducerEpoch, kerr.InvalidProducerIDMapping, kerr.UnknownProducerID,
		kerr.InvalidTxnState, kerr.TransactionAbortable, kerr.OperationNotAttempted, kerr.ConcurrentTransactions,
		kerr.TransactionCoordinatorFenced, kerr.UnknownServerError,
		kerr.IllegalGeneration, kerr.UnknownMemberID, kerr.RebalanceInProgress, kerr.StaleMemberEpoch, kerr.GroupIDNotFound:
		return true
	}
	return false
}

// revoked records partitions this member lost; the processors hear of them
// before the next batch (the callback runs on franz-go's goroutine, and
// processors are not safe for concurrent use).
func (in *Ingest) revoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	in.log.Info("partitions revoked", "partitions", lost[in.cfg.Kafka.Topics.Events])
	in.revokedMu.Lock()
	in.revokedPs = append(in.revokedPs, lost[in.cfg.Kafka.Topics.Events]...)
	for _, p := range lost[in.cfg.Kafka.Topics.Events] {
		delete(in.owned, p)
	}
	in.revokedMu.Unlock()
}

// assigned logs the partitions this member was given (in a cooperative
// rebalance, only the new ones) and adds them to those ticks cover.
func (in *Ingest) assigned(_ context.Context, _ *kgo.Client, got map[string][]int32) {
	in.log.Info("partitions assigned", "partitions", got[in.cfg.Kafka.Topics.Events])
	in.revokedMu.Lock()
	if in.owned == nil {
		in.owned = map[int32]bool{}
	}
	for _, p := range got[in.cfg.Kafka.Topics.Events] {
		in.owned[p] = true
	}
	in.revokedMu.Unlock()
}

func (in *Ingest) applyRevocations() {
	in.revokedMu.Lock()
	ps := in.revokedPs
	in.revokedPs = nil
	in.revokedMu.Unlock()
	if len(ps) == 0 {
		return
	}
	for _, p := range in.procs {
		p.PartitionsRevoked(ps)
	}
}

// transactionalID names this member's Kafka transactions. A static member
// keeps its id across restarts, so a restart fences and aborts the
// transaction its previous incarnation left open; otherwise the id is unique
// per process and a dangling transaction expires by the transaction timeout.
func transactionalID(c IngestConfig) string {
	if c.InstanceID != "" {
		return c.Group + "-" + c.InstanceID
	}
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return c.Group + "-" + host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}
