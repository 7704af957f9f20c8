package schemas

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// AppendValid validates e as Validate(e, now, lim) does and, if it is
// valid, appends its framed encoding to dst as AppendEncode does; on error
// dst is returned as it was and the error is Validate's. It is their
// cheaper composition for producers: strings are checked for length and
// UTF-8 while they are copied, and maps are walked once. Only an event with
// a non-ASCII or over-long string takes a second pass (checkStrings), which
// finds the field to name.
func (enc *Encoder) AppendValid(dst []byte, e *Event, now time.Time, lim Limits) ([]byte, error) {
	return enc.AppendValidIn(dst, e, now, lim, nil)
}

// AppendValidIn is AppendValid for events that usually carry env's agent and
// producer: when e.Agent or e.Producer equals env's, its bytes are copied
// from env, checked and encoded once by NewEnvelope, instead of being
// checked and encoded again. The result is AppendValid's, byte for byte. A
// nil env, or one made under other limits, is ignored.
func (enc *Encoder) AppendValidIn(dst []byte, e *Event, now time.Time, lim Limits, env *Envelope) ([]byte, error) {
	if lim == (Limits{}) {
		lim = DefaultLimits
	}
	if env != nil && env.maxString != lim.MaxString {
		env = nil
	}
	if err := checkShape(e, now, lim, env); err != nil {
		return dst, err
	}
	n := len(dst)
	w := writer{buf: append(dst, enc.header...)}
	if err := w.event(e, env); err != nil {
		// checkShape admits only the schema's enum symbols.
		return dst[:n], fmt.Errorf("schemas: encode event: %w", err)
	}
	if err := w.strings.check(e, lim.MaxString); err != nil {
		return dst[:n], err
	}
	return w.buf, nil
}

// appendEvent appends the Avro binary encoding of e (see writer.event).
func appendEvent(dst []byte, e *Event) ([]byte, error) {
	w := writer{buf: dst}
	err := w.event(e, nil)
	return w.buf, err
}

// Envelope is an agent and a producer, validated and encoded once, for
// AppendValidIn. A producer makes one for the identity it is configured
// with, which most of its events carry.
type Envelope struct {
	agent                 Agent
	producer              Producer
	maxString             int
	agentEnc, producerEnc []byte
}

// NewEnvelope checks a and p as Validate does under lim (agent_id an
// identifier, team set, every string valid UTF-8 of at most lim.MaxString
// bytes), naming the first bad field, and encodes them.
func NewEnvelope(a Agent, p Producer, lim Limits) (*Envelope, error) {
	if lim == (Limits{}) {
		lim = DefaultLimits
	}
	if err := checkAgent(&a); err != nil {
		return nil, err
	}
	c := stringChecker{max: lim.MaxString}
	c.agent(&a)
	c.producer(&p)
	if c.err != nil {
		return nil, c.err
	}
	env := &Envelope{agent: a, producer: p, maxString: lim.MaxString}
	var w writer
	w.agent(&a)
	env.agentEnc = w.buf
	w = writer{}
	w.producer(&p)
	env.producerEnc = w.buf
	return env, nil
}

// writer appends the Avro binary encoding of events to buf. While it copies
// strings it notes the longest one and whether any byte of any string is
// outside ASCII, so that AppendValid checks every string's length and UTF-8
// in the same pass as it encodes them (an all-ASCII string is valid UTF-8).
type writer struct {
	buf     []byte
	strings stringStats // of every string written
}

// event appends the Avro binary encoding of e under the latest schema
// (avro/event.v2.avsc), field by field in schema order, without reflection
// and without allocating when buf has room.
//
// It writes exactly what hamba/avro writes for the same event (maps and
// arrays as one block with a negative count and a byte size, then a zero
// block), with one difference: map entries go in key order, where hamba
// follows Go's random map order. TestEncoderMatchesHamba holds the two
// together; a schema revision must change both this function and that test.
//
// Enum fields take their symbol's index; a value that is not a symbol is an
// error naming the field. An approval's empty approver_kind and scope are
// written as the schema's defaults (human, single).
//
// When env is not nil, an agent or producer equal to env's is copied from
// env's encoding (its strings were checked when env was made).
func (w *writer) event(e *Event, env *Envelope) error {
	w.str(e.EventID)
	w.str(e.TraceID)
	w.str(e.SpanID)
	t, ok := enumIndex(string(e.Type), eventTypeSymbols)
	if !ok {
		return enumError("event_type", eventTypeSymbols)
	}
	w.long(t)
	w.long(e.Time.UnixMicro())
	if env != nil && e.Agent == env.agent {
		w.buf = append(w.buf, env.agentEnc...)
	} else {
		w.agent(&e.Agent)
	}
	w.str(e.RequestedBy)
	w.long(int64(e.Tier))
	if env != nil && e.Producer == env.producer {
		w.buf = append(w.buf, env.producerEnc...)
	} else {
		w.producer(&e.Producer)
	}
	w.str(e.SessionID)
	w.strMap(e.Labels)

	if in := e.Intent; in == nil {
		w.null()
	} else {
		w.some()
		w.intent(in)
	}
	if d := e.Decision; d == nil {
		w.null()
	} else {
		w.some()
		if err := w.decision(d); err != nil {
			return err
		}
	}
	if a := e.Approval; a == nil {
		w.null()
	} else {
		w.some()
		if err := w.approval(a); err != nil {
			return err
		}
	}
	if r := e.Result; r == nil {
		w.null()
	} else {
		w.some()
		if err := w.result(r); err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) agent(a *Agent) {
	w.str(a.ID)
	w.str(a.Version)
	w.str(a.Team)
	w.str(a.Environment)
	w.str(a.Tenant)
}

func (w *writer) producer(p *Producer) {
	w.str(p.Name)
	w.str(p.Version)
	w.str(p.Host)
}

// null and some write the branch of a ["null", T] union (zig-zag 0 and 1).
func (w *writer) null() { w.buf = append(w.buf, 0) }
func (w *writer) some() { w.buf = append(w.buf, 2) }

func (w *writer) intent(in *Intent) {
	w.str(in.Tool)
	w.str(in.Action)
	w.str(in.Target)
	w.str(in.ActionClass)
	w.long(int64(in.Tier))
	w.strMap(in.Parameters)
	w.str(in.ActionDigest)
	w.str(in.Rationale)
	w.strMap(in.Context)
	w.str(in.ModelID)
	w.str(in.PromptVersion)
	w.strs(in.EvidenceIDs)
	if in.Confidence == nil {
		w.null()
	} else {
		w.some()
		w.buf = binary.LittleEndian.AppendUint64(w.buf, math.Float64bits(*in.Confidence))
	}
}

func (w *writer) decision(d *Decision) error {
	o, ok := enumIndex(d.Outcome, outcomeSymbols)
	if !ok {
		return enumError("policy_decision.outcome", outcomeSymbols)
	}
	w.long(o)
	w.str(d.PolicyID)
	w.long(d.PolicyVersion)
	w.str(d.MatchedRule)
	w.str(d.Reason)
	w.long(int64(d.Tier))
	if d.RemainingQuota == nil {
		w.null()
	} else {
		w.some()
		w.long(*d.RemainingQuota)
	}
	return nil
}

func (w *writer) approval(a *Approval) error {
	w.str(a.ApprovalID)
	s, ok := enumIndex(a.Status, approvalStatusSymbols)
	if !ok {
		return enumError("approval.status", approvalStatusSymbols)
	}
	w.long(s)
	w.str(a.Approver)
	w.str(a.ApproverRole)
	k, ok := int64(0), true // "" is the default, human
	if a.ApproverKind != "" {
		k, ok = enumIndex(a.ApproverKind, principalKindSymbols)
	}
	if !ok {
		return enumError("approval.approver_kind", principalKindSymbols)
	}
	w.long(k)
	w.str(a.ActionDigest)
	sc, ok := int64(0), true // "" is the default, single
	if a.Scope != "" {
		sc, ok = enumIndex(a.Scope, scopeSymbols)
	}
	if !ok {
		return enumError("approval.scope", scopeSymbols)
	}
	w.long(sc)
	if a.ExpiresAt == nil {
		w.null()
	} else {
		w.some()
		w.long(a.ExpiresAt.UnixMicro())
	}
	w.str(a.Channel)
	w.str(a.Comment)
	return nil
}

func (w *writer) result(r *Result) error {
	s, ok := enumIndex(r.Status, resultStatusSymbols)
	if !ok {
		return enumError("result.status", resultStatusSymbols)
	}
	w.long(s)
	w.str(r.ActionDigest)
	w.str(r.Executor)
	w.str(r.ChangedResource)
	w.strs(r.SideEffects)
	w.str(r.ErrorClass)
	w.str(r.ErrorMessage)
	w.long(r.DurationUS)
	return nil
}

// The enum symbols of avro/event.v2.avsc, in schema order.
var (
	eventTypeSymbols      = []string{string(TypeIntent), string(TypeDecision), string(TypeApproval), string(TypeResult)}
	outcomeSymbols        = []string{OutcomeAllow, OutcomeDeny, OutcomeRequireApproval}
	approvalStatusSymbols = []string{ApprovalRequested, ApprovalGranted, ApprovalRejected, ApprovalExpired}
	principalKindSymbols  = []string{PrincipalHuman, PrincipalAgent, PrincipalService}
	scopeSymbols          = []string{ScopeSingle, ScopeBundle, ScopeTimeWindow}
	resultStatusSymbols   = []string{ResultSuccess, ResultFailure, ResultError, ResultBlocked}
)

func enumIndex(s string, symbols []string) (int64, bool) {
	for i, sym := range symbols {
		if s == sym {
			return int64(i), true
		}
	}
	return 0, false
}

// enumError names the field and the allowed symbols, never the value.
func enumError(field string, symbols []string) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf("is not one of the schema's symbols %v", symbols)}
}

// long writes v as Avro's zig-zag varint (int and long alike). A
// timestamp-micros is a long of t.UnixMicro(), as hamba/avro computes it.
func (w *writer) long(v int64) {
	w.buf = binary.AppendUvarint(w.buf, uint64(v<<1)^uint64(v>>63))
}

// str writes s, and notes its length and its high bits.
func (w *writer) str(s string) {
	w.long(int64(len(s)))
	w.buf = append(w.buf, s...)
	w.strings.note(s)
}

// orBytes returns the OR of the bytes of s, folded into one byte, eight
// bytes at a time: its high bit says whether s has any non-ASCII byte.
func orBytes(s string) byte {
	var acc uint64
	for len(s) >= 8 {
		acc |= uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		acc |= uint64(s[i])
	}
	acc |= acc >> 32
	acc |= acc >> 16
	acc |= acc >> 8
	return byte(acc)
}

// blockLength is hamba/avro's default: maps and arrays longer than this
// are split into several blocks.
const blockLength = 100

// strs writes an array of strings: blocks of at most blockLength items,
// each headed by its negated count and its byte size, then a zero.
func (w *writer) strs(ss []string) {
	for len(ss) > 0 {
		blk := ss[:min(len(ss), blockLength)]
		ss = ss[len(blk):]
		size := 0
		for _, s := range blk {
			size += stringSize(s)
		}
		w.long(-int64(len(blk)))
		w.long(int64(size))
		for _, s := range blk {
			w.str(s)
		}
	}
	w.buf = append(w.buf, 0)
}

type kv struct{ k, v string }

// strMap writes a string map in key order, in blocks like strs. Key order
// makes the bytes deterministic; maps of up to 16 entries (all of ours in
// practice) are sorted on the stack.
func (w *writer) strMap(m map[string]string) {
	if len(m) == 0 {
		w.buf = append(w.buf, 0)
		return
	}
	var stack [16]kv
	es := stack[:0]
	for k, v := range m {
		es = append(es, kv{k, v})
	}
	slices.SortFunc(es, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	for len(es) > 0 {
		blk := es[:min(len(es), blockLength)]
		es = es[len(blk):]
		size := 0
		for _, e := range blk {
			size += stringSize(e.k) + stringSize(e.v)
		}
		w.long(-int64(len(blk)))
		w.long(int64(size))
		for _, e := range blk {
			w.str(e.k)
			w.str(e.v)
		}
	}
	w.buf = append(w.buf, 0)
}

// stringSize is the encoded size of s: its length as a varint, then its bytes.
func stringSize(s string) int {
	n := len(s)
	l := 1
	for z := uint64(n) << 1; z >= 0x80; z >>= 7 {
		l++
	}
	return l + n
}
