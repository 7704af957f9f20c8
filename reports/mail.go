package reports

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	netmail "net/mail"
	"net/textproto"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/agentrail/agentrail/reports/registry"
)

// Envelope is one composed message and its SMTP envelope.
type Envelope struct {
	From string   // the envelope sender (MAIL FROM), a bare address
	To   []string // the recipients (RCPT TO)
	Data []byte   // the RFC 5322 message, CRLF line ends
}

// Sender delivers one message to its recipients.
type Sender interface {
	Send(ctx context.Context, e *Envelope) error
}

// SMTPSender sends through the configured SMTP server with go-mail's
// client: STARTTLS (mandatory) or implicit TLS, and AUTH PLAIN when a
// username is configured. It dials per message: reports are a few a week.
// It sends the bytes Message composed, as they are.
type SMTPSender struct {
	cfg      SMTP
	password string
	tls      *tls.Config
}

// NewSMTPSender reads the password (file or environment) and CA file.
func NewSMTPSender(cfg SMTP) (*SMTPSender, error) {
	if cfg.Host == "" {
		return nil, errors.New("reports: reports.smtp.host: is required to send mail")
	}
	s := &SMTPSender{cfg: cfg}
	switch {
	case cfg.PasswordFile != "":
		b, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("reports: read reports.smtp.password_file: %w", err)
		}
		s.password = strings.TrimRight(string(b), "\r\n")
	case cfg.PasswordEnv != "":
		p, ok := os.LookupEnv(cfg.PasswordEnv)
		if !ok {
			return nil, fmt.Errorf("reports: reports.smtp.password_env: environment variable %s is not set", cfg.PasswordEnv)
		}
		s.password = p
	}
	name := cfg.ServerName
	if name == "" {
		name = cfg.Host
	}
	s.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: name}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reports: read reports.smtp.ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("reports: reports.smtp.ca_file %s: no PEM certificate in it", cfg.CAFile)
		}
		s.tls.RootCAs = pool
	}
	return s, nil
}

// Send dials, authenticates and sends e.
func (s *SMTPSender) Send(ctx context.Context, e *Envelope) error {
	opts := []mail.Option{mail.WithPort(s.cfg.Port), mail.WithTimeout(s.cfg.Timeout), mail.WithTLSConfig(s.tls)}
	if s.cfg.TLS == "implicit" {
		opts = append(opts, mail.WithSSL())
	} else {
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if s.cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthPlain), mail.WithUsername(s.cfg.Username), mail.WithPassword(s.password))
	}
	if s.cfg.HELO != "" {
		opts = append(opts, mail.WithHELO(s.cfg.HELO))
	}
	c, err := mail.NewClient(s.cfg.Host, opts...)
	if err != nil {
		return fmt.Errorf("reports: smtp client: %w", err)
	}
	where := fmt.Sprintf("%s:%d", s.cfg.Host, s.cfg.Port)
	sc, err := c.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return fmt.Errorf("reports: send via %s: %w", where, err)
	}
	defer sc.Close()
	if err := sc.Mail(e.From); err != nil {
		return fmt.Errorf("reports: send via %s: MAIL FROM: %w", where, err)
	}
	for _, r := range e.To {
		if err := sc.Rcpt(r); err != nil {
			return fmt.Errorf("reports: send via %s: RCPT TO: %w", where, err)
		}
	}
	w, err := sc.Data()
	if err != nil {
		return fmt.Errorf("reports: send via %s: DATA: %w", where, err)
	}
	if _, err := w.Write(e.Data); err != nil {
		_ = w.Close()
		return fmt.Errorf("reports: send via %s: write message: %w", where, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("reports: send via %s: end of data: %w", where, err)
	}
	// The server accepted the message with its reply to the data; a
	// failed QUIT changes nothing about that.
	_ = sc.Quit()
	return nil
}

// Rendered is a report in every form the mail carries.
type Rendered struct {
	Report *Weekly
	HTML   []byte // with the chart as cid:ChartCID
	Text   []byte
	JSON   []byte
	CSV    []byte
	PNG    []byte
	// ChartCID is the chart's Content-ID, without angle brackets.
	ChartCID string
}

// Render renders r for mail.
func Render(r *Weekly, domain string) (*Rendered, error) {
	out := &Rendered{Report: r, ChartCID: fmt.Sprintf("chart.%s.%s@%s", registry.FileComponent(r.Team), r.Week, domain)}
	var err error
	if out.PNG, err = Chart(r); err != nil {
		return nil, err
	}
	if out.HTML, err = HTML(r, "cid:"+out.ChartCID); err != nil {
		return nil, err
	}
	out.Text = Text(r)
	if out.JSON, err = JSON(r); err != nil {
		return nil, err
	}
	if out.CSV, err = CSV(r); err != nil {
		return nil, err
	}
	return out, nil
}

// MessageID is the Message-ID of a team's week sent to a set of recipients:
// the same for every retry of that send, so a server or client that sees
// a retried message twice can tell. A partial report (covers is before the
// week's end) gets its own, with the instant it covers up to: it is another
// message than the final report and must never be folded into it.
func MessageID(team, week string, recipients []string, domain string, partialUntil time.Time) string {
	rc := append([]string(nil), recipients...)
	sort.Strings(rc)
	h := sha256.Sum256([]byte(strings.Join(rc, ",")))
	kind := ""
	if !partialUntil.IsZero() {
		kind = "partial-" + partialUntil.UTC().Format("20060102T150405Z") + "."
	}
	return fmt.Sprintf("report.%s.%s.%s%s@%s", team, week, kind, hex.EncodeToString(h[:6]), domain)
}

// fromDomain is the domain of the From address, for Message-ID and
// Content-ID.
func fromDomain(from string) string {
	if a, err := netmail.ParseAddress(from); err == nil {
		if i := strings.LastIndexByte(a.Address, '@'); i >= 0 {
			return a.Address[i+1:]
		}
	}
	return "agentrail.invalid"
}

// Subject is the report mail's subject; a partial report says what it
// covers.
func Subject(r *Weekly) string {
	s := fmt.Sprintf("[agentrail] %s weekly permission report %s", r.Team, r.Week)
	if r.Partial {
		s += " (" + r.Coverage() + ")"
	}
	return s
}

// Message composes the report mail (RFC 5322, MIME):
//
//	multipart/mixed
//	  multipart/related; type="multipart/alternative"   (RFC 2387: the root's type)
//	    multipart/alternative
//	      text/plain; charset=utf-8                      (quoted-printable)
//	      text/html; charset=utf-8                       (quoted-printable)
//	    image/png, inline, Content-ID                    (the chart, base64)
//	  application/json, attachment                       (base64)
//	  text/csv, attachment                               (base64)
//
// with Auto-Submitted: auto-generated (RFC 3834) and Precedence: bulk, so
// that vacation responders and ticket systems do not answer it. go-mail
// composes no type parameter on multipart/related, so the message is
// composed here with the standard library and go-mail only speaks SMTP.
func Message(rd *Rendered, from string, to []string, messageID string, date time.Time) (*Envelope, error) {
	r := rd.Report
	fa, err := netmail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("reports: reports.smtp.from: %w", err)
	}
	if len(to) == 0 {
		return nil, errors.New("reports: message: no recipients")
	}
	var rcpts []string
	var toHdr []string
	for _, t := range to {
		a, err := netmail.ParseAddress(t)
		if err != nil {
			// The address is the team's, from the registry: name its
			// position, not its value.
			return nil, fmt.Errorf("reports: recipient %d of team %s: %w", len(rcpts)+1, r.Team, err)
		}
		rcpts = append(rcpts, a.Address)
		toHdr = append(toHdr, a.String())
	}

	// The body, innermost first.
	alt, altType, err := multipartOf("alternative", []mimePart{
		{header: textproto.MIMEHeader{"Content-Type": {"text/plain; charset=utf-8"}}, body: rd.Text, qp: true},
		{header: textproto.MIMEHeader{"Content-Type": {"text/html; charset=utf-8"}}, body: rd.HTML, qp: true},
	})
	if err != nil {
		return nil, err
	}
	related, relType, err := multipartOf("related", []mimePart{
		{header: textproto.MIMEHeader{"Content-Type": {altType}}, body: alt, raw: true},
		{header: textproto.MIMEHeader{
			"Content-Type":        {`image/png; name="chart.png"`},
			"Content-Disposition": {`inline; filename="chart.png"`},
			"Content-Id":          {"<" + rd.ChartCID + ">"},
		}, body: rd.PNG},
	})
	if err != nil {
		return nil, err
	}
	relType += `; type="multipart/alternative"`
	base := reportBase(r)
	attach := func(ext, ctype string, body []byte) mimePart {
		name := base + ext
		return mimePart{header: textproto.MIMEHeader{
			"Content-Type":        {mime.FormatMediaType(ctype, map[string]string{"name": name})},
			"Content-Disposition": {mime.FormatMediaType("attachment", map[string]string{"filename": name})},
		}, body: body}
	}
	mixed, mixedType, err := multipartOf("mixed", []mimePart{
		{header: textproto.MIMEHeader{"Content-Type": {relType}}, body: related, raw: true},
		attach(".json", "application/json", rd.JSON),
		attach(".csv", "text/csv", rd.CSV),
	})
	if err != nil {
		return nil, err
	}

	var b bytes.Buffer
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("Date", date.Format(time.RFC1123Z))
	hdr("From", fa.String())
	hdr("To", strings.Join(toHdr, ",\r\n "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", Subject(r)))
	hdr("Message-ID", "<"+messageID+">")
	hdr("MIME-Version", "1.0")
	hdr("Auto-Submitted", "auto-generated")
	hdr("Precedence", "bulk")
	hdr("X-Agentrail-Team", r.Team)
	hdr("X-Agentrail-Week", r.Week)
	coverage := "final"
	if r.Partial {
		coverage = "partial; until=" + r.CoversUntil.UTC().Format(time.RFC3339)
	}
	hdr("X-Agentrail-Coverage", coverage)
	hdr("Content-Type", mixedType)
	b.WriteString("\r\n")
	b.Write(mixed)
	return &Envelope{From: fa.Address, To: rcpts, Data: b.Bytes()}, nil
}

// mimePart is one body part: base64 unless qp (quoted-printable) or raw
// (an already encoded multipart body).
type mimePart struct {
	header textproto.MIMEHeader
	body   []byte
	qp     bool
	raw    bool
}

// multipartOf encodes parts as a multipart/kind body; it returns the body
// and its Content-Type (with the boundary).
func multipartOf(kind string, parts []mimePart) ([]byte, string, error) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		for k, v := range p.header {
			h[k] = v
		}
		switch {
		case p.raw:
		case p.qp:
			h.Set("Content-Transfer-Encoding", "quoted-printable")
		default:
			h.Set("Content-Transfer-Encoding", "base64")
		}
		pw, err := w.CreatePart(h)
		if err != nil {
			return nil, "", fmt.Errorf("reports: compose %s part: %w", kind, err)
		}
		switch {
		case p.raw:
			_, err = pw.Write(p.body)
		case p.qp:
			q := quotedprintable.NewWriter(pw)
			if _, err = q.Write(p.body); err == nil {
				err = q.Close()
			}
		default:
			err = writeBase64(pw, p.body)
		}
		if err != nil {
			return nil, "", fmt.Errorf("reports: compose %s part: %w", kind, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, "", fmt.Errorf("reports: compose %s: %w", kind, err)
	}
	return b.Bytes(), "multipart/" + kind + "; boundary=\"" + w.Boundary() + "\"", nil
}

// writeBase64 writes data base64-encoded in lines of 76 characters
// (RFC 2045).
func writeBase64(w io.Writer, data []byte) error {
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 0 {
		n := min(76, len(enc))
		if _, err := io.WriteString(w, enc[:n]+"\r\n"); err != nil {
			return err
		}
		enc = enc[n:]
	}
	return nil
}
