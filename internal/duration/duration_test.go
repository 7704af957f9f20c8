package duration

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		err  string // "" if in is valid
	}{
		{"0", 0, ""},
		{"1ns", time.Nanosecond, ""},
		{"1us", time.Microsecond, ""},
		{"1µs", time.Microsecond, ""},
		{"5ms", 5 * time.Millisecond, ""},
		{"90s", 90 * time.Second, ""},
		{"10m", 10 * time.Minute, ""},
		{"24h", 24 * time.Hour, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"1.5h", 90 * time.Minute, ""},
		{"1d", Day, ""},
		{"30d", 30 * Day, ""},
		{"2w", 14 * Day, ""},
		{"1w2d", 9 * Day, ""},
		{"1d12h", 36 * time.Hour, ""},
		{"1.5d", 36 * time.Hour, ""},
		{"-1d", -Day, ""},
		{"36500d", 36500 * Day, ""},
		{"", 0, "is not a duration"},
		{"soon", 0, "is not a duration"},
		{"10", 0, "is not a duration"},
		{"1d 2h", 0, "is not a duration"},
		{"d", 0, "is not a duration"},
		{"1mo", 0, "months (mo) and years (y) are calendar periods"},
		{"1y", 0, "months (mo) and years (y) are calendar periods"},
		{"1M", 0, "is not a duration"},
		{"200000w", 0, "too long"},
		{"99999999999999999999d", 0, "too long"},
	}
	pattern := regexp.MustCompile(Pattern)
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Fatalf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
				}
				if !pattern.MatchString(tc.in) {
					t.Errorf("Pattern does not match %q", tc.in)
				}
				if back, err := Parse(Format(got)); err != nil || back != got {
					t.Errorf("Format(%v) = %q reads back as %v, %v", got, Format(got), back, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Parse(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
			if tc.err == "is not a duration" && pattern.MatchString(tc.in) {
				t.Errorf("Pattern matches the invalid %q", tc.in)
			}
		})
	}
}

// Every duration Go writes or reads is read the same.
func TestParseAgreesWithGo(t *testing.T) {
	for _, s := range []string{"1h0m0s", "2h45m", "300ms", "-1.5h", "1m30.5s", "0s", "168h"} {
		want, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Parse(s); err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
}

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * Day: "30d", 90 * time.Minute: "1h30m", 10 * time.Minute: "10m",
		90 * time.Second: "1m30s", 36 * time.Hour: "36h", 0: "0s",
	} {
		if got := Format(d); got != want {
			t.Errorf("Format(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestParsePeriod(t *testing.T) {
	cases := []struct {
		in   string
		want Period
		old  bool
		err  string
	}{
		{"30d", Period{Days: 30}, false, ""},
		{"8w", Period{Days: 56}, false, ""},
		{"6mo", Period{Months: 6}, false, ""},
		{"7y", Period{Years: 7}, false, ""},
		{"1y6mo", Period{Years: 1, Months: 6}, false, ""},
		{"1w3d", Period{Days: 10}, false, ""},
		{"6m", Period{Months: 6}, true, ""}, // the previous release's months
		{"", Period{}, false, "is not a period"},
		{"6", Period{}, false, "is not a period"},
		{"1y6m", Period{}, false, "is not a period"}, // never mixed with the new spelling
		{"24h", Period{}, false, "is not a period"},
		{"1.5y", Period{}, false, "is not a period"},
		{"-1d", Period{}, false, "is not a period"},
		{"1mon", Period{}, false, "is not a period"},
		{"100001d", Period{}, false, "too long"},
	}
	pattern := regexp.MustCompile(PeriodPattern)
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, old, err := ParsePeriod(tc.in)
			if tc.err == "" {
				if err != nil || got != tc.want || old != tc.old {
					t.Fatalf("ParsePeriod(%q) = %+v, %v, %v; want %+v, %v", tc.in, got, old, err, tc.want, tc.old)
				}
				if !pattern.MatchString(tc.in) {
					t.Errorf("PeriodPattern does not match %q", tc.in)
				}
				if back, bold, err := ParsePeriod(got.String()); err != nil || bold || back != got {
					t.Errorf("%+v.String() = %q reads back as %+v, %v, %v", got, got.String(), back, bold, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("ParsePeriod(%q) = %+v, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
		})
	}
}

func TestOldSpelling(t *testing.T) {
	got := OldSpelling("reports.retention.tier1", "6m")
	want := "reports.retention.tier1: 6m means months here; write 6mo (m will mean minutes)"
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestPeriodBefore(t *testing.T) {
	now := time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)
	for p, want := range map[Period]time.Time{
		{Years: 1}:  time.Date(2023, 3, 1, 12, 0, 0, 0, time.UTC), // AddDate normalises Feb 29
		{Months: 6}: time.Date(2023, 8, 29, 12, 0, 0, 0, time.UTC),
		{Days: 30}:  time.Date(2024, 1, 30, 12, 0, 0, 0, time.UTC),
	} {
		if got := p.Before(now); !got.Equal(want) {
			t.Errorf("%v before %v = %v, want %v", p, now, got, want)
		}
	}
	if d := (Period{Years: 1, Months: 2, Days: 3}).ApproxDays(); d != 365+60+3 {
		t.Errorf("ApproxDays = %d", d)
	}
}
