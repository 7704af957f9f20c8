package producers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
)

// TraceContext is the W3C trace-context identity of one agent action: the
// trace it belongs to and its own span. The events of one action share both.
type TraceContext struct {
	TraceID string // 32 lowercase hex characters, not all zeros
	SpanID  string // 16 lowercase hex characters, not all zeros
	Sampled bool   // the W3C "sampled" flag, carried through unchanged
}

// NewTraceID returns a random W3C trace id: 32 lowercase hex characters.
func NewTraceID() string {
	var b [32]byte
	for {
		hi, lo := rand.Uint64(), rand.Uint64()
		if hi|lo != 0 { // the all-zero id is invalid
			putHex64(b[0:16], hi)
			putHex64(b[16:32], lo)
			return string(b[:])
		}
	}
}

// NewSpanID returns a random W3C span id: 16 lowercase hex characters.
func NewSpanID() string {
	var b [16]byte
	for {
		if v := rand.Uint64(); v != 0 {
			putHex64(b[:], v)
			return string(b[:])
		}
	}
}

// NewTraceContext starts a new sampled trace with a new span.
func NewTraceContext() TraceContext {
	return TraceContext{TraceID: NewTraceID(), SpanID: NewSpanID(), Sampled: true}
}

// NewChild returns a new span of the same trace, for an action that another
// action caused.
func (tc TraceContext) NewChild() TraceContext {
	return TraceContext{TraceID: tc.TraceID, SpanID: NewSpanID(), Sampled: tc.Sampled}
}

// IsZero reports whether tc carries no trace.
func (tc TraceContext) IsZero() bool { return tc.TraceID == "" }

// Traceparent formats tc as a W3C traceparent header value, version 00.
func (tc TraceContext) Traceparent() string {
	flags := "00"
	if tc.Sampled {
		flags = "01"
	}
	return "00-" + tc.TraceID + "-" + tc.SpanID + "-" + flags
}

// ParseTraceparent parses a W3C traceparent header value
// ("00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"). Versions above 00
// are read as 00 and may carry more fields after the flags, as the W3C
// specification asks; version ff and all-zero ids are rejected. Errors say
// what is wrong without quoting the input.
func ParseTraceparent(s string) (TraceContext, error) {
	const v00Len = 2 + 1 + 32 + 1 + 16 + 1 + 2
	if len(s) < v00Len {
		return TraceContext{}, tpErr("is %d characters, want 55 (00-<32 hex>-<16 hex>-<2 hex>)", len(s))
	}
	if !isLowerHex(s[0:2]) {
		return TraceContext{}, tpErr("version must be 2 lowercase hex characters")
	}
	version := s[0:2]
	if version == "ff" {
		return TraceContext{}, tpErr("version ff is invalid")
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return TraceContext{}, tpErr("fields must be separated by '-' at offsets 2, 35 and 52")
	}
	if len(s) > v00Len {
		// Version 00 has exactly four fields; later versions may append
		// fields, each introduced by a '-'.
		if version == "00" {
			return TraceContext{}, tpErr("is %d characters, version 00 has exactly 55", len(s))
		}
		if s[v00Len] != '-' {
			return TraceContext{}, tpErr("fields after the flags must start with '-'")
		}
	}
	traceID, spanID, flags := s[3:35], s[36:52], s[53:55]
	switch {
	case !isLowerHex(traceID):
		return TraceContext{}, tpErr("trace-id must be 32 lowercase hex characters")
	case isZeros(traceID):
		return TraceContext{}, tpErr("trace-id must not be all zeros")
	case !isLowerHex(spanID):
		return TraceContext{}, tpErr("parent-id must be 16 lowercase hex characters")
	case isZeros(spanID):
		return TraceContext{}, tpErr("parent-id must not be all zeros")
	case !isLowerHex(flags):
		return TraceContext{}, tpErr("trace-flags must be 2 lowercase hex characters")
	}
	return TraceContext{TraceID: traceID, SpanID: spanID, Sampled: unhex(flags[1])&1 == 1}, nil
}

// ErrTraceparent marks a malformed traceparent value.
var ErrTraceparent = errors.New("producers: invalid traceparent")

type traceparentError struct{ msg string }

func (e *traceparentError) Error() string { return "producers: invalid traceparent: " + e.msg }
func (e *traceparentError) Is(target error) bool {
	return target == ErrTraceparent
}

func tpErr(format string, args ...any) error {
	return &traceparentError{msg: fmt.Sprintf(format, args...)}
}

type traceKey struct{}

// ContextWithTrace returns a copy of ctx carrying tc, so the Emitter's
// methods can find it when they are given a zero TraceContext.
func ContextWithTrace(ctx context.Context, tc TraceContext) context.Context {
	return context.WithValue(ctx, traceKey{}, tc)
}

// TraceFromContext returns the TraceContext that ContextWithTrace stored in
// ctx, and whether there was one.
func TraceFromContext(ctx context.Context) (TraceContext, bool) {
	tc, ok := ctx.Value(traceKey{}).(TraceContext)
	return tc, ok && !tc.IsZero()
}

const hexDigits = "0123456789abcdef"

func putHex64(dst []byte, v uint64) {
	for i := 15; i >= 0; i-- {
		dst[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isZeros(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}
