package ndjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The line Python builds for the signing test vector (signing/doc.go)
// parses to the vector event's exact bytes and Python's signature.
func TestParsePythonVectorLine(t *testing.T) {
	vec := filepath.Join("..", "..", "signing", "testdata")
	event, err := os.ReadFile(filepath.Join(vec, "vector_event.json"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/usr/bin/python3", filepath.Join(vec, "json_vectors.py"), filepath.Join(vec, "vector_event.json")).Output()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("json_vectors.py: %v (apt-get install python3-cryptography)", err)
		}
		t.Skipf("json_vectors.py: %v", err)
	}
	var py struct{ Line, Ed25519 string }
	if err := json.Unmarshal(out, &py); err != nil {
		t.Fatal(err)
	}
	l, err := Parse([]byte(py.Line))
	if err != nil {
		t.Fatal(err)
	}
	if l.KeyID != "billing-bot-1" || !bytes.Equal(l.Event, event) {
		t.Errorf("parsed kid %q event %q", l.KeyID, l.Event)
	}
	if got := Append(nil, l.KeyID, l.Sig, l.Event); string(got) != py.Line {
		t.Errorf("Append = %s\nwant %s", got, py.Line)
	}
}

// The event member is cut out as it is: white space, member order and
// escapes the agent chose survive.
func TestParseKeepsExactBytes(t *testing.T) {
	event := `{ "b" : "\u00e9\n" ,"a":[1, 2], "c":{"x" :null} }`
	line := `{"sig":"AAEC", "event":` + event + ` , "kid":"k-1"}`
	l, err := Parse([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if string(l.Event) != event || l.KeyID != "k-1" || !bytes.Equal(l.Sig, []byte{0, 1, 2}) {
		t.Errorf("parsed %+v", l)
	}
}

func TestParseErrors(t *testing.T) {
	const secret = "s3cr3tVALUE"
	for _, tc := range []struct{ name, in, field string }{
		{"not json", `nope ` + secret, ""},
		{"array", `["` + secret + `"]`, ""},
		{"unknown member", `{"kid":"k","sig":"AA==","event":{},"` + secret + `":1}`, ""},
		{"duplicate event", `{"kid":"k","sig":"AA==","event":{},"event":{"a":"` + secret + `"}}`, "event"},
		{"missing kid", `{"sig":"AA==","event":{}}`, "kid"},
		{"missing sig", `{"kid":"k","event":{}}`, "sig"},
		{"missing event", `{"kid":"k","sig":"AA=="}`, "event"},
		{"bad kid", `{"kid":"` + secret + ` !","sig":"AA==","event":{}}`, "kid"},
		{"kid not string", `{"kid":7,"sig":"AA==","event":{}}`, "kid"},
		{"bad base64", `{"kid":"k","sig":"` + secret + `!","event":{}}`, "sig"},
		{"long sig", `{"kid":"k","sig":"` + strings.Repeat("AAAA", 30) + `","event":{}}`, "sig"},
		{"event string", `{"kid":"k","sig":"AA==","event":"` + secret + `"}`, "event"},
		{"truncated", `{"kid":"k","sig":"AA==","event":{"a":"` + secret, "event"},
		{"trailing", `{"kid":"k","sig":"AA==","event":{}} {"` + secret + `":1}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			var pe *Error
			if !errors.As(err, &pe) || pe.Field != tc.field {
				t.Fatalf("err = %v, want an *Error naming %q", err, tc.field)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error echoes a value: %v", err)
			}
		})
	}
}

// FuzzParse: Parse never panics, and an envelope it accepts carries an
// event that occurs in the line byte for byte and round-trips through
// Append.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"kid":"k-1","sig":"AAEC","event":{"event_id":"e"}}`))
	f.Add([]byte(`{"event":{ "a" : [1,{}] },"kid":"k","sig":"AA=="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Parse(b)
		if err != nil {
			return
		}
		if !bytes.Contains(b, l.Event) || l.Event[0] != '{' {
			t.Fatalf("event %q not cut from %q", l.Event, b)
		}
		l2, err := Parse(Append(nil, l.KeyID, l.Sig, l.Event))
		if err != nil || l2.KeyID != l.KeyID || !bytes.Equal(l2.Sig, l.Sig) || !bytes.Equal(l2.Event, l.Event) {
			t.Fatalf("round trip: %+v %v", l2, err)
		}
	})
}
