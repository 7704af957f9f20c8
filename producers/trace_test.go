package producers

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestParseTraceparent(t *testing.T) {
	const (
		tid = "4bf92f3577b34da6a3ce929d0e0e4736"
		sid = "00f067aa0ba902b7"
	)
	tests := []struct {
		name    string
		in      string
		want    TraceContext
		wantErr string // substring of the error; "" for none
	}{
		{"sampled", "00-" + tid + "-" + sid + "-01", TraceContext{tid, sid, true}, ""},
		{"not sampled", "00-" + tid + "-" + sid + "-00", TraceContext{tid, sid, false}, ""},
		{"other flags keep sampled bit", "00-" + tid + "-" + sid + "-03", TraceContext{tid, sid, true}, ""},
		{"future version", "01-" + tid + "-" + sid + "-01", TraceContext{tid, sid, true}, ""},
		{"future version with more fields", "cc-" + tid + "-" + sid + "-01-what-the-future-holds", TraceContext{tid, sid, true}, ""},
		{"empty", "", TraceContext{}, "is 0 characters"},
		{"short", "00-" + tid + "-" + sid + "-0", TraceContext{}, "is 54 characters"},
		{"version 00 too long", "00-" + tid + "-" + sid + "-01-x", TraceContext{}, "version 00 has exactly 55"},
		{"future version bad suffix", "01-" + tid + "-" + sid + "-01x", TraceContext{}, "must start with '-'"},
		{"version ff", "ff-" + tid + "-" + sid + "-01", TraceContext{}, "version ff is invalid"},
		{"version not hex", "0g-" + tid + "-" + sid + "-01", TraceContext{}, "version must be"},
		{"uppercase trace id", "00-" + strings.ToUpper(tid) + "-" + sid + "-01", TraceContext{}, "trace-id must be 32 lowercase hex"},
		{"zero trace id", "00-" + strings.Repeat("0", 32) + "-" + sid + "-01", TraceContext{}, "trace-id must not be all zeros"},
		{"bad span id", "00-" + tid + "-" + "00f067aa0ba902bz" + "-01", TraceContext{}, "parent-id must be 16 lowercase hex"},
		{"zero span id", "00-" + tid + "-" + strings.Repeat("0", 16) + "-01", TraceContext{}, "parent-id must not be all zeros"},
		{"bad flags", "00-" + tid + "-" + sid + "-0x", TraceContext{}, "trace-flags must be"},
		{"wrong separator", "00_" + tid + "-" + sid + "-01", TraceContext{}, "separated by '-'"},
		{"fields shifted", "00-" + tid[:31] + "-" + sid + "-011", TraceContext{}, "separated by '-'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTraceparent(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseTraceparent: %v", err)
				}
				if got != tc.want {
					t.Fatalf("got %+v, want %+v", got, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if !errors.Is(err, ErrTraceparent) {
				t.Fatalf("error %v does not match ErrTraceparent", err)
			}
		})
	}
}

func TestTraceparentRoundTrip(t *testing.T) {
	for _, sampled := range []bool{true, false} {
		tc := NewTraceContext()
		tc.Sampled = sampled
		got, err := ParseTraceparent(tc.Traceparent())
		if err != nil || got != tc {
			t.Fatalf("ParseTraceparent(%s) = %+v, %v; want %+v", tc.Traceparent(), got, err, tc)
		}
	}
}

func TestNewIDs(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		tid, sid := NewTraceID(), NewSpanID()
		if len(tid) != 32 || !isLowerHex(tid) || isZeros(tid) || len(sid) != 16 || !isLowerHex(sid) || isZeros(sid) {
			t.Fatalf("bad ids %q %q", tid, sid)
		}
		if seen[tid] || seen[sid] {
			t.Fatalf("id repeated after %d", i)
		}
		seen[tid], seen[sid] = true, true
	}
	parent := NewTraceContext()
	child := parent.NewChild()
	if child.TraceID != parent.TraceID || child.SpanID == parent.SpanID || child.Sampled != parent.Sampled {
		t.Fatalf("child %+v of %+v: want same trace and flags, new span", child, parent)
	}
}

func TestTraceContextPropagation(t *testing.T) {
	if _, ok := TraceFromContext(context.Background()); ok {
		t.Fatal("empty context has a trace")
	}
	tc := NewTraceContext()
	got, ok := TraceFromContext(ContextWithTrace(context.Background(), tc))
	if !ok || got != tc {
		t.Fatalf("TraceFromContext = %+v, %v; want %+v", got, ok, tc)
	}
}

func FuzzParseTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
	f.Add("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tc, err := ParseTraceparent(s)
		if err != nil {
			if !errors.Is(err, ErrTraceparent) {
				t.Fatalf("error %v does not match ErrTraceparent", err)
			}
			return
		}
		// Whatever parses is a valid context that formats back to the
		// first 55 characters, modulo the flags we do not keep.
		if len(tc.TraceID) != 32 || len(tc.SpanID) != 16 || isZeros(tc.TraceID) || isZeros(tc.SpanID) {
			t.Fatalf("accepted invalid ids %+v", tc)
		}
		again, err := ParseTraceparent(tc.Traceparent())
		if err != nil || again != tc {
			t.Fatalf("round trip of %+v: %+v, %v", tc, again, err)
		}
		if s[3:52] != tc.Traceparent()[3:52] {
			t.Fatalf("ids changed: %q vs %q", s, tc.Traceparent())
		}
	})
}
