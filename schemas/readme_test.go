package schemas

import (
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// readmeSection returns the text of schemas/README.md from the heading
// title up to the next heading of the same or a higher level.
func readmeSection(t *testing.T, title string) string {
	t.Helper()
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	i := strings.Index(s, "\n"+title+"\n")
	if i < 0 {
		t.Fatalf("README.md has no %q", title)
	}
	s = s[i+len(title)+2:]
	level := title[:strings.IndexByte(title, ' ')+1]
	for _, h := range []string{"\n" + level, "\n" + strings.TrimSuffix(level, "# ") + " "} {
		if j := strings.Index(s, h); j >= 0 {
			s = s[:j]
		}
	}
	return s
}

// fencedBlocks returns the contents of the section's ``` blocks.
func fencedBlocks(s string) []string {
	var out []string
	parts := strings.Split(s, "```")
	for i := 1; i < len(parts); i += 2 {
		body := parts[i]
		if nl := strings.IndexByte(body, '\n'); nl >= 0 {
			body = body[nl+1:] // drop the info string
		}
		out = append(out, strings.TrimSpace(body))
	}
	return out
}

// TestReadmeFingerprints: the fingerprints schemas/README.md states are the
// ones producers write and consumers accept (TestFingerprintsMatchJava
// holds those against Java's).
func TestReadmeFingerprints(t *testing.T) {
	sec := readmeSection(t, "### Fingerprints")
	row := regexp.MustCompile("(?m)^\\| v(\\d+) \\| `([0-9a-f]{16})` \\| `([0-9a-f]{16})` \\|")
	rows := row.FindAllStringSubmatch(sec, -1)
	if len(rows) != len(Versions()) {
		t.Fatalf("README.md states fingerprints for %d versions, there are %d", len(rows), len(Versions()))
	}
	for i, v := range Versions() {
		r := rows[i]
		if r[1] != string(rune('0'+v.N)) || r[2] != hex.EncodeToString(v.Fingerprint[:]) || r[3] != hex.EncodeToString(v.LegacyFingerprint[:]) {
			t.Errorf("README.md: v%s spec %s legacy %s; want v%d spec %x legacy %x", r[1], r[2], r[3], v.N, v.Fingerprint, v.LegacyFingerprint)
		}
	}
}

// TestReadmeExampleRecord: the example record of schemas/README.md is what
// our encoder writes for the documented event, byte for byte, and Apache
// Avro's Python library, reading it as the README tells an outside reader
// to, gets the documented event back, under the documented fingerprint.
func TestReadmeExampleRecord(t *testing.T) {
	blocks := fencedBlocks(readmeSection(t, "### Example record"))
	if len(blocks) != 2 {
		t.Fatalf("example record section has %d code blocks, want 2 (the event's JSON, the record's hex)", len(blocks))
	}
	want, err := ParseJSON([]byte(blocks[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(want, want.Time, Limits{}); err != nil {
		t.Fatalf("the documented event is not valid: %v", err)
	}
	docHex := strings.Join(strings.Fields(blocks[1]), "")
	b, err := NewSingleObjectEncoder().AppendEncode(nil, want)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(b); got != docHex {
		t.Fatalf("the encoder writes\n%s\nfor the documented event; README.md says\n%s", got, docHex)
	}

	err = exec.Command("/usr/bin/python3", "-c", "import avro.io").Run()
	needTool(t, "/usr/bin/python3 with python3-avro", err == nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", filepath.Join("testdata", "python", "decode.py"), versionFiles[len(versionFiles)-1])
	cmd.Stdin = strings.NewReader(docHex + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	fp, js, ok := strings.Cut(strings.TrimSpace(string(out)), "\t")
	if !ok {
		t.Fatalf("python printed %q", out)
	}
	if lfp := Latest().Fingerprint; fp != hex.EncodeToString(lfp[:]) {
		t.Fatalf("the example carries fingerprint %s, want v%d's %x", fp, Latest().N, Latest().Fingerprint)
	}
	got, err := ParseJSON([]byte(js))
	if err != nil {
		t.Fatalf("python's datum %s: %v", js, err)
	}
	normalize(got)
	normalize(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("python read\n %+v\nREADME.md documents\n %+v", *got, *want)
	}
}
