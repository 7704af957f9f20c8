package reports

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	netmail "net/mail"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/agentrail/agentrail/reports/registry"
)

// Sender delivers one message to its recipients.
type Sender interface {
	Send(ctx context.Context, m *mail.Msg) error
}

// SMTPSender sends through the configured SMTP server with go-mail:
// STARTTLS (mandatory) or implicit TLS, and AUTH PLAIN when a username is
// configured. It dials per message: reports are a few a week.
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

// Send dials, authenticates and sends m.
func (s *SMTPSender) Send(ctx context.Context, m *mail.Msg) error {
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
	if err := c.DialAndSendWithContext(ctx, m); err != nil {
		return fmt.Errorf("reports: send via %s:%d: %w", s.cfg.Host, s.cfg.Port, err)
	}
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
// a retried message twice can tell.
func MessageID(team, week string, recipients []string, domain string) string {
	rc := append([]string(nil), recipients...)
	sort.Strings(rc)
	h := sha256.Sum256([]byte(strings.Join(rc, ",")))
	return fmt.Sprintf("report.%s.%s.%s@%s", team, week, hex.EncodeToString(h[:6]), domain)
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

// Message builds the report mail: a text and an HTML alternative, the chart
// inline (referenced by the HTML's cid:), and the JSON and CSV attached.
func Message(rd *Rendered, from string, to []string, messageID string, date time.Time) (*mail.Msg, error) {
	r := rd.Report
	m := mail.NewMsg()
	if err := m.From(from); err != nil {
		return nil, fmt.Errorf("reports: from %q: %w", from, err)
	}
	if err := m.To(to...); err != nil {
		return nil, fmt.Errorf("reports: recipients %v: %w", to, err)
	}
	m.Subject(fmt.Sprintf("[agentrail] %s weekly permission report %s", r.Team, r.Week))
	m.SetMessageIDWithValue(messageID)
	m.SetDateWithValue(date)
	m.SetGenHeader("X-Agentrail-Team", r.Team)
	m.SetGenHeader("X-Agentrail-Week", r.Week)
	m.SetBulk()
	m.SetBodyString(mail.TypeTextPlain, string(rd.Text))
	m.AddAlternativeString(mail.TypeTextHTML, string(rd.HTML))
	if err := m.EmbedReader("chart.png", bytes.NewReader(rd.PNG), mail.WithFileContentID("<"+rd.ChartCID+">"),
		mail.WithFileContentType("image/png")); err != nil {
		return nil, fmt.Errorf("reports: embed chart: %w", err)
	}
	base := reportBase(r)
	if err := m.AttachReader(base+".json", bytes.NewReader(rd.JSON), mail.WithFileContentType("application/json")); err != nil {
		return nil, fmt.Errorf("reports: attach json: %w", err)
	}
	if err := m.AttachReader(base+".csv", bytes.NewReader(rd.CSV), mail.WithFileContentType("text/csv")); err != nil {
		return nil, fmt.Errorf("reports: attach csv: %w", err)
	}
	return m, nil
}
