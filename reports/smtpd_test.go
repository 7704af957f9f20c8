package reports

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// mimeNode is one part of a message as Python's email package parsed it
// (testdata/smtpd/server.py).
type mimeNode struct {
	ContentType string            `json:"content_type"`
	Params      map[string]string `json:"params"`
	Disposition *string           `json:"disposition"`
	Filename    *string           `json:"filename"`
	ContentID   *string           `json:"content_id"`
	Parts       []mimeNode        `json:"parts"`
	Size        int               `json:"size"`
	Text        string            `json:"text"`
	PNG         bool              `json:"png_signature"`
}

type pyMessage struct {
	TLS       bool              `json:"tls"`
	MailFrom  string            `json:"mail_from"`
	RcptTos   []string          `json:"rcpt_tos"`
	Defects   []string          `json:"defects"`
	Headers   map[string]string `json:"headers"`
	Structure mimeNode          `json:"structure"`
}

// A partial weekly report sent by our SMTPSender over STARTTLS to
// aiosmtpd, parsed there by Python's email package: the structure
// docs/REPORTS.md promises, as an independent implementation reads it.
func TestReportMailToAiosmtpd(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import aiosmtpd.controller").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-aiosmtpd is required in CI (.ci/run installs it): %v", err)
		}
		t.Skipf("no aiosmtpd for %s (apt-get install python3-aiosmtpd): %v", py, err)
	}
	// A self-signed certificate for 127.0.0.1.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "aiosmtpd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, filepath.Join("testdata", "smtpd", "server.py"), certFile, keyFile, itoa(port))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(what string) string {
		select {
		case s, ok := <-lines:
			if !ok {
				t.Fatalf("aiosmtpd ended before %s", what)
			}
			return s
		case <-time.After(60 * time.Second):
			t.Fatalf("no %s from aiosmtpd within 60s", what)
		}
		return ""
	}
	if s := next("READY"); s != "READY" {
		t.Fatalf("aiosmtpd said %q", s)
	}

	conn, db := loadFixture(t)
	cfg := Config{SMTP: SMTP{Host: "127.0.0.1", Port: port, From: "agentrail reports <reports@acme.example>",
		CAFile: certFile, Timeout: 10 * time.Second, HELO: "agentrail.test"}}
	cfg.Retention.Schedule = "off"
	cfg.Defaults()
	clock := &fakeClock{now: at("2026-11-18T13:05:00Z")} // Wednesday 14:05 in Berlin
	s, err := New(cfg, Store{conn, db}, prometheus.NewRegistry(), quiet, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	team, err := s.Team(ctx, "finance")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SendWeek(ctx, team, w47, "manual", false); err != nil {
		t.Fatal(err)
	}
	raw := next("the parsed message")
	var m pyMessage
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("%v: %.300s", err, raw)
	}
	t.Logf("aiosmtpd: tls=%v from=%s to=%v defects=%v", m.TLS, m.MailFrom, m.RcptTos, m.Defects)
	for k, v := range m.Headers {
		t.Logf("  %s: %s", k, v)
	}
	var walk func(n mimeNode, depth int)
	walk = func(n mimeNode, depth int) {
		fn := ""
		if n.Filename != nil {
			fn = " filename=" + *n.Filename
		}
		t.Logf("  %s%s %v%s", strings.Repeat("  ", depth), n.ContentType, n.Params, fn)
		for _, p := range n.Parts {
			walk(p, depth+1)
		}
	}
	walk(m.Structure, 0)

	if !m.TLS || m.MailFrom != "reports@acme.example" || strings.Join(m.RcptTos, ",") != strings.Join(team.Recipients, ",") {
		t.Errorf("envelope: tls %v from %q to %v", m.TLS, m.MailFrom, m.RcptTos)
	}
	if len(m.Defects) > 0 {
		t.Errorf("Python's email package found defects: %v", m.Defects)
	}
	h := m.Headers
	const cover = "partial: Mon 16 Nov 00:00 – Wed 18 Nov 14:05 CET"
	if h["Subject"] != "[agentrail] finance weekly permission report 2026-W47 ("+cover+")" {
		t.Errorf("Subject %q", h["Subject"])
	}
	if h["Auto-Submitted"] != "auto-generated" || h["MIME-Version"] != "1.0" || h["Precedence"] != "bulk" {
		t.Errorf("Auto-Submitted %q, MIME-Version %q, Precedence %q", h["Auto-Submitted"], h["MIME-Version"], h["Precedence"])
	}
	if h["X-Agentrail-Coverage"] != "partial; until=2026-11-18T13:05:00Z" {
		t.Errorf("X-Agentrail-Coverage %q", h["X-Agentrail-Coverage"])
	}
	top := m.Structure
	if top.ContentType != "multipart/mixed" || len(top.Parts) != 3 {
		t.Fatalf("top: %s with %d parts, want multipart/mixed with 3", top.ContentType, len(top.Parts))
	}
	rel := top.Parts[0]
	if rel.ContentType != "multipart/related" || rel.Params["type"] != "multipart/alternative" || len(rel.Parts) != 2 {
		t.Fatalf("related: %s %v with %d parts", rel.ContentType, rel.Params, len(rel.Parts))
	}
	if root := rel.Parts[0]; root.ContentType != rel.Params["type"] {
		t.Errorf("multipart/related type=%q but its root part is %s (RFC 2387)", rel.Params["type"], root.ContentType)
	}
	alt := rel.Parts[0]
	if len(alt.Parts) != 2 || alt.Parts[0].ContentType != "text/plain" || alt.Parts[1].ContentType != "text/html" {
		t.Fatalf("alternative parts: %+v", alt.Parts)
	}
	for _, p := range alt.Parts {
		if !strings.Contains(p.Text, "Mon 16 Nov 00:00 – Wed 18 Nov 14:05 CET") {
			t.Errorf("%s lacks the partial notice", p.ContentType)
		}
	}
	img := rel.Parts[1]
	if img.ContentType != "image/png" || !img.PNG || img.ContentID == nil ||
		!strings.Contains(alt.Parts[1].Text, `src="cid:`+strings.Trim(*img.ContentID, "<>")+`"`) {
		t.Errorf("inline chart: %s png=%v cid=%v, referenced by the HTML", img.ContentType, img.PNG, img.ContentID)
	}
	var names []string
	for _, p := range top.Parts[1:] {
		if p.Filename == nil || p.Disposition == nil || *p.Disposition != "attachment" {
			t.Errorf("attachment %s: filename %v disposition %v", p.ContentType, p.Filename, p.Disposition)
			continue
		}
		names = append(names, p.ContentType+" "+*p.Filename)
	}
	if strings.Join(names, ", ") != "application/json agentrail-report-finance-2026-W47.json, text/csv agentrail-report-finance-2026-W47.csv" {
		t.Errorf("attachments: %v", names)
	}
	var rep Weekly
	if err := json.Unmarshal([]byte(top.Parts[1].Text), &rep); err != nil || !rep.Partial {
		t.Errorf("JSON attachment: partial %v (%v)", rep.Partial, err)
	}
	if !strings.Contains(top.Parts[2].Text, "report,,,partial,true") {
		t.Errorf("CSV attachment lacks the partial row")
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }
