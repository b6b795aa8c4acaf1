package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// MaxScopedGroups bounds the distinct port sets that source-scoped rules
// produce (each costs the data path an 8 KiB bitmap).
const MaxScopedGroups = 256

// ScopedRule opens Ports to new connections from the sources in From only.
type ScopedRule struct {
	Ports PortRange
	From  []netip.Prefix
}

// scopedRule parses {port: N | ports: "a-b", from: [CIDR, ...]}.
func (v *validator) scopedRule(path string, m map[string]any) (ScopedRule, bool) {
	var r ScopedRule
	ok := true
	for k := range m {
		if k != "port" && k != "ports" && k != "from" {
			v.fail(path+"."+k, "unknown field %q (a rule has port or ports, and from)", k)
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
	from, hasFrom := m["from"].([]any)
	if !hasFrom || len(from) == 0 {
		v.fail(path, "missing from: the sources this rule opens the port to (list of CIDRs)")
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
// the port is open to all, or a scoped rule covers both.
func (p *Policy) AllowsFrom(port uint16, src netip.Addr) bool {
	if p.Allows(port) {
		return true
	}
	for _, r := range p.Scoped {
		if r.Ports.First <= port && port <= r.Ports.Last && Contains(r.From, src) {
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
	Group    []int         // Group[i] is Prefixes[i]'s group
	Groups   [][]PortRange // ports of each group, merged
	Ports    []PortRange   // every port some scoped rule names
}

// ScopedTable flattens the scoped rules; see ScopedTable.
func (p *Policy) ScopedTable() ScopedTable {
	var t ScopedTable
	seen := map[netip.Prefix]bool{}
	for _, r := range p.Scoped {
		t.Ports = append(t.Ports, r.Ports)
		for _, f := range r.From {
			if !seen[f] {
				seen[f] = true
				t.Prefixes = append(t.Prefixes, f)
			}
		}
	}
	t.Ports = mergeRanges(t.Ports)
	sort.Slice(t.Prefixes, func(i, j int) bool { return t.Prefixes[i].String() < t.Prefixes[j].String() })
	index := map[string]int{}
	for _, pf := range t.Prefixes {
		var ports []PortRange
		for _, r := range p.Scoped {
			for _, f := range r.From {
				if f.Bits() <= pf.Bits() && f.Contains(pf.Addr()) {
					ports = append(ports, r.Ports)
					break
				}
			}
		}
		ports = mergeRanges(ports)
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
		parts = append(parts, fmt.Sprint(r.Ports, r.From))
	}
	slices.Sort(parts)
	return strings.Join(parts, ";")
}
