package audit

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// reach is who an opening lets in.
type reach int

const (
	reachScoped     reach = iota // a rule whose from holds no wide public prefix
	reachAll                     // a rule without from
	reachWide                    // a rule whose from holds a wide public prefix
	reachMonitor                 // a rule in monitor mode: sources outside its from pass too
	reachListening               // tcp.allow_listening, for a port a socket listens on
	reachUnfiltered              // no udp section: every UDP port
)

// opening is one way the policy opens ports: a rule, a listening port
// under allow_listening, or the absence of a udp section.
type opening struct {
	proto Proto
	ports policy.PortRange
	reach reach
	rule  *policy.Rule // nil for reachListening and reachUnfiltered
	wide  netip.Prefix // reachWide: the first wide prefix of its from
	now   bool         // it applies at Now (timed rules may not)
	// listeners are the sockets that open it (reachListening).
	listeners []Listener
}

// internetOpen reports whether any source reaches the opening's ports.
func (o *opening) internetOpen() bool { return o.reach != reachScoped }

func (o *opening) covers(proto Proto, port uint16) bool {
	return o.proto == proto && o.ports.First <= port && port <= o.ports.Last
}

// how says, for a message, how the opening opens its ports.
func (o *opening) how() string {
	switch o.reach {
	case reachAll:
		return "rule " + o.rule.Name + " opens it to all" + timedNote(o.rule)
	case reachWide:
		return fmt.Sprintf("rule %s allows it from %s", o.rule.Name, o.wide) + timedNote(o.rule)
	case reachMonitor:
		return "rule " + o.rule.Name + " is in monitor mode, so sources outside its from pass too" + timedNote(o.rule)
	case reachListening:
		return "tcp.allow_listening opens it to all, as a socket listens on it (" + describeListeners(o.listeners) + ")"
	case reachUnfiltered:
		return "the policy has no udp section, so every UDP port is open"
	}
	return "rule " + o.rule.Name + " opens it to " + prefixes(o.rule.From) + timedNote(o.rule)
}

// timedNote is a timed rule's condition, for messages.
func timedNote(r *policy.Rule) string {
	var parts []string
	if !r.Expires.IsZero() {
		parts = append(parts, "until "+r.Expires.Format(time.RFC3339))
	}
	if r.Schedule != nil {
		parts = append(parts, "on schedule "+r.Schedule.String())
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// openings lists every way the policy opens ports from now on: its rules
// (expired, never-applying and shadowed ones left out: they open nothing
// of their own), the listening ports under allow_listening, and, with no
// udp section, every UDP port.
func (a *auditor) openings() []opening {
	var out []opening
	for i := range a.p.Open {
		r := &a.p.Open[i]
		out = append(out, opening{proto: protoOf(r.Proto), ports: r.Ports, reach: reachAll, rule: r, now: true})
	}
	for i := range a.p.Scoped {
		r := &a.p.Scoped[i]
		if a.dead[r] || a.shadowed[r] {
			continue
		}
		active, _ := r.ActiveAt(a.now)
		o := opening{proto: protoOf(r.Proto), ports: r.Ports, reach: reachScoped, rule: r, now: active}
		switch {
		case r.From == nil:
			o.reach = reachAll
		case r.Monitor:
			o.reach = reachMonitor
		default:
			for _, f := range r.From {
				if a.th.wide(f) {
					o.reach, o.wide = reachWide, f
					break
				}
			}
		}
		out = append(out, o)
	}
	if a.p.AllowListening {
		for _, k := range a.listenerPorts() {
			if k.proto != TCP || a.p.Allows(k.port) || inRanges(a.p.DenyPorts, k.port) {
				continue
			}
			var opens []Listener // the sockets of the users whose listeners open ports
			for _, l := range a.listening[k] {
				if slices.Contains(a.p.ListeningUIDs, l.UID) {
					opens = append(opens, l)
				}
			}
			if len(opens) > 0 {
				out = append(out, opening{proto: TCP, ports: policy.PortRange{First: k.port, Last: k.port},
					reach: reachListening, now: true, listeners: opens})
			}
		}
	}
	if a.p.UDP == nil {
		out = append(out, opening{proto: UDP, ports: policy.PortRange{First: 1, Last: 65535}, reach: reachUnfiltered, now: true})
	}
	return out
}

// portKey is a protocol's port.
type portKey struct {
	proto Proto
	port  uint16
}

func (k portKey) String() string { return string(k.proto) + "/" + strconv.Itoa(int(k.port)) }

func comparePortKey(x, y portKey) int {
	if c := cmp.Compare(x.proto, y.proto); c != 0 {
		return c
	}
	return cmp.Compare(x.port, y.port)
}

func protoOf(p uint8) Proto {
	if p == policy.ProtoUDP {
		return UDP
	}
	return TCP
}

// exposed reports whether a listener can be reached from outside: bound
// to all addresses or to one that is not loopback.
func exposed(l Listener) bool {
	return !l.Addr.IsValid() || !l.Addr.Unmap().IsLoopback()
}

func describeListeners(ls []Listener) string {
	var parts []string
	for _, l := range ls {
		addr := "*" // unknown: counted as all addresses
		if l.Addr.IsValid() {
			addr = l.Addr.String()
		}
		s := fmt.Sprintf("%s uid %d", addr, l.UID)
		if l.Process != "" {
			s += " " + l.Process
		}
		parts = append(parts, s)
	}
	return strings.Join(slices.Compact(parts), ", ")
}

func inRanges(rs []policy.PortRange, port uint16) bool {
	for _, r := range rs {
		if r.First <= port && port <= r.Last {
			return true
		}
	}
	return false
}

// portSet is a set of ports, a bit each.
type portSet [1024]uint64

func (s *portSet) add(r policy.PortRange) {
	for p := uint32(r.First); p <= uint32(r.Last); p++ {
		s[p/64] |= 1 << (p % 64)
	}
}

func (s *portSet) has(p uint16) bool { return s[p/64]&(1<<(p%64)) != 0 }

// holds reports whether every port of r is in s.
func (s *portSet) holds(r policy.PortRange) bool {
	for p := uint32(r.First); p <= uint32(r.Last); p++ {
		if !s.has(uint16(p)) {
			return false
		}
	}
	return true
}

// ranges is s as sorted, merged ranges.
func (s *portSet) ranges() []policy.PortRange {
	var out []policy.PortRange
	for p := uint32(0); p < 65536; p++ {
		if !s.has(uint16(p)) {
			continue
		}
		if n := len(out); n > 0 && uint32(out[n-1].Last)+1 == p {
			out[n-1].Last = uint16(p)
		} else {
			out = append(out, policy.PortRange{First: uint16(p), Last: uint16(p)})
		}
	}
	return out
}

func rangeList(rs []policy.PortRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// yamlRanges writes ranges as a YAML flow list's items: 22, "9000-9002".
func yamlRanges(rs []policy.PortRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = yamlPorts(r)
	}
	return strings.Join(parts, ", ")
}

func yamlPorts(r policy.PortRange) string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return strconv.Quote(r.String())
}

func prefixes(ps []netip.Prefix) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ", ")
}

// section is where a protocol's rules are written.
func section(p Proto) string { return string(p) + ".allow" }

// item is the rule as the allow-list item that says it, in flow style:
// 22, "9000-9002", or {port: 5432, from: ["10.0.0.0/8"], name: "db"}. A
// name holding a slash is one xdpguard gave, so it is left out.
func item(r *policy.Rule) string {
	named := !strings.Contains(r.Name, "/")
	if r.From == nil && !named && !r.Monitor && r.Expires.IsZero() && r.Schedule == nil {
		return yamlPorts(r.Ports)
	}
	var f []string
	if r.Ports.First == r.Ports.Last {
		f = append(f, "port: "+strconv.Itoa(int(r.Ports.First)))
	} else {
		f = append(f, "ports: "+strconv.Quote(r.Ports.String()))
	}
	if r.From != nil {
		quoted := make([]string, len(r.From))
		for i, p := range r.From {
			quoted[i] = strconv.Quote(p.String())
		}
		f = append(f, "from: ["+strings.Join(quoted, ", ")+"]")
	}
	if named {
		f = append(f, "name: "+strconv.Quote(r.Name))
	}
	if r.Monitor {
		f = append(f, "mode: monitor")
	}
	if !r.Expires.IsZero() {
		f = append(f, "expires: "+strconv.Quote(r.Expires.Format(time.RFC3339)))
	}
	if s := r.Schedule; s != nil {
		var days []string
		for d, on := range s.Days {
			if on {
				days = append(days, strings.ToLower(time.Weekday(d).String()[:3]))
			}
		}
		loc := "UTC"
		if s.Loc != nil {
			loc = s.Loc.String()
		}
		f = append(f, fmt.Sprintf("schedule: {days: [%s], from: %q, to: %q, tz: %q}",
			strings.Join(days, ", "), clock(s.From), clock(s.To), loc))
	}
	return "{" + strings.Join(f, ", ") + "}"
}

func clock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }
