package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// maxScopedGroups bounds the distinct port sets that source-scoped rules
// produce (each costs the data path an 8 KiB bitmap).
const maxScopedGroups = 256

// Protocols a rule may name.
const (
	ProtoTCP = 6
	ProtoUDP = 17
)

// Rule is one item of an allow list: it opens Ports of Proto (TCP: to new
// connections) to the sources in From, or to all when From is nil.
type Rule struct {
	Proto uint8
	Ports PortRange
	From  []netip.Prefix // nil: open to all
	// Name labels the rule's counters: the operator's name, or one made
	// from the rule (defaultRuleName). Rules may share a name, and then
	// their counters.
	Name string
	// Monitor (mode: monitor on a rule with from): SYNs or datagrams from
	// other sources pass, counted as what the rule would drop.
	Monitor bool
	// SynProxy (syn_proxy, TCP only): whether the data path answers the
	// rule's SYNs with cookies.
	SynProxy SynProxyMode
	// Expires and Schedule limit when the rule applies; see Policy.At.
	Expires  time.Time
	Schedule *Schedule
}

// allowList parses an allow list of ports, ranges and rules: the ports open
// to all are returned merged and their rules appended to p.Open; rules
// with from or a time condition are appended to p.Scoped.
func (v *validator) allowList(path string, items []any, proto uint8, p *Policy) []PortRange {
	var open []PortRange
	for i, item := range items {
		at := fmt.Sprintf("%s[%d]", path, i)
		var r Rule
		if m, isRule := item.(map[string]any); isRule {
			var ok bool
			if r, ok = v.scopedRule(at, m); !ok {
				continue
			}
		} else if pr, ok := v.portRange(at, item); ok {
			r.Ports = pr
		} else {
			continue
		}
		r.Proto = proto
		if r.SynProxy != SynProxyOff && proto != ProtoTCP {
			v.fail(at+".syn_proxy", "SYN cookies are TCP's: a udp.allow rule cannot have syn_proxy")
			continue
		}
		if r.Name == "" {
			r.Name = defaultRuleName(r)
		}
		if r.From == nil && !r.timed() {
			open = append(open, r.Ports)
			p.Open = append(p.Open, r)
			continue
		}
		p.Scoped = append(p.Scoped, r)
	}
	return mergeRanges(open)
}

// scopedRule parses {port: N | ports: "a-b", from: [CIDR, ...]}.
func (v *validator) scopedRule(path string, m map[string]any) (Rule, bool) {
	var r Rule
	ok := true
	for k := range m {
		switch k {
		case "port", "ports", "from", "name", "mode", "expires", "schedule", "syn_proxy":
		default:
			v.fail(path+"."+k, "unknown field %q (a rule has port or ports, and optionally from, name, mode, expires, schedule, syn_proxy)", k)
			ok = false
		}
	}
	if n, has := m["name"]; has {
		r.Name, _ = n.(string)
		if err := checkRuleName(r.Name); err != nil {
			v.fail(path+".name", "%v", err)
			ok = false
		}
	}
	if mode, has := m["mode"]; has {
		switch mode {
		case "enforce":
		case "monitor":
			r.Monitor = true
			if _, hasFrom := m["from"]; !hasFrom {
				v.fail(path+".mode", "monitor needs from: a rule open to all drops nothing to monitor "+
					"(to try restricting a port, give it from and mode: monitor)")
				ok = false
			}
		default:
			v.fail(path+".mode", "%v: want enforce or monitor", mode)
			ok = false
		}
	}
	if sp, has := m["syn_proxy"]; has {
		var good bool
		if r.SynProxy, good = v.synProxyMode(path+".syn_proxy", sp); !good {
			ok = false
		} else if r.Monitor && r.SynProxy != SynProxyOff {
			v.fail(path+".syn_proxy", "a rule in mode: monitor passes the SYNs it would drop; proxying them is not monitoring")
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
		if r.Proto == proto && r.Ports.First <= port && port <= r.Ports.Last && contains(r.From, src) {
			return true
		}
	}
	return false
}

// MonitorRule is the first monitor-mode rule of proto that names port: a
// SYN or datagram to port that no rule opens to its source passes, counted
// as this rule's would-be drop. Nil when none does.
func (p *Policy) MonitorRule(proto uint8, port uint16) *Rule {
	for i, r := range p.Scoped {
		if r.Monitor && r.Proto == proto && r.Ports.First <= port && port <= r.Ports.Last {
			return &p.Scoped[i]
		}
	}
	return nil
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
	// Rules says, for each group, which rule a TCP or UDP port is
	// counted under: the first in the file that opens it to the group.
	Rules [][2][]RuleRange
	Ports [2][]PortRange // every TCP and UDP port some scoped rule names
	// Monitor holds the TCP and UDP ports of monitor-mode rules, each
	// under the first such rule naming it.
	Monitor [2][]RuleRange
}

// protoIndex is a protocol's half in ScopedTable: 0 TCP, 1 UDP.
func protoIndex(proto uint8) int {
	if proto == ProtoUDP {
		return 1
	}
	return 0
}

// ScopedTable flattens the scoped rules; see ScopedTable. O(n log n) in
// the number of from entries: each prefix looks up its own ancestors (at
// most 33 or 129 of them) among the rules' prefixes, instead of testing
// every rule's every prefix (20,000 entries took 8 s that way). The table
// is computed once per policy and shared; callers must not change it.
func (p *Policy) ScopedTable() ScopedTable {
	if p.scoped == nil {
		t := p.scopedTable()
		p.scoped = &t
	}
	return *p.scoped
}

func (p *Policy) scopedTable() ScopedTable {
	var t ScopedTable
	byPrefix := map[netip.Prefix][]int{} // prefix -> the rules naming it, in file order
	var monitor [2][]RuleRange
	for ri, r := range p.Scoped {
		i := protoIndex(r.Proto)
		t.Ports[i] = append(t.Ports[i], r.Ports)
		if r.Monitor {
			monitor[i] = append(monitor[i], RuleRange{r.Ports, r.Name})
		}
		for _, f := range r.From {
			f = f.Masked()
			rules, seen := byPrefix[f]
			if !seen {
				t.Prefixes = append(t.Prefixes, f)
			}
			if len(rules) == 0 || rules[len(rules)-1] != ri {
				byPrefix[f] = append(rules, ri)
			}
		}
	}
	t.Ports[0], t.Ports[1] = mergeRanges(t.Ports[0]), mergeRanges(t.Ports[1])
	t.Monitor = [2][]RuleRange{firstWins(monitor[0]), firstWins(monitor[1])}
	sort.Slice(t.Prefixes, func(i, j int) bool { return comparePrefix(t.Prefixes[i], t.Prefixes[j]) < 0 })
	index := map[string]int{}
	var covering []int
	for _, pf := range t.Prefixes {
		// The rules whose from contains pf: those naming pf or one of its
		// ancestors, each once, in file order.
		covering = covering[:0]
		for bits := pf.Bits(); bits >= 0; bits-- {
			covering = append(covering, byPrefix[netip.PrefixFrom(pf.Addr(), bits).Masked()]...)
		}
		slices.Sort(covering)
		covering = slices.Compact(covering)
		var rules [2][]RuleRange
		for _, ri := range covering {
			r := p.Scoped[ri]
			i := protoIndex(r.Proto)
			rules[i] = append(rules[i], RuleRange{r.Ports, r.Name})
		}
		rules = [2][]RuleRange{firstWins(rules[0]), firstWins(rules[1])}
		// Prefixes share a group when they open the same ports under the
		// same rules (so counters stay exact).
		key := fmt.Sprint(rules)
		g, ok := index[key]
		if !ok {
			g = len(t.Groups)
			index[key] = g
			var ports [2][]PortRange
			for i := range rules {
				for _, rr := range rules[i] {
					ports[i] = append(ports[i], rr.Ports)
				}
				ports[i] = mergeRanges(ports[i])
			}
			t.Groups = append(t.Groups, ports)
			t.Rules = append(t.Rules, rules)
		}
		t.Group = append(t.Group, g)
	}
	return t
}

// comparePrefix orders prefixes by address, then length: a stable order
// for the tables Go builds (and cheaper than comparing their strings).
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func (p *Policy) scopedDigest() string {
	var parts []string
	for _, r := range p.Scoped {
		parts = append(parts, fmt.Sprint(r.Proto, r.Ports, r.From, r.Name, r.Monitor, r.Expires.UnixNano(), r.Schedule))
	}
	slices.Sort(parts)
	return strings.Join(parts, ";")
}
