package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// MaxScopedGroups bounds the distinct port sets that source-scoped rules
// produce (each costs the data path an 8 KiB bitmap).
const MaxScopedGroups = 256

// Protocols a rule may name.
const (
	ProtoTCP = 6
	ProtoUDP = 17
)

// ScopedRule opens Ports of Proto (TCP: to new connections) to the sources
// in From only.
type ScopedRule struct {
	Proto uint8
	Ports PortRange
	From  []netip.Prefix // nil: open to all (a named or timed rule)
	Name  string
	// Expires and Schedule limit when the rule applies; see Policy.At.
	Expires  time.Time
	Schedule *Schedule
}

// allowList parses an allow list of ports, ranges and scoped rules: the
// ports open to all are returned merged, the scoped rules appended to p.
func (v *validator) allowList(path string, items []any, proto uint8, p *Policy) []PortRange {
	var open []PortRange
	for i, item := range items {
		at := fmt.Sprintf("%s[%d]", path, i)
		if m, isRule := item.(map[string]any); isRule {
			r, ok := v.scopedRule(at, m)
			switch {
			case !ok:
			case r.From == nil && !r.timed():
				open = append(open, r.Ports) // just a port, named
			default:
				r.Proto = proto
				p.Scoped = append(p.Scoped, r)
			}
			continue
		}
		if r, ok := v.portRange(at, item); ok {
			open = append(open, r)
		}
	}
	return mergeRanges(open)
}

// scopedRule parses {port: N | ports: "a-b", from: [CIDR, ...]}.
func (v *validator) scopedRule(path string, m map[string]any) (ScopedRule, bool) {
	var r ScopedRule
	ok := true
	for k := range m {
		switch k {
		case "port", "ports", "from", "name", "expires", "schedule":
		default:
			v.fail(path+"."+k, "unknown field %q (a rule has port or ports, and optionally from, name, expires, schedule)", k)
			ok = false
		}
	}
	if n, has := m["name"]; has {
		r.Name, _ = n.(string)
		if r.Name == "" {
			v.fail(path+".name", "want a non-empty string")
			ok = false
		}
	}
	if e, has := m["expires"]; has {
		before := len(v.errs)
		r.Expires = v.expires(path+".expires", e, time.Now())
		ok = ok && len(v.errs) == before
	}
	if sc, has := m["schedule"]; has {
		if r.Schedule = v.schedule(path+".schedule", sc); r.Schedule == nil {
			ok = false
		}
	}
	port, hasPort := m["port"]
	ports, hasPorts := m["ports"]
	switch {
	case hasPort == hasPorts:
		v.fail(path, "give exactly one of port and ports")
		ok = false
	case hasPort:
		if s, isStr := port.(string); isStr && strings.Contains(s, "-") {
			v.fail(path+".port", "%q is a range: use ports", s)
			ok = false
		} else if pr, good := v.portRange(path+".port", port); good {
			r.Ports = pr
		} else {
			ok = false
		}
	default:
		if pr, good := v.portRange(path+".ports", ports); good {
			r.Ports = pr
		} else {
			ok = false
		}
	}
	rawFrom, hasFrom := m["from"]
	if !hasFrom {
		return r, ok // open to all
	}
	from, isList := rawFrom.([]any)
	if !isList || len(from) == 0 {
		v.fail(path+".from", "want a non-empty list of CIDRs (omit from to open the port to all)")
		return r, false
	}
	var strs []string
	for i, f := range from {
		s, isStr := f.(string)
		if !isStr {
			v.fail(fmt.Sprintf("%s.from[%d]", path, i), "want a CIDR string, got %v", f)
			ok = false
			continue
		}
		strs = append(strs, s)
	}
	before := len(v.errs)
	r.From = v.sourceList(path+".from", strs)
	return r, ok && len(v.errs) == before
}

// AllowsFrom reports whether a SYN from src to port opens a connection:
// the port is open to all, or a scoped TCP rule covers both.
func (p *Policy) AllowsFrom(port uint16, src netip.Addr) bool {
	return p.Allows(port) || p.scopedAllows(ProtoTCP, port, src)
}

// AllowsUDPFrom reports whether udp.allow opens port to src. It ignores the
// reply range.
func (p *Policy) AllowsUDPFrom(port uint16, src netip.Addr) bool {
	if p.UDP == nil {
		return true
	}
	for _, r := range p.UDP.Allow {
		if r.First <= port && port <= r.Last {
			return true
		}
	}
	return p.scopedAllows(ProtoUDP, port, src)
}

func (p *Policy) scopedAllows(proto uint8, port uint16, src netip.Addr) bool {
	for _, r := range p.Scoped {
		if r.Proto == proto && r.Ports.First <= port && port <= r.Ports.Last && Contains(r.From, src) {
			return true
		}
	}
	return false
}

// ScopedTable is the data path's form of the scoped rules: every prefix
// named by a rule maps to a group, and a group is the set of ports open to
// a source whose longest matching prefix is that one. Prefixes that contain
// one address are nested, so the longest match's group holds the union of
// every rule that covers the address.
type ScopedTable struct {
	Prefixes []netip.Prefix
	Group    []int            // Group[i] is Prefixes[i]'s group
	Groups   [][2][]PortRange // TCP and UDP ports of each group, merged
	Ports    [2][]PortRange   // every TCP and UDP port some scoped rule names
}

// protoIndex is a protocol's half in ScopedTable: 0 TCP, 1 UDP.
func protoIndex(proto uint8) int {
	if proto == ProtoUDP {
		return 1
	}
	return 0
}

// ScopedTable flattens the scoped rules; see ScopedTable.
func (p *Policy) ScopedTable() ScopedTable {
	var t ScopedTable
	seen := map[netip.Prefix]bool{}
	for _, r := range p.Scoped {
		i := protoIndex(r.Proto)
		t.Ports[i] = append(t.Ports[i], r.Ports)
		for _, f := range r.From {
			if !seen[f] {
				seen[f] = true
				t.Prefixes = append(t.Prefixes, f)
			}
		}
	}
	t.Ports[0], t.Ports[1] = mergeRanges(t.Ports[0]), mergeRanges(t.Ports[1])
	sort.Slice(t.Prefixes, func(i, j int) bool { return t.Prefixes[i].String() < t.Prefixes[j].String() })
	index := map[string]int{}
	for _, pf := range t.Prefixes {
		var ports [2][]PortRange
		for _, r := range p.Scoped {
			for _, f := range r.From {
				if f.Bits() <= pf.Bits() && f.Contains(pf.Addr()) {
					i := protoIndex(r.Proto)
					ports[i] = append(ports[i], r.Ports)
					break
				}
			}
		}
		ports[0], ports[1] = mergeRanges(ports[0]), mergeRanges(ports[1])
		key := fmt.Sprint(ports)
		g, ok := index[key]
		if !ok {
			g = len(t.Groups)
			index[key] = g
			t.Groups = append(t.Groups, ports)
		}
		t.Group = append(t.Group, g)
	}
	return t
}

func (p *Policy) scopedDigest() string {
	var parts []string
	for _, r := range p.Scoped {
		parts = append(parts, fmt.Sprint(r.Proto, r.Ports, r.From, r.Name, r.Expires.UnixNano(), r.Schedule))
	}
	slices.Sort(parts)
	return strings.Join(parts, ";")
}
