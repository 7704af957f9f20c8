package reports

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"image/png"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
)

// smtpServer is a real SMTP server in the test process (emersion/go-smtp):
// STARTTLS with a certificate made for the test, AUTH PLAIN only after
// STARTTLS, and a way to refuse the next messages with a 451.
type smtpServer struct {
	addr   string
	caFile string

	mu       sync.Mutex
	msgs     []received
	failNext int
}

type received struct {
	from   string
	rcpts  []string
	data   []byte
	user   string
	tls    bool
	cipher uint16
}

type smtpSession struct {
	srv  *smtpServer
	conn *smtp.Conn
	user string
	from string
	to   []string
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != "reports@acme.example" || password != "s3cret-from-file" {
			return errors.New("invalid username or password")
		}
		s.user = username
		return nil
	}), nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if s.srv.failNext > 0 {
		s.srv.failNext--
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "mailbox busy, try again later"}
	}
	st, ok := s.conn.TLSConnectionState()
	s.srv.msgs = append(s.srv.msgs, received{from: s.from, rcpts: append([]string(nil), s.to...), data: b, user: s.user, tls: ok, cipher: st.CipherSuite})
	return nil
}

func (s *smtpSession) Reset()        { s.from, s.to = "", nil }
func (s *smtpSession) Logout() error { return nil }

func startSMTP(t *testing.T) *smtpServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agentrail test smtp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	srv := &smtpServer{caFile: filepath.Join(t.TempDir(), "ca.pem")}
	if err := os.WriteFile(srv.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &smtpSession{srv: srv, conn: c}, nil }))
	s.Domain = "localhost"
	s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	s.AllowInsecureAuth = false // AUTH only after STARTTLS
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.addr = l.Addr().String()
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { _ = s.Close() })
	return srv
}

func (s *smtpServer) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

// fakeClock jumps ahead instead of waiting, and ends the test's run when
// it reaches stop.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	waits  []time.Duration
	stop   time.Time
	cancel context.CancelFunc
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	if !c.stop.IsZero() && !c.now.Add(d).Before(c.stop) {
		c.now = c.stop
		c.cancel()
		return make(chan time.Time) // never fires; ctx has ended
	}
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func mailConfig(t *testing.T, srv *smtpServer) Config {
	t.Helper()
	host, port, _ := net.SplitHostPort(srv.addr)
	pw := filepath.Join(t.TempDir(), "smtp-password")
	if err := os.WriteFile(pw, []byte("s3cret-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{SMTP: SMTP{Host: host, Port: p, From: "agentrail reports <reports@acme.example>", Username: "reports@acme.example",
		PasswordFile: pw, CAFile: srv.caFile, Timeout: 10 * time.Second}}
	cfg.Retention.Schedule = "off"
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// part is one leaf of a parsed MIME message.
type part struct {
	contentType string
	params      map[string]string
	header      map[string][]string
	body        []byte
}

func parseMessage(t *testing.T, raw []byte) (*mail.Message, []part) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var parts []part
	var walk func(ct string, header map[string][]string, body io.Reader)
	walk = func(ct string, header map[string][]string, body io.Reader) {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil {
			t.Fatalf("content type %q: %v", ct, err)
		}
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				walk(p.Header.Get("Content-Type"), p.Header, p)
			}
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		h := mail.Header(header)
		switch strings.ToLower(h.Get("Content-Transfer-Encoding")) {
		case "base64":
			b, err = io.ReadAll(base64.NewDecoder(base64.StdEncoding, bytes.NewReader(b)))
			if err != nil {
				t.Fatal(err)
			}
		case "quoted-printable":
			b, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(b)))
			if err != nil {
				t.Fatal(err)
			}
		}
		parts = append(parts, part{contentType: mt, params: params, header: header, body: b})
	}
	walk(msg.Header.Get("Content-Type"), msg.Header, msg.Body)
	return msg, parts
}

// checkReportMail checks one delivered report mail: headers, the HTML and
// text alternatives, the inline chart the HTML references by Content-ID,
// and the JSON and CSV attachments.
func checkReportMail(t *testing.T, m received, team, week string, rcpts []string, date time.Time) {
	t.Helper()
	if !m.tls || m.user != "reports@acme.example" || m.from != "reports@acme.example" {
		t.Errorf("envelope: tls=%v user=%q from=%q", m.tls, m.user, m.from)
	}
	got := append([]string(nil), m.rcpts...)
	sort.Strings(got)
	want := append([]string(nil), rcpts...)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("RCPT TO %v, want %v", got, want)
	}
	msg, parts := parseMessage(t, m.data)
	h := msg.Header
	if ct, _, _ := mime.ParseMediaType(h.Get("Content-Type")); ct != "multipart/mixed" || !bytes.Contains(m.data, []byte("multipart/related")) ||
		!bytes.Contains(m.data, []byte("multipart/alternative")) {
		t.Errorf("MIME structure: top %q, want mixed > related > alternative", ct)
	}
	if s := h.Get("Subject"); s != "[agentrail] "+team+" weekly permission report "+week {
		t.Errorf("Subject %q", s)
	}
	if a := h.Get("Auto-Submitted"); a != "auto-generated" {
		t.Errorf("Auto-Submitted %q, want auto-generated (RFC 3834)", a)
	}
	if c := h.Get("X-Agentrail-Coverage"); c != "final" {
		t.Errorf("X-Agentrail-Coverage %q, want final", c)
	}
	if h.Get("X-Agentrail-Team") != team || h.Get("X-Agentrail-Week") != week {
		t.Errorf("X-Agentrail headers %q %q", h.Get("X-Agentrail-Team"), h.Get("X-Agentrail-Week"))
	}
	if d, err := h.Date(); err != nil || !d.Equal(date) {
		t.Errorf("Date %v (%v), want %v", d, err, date)
	}
	to, _ := h.AddressList("To")
	if len(to) != len(rcpts) {
		t.Errorf("To %v", to)
	}
	if id := h.Get("Message-Id"); !strings.HasPrefix(id, "<report."+team+"."+week+".") || !strings.HasSuffix(id, "@acme.example>") {
		t.Errorf("Message-ID %q", id)
	}
	byType := map[string]part{}
	for _, p := range parts {
		byType[p.contentType] = p
	}
	html, ok := byType["text/html"]
	if !ok {
		t.Fatalf("no text/html part among %d parts", len(parts))
	}
	img, ok := byType["image/png"]
	if !ok {
		t.Fatal("no image/png part")
	}
	cid := strings.Trim(mail.Header(img.header).Get("Content-Id"), "<>")
	if cid == "" || !bytes.Contains(html.body, []byte(`src="cid:`+cid+`"`)) {
		t.Errorf("the HTML does not reference the image's Content-ID %q", cid)
	}
	if disp := mail.Header(img.header).Get("Content-Disposition"); !strings.HasPrefix(disp, "inline") {
		t.Errorf("image disposition %q, want inline", disp)
	}
	if _, err := png.Decode(bytes.NewReader(img.body)); err != nil {
		t.Errorf("the inline image is not a PNG: %v", err)
	}
	if !bytes.Contains(html.body, []byte("Weekly permission report — "+team)) || !bytes.Contains(html.body, []byte("agentrail trace ")) {
		t.Errorf("HTML body lacks the title or trace commands")
	}
	if txt, ok := byType["text/plain"]; !ok || !bytes.Contains(txt.body, []byte(week)) {
		t.Errorf("text alternative missing or without the week")
	}
	js, ok := byType["application/json"]
	var rep Weekly
	if !ok || json.Unmarshal(js.body, &rep) != nil || rep.Team != team || rep.Week != week {
		t.Errorf("JSON attachment: present %v, team %q week %q", ok, rep.Team, rep.Week)
	}
	if c, ok := byType["text/csv"]; !ok || !bytes.HasPrefix(c.body, []byte(strings.Join(CSVHeader, ","))) {
		t.Errorf("CSV attachment missing or without its header")
	}
}

type delivery struct {
	team, week, recipient, status, reason string
	attempt                               uint8
}

func deliveries(t *testing.T, conn driver.Conn, db string) []delivery {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT team, week, recipient, status, error, attempt FROM `+db+`.report_deliveries
		ORDER BY team, week, recipient, attempt, status = 'sending' DESC, status`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []delivery
	for rows.Next() {
		var d delivery
		if err := rows.Scan(&d.team, &d.week, &d.recipient, &d.status, &d.reason, &d.attempt); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func runs(t *testing.T, conn driver.Conn, db string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT concat(trigger, ' ', team, ' ', week, ' ', status, ' ', toString(sent))
		FROM `+db+`.report_runs FINAL ORDER BY started_at, team`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// The schedule: each team at Monday 08:00 in its own zone, for the week
// that just ended there; retention at 03:30 UTC; a restart the same day
// catches up and sends nothing twice.
func TestScheduledMail(t *testing.T) {
	conn, db := loadFixture(t)
	srv := startSMTP(t)
	cfg := mailConfig(t, srv)
	cfg.Retention.Schedule = "CRON_TZ=UTC 30 3 * * *"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := &fakeClock{now: at("2026-11-22T20:00:00Z"), stop: at("2026-11-23T14:00:00Z"), cancel: cancel}
	s, err := New(cfg, Store{conn, db}, prometheus.NewRegistry(), quiet, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := srv.received()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2 (finance, support; legal has no recipients)", len(msgs))
	}
	// Finance: Monday 08:00 CET = 07:00 UTC. Support: 08:00 EST = 13:00 UTC.
	checkReportMail(t, msgs[0], "finance", "2026-W47", []string{"dana.reyes@acme.example", "peter.olsen@acme.example"}, at("2026-11-23T07:00:00Z"))
	checkReportMail(t, msgs[1], "support", "2026-W47", []string{"rachel.green@acme.example"}, at("2026-11-23T13:00:00Z"))
	var retRuns uint64
	var retStart time.Time
	if err := conn.QueryRow(context.Background(), `SELECT count(), max(started_at) FROM `+db+`.retention_runs FINAL
		WHERE trigger = 'schedule' AND status = 'ok'`).Scan(&retRuns, &retStart); err != nil {
		t.Fatal(err)
	}
	if retRuns != 1 || !retStart.Equal(at("2026-11-23T03:30:00Z")) {
		t.Errorf("scheduled retention runs %d, last at %s", retRuns, retStart)
	}
	want := []string{"schedule finance 2026-W47 ok 2", "schedule support 2026-W47 ok 1"}
	if got := runs(t, conn, db); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("report runs %v, want %v", got, want)
	}

	// A restart at 14:00 catches up on the day's schedule: every recipient
	// has the week already, so nothing is sent and the runs say so.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	clock2 := &fakeClock{now: at("2026-11-23T14:00:00Z"), stop: at("2026-11-23T15:00:00Z"), cancel: cancel2}
	s2, err := New(cfg, Store{conn, db}, prometheus.NewRegistry(), quiet, WithClock(clock2))
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Run(ctx2); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.received()); n != 2 {
		t.Errorf("after the restart %d messages, want still 2", n)
	}
	want = append(want, "catch_up finance 2026-W47 skipped 0", "catch_up support 2026-W47 skipped 0")
	if got := runs(t, conn, db); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("report runs %v, want %v", got, want)
	}
	// Nor is the day's retention run repeated.
	if err := conn.QueryRow(context.Background(), `SELECT count() FROM `+db+`.retention_runs FINAL WHERE trigger != 'test'`).Scan(&retRuns); err != nil || retRuns != 2 {
		t.Errorf("retention runs after the restart: %d %v, want 2 (the catch-up at start, the one at 03:30)", retRuns, err)
	}
}

// A temporary SMTP failure is retried after the backoff; the failure and
// its reason, then the success, are recorded; one message arrives.
func TestSendRetriesAfterFailure(t *testing.T) {
	conn, db := loadFixture(t)
	srv := startSMTP(t)
	srv.failNext = 1
	cfg := mailConfig(t, srv)
	clock := &fakeClock{now: reportAt}
	s, err := New(cfg, Store{conn, db}, prometheus.NewRegistry(), quiet, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	team, err := s.Team(ctx, "finance")
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.SendWeek(ctx, team, w47, "manual", false)
	if err != nil {
		t.Fatal(err)
	}
	if d.Attempts != 2 || len(d.Sent) != 2 || len(clock.waits) != 1 || clock.waits[0] != cfg.Retry.Initial {
		t.Errorf("delivery %+v, waits %v", d, clock.waits)
	}
	msgs := srv.received()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	checkReportMail(t, msgs[0], "finance", "2026-W47", team.Recipients, reportAt)
	ds := deliveries(t, conn, db)
	var seq []string
	for _, x := range ds {
		if x.recipient == "dana.reyes@acme.example" {
			seq = append(seq, x.status)
			if x.status == "failed" && !strings.Contains(x.reason, "451") {
				t.Errorf("failure reason %q lacks the server's 451", x.reason)
			}
		}
	}
	if got := strings.Join(seq, ","); got != "sending,failed,sending,sent" {
		t.Errorf("deliveries of one recipient: %s", got)
	}
	if got := runs(t, conn, db); strings.Join(got, "|") != "manual finance 2026-W47 ok 2" {
		t.Errorf("runs %v", got)
	}

	// Every attempt failing: the run fails after the configured attempts,
	// with the growing backoff.
	srv.failNext = 100
	cfg.Retry.Attempts = 3
	s3, err := New(cfg, Store{conn, db}, prometheus.NewRegistry(), quiet, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	clock.waits = nil
	sup, _ := s3.Team(ctx, "support")
	if _, err := s3.SendWeek(ctx, sup, w47, "manual", false); err == nil || !strings.Contains(err.Error(), "451") {
		t.Errorf("all attempts failing: err %v", err)
	}
	if len(clock.waits) != 2 || clock.waits[0] != 30*time.Second || clock.waits[1] != time.Minute {
		t.Errorf("backoff waits %v, want [30s 1m0s]", clock.waits)
	}
}

// A send interrupted between the SMTP exchange and its record ("sending"
// with no outcome) is not repeated: the recipient is marked unconfirmed,
// the others get the report; --force sends again to everyone.
func TestInterruptedSendIsNotRepeated(t *testing.T) {
	conn, db := loadFixture(t)
	srv := startSMTP(t)
	cfg := mailConfig(t, srv)
	clock := &fakeClock{now: reportAt}
	s, err := New(cfg, Store{conn, db}, prometheus.NewRegistry(), quiet, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.recordDeliveries(ctx, "finance", "2026-W47", "rep-crashed", 1, "sending", "final", "x@acme.example", "", []string{"dana.reyes@acme.example"}); err != nil {
		t.Fatal(err)
	}
	team, _ := s.Team(ctx, "finance")
	d, err := s.SendWeek(ctx, team, w47, "manual", false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(d.Sent, ",") != "peter.olsen@acme.example" || strings.Join(d.Unconfirmed, ",") != "dana.reyes@acme.example" {
		t.Errorf("delivery %+v", d)
	}
	if msgs := srv.received(); len(msgs) != 1 || strings.Join(msgs[0].rcpts, ",") != "peter.olsen@acme.example" {
		t.Fatalf("messages: %d", len(msgs))
	}
	// Again: nothing to send.
	d, err = s.SendWeek(ctx, team, w47, "manual", false)
	if err != nil || len(d.Sent) != 0 || len(srv.received()) != 1 {
		t.Errorf("second send: %+v %v", d, err)
	}
	// Forced: everyone.
	d, err = s.SendWeek(ctx, team, w47, "manual", true)
	if err != nil || len(d.Sent) != 2 || len(srv.received()) != 2 {
		t.Errorf("forced send: %+v %v", d, err)
	}
	var unconfirmed uint64
	if err := conn.QueryRow(ctx, `SELECT count() FROM `+db+`.report_deliveries WHERE status = 'unconfirmed' AND recipient = 'dana.reyes@acme.example'`).Scan(&unconfirmed); err != nil || unconfirmed != 1 {
		t.Errorf("unconfirmed records %d %v", unconfirmed, err)
	}
}

// A week still in progress goes out as a partial report that says what it
// covers, and is recorded as partial: the scheduled send of the finished
// week still happens, and is then sent at most once as before.
func TestPartialWeekDoesNotStandInForTheFinal(t *testing.T) {
	conn, db := loadFixture(t)
	srv := startSMTP(t)
	cfg := mailConfig(t, srv)
	ctx := context.Background()
	// Wednesday 14:05 in Berlin: W47 is half over.
	clock := &fakeClock{now: at("2026-11-18T13:05:00Z")}
	s, err := New(cfg, Store{conn, db}, prometheus.NewRegistry(), quiet, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	team, err := s.Team(ctx, "finance")
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.SendWeek(ctx, team, w47, "manual", false)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Partial || !d.CoversUntil.Equal(at("2026-11-18T13:05:00Z")) || len(d.Sent) != 2 {
		t.Fatalf("partial send: %+v", d)
	}
	msgs := srv.received()
	if len(msgs) != 1 {
		t.Fatalf("%d messages after the partial send, want 1", len(msgs))
	}
	msg, parts := parseMessage(t, msgs[0].data)
	const cover = "partial: Mon 16 Nov 00:00 – Wed 18 Nov 14:05 CET"
	subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subj != "[agentrail] finance weekly permission report 2026-W47 ("+cover+")" {
		t.Errorf("partial Subject %q (%v)", subj, err)
	}
	if c := msg.Header.Get("X-Agentrail-Coverage"); c != "partial; until=2026-11-18T13:05:00Z" {
		t.Errorf("X-Agentrail-Coverage %q", c)
	}
	partialID := msg.Header.Get("Message-Id")
	if !strings.Contains(partialID, ".partial-20261118T130500Z.") {
		t.Errorf("partial Message-ID %q does not say it is partial", partialID)
	}
	byType := map[string][]byte{}
	for _, p := range parts {
		byType[p.contentType] = p.body
	}
	for _, ct := range []string{"text/plain", "text/html"} {
		if !bytes.Contains(byType[ct], []byte("Mon 16 Nov 00:00 – Wed 18 Nov 14:05 CET")) {
			t.Errorf("%s part lacks the partial notice", ct)
		}
	}
	var rep Weekly
	if err := json.Unmarshal(byType["application/json"], &rep); err != nil || !rep.Partial || !rep.CoversUntil.Equal(at("2026-11-18T13:05:00Z")) {
		t.Errorf("JSON: partial %v covers_until %v (%v)", rep.Partial, rep.CoversUntil, err)
	}
	var days []string
	for _, r := range rep.Daily {
		if r.Tier == 1 {
			days = append(days, r.Date)
		}
	}
	if strings.Join(days, ",") != "2026-11-16,2026-11-17,2026-11-18" {
		t.Errorf("daily rows of a partial week: %v, want Monday to today only", days)
	}
	if !bytes.Contains(byType["text/csv"], []byte("2026-W47,finance,report,,,partial,true")) ||
		!bytes.Contains(byType["text/csv"], []byte("2026-W47,finance,report,,,covers_until,2026-11-18T13:05:00Z")) {
		t.Errorf("CSV lacks the partial rows")
	}

	// The week has ended: the scheduled send is not skipped.
	clock.now = at("2026-11-23T07:00:00Z")
	d, err = s.SendWeek(ctx, team, w47, "schedule", false)
	if err != nil {
		t.Fatal(err)
	}
	if d.Partial || len(d.Sent) != 2 || len(d.Already) != 0 {
		t.Fatalf("final send after a partial one: %+v", d)
	}
	msgs = srv.received()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	checkReportMail(t, msgs[1], "finance", "2026-W47", team.Recipients, at("2026-11-23T07:00:00Z"))
	if final, _ := parseMessage(t, msgs[1].data); final.Header.Get("Message-Id") == partialID {
		t.Error("the final report has the partial one's Message-ID")
	}
	// And the final is still sent at most once.
	clock.now = at("2026-11-23T08:00:00Z")
	d, err = s.SendWeek(ctx, team, w47, "schedule", false)
	if err != nil || len(d.Sent) != 0 || len(d.Already) != 2 || len(srv.received()) != 2 {
		t.Errorf("second final send: %+v %v", d, err)
	}
	rows, err := conn.Query(ctx, `SELECT concat(trigger, ' ', coverage, ' ', status, ' ', toString(sent)) FROM `+db+`.report_runs FINAL ORDER BY started_at`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if want := "manual partial ok 2|schedule final ok 2|schedule final skipped 0"; strings.Join(got, "|") != want {
		t.Errorf("runs %v, want %s", got, want)
	}
}
