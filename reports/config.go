package reports

import (
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/agentrail/agentrail/reports/retention"
)

// Config configures reports, mail and retention (the `reports:` section of
// the pipeline config). Recipients, schedules and time zones are per team
// in the agent registry; the values here are the defaults for teams that do
// not set them.
type Config struct {
	// TimeZone is the IANA zone of teams without one. Default "UTC".
	TimeZone string `yaml:"timezone"`
	// Schedule is the cron expression (in the team's zone) of teams without
	// one. Default "0 8 * * MON": Monday 08:00, for the week just ended.
	Schedule string `yaml:"schedule"`
	// CatchUp is how far back `report serve` looks, when it starts, for
	// scheduled runs it missed while it was down. Default 24h.
	CatchUp time.Duration `yaml:"catch_up"`
	// UnusedLookbackDays is N in "granted but never used in the last N
	// days". Default 30.
	UnusedLookbackDays int `yaml:"unused_lookback_days"`
	// RepeatedDenials is how many denials of one agent's tool action in a
	// week make it "repeatedly denied". Default 3.
	RepeatedDenials int `yaml:"repeated_denials"`
	// Top is how many denial reasons the report lists. Default 5.
	Top int `yaml:"top"`
	// MaxFindings bounds the violations and alerts listed (all are counted).
	// Default 50.
	MaxFindings int `yaml:"max_findings"`

	SMTP      SMTP             `yaml:"smtp"`
	Retry     Retry            `yaml:"retry"`
	Retention retention.Config `yaml:"retention"`
}

// SMTP is the mail server reports are sent through: STARTTLS on the
// submission port (or implicit TLS), with SMTP AUTH PLAIN when a username
// is set. The password comes from a file or an environment variable, never
// from the config file.
type SMTP struct {
	Host         string        `yaml:"host"` // "" disables mail
	Port         int           `yaml:"port"` // default 587 (465 with tls: implicit)
	From         string        `yaml:"from"` // default "agentrail <agentrail@localhost>"
	Username     string        `yaml:"username"`
	PasswordFile string        `yaml:"password_file"`
	PasswordEnv  string        `yaml:"password_env"`
	TLS          string        `yaml:"tls"`         // "starttls" (default, mandatory) or "implicit"
	CAFile       string        `yaml:"ca_file"`     // trust this CA (PEM) besides the system's
	ServerName   string        `yaml:"server_name"` // certificate name, default Host
	Timeout      time.Duration `yaml:"timeout"`     // per SMTP exchange, default 30s
	HELO         string        `yaml:"helo"`        // EHLO name, default the host's name
}

// Retry is how a failed send is retried: Attempts in all, waiting Initial,
// then twice as long each time up to Max.
type Retry struct {
	Attempts int           `yaml:"attempts"` // default 4
	Initial  time.Duration `yaml:"initial"`  // default 30s
	Max      time.Duration `yaml:"max"`      // default 10m
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.TimeZone == "" {
		c.TimeZone = "UTC"
	}
	if c.Schedule == "" {
		c.Schedule = "0 8 * * MON"
	}
	if c.CatchUp == 0 {
		c.CatchUp = 24 * time.Hour
	}
	if c.UnusedLookbackDays == 0 {
		c.UnusedLookbackDays = 30
	}
	if c.RepeatedDenials == 0 {
		c.RepeatedDenials = 3
	}
	if c.Top == 0 {
		c.Top = 5
	}
	if c.MaxFindings == 0 {
		c.MaxFindings = 50
	}
	s := &c.SMTP
	if s.TLS == "" {
		s.TLS = "starttls"
	}
	if s.Port == 0 {
		s.Port = 587
		if s.TLS == "implicit" {
			s.Port = 465
		}
	}
	if s.From == "" {
		s.From = "agentrail <agentrail@localhost>"
	}
	if s.Timeout == 0 {
		s.Timeout = 30 * time.Second
	}
	r := &c.Retry
	if r.Attempts == 0 {
		r.Attempts = 4
	}
	if r.Initial == 0 {
		r.Initial = 30 * time.Second
	}
	if r.Max == 0 {
		r.Max = 10 * time.Minute
	}
	c.Retention.Defaults()
}

// Validate checks the settings without I/O; call Defaults first.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !zoneRE.MatchString(c.TimeZone) {
		// Resolved against the zone database when the reports start.
		bad("reports.timezone: %q is not an IANA time zone name (e.g. Europe/Berlin, UTC)", c.TimeZone)
	}
	if strings.HasPrefix(c.Schedule, "CRON_TZ=") || strings.HasPrefix(c.Schedule, "TZ=") {
		bad("reports.schedule: %q: set the zone in reports.timezone or the team's timezone", c.Schedule)
	} else if _, err := cron.ParseStandard(c.Schedule); err != nil {
		bad("reports.schedule: %q is not a cron expression (minute hour day-of-month month day-of-week): %v", c.Schedule, err)
	}
	if c.CatchUp < 0 || c.CatchUp > 7*24*time.Hour {
		bad("reports.catch_up: %s out of range 0..168h", c.CatchUp)
	}
	if c.UnusedLookbackDays < 1 || c.UnusedLookbackDays > 366 {
		bad("reports.unused_lookback_days: %d out of range 1..366", c.UnusedLookbackDays)
	}
	if c.RepeatedDenials < 2 || c.RepeatedDenials > 1000 {
		bad("reports.repeated_denials: %d out of range 2..1000", c.RepeatedDenials)
	}
	if c.Top < 1 || c.Top > 50 {
		bad("reports.top: %d out of range 1..50", c.Top)
	}
	if c.MaxFindings < 1 || c.MaxFindings > 1000 {
		bad("reports.max_findings: %d out of range 1..1000", c.MaxFindings)
	}
	s := c.SMTP
	if s.Port < 1 || s.Port > 65535 {
		bad("reports.smtp.port: %d out of range 1..65535", s.Port)
	}
	if _, err := mail.ParseAddress(s.From); err != nil {
		bad("reports.smtp.from: %q is not an address (e.g. agentrail <reports@example.com>)", s.From)
	}
	if s.TLS != "starttls" && s.TLS != "implicit" {
		bad("reports.smtp.tls: %q must be starttls or implicit (mail is never sent in clear)", s.TLS)
	}
	if s.PasswordFile != "" && s.PasswordEnv != "" {
		bad("reports.smtp: set password_file or password_env, not both")
	}
	if (s.PasswordFile != "" || s.PasswordEnv != "") && s.Username == "" {
		bad("reports.smtp.username: is required with a password")
	}
	if s.Timeout < time.Second || s.Timeout > 10*time.Minute {
		bad("reports.smtp.timeout: %s out of range 1s..10m", s.Timeout)
	}
	r := c.Retry
	if r.Attempts < 1 || r.Attempts > 20 {
		bad("reports.retry.attempts: %d out of range 1..20", r.Attempts)
	}
	if r.Initial < 10*time.Millisecond || r.Initial > time.Hour {
		bad("reports.retry.initial: %s out of range 10ms..1h", r.Initial)
	}
	if r.Max < r.Initial || r.Max > 24*time.Hour {
		bad("reports.retry.max: %s out of range %s..24h", r.Max, r.Initial)
	}
	if err := c.Retention.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// backoff is the wait before attempt n+1 (n counts from 1).
func (r Retry) backoff(n int) time.Duration {
	d := r.Initial
	for i := 1; i < n && d < r.Max; i++ {
		d *= 2
	}
	return min(d, r.Max)
}

var zoneRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$`)

// loadZone resolves an IANA zone name ("Local" is refused: a report must
// not depend on the host's setting).
func loadZone(name string) (*time.Location, error) {
	if name == "Local" || name == "" {
		return nil, fmt.Errorf("zone %q is not allowed", name)
	}
	return time.LoadLocation(name)
}
