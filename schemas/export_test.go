package schemas

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"unsafe"
)

// DecodeHamba decodes b as Decode does, but always through hamba/avro, also
// for the latest schema: the reference the hand-written decoder is compared
// with.
func (d *Decoder) DecodeHamba(ctx context.Context, b []byte, e *Event) error {
	s, payload, err := d.writerSchema(ctx, b)
	if err != nil {
		return err
	}
	return decodeResolved(s, payload, e)
}

// CompareDecoders decodes b with Decode and with DecodeHamba and says how
// they differ, if they do: one accepts what the other rejects, an error
// that is not ErrMalformed (there is no registry), or events that are not
// deeply equal (nil and empty collections told apart). It also checks that
// the event Decode returned does not alias b, by overwriting b. ok says
// whether both accepted b.
func CompareDecoders(d *Decoder, b []byte) (ok bool, diff error) {
	ctx := context.Background()
	var got, want Event
	errGot := d.Decode(ctx, b, &got)
	errWant := d.DecodeHamba(ctx, b, &want)
	if errWant == nil && negativeLength(&want) {
		// hamba accepts an array whose block counts overflow an int, as a
		// slice of negative length; decodeLatest rejects it.
		if errGot == nil {
			return false, errors.New("hamba's negative-length array accepted")
		}
		errWant = errGot
	}
	switch {
	case errGot != nil && !errors.Is(errGot, ErrMalformed):
		return false, fmt.Errorf("error not marked malformed: %w", errGot)
	case errWant != nil && !errors.Is(errWant, ErrMalformed):
		return false, fmt.Errorf("hamba's error not marked malformed: %w", errWant)
	case errGot != nil && errWant == nil:
		return false, fmt.Errorf("rejected what hamba accepts: %w\nhamba: %+v", errGot, want)
	case errGot == nil && errWant != nil:
		return false, fmt.Errorf("accepted what hamba rejects (%w): %+v", errWant, got)
	case errGot != nil:
		if isLatest(b) && !strings.Contains(errGot.Error(), "field ") && !strings.Contains(errGot.Error(), "trailing bytes") {
			return false, fmt.Errorf("error names no field: %w", errGot)
		}
		return false, nil
	}
	// The decoded strings must not point into b, which the caller may reuse.
	for i := range b {
		b[i] ^= 0xA5
	}
	defer func() {
		for i := range b {
			b[i] ^= 0xA5
		}
	}()
	if !sameEvent(&got, &want) {
		return true, fmt.Errorf("events differ\n got %s\nwant %s", dump(&got), dump(&want))
	}
	return true, nil
}

// isLatest reports whether b is single-object framed with the latest schema.
func isLatest(b []byte) bool {
	fp := Latest().Fingerprint
	return len(b) >= 10 && b[0] == singleObject0 && b[1] == singleObject1 && string(b[2:10]) == string(fp[:])
}

func negativeLength(e *Event) bool {
	return e.Intent != nil && sliceLen(&e.Intent.EvidenceIDs) < 0 || e.Result != nil && sliceLen(&e.Result.SideEffects) < 0
}

// sliceLen reads the length in s's header: len(s) < 0 is compiled as false.
func sliceLen(s *[]string) int { return (*[3]int)(unsafe.Pointer(s))[1] }

// sameEvent is reflect.DeepEqual, except that a NaN confidence equals a NaN
// of the same bits.
func sameEvent(a, b *Event) bool {
	if a.Intent != nil && b.Intent != nil && a.Intent.Confidence != nil && b.Intent.Confidence != nil &&
		math.Float64bits(*a.Intent.Confidence) == math.Float64bits(*b.Intent.Confidence) {
		ai, bi := *a.Intent, *b.Intent
		ai.Confidence, bi.Confidence = nil, nil
		ac, bc := *a, *b
		ac.Intent, bc.Intent = &ai, &bi
		a, b = &ac, &bc
	}
	return reflect.DeepEqual(a, b)
}

// dump prints e with its bodies and whether its collections are nil.
func dump(e *Event) string {
	s := fmt.Sprintf("%+v labels-nil=%t", *e, e.Labels == nil)
	if in := e.Intent; in != nil {
		s += fmt.Sprintf(" intent=%+v params-nil=%t context-nil=%t evidence-nil=%t", *in, in.Parameters == nil, in.Context == nil, in.EvidenceIDs == nil)
		if in.Confidence != nil {
			s += fmt.Sprintf(" confidence=%v", *in.Confidence)
		}
	}
	if d := e.Decision; d != nil {
		s += fmt.Sprintf(" decision=%+v", *d)
	}
	if a := e.Approval; a != nil {
		s += fmt.Sprintf(" approval=%+v", *a)
	}
	if r := e.Result; r != nil {
		s += fmt.Sprintf(" result=%+v side-effects-nil=%t", *r, r.SideEffects == nil)
	}
	return s
}
