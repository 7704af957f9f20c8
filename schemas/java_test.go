package schemas

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
)

// Apache Avro's Java reference, as Debian packages it (libavro-java 1.8.2
// and the jars it needs; default-jdk-headless for the source launcher).
var javaClasspath = []string{
	"/usr/share/java/avro.jar",
	"/usr/share/java/jackson-core-asl.jar",
	"/usr/share/java/jackson-mapper-asl.jar",
	"/usr/share/java/slf4j-api.jar",
	"/usr/share/java/slf4j-nop.jar",
}

// needTool skips a test whose independent implementation is not installed,
// except in CI (CI=true), where a missing tool fails it: CI installs them
// (.ci/run), and must not pass without them.
func needTool(t *testing.T, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (CI=true: .ci/run installs it)", what)
	}
	t.Skipf("%s is not installed", what)
}

// runJava runs testdata/java/Fingerprint.java with one command per line and
// returns its answers, one per command.
func runJava(t *testing.T, cmds []string) []string {
	t.Helper()
	java, err := exec.LookPath("java")
	ok := err == nil
	for _, jar := range javaClasspath {
		if _, err := os.Stat(jar); err != nil {
			ok = false
		}
	}
	needTool(t, "java with libavro-java", ok)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, java, "-cp", strings.Join(javaClasspath, ":"), filepath.Join("testdata", "java", "Fingerprint.java"))
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("java: %v\n%s", err, stderr.Bytes())
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(cmds) {
		t.Fatalf("java answered %d lines to %d commands:\n%s\n%s", len(lines), len(cmds), out, stderr.Bytes())
	}
	return lines
}

// TestFingerprintsMatchJava holds each version's Parsing Canonical Form and
// fingerprint against Avro's Java reference (SchemaNormalization), and
// shows that hamba/avro's (the legacy one) is not it.
func TestFingerprintsMatchJava(t *testing.T) {
	var cmds []string
	for _, name := range versionFiles {
		cmds = append(cmds, "pcf "+name, "fp "+name)
	}
	// Small schemas for the rules ours do not reach: fixed, bytes with a
	// decimal, references, nested namespaces, an unnamed top-level type.
	extra, err := filepath.Glob(filepath.Join("testdata", "java", "pcf", "*.avsc"))
	if err != nil || len(extra) == 0 {
		t.Fatalf("no schemas in testdata/java/pcf (%v)", err)
	}
	for _, name := range extra {
		cmds = append(cmds, "pcf "+name, "fp "+name)
	}
	got := runJava(t, cmds)
	for i, name := range extra {
		t.Run(filepath.Base(name), func(t *testing.T) {
			raw, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			s, err := avro.ParseBytesWithCache(raw, "", &avro.SchemaCache{})
			if err != nil {
				t.Fatal(err)
			}
			pcf, err := CanonicalForm(s)
			if err != nil {
				t.Fatal(err)
			}
			fp, _ := SpecFingerprint(s)
			j := 2 * (len(versionFiles) + i)
			if pcf != got[j] || hex.EncodeToString(fp[:]) != got[j+1] {
				t.Fatalf("ours %s %x\njava %s %s", pcf, fp, got[j], got[j+1])
			}
		})
	}
	for i, v := range Versions() {
		pcf, err := CanonicalForm(v.Schema)
		if err != nil {
			t.Fatal(err)
		}
		javaPCF, javaFP := got[2*i], got[2*i+1]
		t.Logf("v%d: java %s, ours %x, legacy (hamba) %x", v.N, javaFP, v.Fingerprint, v.LegacyFingerprint)
		if pcf != javaPCF {
			t.Errorf("v%d canonical form differs from Java's\n ours %s\njava  %s", v.N, pcf, javaPCF)
		}
		if hex.EncodeToString(v.Fingerprint[:]) != javaFP {
			t.Errorf("v%d fingerprint %x, Java's %s", v.N, v.Fingerprint, javaFP)
		}
		if hex.EncodeToString(v.LegacyFingerprint[:]) == javaFP {
			t.Errorf("v%d legacy fingerprint equals Java's: the spec fix is moot", v.N)
		}
	}
}

// javaEvents is what testdata/java/events.v2.json holds, line for line, in
// Avro's JSON encoding.
func javaEvents() []*Event {
	conf := 0.625
	exp := time.UnixMicro(1765846860000000).UTC()
	return []*Event{{
		EventID: "java-1", TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331",
		Type: TypeIntent, Time: time.UnixMicro(1765843200123456).UTC(),
		Agent:       Agent{ID: "refund-bot", Version: "2.0.1", Team: "finance", Environment: "prod", Tenant: "acme"},
		RequestedBy: "carol@acme.test", Tier: 3,
		Producer:  Producer{Name: "avro-java", Version: "1.8.2", Host: "jvm-1"},
		SessionID: "run-7", Labels: map[string]string{"zone": "eu", "app": "billing"},
		Intent: &Intent{
			Tool: "payments", Action: "refund", Target: "order:4411", ActionClass: "refund", Tier: 3,
			Parameters:   map[string]string{"amount": "250.00", "note": "café — déjà vu"},
			ActionDigest: "d1d2", Rationale: "duplicate charge", ModelID: "m-large", PromptVersion: "p9",
			EvidenceIDs: []string{"doc-1", "doc-2"}, Confidence: &conf,
		},
	}, {
		EventID: "java-2", TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331",
		Type: TypeApproval, Time: time.UnixMicro(1765843260000000).UTC(),
		Agent: Agent{ID: "refund-bot", Team: "finance"}, Tier: 3,
		Approval: &Approval{
			ApprovalID: "apr-9", Status: "granted", Approver: "dave@acme.test", ApproverRole: "finance-lead",
			ApproverKind: "agent", ActionDigest: "d1d2", Scope: "time_window", ExpiresAt: &exp,
			Channel: "slack", Comment: "ok",
		},
	}}
}

// TestJavaSingleObjectInterop exchanges single-object records with Avro's
// Java reference (org.apache.avro.message), in both directions:
//   - Java's BinaryMessageEncoder writes the datums of
//     testdata/java/events.v2.json; our decoder must read them as
//     javaEvents, and see no legacy fingerprint;
//   - our encoder writes the sample events; Java's BinaryMessageDecoder,
//     which looks the schema up by its spec fingerprint, must read them
//     (printed in Avro's JSON encoding, checked field by field), and what
//     Java encodes again from its datum must decode as the event we wrote.
func TestJavaSingleObjectInterop(t *testing.T) {
	latest := versionFiles[len(versionFiles)-1]
	raw, err := os.ReadFile(filepath.Join("testdata", "java", "events.v2.json"))
	if err != nil {
		t.Fatal(err)
	}
	datums := strings.Split(strings.TrimSpace(string(raw)), "\n")
	want := javaEvents()
	if len(datums) != len(want) {
		t.Fatalf("%d datums in events.v2.json, %d in javaEvents", len(datums), len(want))
	}
	ours := sampleEvents()
	var cmds []string
	for _, d := range datums {
		cmds = append(cmds, "enc "+latest+" "+d)
	}
	enc := NewSingleObjectEncoder()
	for _, e := range ours {
		b, err := enc.AppendEncode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, "dec "+latest+" "+hex.EncodeToString(b))
	}
	got := runJava(t, cmds)
	dec, err := NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	decodeHex := func(t *testing.T, h string) Event {
		t.Helper()
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatalf("java wrote %q: %v", h, err)
		}
		if fp := Latest().Fingerprint; len(b) < 10 || !bytes.Equal(b[2:10], fp[:]) || dec.LegacyVersion(b) != 0 {
			t.Fatalf("java's header % x, want C3 01 and the spec fingerprint %x", b[:10], Latest().Fingerprint)
		}
		var e Event
		if err := dec.Decode(context.Background(), b, &e); err != nil {
			t.Fatalf("decode java's record: %v", err)
		}
		normalize(&e)
		return e
	}
	for i, w := range want {
		t.Run("java to go/"+w.EventID, func(t *testing.T) {
			if e := decodeHex(t, got[i]); !reflect.DeepEqual(&e, w) {
				t.Fatalf("java's record read as\n %+v\nwant %+v", e, *w)
			}
		})
	}
	for i, e := range ours {
		js, again, ok := strings.Cut(got[len(want)+i], "\t")
		if !ok {
			t.Fatalf("java answered %q, want JSON, a tab and hex", got[len(want)+i])
		}
		t.Run("go to java/"+e.EventID, func(t *testing.T) {
			var m struct {
				EventID   string `json:"event_id"`
				EventType string `json:"event_type"`
				EventTime int64  `json:"event_time"`
				Agent     struct {
					ID string `json:"agent_id"`
				} `json:"agent"`
			}
			if err := json.Unmarshal([]byte(js), &m); err != nil {
				t.Fatalf("java printed %s: %v", js, err)
			}
			var all map[string]json.RawMessage
			_ = json.Unmarshal([]byte(js), &all)
			if m.EventID != e.EventID || m.EventType != string(e.Type) || m.EventTime != e.Time.UnixMicro() || m.Agent.ID != e.Agent.ID {
				t.Fatalf("java read %s\nwant event_id %s, event_type %s, event_time %d, agent_id %s", js, e.EventID, e.Type, e.Time.UnixMicro(), e.Agent.ID)
			}
			// The body is the union's record branch, under its full name.
			body := map[EventType]string{TypeIntent: "intent", TypeDecision: "decision", TypeApproval: "approval", TypeResult: "result"}[e.Type]
			if !bytes.Contains(all[body], []byte(`"io.agentrail.`)) {
				t.Fatalf("java read no %s body: %s", body, all[body])
			}
		})
		t.Run("go to java to go/"+e.EventID, func(t *testing.T) {
			if got := decodeHex(t, again); !reflect.DeepEqual(&got, e) {
				t.Fatalf("round trip through java read as\n %+v\nwant %+v", got, *e)
			}
		})
	}
}
