package reports

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// Week is an ISO 8601 week: weeks start on Monday, and week 1 is the one
// with the year's first Thursday. Its bounds depend on the time zone: a
// team's week runs from Monday 00:00 to the next Monday 00:00 where the
// team is.
type Week struct {
	Year, Num int
}

var weekRE = regexp.MustCompile(`^([0-9]{4})-W([0-9]{2})$`)

// ParseWeek parses "2026-W47".
func ParseWeek(s string) (Week, error) {
	m := weekRE.FindStringSubmatch(s)
	if m == nil {
		return Week{}, fmt.Errorf("reports: week %q: want YYYY-Www, e.g. 2026-W47", s)
	}
	y, _ := strconv.Atoi(m[1])
	n, _ := strconv.Atoi(m[2])
	w := Week{y, n}
	if n < 1 || n > weeksIn(y) {
		return Week{}, fmt.Errorf("reports: week %q: %d has weeks 1..%d", s, y, weeksIn(y))
	}
	return w, nil
}

// weeksIn is 53 when 28 December (always in the year's last week) is in
// week 53, else 52.
func weeksIn(year int) int {
	_, n := time.Date(year, 12, 28, 0, 0, 0, 0, time.UTC).ISOWeek()
	return n
}

func (w Week) String() string { return fmt.Sprintf("%04d-W%02d", w.Year, w.Num) }

// WeekOf returns the ISO week that contains t in loc.
func WeekOf(t time.Time, loc *time.Location) Week {
	y, n := t.In(loc).ISOWeek()
	return Week{y, n}
}

// Bounds returns the week's first instant and the next week's first
// instant, both Monday 00:00 in loc. Built from calendar dates, so a week
// with a daylight-saving change is 167 or 169 hours long.
func (w Week) Bounds(loc *time.Location) (from, to time.Time) {
	jan4 := time.Date(w.Year, 1, 4, 0, 0, 0, 0, time.UTC)
	offset := (int(jan4.Weekday()) + 6) % 7 // days since Monday
	day := 4 - offset + 7*(w.Num-1)
	return time.Date(w.Year, 1, day, 0, 0, 0, 0, loc), time.Date(w.Year, 1, day+7, 0, 0, 0, 0, loc)
}

// Days returns the seven local dates of the week, Monday first.
func (w Week) Days(loc *time.Location) []time.Time {
	from, _ := w.Bounds(loc)
	out := make([]time.Time, 7)
	for i := range out {
		out[i] = time.Date(from.Year(), from.Month(), from.Day()+i, 0, 0, 0, 0, loc)
	}
	return out
}

// Prev returns the week before.
func (w Week) Prev() Week {
	from, _ := w.Bounds(time.UTC)
	return WeekOf(from.AddDate(0, 0, -7), time.UTC)
}

// LastComplete returns the latest week that has ended at t in loc: a
// schedule firing on Monday morning reports the week that just ended.
func LastComplete(t time.Time, loc *time.Location) Week {
	cur := WeekOf(t, loc)
	from, _ := cur.Bounds(loc)
	return WeekOf(from.Add(-time.Nanosecond), loc)
}
