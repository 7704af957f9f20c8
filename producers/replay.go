package producers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// MaxReplayLine is the longest line Replay reads, newline excluded.
const MaxReplayLine = 1 << 20

// MaxReplayRejections bounds ReplayReport.Rejections; ReplayReport.Rejected
// still counts every rejected line.
const MaxReplayRejections = 10000

// ReplayReport says what Replay did with its input.
type ReplayReport struct {
	Read      int // non-blank lines read
	Published int // events emit accepted
	Rejected  int // lines that did not parse or validate
	// Rejections lists the first MaxReplayRejections rejected lines.
	Rejections []Rejection
}

// Rejection is one line Replay refused. Reason names the field and the rule
// it broke; it never quotes the line's values.
type Rejection struct {
	Line   int
	Reason string
}

// Replay reads canonical-JSON events, one per line, validates each as of
// now() and passes it to emit. Blank lines are skipped; lines that do not
// parse or validate are rejected and reported, and the replay goes on. When
// emit answers ErrBufferFull it is called again with the same event (emit
// itself waits up to its block limit, which paces the retries); any other
// emit error, a line longer than MaxReplayLine, or a read error ends the
// replay with an error, and the report tells how far it got.
func Replay(ctx context.Context, r io.Reader, emit func(context.Context, *schemas.Event) error, now func() time.Time) (ReplayReport, error) {
	if now == nil {
		now = time.Now
	}
	var rep ReplayReport
	reject := func(line int, reason string) {
		rep.Rejected++
		if len(rep.Rejections) < MaxReplayRejections {
			rep.Rejections = append(rep.Rejections, Rejection{Line: line, Reason: reason})
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxReplayLine+1) // +1: a trailing '\r'
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		rep.Read++
		ev, err := schemas.ParseJSON(b)
		if err != nil {
			reject(line, parseReason(err))
			continue
		}
		if err := schemas.Validate(ev, now(), schemas.Limits{}); err != nil {
			reject(line, validationReason(err))
			continue
		}
		for {
			if err := ctx.Err(); err != nil {
				return rep, fmt.Errorf("producers: replay stopped at line %d: %w", line, context.Cause(ctx))
			}
			err = emit(ctx, ev)
			if !errors.Is(err, ErrBufferFull) {
				break
			}
		}
		var ve *schemas.ValidationError
		switch {
		case err == nil:
			rep.Published++
		case errors.As(err, &ve):
			// emit validated with its own clock and disagreed.
			reject(line, validationReason(ve))
		default:
			return rep, fmt.Errorf("producers: replay stopped at line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return rep, fmt.Errorf("producers: replay stopped at line %d: line longer than %d bytes", line+1, MaxReplayLine)
		}
		return rep, fmt.Errorf("producers: replay read line %d: %w", line+1, err)
	}
	return rep, nil
}

func validationReason(err error) string {
	var ve *schemas.ValidationError
	if errors.As(err, &ve) {
		return "field " + ve.Field + ": " + ve.Reason
	}
	return err.Error()
}

func parseReason(err error) string {
	return strings.TrimPrefix(err.Error(), "schemas: parse json: ")
}
