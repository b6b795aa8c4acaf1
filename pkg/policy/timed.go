package policy

import (
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // schedules name zones; do not depend on the host's zoneinfo
)

// Schedule is a weekly window in a time zone: on Days, from From to To
// (minutes after midnight, To exclusive; To may be 24:00).
type Schedule struct {
	Days     [7]bool // indexed by time.Weekday
	From, To int
	Loc      *time.Location
}

func (s *Schedule) String() string {
	var days []string
	for d, on := range s.Days {
		if on {
			days = append(days, time.Weekday(d).String()[:3])
		}
	}
	return fmt.Sprintf("%s %02d:%02d-%02d:%02d %s", strings.Join(days, ","), s.From/60, s.From%60, s.To/60, s.To%60, s.Loc)
}

// Active reports whether t falls in the window.
func (s *Schedule) Active(t time.Time) bool {
	lt := t.In(s.Loc)
	m := lt.Hour()*60 + lt.Minute()
	return s.Days[lt.Weekday()] && s.From <= m && m < s.To
}

// Next is the first window edge (start or end) after t.
func (s *Schedule) Next(t time.Time) time.Time {
	lt := t.In(s.Loc)
	for d := 0; d <= 7; d++ {
		day := time.Date(lt.Year(), lt.Month(), lt.Day()+d, 0, 0, 0, 0, s.Loc)
		if !s.Days[day.Weekday()] {
			continue
		}
		for _, m := range []int{s.From, s.To} {
			if edge := day.Add(time.Duration(m) * time.Minute); edge.After(t) {
				return edge
			}
		}
	}
	return time.Time{}
}

var weekdays = map[string]time.Weekday{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

// schedule parses {days: [mon-fri, sat], from: "09:00", to: "18:00", tz: Zone}.
func (v *validator) schedule(path string, raw any) *Schedule {
	m, ok := raw.(map[string]any)
	if !ok {
		v.fail(path, "want {days, from, to, tz}")
		return nil
	}
	s := &Schedule{Loc: time.UTC}
	good := true
	for k := range m {
		if k != "days" && k != "from" && k != "to" && k != "tz" {
			v.fail(path+"."+k, "unknown field %q (a schedule has days, from, to, tz)", k)
			good = false
		}
	}
	days, _ := m["days"].([]any)
	if len(days) == 0 {
		v.fail(path, "missing days, e.g. [mon-fri]")
		good = false
	}
	for i, d := range days {
		ds, _ := d.(string)
		lo, hi, isRange := strings.Cut(strings.ToLower(strings.TrimSpace(ds)), "-")
		a, ok1 := weekdays[lo]
		b, ok2 := a, true
		if isRange {
			b, ok2 = weekdays[hi]
		}
		if !ok1 || !ok2 {
			v.fail(fmt.Sprintf("%s.days[%d]", path, i), "%q is not a day or day range (mon, tue, ..., sun; mon-fri)", d)
			good = false
			continue
		}
		for w := a; ; w = (w + 1) % 7 {
			s.Days[w] = true
			if w == b {
				break
			}
		}
	}
	clock := func(key string) int {
		str, _ := m[key].(string)
		if str == "24:00" && key == "to" {
			return 24 * 60
		}
		t, err := time.Parse("15:04", str)
		if err != nil {
			v.fail(path+"."+key, "%q: want a time like \"09:00\"", m[key])
			good = false
			return 0
		}
		return t.Hour()*60 + t.Minute()
	}
	s.From, s.To = clock("from"), clock("to")
	if good && s.From >= s.To {
		v.fail(path, "from %02d:%02d is not before to %02d:%02d; split a window across midnight into two rules", s.From/60, s.From%60, s.To/60, s.To%60)
		good = false
	}
	if tz, ok := m["tz"]; ok {
		name, _ := tz.(string)
		loc, err := time.LoadLocation(name)
		if err != nil || name == "" || name == "Local" {
			v.fail(path+".tz", "%q is not a time zone name (like Europe/Paris or UTC)", tz)
			good = false
		} else {
			s.Loc = loc
		}
	}
	if !good {
		return nil
	}
	return s
}

// expires parses an RFC 3339 time that must lie in the future.
func (v *validator) expires(path string, raw any, now time.Time) time.Time {
	var t time.Time
	switch x := raw.(type) {
	case time.Time:
		t = x
	case string:
		var err error
		if t, err = time.Parse(time.RFC3339, x); err != nil {
			v.fail(path, "%q: want a time like 2026-12-01T18:00:00Z", x)
			return time.Time{}
		}
	default:
		v.fail(path, "%v: want a time like 2026-12-01T18:00:00Z", raw)
		return time.Time{}
	}
	if !t.After(now) {
		v.fail(path, "%s is in the past: remove the rule", t.Format(time.RFC3339))
		return time.Time{}
	}
	return t
}

// timed reports whether the rule has a time condition.
func (r *Rule) timed() bool { return !r.Expires.IsZero() || r.Schedule != nil }

// ActiveAt reports whether the rule applies at t, and why (for operators).
func (r *Rule) ActiveAt(t time.Time) (bool, string) {
	var why []string
	active := true
	if !r.Expires.IsZero() {
		if t.Before(r.Expires) {
			why = append(why, "until "+r.Expires.Format(time.RFC3339))
		} else {
			active = false
			why = append(why, "expired "+r.Expires.Format(time.RFC3339))
		}
	}
	if r.Schedule != nil {
		if r.Schedule.Active(t) {
			why = append(why, "in schedule "+r.Schedule.String())
		} else {
			active = false
			why = append(why, "outside schedule "+r.Schedule.String())
		}
	}
	return active, strings.Join(why, ", ")
}

// At is the policy in force at t: timed rules that apply are kept, without
// their conditions; the others dropped; rules open to all become plain port
// ranges. The loader compiles only what At returns.
func (p *Policy) At(t time.Time) *Policy {
	q := *p
	q.scoped, q.digest = nil, nil // computed again for the copy
	q.AllowTCP = append([]PortRange(nil), p.AllowTCP...)
	if p.UDP != nil {
		u := *p.UDP
		u.Allow = append([]PortRange(nil), p.UDP.Allow...)
		q.UDP = &u
	}
	q.Open = append([]Rule(nil), p.Open...)
	q.Scoped = nil
	for _, r := range p.Scoped {
		if active, _ := r.ActiveAt(t); !active {
			continue
		}
		r.Expires, r.Schedule = time.Time{}, nil
		switch {
		case r.From != nil:
			q.Scoped = append(q.Scoped, r)
		case r.Proto == ProtoUDP && q.UDP != nil:
			q.UDP.Allow = mergeRanges(append(q.UDP.Allow, r.Ports))
			q.Open = append(q.Open, r)
		case r.Proto == ProtoTCP:
			q.AllowTCP = mergeRanges(append(q.AllowTCP, r.Ports))
			q.Open = append(q.Open, r)
		}
	}
	return &q
}

// NextChange is when a timed rule next starts or stops applying after t;
// zero when no rule is timed.
func (p *Policy) NextChange(t time.Time) time.Time {
	var next time.Time
	consider := func(c time.Time) {
		if c.After(t) && (next.IsZero() || c.Before(next)) {
			next = c
		}
	}
	for _, r := range p.Scoped {
		if !r.Expires.IsZero() {
			consider(r.Expires)
		}
		if r.Schedule != nil {
			consider(r.Schedule.Next(t))
		}
	}
	return next
}

// TimedRules describes each timed rule at t: name, ports and whether and
// why it applies.
func (p *Policy) TimedRules(t time.Time) []string {
	var out []string
	for _, r := range p.Scoped {
		if !r.timed() {
			continue
		}
		active, why := r.ActiveAt(t)
		state := "inactive"
		if active {
			state = "ACTIVE"
		}
		proto := "tcp"
		if r.Proto == ProtoUDP {
			proto = "udp"
		}
		name := r.Name
		from := "all"
		if r.From != nil {
			from = fmt.Sprint(r.From)
		}
		out = append(out, fmt.Sprintf("rule %s: %s %s from %s: %s (%s)", name, proto, r.Ports, from, state, why))
	}
	return out
}
