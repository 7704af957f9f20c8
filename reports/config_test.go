package reports

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestConfig(t *testing.T) {
	full := `
timezone: Europe/Berlin
schedule: "30 7 * * MON"
catch_up: 12h
unused_lookback_days: 45
repeated_denials: 5
top: 8
max_findings: 100
smtp:
  host: smtp.acme.example
  port: 587
  from: "agentrail <reports@acme.example>"
  username: reports@acme.example
  password_file: /run/secrets/smtp
  tls: starttls
  ca_file: /etc/agentrail/smtp-ca.pem
  timeout: 20s
retry:
  attempts: 5
  initial: 1m
  max: 30m
retention:
  tier1: 45d
  tier2: 2y
  tier3: 10y
  tier1_full_fields: 14d
  schedule: "CRON_TZ=Europe/Berlin 0 2 * * *"
`
	decode := func(s string) (Config, error) {
		var c Config
		dec := yaml.NewDecoder(bytes.NewReader([]byte(s)))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			return c, err
		}
		c.Defaults()
		return c, c.Validate()
	}
	c, err := decode(full)
	if err != nil {
		t.Fatal(err)
	}
	if c.CatchUp != 12*time.Hour || c.Retry.Initial != time.Minute || c.Retention.Tier3.String() != "10y" || c.SMTP.Timeout != 20*time.Second {
		t.Errorf("decoded %+v", c)
	}
	var d Config
	d.Defaults()
	if err := d.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	if d.Retention.Policy() != "tier1=30d tier2=1y tier3=7y tier1_full_fields=7d" || d.SMTP.Port != 587 || d.Retry.backoff(3) != 2*time.Minute || d.Retry.backoff(10) != 10*time.Minute {
		t.Errorf("defaults: %+v", d)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", "smtp:\n  passwrd: x\n", "field passwrd not found"},
		{"password in the file is not a key", "smtp:\n  password: hunter2\n", "field password not found"},
		{"bad zone", "timezone: Europe/Berlin!\n", "reports.timezone"},
		{"cron with zone", "schedule: \"CRON_TZ=UTC 0 8 * * MON\"\n", "reports.schedule"},
		{"lookback", "unused_lookback_days: 400\n", "reports.unused_lookback_days: 400 out of range 1..366"},
		{"clear text", "smtp:\n  tls: none\n", "reports.smtp.tls"},
		{"password without user", "smtp:\n  password_env: SMTP_PW\n", "reports.smtp.username: is required"},
		{"retry", "retry:\n  attempts: 50\n", "reports.retry.attempts: 50 out of range 1..20"},
		{"retention age", "retention:\n  tier2: forever\n", "not an age"},
		{"retention order", "retention:\n  tier2: 10d\n", "reports.retention.tier2: 10d is shorter than tier1 30d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// Every key of the reports section is listed in deployments/agentrail.yaml
// (set, or commented out where it has no default), so the shipped file is
// the whole reference.
func TestDeploymentConfigListsEveryKey(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "deployments", "agentrail.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The reports: section, up to the next top-level key.
	text := string(raw)
	start := strings.Index(text, "\nreports:\n")
	if start < 0 {
		t.Fatal("no reports: section in deployments/agentrail.yaml")
	}
	section := text[start+1:]
	if end := regexp.MustCompile(`(?m)^[a-z_]+:`).FindAllStringIndex(section, 2); len(end) == 2 {
		section = section[:end[1][0]]
	}
	var missing []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if key == "" || key == "-" {
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}) {
				walk(prefix+key+".", f.Type)
				continue
			}
			// "key:" at the start of a line, or after "# " / "or " in a comment.
			if !regexp.MustCompile(`(?m)(^\s*#?\s*|# |or )` + regexp.QuoteMeta(key) + `:`).MatchString(section) {
				missing = append(missing, prefix+key)
			}
		}
	}
	walk("reports.", reflect.TypeOf(Config{}))
	if len(missing) > 0 {
		t.Errorf("deployments/agentrail.yaml lacks %v", missing)
	}
}
