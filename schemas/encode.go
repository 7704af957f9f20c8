package schemas

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// appendEvent appends the Avro binary encoding of e under the latest schema
// (avro/event.v2.avsc), field by field in schema order, without reflection
// and without allocating when dst has room.
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
func appendEvent(dst []byte, e *Event) ([]byte, error) {
	dst = appendString(dst, e.EventID)
	dst = appendString(dst, e.TraceID)
	dst = appendString(dst, e.SpanID)
	t, ok := enumIndex(string(e.Type), eventTypeSymbols)
	if !ok {
		return dst, enumError("event_type", eventTypeSymbols)
	}
	dst = appendLong(dst, t)
	dst = appendMicros(dst, e.Time)
	dst = appendString(dst, e.Agent.ID)
	dst = appendString(dst, e.Agent.Version)
	dst = appendString(dst, e.Agent.Team)
	dst = appendString(dst, e.Agent.Environment)
	dst = appendString(dst, e.Agent.Tenant)
	dst = appendString(dst, e.RequestedBy)
	dst = appendLong(dst, int64(e.Tier))
	dst = appendString(dst, e.Producer.Name)
	dst = appendString(dst, e.Producer.Version)
	dst = appendString(dst, e.Producer.Host)
	dst = appendString(dst, e.SessionID)
	dst = appendMap(dst, e.Labels)

	var err error
	if in := e.Intent; in == nil {
		dst = append(dst, 0) // union branch 0: null
	} else {
		dst = append(dst, 2) // union branch 1 (zig-zag)
		dst = appendIntent(dst, in)
	}
	if d := e.Decision; d == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 2)
		if dst, err = appendDecision(dst, d); err != nil {
			return dst, err
		}
	}
	if a := e.Approval; a == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 2)
		if dst, err = appendApproval(dst, a); err != nil {
			return dst, err
		}
	}
	if r := e.Result; r == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 2)
		if dst, err = appendResult(dst, r); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

func appendIntent(dst []byte, in *Intent) []byte {
	dst = appendString(dst, in.Tool)
	dst = appendString(dst, in.Action)
	dst = appendString(dst, in.Target)
	dst = appendString(dst, in.ActionClass)
	dst = appendLong(dst, int64(in.Tier))
	dst = appendMap(dst, in.Parameters)
	dst = appendString(dst, in.ActionDigest)
	dst = appendString(dst, in.Rationale)
	dst = appendMap(dst, in.Context)
	dst = appendString(dst, in.ModelID)
	dst = appendString(dst, in.PromptVersion)
	dst = appendStrings(dst, in.EvidenceIDs)
	if in.Confidence == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 2)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(*in.Confidence))
	}
	return dst
}

func appendDecision(dst []byte, d *Decision) ([]byte, error) {
	o, ok := enumIndex(d.Outcome, outcomeSymbols)
	if !ok {
		return dst, enumError("policy_decision.outcome", outcomeSymbols)
	}
	dst = appendLong(dst, o)
	dst = appendString(dst, d.PolicyID)
	dst = appendLong(dst, d.PolicyVersion)
	dst = appendString(dst, d.MatchedRule)
	dst = appendString(dst, d.Reason)
	dst = appendLong(dst, int64(d.Tier))
	if d.RemainingQuota == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 2)
		dst = appendLong(dst, *d.RemainingQuota)
	}
	return dst, nil
}

func appendApproval(dst []byte, a *Approval) ([]byte, error) {
	dst = appendString(dst, a.ApprovalID)
	s, ok := enumIndex(a.Status, approvalStatusSymbols)
	if !ok {
		return dst, enumError("approval.status", approvalStatusSymbols)
	}
	dst = appendLong(dst, s)
	dst = appendString(dst, a.Approver)
	dst = appendString(dst, a.ApproverRole)
	k, ok := int64(0), true // "" is the default, human
	if a.ApproverKind != "" {
		k, ok = enumIndex(a.ApproverKind, principalKindSymbols)
	}
	if !ok {
		return dst, enumError("approval.approver_kind", principalKindSymbols)
	}
	dst = appendLong(dst, k)
	dst = appendString(dst, a.ActionDigest)
	sc, ok := int64(0), true // "" is the default, single
	if a.Scope != "" {
		sc, ok = enumIndex(a.Scope, scopeSymbols)
	}
	if !ok {
		return dst, enumError("approval.scope", scopeSymbols)
	}
	dst = appendLong(dst, sc)
	if a.ExpiresAt == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 2)
		dst = appendMicros(dst, *a.ExpiresAt)
	}
	dst = appendString(dst, a.Channel)
	dst = appendString(dst, a.Comment)
	return dst, nil
}

func appendResult(dst []byte, r *Result) ([]byte, error) {
	s, ok := enumIndex(r.Status, resultStatusSymbols)
	if !ok {
		return dst, enumError("result.status", resultStatusSymbols)
	}
	dst = appendLong(dst, s)
	dst = appendString(dst, r.ActionDigest)
	dst = appendString(dst, r.Executor)
	dst = appendString(dst, r.ChangedResource)
	dst = appendStrings(dst, r.SideEffects)
	dst = appendString(dst, r.ErrorClass)
	dst = appendString(dst, r.ErrorMessage)
	dst = appendLong(dst, r.DurationUS)
	return dst, nil
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

// appendLong writes v as Avro's zig-zag varint (int and long alike).
func appendLong(dst []byte, v int64) []byte {
	return binary.AppendUvarint(dst, uint64(v<<1)^uint64(v>>63))
}

func appendString(dst []byte, s string) []byte {
	dst = appendLong(dst, int64(len(s)))
	return append(dst, s...)
}

// appendMicros writes t as timestamp-micros (hamba/avro computes the same:
// Unix()*1e6 + Nanosecond()/1e3).
func appendMicros(dst []byte, t time.Time) []byte {
	return appendLong(dst, t.UnixMicro())
}

// blockLength is hamba/avro's default: maps and arrays longer than this
// are split into several blocks.
const blockLength = 100

// appendStrings writes an array of strings: blocks of at most blockLength
// items, each headed by its negated count and its byte size, then a zero.
func appendStrings(dst []byte, ss []string) []byte {
	for len(ss) > 0 {
		blk := ss[:min(len(ss), blockLength)]
		ss = ss[len(blk):]
		size := 0
		for _, s := range blk {
			size += stringSize(s)
		}
		dst = appendLong(dst, -int64(len(blk)))
		dst = appendLong(dst, int64(size))
		for _, s := range blk {
			dst = appendString(dst, s)
		}
	}
	return append(dst, 0)
}

type kv struct{ k, v string }

// appendMap writes a string map in key order, in blocks like appendStrings.
// Key order makes the bytes deterministic; maps of up to 16 entries (all
// of ours in practice) are sorted on the stack.
func appendMap(dst []byte, m map[string]string) []byte {
	if len(m) == 0 {
		return append(dst, 0)
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
		dst = appendLong(dst, -int64(len(blk)))
		dst = appendLong(dst, int64(size))
		for _, e := range blk {
			dst = appendString(dst, e.k)
			dst = appendString(dst, e.v)
		}
	}
	return append(dst, 0)
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
