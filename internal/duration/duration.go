// Package duration is the one duration grammar of agentrail's files
// (agentrail.yaml, rules.yaml, registry.yaml): Go's time.ParseDuration
// units (ns, us, ms, s, m, h) plus d (days) and w (weeks), and, for
// calendar periods such as retention tiers, mo (months) and y (years).
// m is always minutes.
//
// A fixed duration (Parse) is a length of time: "90s", "1h30m", "30d",
// "2w", "1.5d". Months and years are not fixed lengths, so Parse refuses
// them. A calendar period (ParsePeriod) counts whole days, weeks, months
// and years: "30d", "8w", "6mo", "7y", "1y6mo"; it is added with
// time.AddDate, so "7y" is seven years whatever the leap days.
//
// It deliberately does not know any field or file: callers name the field
// in their errors and warnings.
package duration

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Day and Week are the fixed lengths of d and w.
const (
	Day  = 24 * time.Hour
	Week = 7 * Day
)

// Grammar is a short description of the fixed-duration syntax for error
// messages.
const Grammar = "a duration like 90s, 10m, 1h30m, 30d or 2w (units ns, us, ms, s, m, h, d, w)"

// PeriodGrammar describes the calendar-period syntax for error messages.
const PeriodGrammar = "a period like 30d, 8w, 6mo or 7y (whole days d, weeks w, months mo, years y)"

// Pattern is a regular expression (RE2 and ECMAScript) that every string
// Parse accepts matches, for JSON Schemas.
const Pattern = `^[+-]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h|d|w))+)$`

// PeriodPattern matches every string ParsePeriod accepts, the old
// spelling of months (6m) included.
const PeriodPattern = `^([0-9]+(y|mo|m|w|d))+$`

var (
	fixedRE = regexp.MustCompile(`^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|mo|m|h|d|w|y)`)
	wholeRE = regexp.MustCompile(`^([0-9]+)(mo|m|y|w|d)`)
)

// Parse parses a fixed duration: time.ParseDuration's syntax plus d (24h)
// and w (7d), which may be combined and fractional ("1d12h", "1.5d").
func Parse(s string) (time.Duration, error) {
	orig := s
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return 0, fmt.Errorf("%q is not %s", orig, Grammar)
	}
	var total time.Duration
	for s != "" {
		m := fixedRE.FindStringSubmatch(s)
		if m == nil {
			return 0, fmt.Errorf("%q is not %s", orig, Grammar)
		}
		num, unit := strings.TrimSuffix(m[0], m[1]), m[1]
		var d time.Duration
		switch unit {
		case "mo", "y":
			return 0, fmt.Errorf("%q: months (mo) and years (y) are calendar periods, not a fixed length; write days (30d, 365d)", orig)
		case "d", "w":
			per := Day
			if unit == "w" {
				per = Week
			}
			if n, err := strconv.ParseInt(num, 10, 64); err == nil {
				// Whole counts exactly, without float rounding.
				if n > math.MaxInt64/int64(per) {
					return 0, fmt.Errorf("%q is too long", orig)
				}
				d = time.Duration(n) * per
				break
			}
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("%q is not %s", orig, Grammar)
			}
			if f *= float64(per); f >= math.MaxInt64 {
				return 0, fmt.Errorf("%q is too long", orig)
			}
			d = time.Duration(f)
		default:
			var err error
			if d, err = time.ParseDuration(m[0]); err != nil {
				return 0, fmt.Errorf("%q is not %s", orig, Grammar)
			}
		}
		if total > math.MaxInt64-d {
			return 0, fmt.Errorf("%q is too long", orig)
		}
		total += d
		s = s[len(m[0]):]
	}
	if neg {
		total = -total
	}
	return total, nil
}

// Format writes d in the grammar, as short as it reads: whole days as
// "30d", else Go's form without trailing zero units ("1h30m", "90s").
func Format(d time.Duration) string {
	if d > 0 && d%Day == 0 {
		return strconv.FormatInt(int64(d/Day), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Period is a calendar span: added with time.AddDate.
type Period struct {
	Years, Months, Days int
}

// maxCount bounds every count in a period (a hundred thousand days is
// about 270 years).
const maxCount = 100_000

// ParsePeriod parses a calendar period: whole counts of y, mo, w and d,
// alone or summed ("1y6mo"). old reports the previous release's spelling
// of months, a count and m alone ("6m"), accepted for one release as
// months; the caller warns with OldSpelling.
func ParsePeriod(s string) (p Period, old bool, err error) {
	if n, ok := strings.CutSuffix(s, "m"); ok && n != "" && strings.Trim(n, "0123456789") == "" {
		c, err := strconv.Atoi(n)
		if err != nil || c > maxCount {
			return Period{}, false, fmt.Errorf("%q is too long", s)
		}
		return Period{Months: c}, true, nil
	}
	if s == "" {
		return Period{}, false, fmt.Errorf("%q is not %s", s, PeriodGrammar)
	}
	for rest := s; rest != ""; {
		m := wholeRE.FindStringSubmatch(rest)
		if m == nil || m[2] == "m" {
			return Period{}, false, fmt.Errorf("%q is not %s", s, PeriodGrammar)
		}
		c, err := strconv.Atoi(m[1])
		if err != nil || c > maxCount {
			return Period{}, false, fmt.Errorf("%q is too long", s)
		}
		switch m[2] {
		case "y":
			p.Years += c
		case "mo":
			p.Months += c
		case "w":
			p.Days += 7 * c
		case "d":
			p.Days += c
		}
		rest = rest[len(m[0]):]
	}
	return p, false, nil
}

// OldSpelling is the warning for an old spelling s of a period in field.
func OldSpelling(field, s string) string {
	n := strings.TrimSuffix(s, "m")
	return fmt.Sprintf("%s: %s means months here; write %smo (m will mean minutes)", field, s, n)
}

// String writes p in the grammar: "1y6mo", "30d", "0d" for zero. Days
// that are whole weeks are still written as days.
func (p Period) String() string {
	var b strings.Builder
	if p.Years != 0 {
		b.WriteString(strconv.Itoa(p.Years) + "y")
	}
	if p.Months != 0 {
		b.WriteString(strconv.Itoa(p.Months) + "mo")
	}
	if p.Days != 0 || b.Len() == 0 {
		b.WriteString(strconv.Itoa(p.Days) + "d")
	}
	return b.String()
}

// Before returns t minus p, in UTC.
func (p Period) Before(t time.Time) time.Time {
	return t.UTC().AddDate(-p.Years, -p.Months, -p.Days)
}

// ApproxDays is p in days, a month counted as 30 and a year as 365, for
// comparing periods and checking ranges.
func (p Period) ApproxDays() int { return 365*p.Years + 30*p.Months + p.Days }
