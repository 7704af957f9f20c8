package retention

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/agentrail/agentrail/internal/duration"
)

// Age is a calendar span written as a count and a unit in the period
// grammar of internal/duration: "30d", "8w", "6mo", "7y". Months and years
// are calendar months and years, so "7y" keeps exactly seven years whatever
// the leap days. The previous release's "6m" (months) is still read as
// months; the pipeline config warns about it.
type Age struct {
	N    int
	Unit byte // 'd', 'w', 'm' (months, written mo) or 'y'
}

// ParseAge parses "30d", "8w", "6mo", "7y" or a sum of years and months
// ("1y6mo", kept as 18 months) or of weeks and days ("1w3d", 10 days).
func ParseAge(s string) (Age, error) {
	p, _, err := duration.ParsePeriod(s)
	if err != nil {
		return Age{}, fmt.Errorf("not an age: %w", err)
	}
	switch {
	case p.Days != 0 && (p.Years != 0 || p.Months != 0):
		return Age{}, fmt.Errorf("%q mixes days with months or years; write one of them (e.g. 18mo, 400d)", s)
	case p.Months != 0:
		return Age{N: 12*p.Years + p.Months, Unit: 'm'}, nil
	case p.Years != 0:
		return Age{N: p.Years, Unit: 'y'}, nil
	case p.Days%7 == 0 && !strings.Contains(s, "d"):
		return Age{N: p.Days / 7, Unit: 'w'}, nil
	}
	return Age{N: p.Days, Unit: 'd'}, nil
}

func (a Age) String() string {
	switch a.Unit {
	case 0:
		return "0d"
	case 'm':
		return fmt.Sprintf("%dmo", a.N)
	}
	return fmt.Sprintf("%d%c", a.N, a.Unit)
}

// period is a as a calendar period.
func (a Age) period() duration.Period {
	switch a.Unit {
	case 'w':
		return duration.Period{Days: 7 * a.N}
	case 'm':
		return duration.Period{Months: a.N}
	case 'y':
		return duration.Period{Years: a.N}
	default:
		return duration.Period{Days: a.N}
	}
}

// Before returns t minus a, in UTC.
func (a Age) Before(t time.Time) time.Time { return a.period().Before(t) }

// Days approximates a in days, for comparing ages.
func (a Age) Days() int { return a.period().ApproxDays() }

// UnmarshalYAML decodes "30d" and the like.
func (a *Age) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := ParseAge(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*a = v
	return nil
}

// MarshalYAML encodes a as "30d".
func (a Age) MarshalYAML() (any, error) { return a.String(), nil }

// Config is the retention policy: how long each tier's events are kept,
// how long tier 1 keeps its full fields, and when the scheduled job runs.
type Config struct {
	Tier1 Age `yaml:"tier1"` // default 30d
	Tier2 Age `yaml:"tier2"` // default 1y
	Tier3 Age `yaml:"tier3"` // default 7y
	// Tier1FullFields is how long tier 1 events keep rationale, parameters,
	// context, error message and approval comment; after it they keep
	// metadata only. Default 7d.
	Tier1FullFields Age `yaml:"tier1_full_fields"`
	// Schedule is when `agentrail report serve` enforces the policy: a cron
	// expression, optionally prefixed with CRON_TZ=Zone; "off" disables the
	// scheduled job. Default "CRON_TZ=UTC 30 3 * * *" (daily 03:30 UTC).
	Schedule string `yaml:"schedule"`
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Tier1.Unit == 0 {
		c.Tier1 = Age{30, 'd'}
	}
	if c.Tier2.Unit == 0 {
		c.Tier2 = Age{1, 'y'}
	}
	if c.Tier3.Unit == 0 {
		c.Tier3 = Age{7, 'y'}
	}
	if c.Tier1FullFields.Unit == 0 {
		c.Tier1FullFields = Age{7, 'd'}
	}
	if c.Schedule == "" {
		c.Schedule = "CRON_TZ=UTC 30 3 * * *"
	}
}

// Validate checks the policy without I/O; call Defaults first.
func (c *Config) Validate() error {
	var errs []error
	check := func(field string, a Age, minDays, maxDays int) {
		if d := a.Days(); d < minDays || d > maxDays {
			errs = append(errs, fmt.Errorf("reports.retention.%s: %s out of range %dd..%dy", field, a, minDays, maxDays/365))
		}
	}
	check("tier1", c.Tier1, 7, 100*365)
	check("tier2", c.Tier2, 7, 100*365)
	check("tier3", c.Tier3, 7, 100*365)
	check("tier1_full_fields", c.Tier1FullFields, 1, 100*365)
	if c.Tier2.Days() < c.Tier1.Days() {
		errs = append(errs, fmt.Errorf("reports.retention.tier2: %s is shorter than tier1 %s; higher tiers are kept at least as long", c.Tier2, c.Tier1))
	}
	if c.Tier3.Days() < c.Tier2.Days() {
		errs = append(errs, fmt.Errorf("reports.retention.tier3: %s is shorter than tier2 %s; higher tiers are kept at least as long", c.Tier3, c.Tier2))
	}
	if c.Tier1FullFields.Days() > c.Tier1.Days() {
		errs = append(errs, fmt.Errorf("reports.retention.tier1_full_fields: %s is longer than tier1 %s", c.Tier1FullFields, c.Tier1))
	}
	if c.Schedule != "off" {
		if _, err := cron.ParseStandard(c.Schedule); err != nil {
			errs = append(errs, fmt.Errorf("reports.retention.schedule: %q is not a cron expression or \"off\": %v", c.Schedule, err))
		}
	}
	return errors.Join(errs...)
}

// Age returns the retention of tier (1..3).
func (c *Config) Age(tier int) Age {
	switch tier {
	case 1:
		return c.Tier1
	case 2:
		return c.Tier2
	default:
		return c.Tier3
	}
}

// Policy is the policy in one line, as runs record it.
func (c *Config) Policy() string {
	return fmt.Sprintf("tier1=%s tier2=%s tier3=%s tier1_full_fields=%s", c.Tier1, c.Tier2, c.Tier3, c.Tier1FullFields)
}
