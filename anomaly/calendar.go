package anomaly

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // IANA zones even on hosts without /usr/share/zoneinfo
)

// Calendar is a place's business hours, in its own time zone.
type Calendar struct {
	TimeZone string   `yaml:"time_zone"` // IANA name, e.g. Europe/Berlin
	Days     []string `yaml:"days"`      // mon..sun; default mon-fri
	// Hours are the open hours of a working day, local time, as
	// comma-separated ranges "08:00-12:30,13:30-19:00"; a range may wrap
	// midnight ("22:00-06:00"). Default "09:00-18:00".
	Hours    string   `yaml:"hours"`
	Holidays []string `yaml:"holidays"` // YYYY-MM-DD, local dates closed all day
}

// calendar is a compiled Calendar.
type calendar struct {
	name     string
	loc      *time.Location
	days     [7]bool // by time.Weekday
	ranges   []minuteRange
	holidays map[int32]bool // yyyymmdd
}

type minuteRange struct{ from, to int } // minutes after local midnight; to may be < from (wraps)

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

var errBadCalendar = errors.New("bad calendar")

func compileCalendar(name string, c Calendar, d *strictDecoder, path string) (*calendar, error) {
	n := len(d.probs)
	cal := &calendar{name: name, holidays: map[int32]bool{}}
	if c.TimeZone == "" {
		d.problem(path+".time_zone", "is required (an IANA zone such as Europe/Berlin)")
	} else if loc, err := time.LoadLocation(c.TimeZone); err != nil || c.TimeZone == "Local" {
		d.problem(path+".time_zone", "%q is not an IANA time zone", c.TimeZone)
	} else {
		cal.loc = loc
	}
	days := c.Days
	if len(days) == 0 {
		days = []string{"mon", "tue", "wed", "thu", "fri"}
	}
	for i, day := range days {
		wd, ok := weekdays[strings.ToLower(day)]
		if !ok {
			d.problem(fmt.Sprintf("%s.days[%d]", path, i), "%q must be one of mon, tue, wed, thu, fri, sat, sun", day)
			continue
		}
		cal.days[wd] = true
	}
	hours := c.Hours
	if hours == "" {
		hours = "09:00-18:00"
	}
	for _, part := range strings.Split(hours, ",") {
		r, ok := parseRange(strings.TrimSpace(part))
		if !ok {
			d.problem(path+".hours", "%q must be HH:MM-HH:MM ranges separated by commas, e.g. 08:00-18:30", part)
			continue
		}
		cal.ranges = append(cal.ranges, r)
	}
	for i, h := range c.Holidays {
		t, err := time.Parse(time.DateOnly, h)
		if err != nil {
			d.problem(fmt.Sprintf("%s.holidays[%d]", path, i), "%q must be a date YYYY-MM-DD", h)
			continue
		}
		cal.holidays[dateKey(t)] = true
	}
	if len(d.probs) > n {
		return nil, errBadCalendar
	}
	return cal, nil
}

func parseRange(s string) (minuteRange, bool) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return minuteRange{}, false
	}
	from, ok1 := parseClock(strings.TrimSpace(a))
	to, ok2 := parseClock(strings.TrimSpace(b))
	if !ok1 || !ok2 || from == to || from == 24*60 {
		return minuteRange{}, false
	}
	return minuteRange{from, to}, true
}

// parseClock parses HH:MM, 00:00..24:00.
func parseClock(s string) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, false
	}
	return hh*60 + mm, true
}

func dateKey(t time.Time) int32 {
	y, m, d := t.Date()
	return int32(y*10000 + int(m)*100 + d)
}

// open reports whether t falls in business hours, judged by the local wall
// clock of the calendar's zone: across a DST change, 08:00 stays 08:00
// local, so it moves by an hour in UTC.
func (c *calendar) open(t time.Time) bool {
	lt := t.In(c.loc)
	today := c.days[lt.Weekday()] && !c.holidays[dateKey(lt)]
	m := lt.Hour()*60 + lt.Minute()
	for _, r := range c.ranges {
		switch {
		case r.from < r.to:
			if today && m >= r.from && m < r.to {
				return true
			}
		case m >= r.from:
			// A range that wraps midnight belongs to the day it starts on.
			if today {
				return true
			}
		case m < r.to:
			prev := lt.AddDate(0, 0, -1)
			if c.days[prev.Weekday()] && !c.holidays[dateKey(prev)] {
				return true
			}
		}
	}
	return false
}

// calendarFor returns the calendar that applies to an action, trying the
// sources in order (requested_by, team), then the default.
func (rs *RuleSet) calendarFor(by []string, team, human string) *calendar {
	for _, src := range by {
		var name string
		switch src {
		case dimRequestedBy:
			name = rs.BusinessHours.Humans[human]
		case dimTeam:
			name = rs.BusinessHours.Teams[team]
		}
		if name != "" {
			return rs.calendars[name]
		}
	}
	if rs.BusinessHours.Default != "" {
		return rs.calendars[rs.BusinessHours.Default]
	}
	return nil
}

// OutOfHours reports whether an action at t by team, requested by human,
// falls outside business hours by the given rule's calendars (requested_by,
// then team, then the default). known is false when no calendar applies.
// Simulators and demos use it to plant actions the rules will see as
// out-of-hours.
func (rs *RuleSet) OutOfHours(team, human string, t time.Time) (out, known bool) {
	by := []string{dimRequestedBy, dimTeam}
	for _, r := range rs.compiled {
		if r.Kind == KindOutOfHours {
			by = r.CalendarBy
			break
		}
	}
	c := rs.calendarFor(by, team, human)
	if c == nil {
		return false, false
	}
	return !c.open(t), true
}
