package audit

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// placeholder stands for the operator's networks in a fix: it does not
// parse, so a fix pasted as it is cannot open anything by mistake.
const placeholder = `"<clients' CIDR>"`

// auditor holds what the checks share.
type auditor struct {
	in        Input
	p         *policy.Policy
	now       time.Time
	th        Thresholds
	sensitive []SensitivePort
	ephemeral policy.PortRange
	// listening holds the exposed listeners (outside loopback) by port.
	listening map[portKey][]Listener
	// dead holds the scoped rules that apply no more (expired_rule,
	// never_applies); shadowed those that open nothing of their own.
	dead, shadowed map[*policy.Rule]bool
	ops            []opening
	zombie         map[*opening]bool
	// reported holds the ports a sensitive_port_open finding names.
	reported map[portKey]bool
	out      []Finding
}

func newAuditor(in Input) *auditor {
	a := &auditor{
		in: in, p: in.Policy, now: in.Now, th: in.Thresholds, sensitive: in.Sensitive, ephemeral: in.Ephemeral,
		listening: map[portKey][]Listener{},
		dead:      map[*policy.Rule]bool{}, shadowed: map[*policy.Rule]bool{},
		zombie: map[*opening]bool{}, reported: map[portKey]bool{},
	}
	if a.now.IsZero() {
		a.now = time.Now()
	}
	if a.th.UnusedFor <= 0 {
		a.th.UnusedFor = defaultUnusedFor
	}
	if a.th.WideIPv4Bits <= 0 {
		a.th.WideIPv4Bits = defaultWideIPv4Bits
	}
	if a.th.WideIPv6Bits <= 0 {
		a.th.WideIPv6Bits = defaultWideIPv6Bits
	}
	if a.sensitive == nil {
		a.sensitive = DefaultSensitivePorts
	}
	a.sensitive = slices.Clone(a.sensitive)
	slices.SortStableFunc(a.sensitive, func(x, y SensitivePort) int {
		return comparePortKey(portKey{x.Proto, x.Port}, portKey{y.Proto, y.Port})
	})
	if a.ephemeral.First == 0 {
		a.ephemeral = defaultEphemeral
	}
	ls := slices.Clone(in.Listeners)
	slices.SortFunc(ls, func(x, y Listener) int {
		if c := comparePortKey(portKey{x.Proto, x.Port}, portKey{y.Proto, y.Port}); c != 0 {
			return c
		}
		if c := x.Addr.Compare(y.Addr); c != 0 {
			return c
		}
		if x.UID != y.UID {
			return int(x.UID) - int(y.UID)
		}
		return strings.Compare(x.Process, y.Process)
	})
	for _, l := range slices.Compact(ls) {
		if exposed(l) && (l.Proto == TCP || l.Proto == UDP) {
			k := portKey{l.Proto, l.Port}
			a.listening[k] = append(a.listening[k], l)
		}
	}
	return a
}

func (a *auditor) add(kind Kind, sev Severity, subject, msg, fix string) {
	a.out = append(a.out, Finding{Kind: kind, Severity: sev, Subject: subject, Message: msg, Fix: fix})
}

// listed reports whether the sockets of proto are all known.
func (a *auditor) listed(p Proto) bool {
	if p == UDP {
		return a.in.ListedUDP
	}
	return a.in.ListedTCP
}

// listenerPorts lists the ports with exposed listeners, sorted.
func (a *auditor) listenerPorts() []portKey {
	keys := make([]portKey, 0, len(a.listening))
	for k := range a.listening {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, comparePortKey)
	return keys
}

// listenersIn are the exposed listeners on ports of r.
func (a *auditor) listenersIn(p Proto, r policy.PortRange) []Listener {
	var out []Listener
	for _, k := range a.listenerPorts() {
		if k.proto == p && r.First <= k.port && k.port <= r.Last {
			out = append(out, a.listening[k]...)
		}
	}
	return out
}

func (a *auditor) sensitiveIn(p Proto, r policy.PortRange) []SensitivePort {
	var out []SensitivePort
	for _, s := range a.sensitive {
		if s.Proto == p && r.First <= s.Port && s.Port <= r.Last {
			out = append(out, s)
		}
	}
	return out
}

// openToAll is the ports of proto the policy file opens to all without a
// time condition (tcp.allow, udp.allow).
func (a *auditor) openToAll(p Proto) *portSet {
	var s portSet
	if p == TCP {
		for _, r := range a.p.AllowTCP {
			s.add(r)
		}
	} else if a.p.UDP != nil {
		for _, r := range a.p.UDP.Allow {
			s.add(r)
		}
	}
	return &s
}

// monitor: monitor_mode and monitor_rule.
func (a *auditor) monitor() {
	if a.p.Monitor {
		a.add(kindMonitorMode, Medium, "mode",
			"the policy is in monitor mode: xdpguard drops nothing, every packet passes and is counted as what "+
				"enforcing would drop; the other findings are what enforcing this policy would fix",
			"when xdpguard_monitored_drops_total shows only traffic you mean to drop, delete the line `mode: monitor` "+
				"(or write `mode: enforce`)")
	}
	for i := range a.p.Scoped {
		r := &a.p.Scoped[i]
		if !r.Monitor || a.dead[r] || a.shadowed[r] {
			continue
		}
		a.add(kindMonitorRule, Low, r.Name,
			fmt.Sprintf("rule %s is in monitor mode: it drops nothing, so %s/%s is open to all, its from (%s) only counted",
				r.Name, protoOf(r.Proto), r.Ports, prefixes(r.From)),
			fmt.Sprintf("when xdpguard_rule_packets_total{rule=%q,verdict=\"monitored\"} stays at zero for legitimate "+
				"traffic, remove `mode: monitor` from `%s` in %s", r.Name, item(r), section(protoOf(r.Proto))))
	}
}

func (a *auditor) expired(r *policy.Rule) bool {
	return !r.Expires.IsZero() && !a.now.Before(r.Expires)
}

// deadRules: expired_rule and never_applies.
func (a *auditor) deadRules() {
	deny := sortedPrefixes(a.p.Deny)
	for i := range a.p.Scoped {
		r := &a.p.Scoped[i]
		sec := section(protoOf(r.Proto))
		switch {
		case a.expired(r):
			a.dead[r] = true
			a.add(kindExpiredRule, Medium, r.Name,
				fmt.Sprintf("rule %s (%s/%s) expired at %s: it no longer applies, and the file no longer validates "+
					"(a policy may not hold an expired rule): `xdpguard check`, the next reload and the next start "+
					"refuse it until the rule is removed",
					r.Name, protoOf(r.Proto), r.Ports, r.Expires.Format(time.RFC3339)),
				fmt.Sprintf("delete `%s` from %s", item(r), sec))
		case r.Schedule != nil:
			if why := a.neverApplies(r); why != "" {
				a.dead[r] = true
				a.add(kindNeverApplies, Low, r.Name,
					fmt.Sprintf("rule %s (%s/%s) %s: it will never apply", r.Name, protoOf(r.Proto), r.Ports, why),
					fmt.Sprintf("delete `%s` from %s, or give it a schedule window before its expires "+
						"(or a later expires)", item(r), sec))
			}
		}
		if a.dead[r] || r.From == nil {
			continue
		}
		var in []string
		for _, f := range r.From {
			d, ok := holder(deny, f)
			if !ok {
				in = nil
				break
			}
			in = append(in, fmt.Sprintf("%s in %s", f, d))
		}
		if in != nil {
			a.dead[r] = true
			a.add(kindNeverApplies, Low, r.Name,
				fmt.Sprintf("every source rule %s (%s/%s) opens to is inside sources.deny (%s), which drops "+
					"them before any rule: it admits nothing", r.Name, protoOf(r.Proto), r.Ports, strings.Join(in, "; ")),
				fmt.Sprintf("delete `%s` from %s, or take its sources out of sources.deny", item(r), sec))
		}
	}
}

// neverApplies says why r's schedule has no window left ("" if it has
// one). A parsed policy always has days and from before to; a policy
// built in code may not.
func (a *auditor) neverApplies(r *policy.Rule) string {
	s := r.Schedule
	if !slices.Contains(s.Days[:], true) {
		return "has a schedule with no days"
	}
	if s.From < 0 || s.To > 24*60 || s.From >= s.To {
		return fmt.Sprintf("has a schedule window %s-%s that is empty", clock(s.From), clock(s.To))
	}
	if r.Expires.IsZero() {
		return ""
	}
	loc := s.Loc
	if loc == nil {
		loc = time.UTC
	}
	lt := a.now.In(loc)
	for d := 0; d <= 7; d++ {
		day := time.Date(lt.Year(), lt.Month(), lt.Day()+d, 0, 0, 0, 0, loc)
		if !s.Days[day.Weekday()] {
			continue
		}
		start := day.Add(time.Duration(s.From) * time.Minute)
		end := day.Add(time.Duration(s.To) * time.Minute)
		if !end.After(a.now) {
			continue
		}
		if start.Before(a.now) {
			start = a.now
		}
		if start.Before(r.Expires) {
			return ""
		}
		return fmt.Sprintf("expires at %s, before its schedule (%s) next opens at %s",
			r.Expires.Format(time.RFC3339), s, start.Format(time.RFC3339))
	}
	return "has a schedule that never opens" // not reached: a valid window recurs weekly
}

// shadowedRules: rules with from or a time condition whose ports are all open
// to all already.
func (a *auditor) shadowedRules() {
	open := [2]*portSet{a.openToAll(TCP), a.openToAll(UDP)}
	for i := range a.p.Scoped {
		r := &a.p.Scoped[i]
		p := protoOf(r.Proto)
		set := open[0]
		if p == UDP {
			set = open[1]
		}
		if a.dead[r] || !set.holds(r.Ports) {
			continue
		}
		a.shadowed[r] = true
		var by []string
		for j := range a.p.Open {
			o := &a.p.Open[j]
			if protoOf(o.Proto) == p && o.Ports.First <= r.Ports.Last && r.Ports.First <= o.Ports.Last {
				by = append(by, "`"+item(o)+"`")
			}
		}
		a.add(kindShadowedRule, Low, r.Name,
			fmt.Sprintf("rule %s (%s/%s) names only ports %s already opens to all (%s): it opens nothing more, "+
				"and its counters never move", r.Name, p, r.Ports, section(p), strings.Join(by, ", ")),
			fmt.Sprintf("delete `%s` from %s; or, to restrict the port to its sources, remove %s from %s",
				item(r), section(p), strings.Join(by, ", "), section(p)))
	}
}

// zombies: ranges a rule opens now with nothing listening on any of
// their ports.
func (a *auditor) zombies() {
	type group struct {
		key   string
		proto Proto
		ports policy.PortRange
		sev   Severity
		hows  []string
		items []string
	}
	var groups []*group
	byKey := map[string]*group{}
	for i := range a.ops {
		o := &a.ops[i]
		if !o.now || o.rule == nil || !a.listed(o.proto) || len(a.listenersIn(o.proto, o.ports)) > 0 {
			continue
		}
		a.zombie[o] = true
		sev := Low
		if o.internetOpen() {
			sev = Medium
			if len(a.sensitiveIn(o.proto, o.ports)) > 0 {
				sev = High
			}
		}
		key := string(o.proto) + "/" + o.ports.String()
		g := byKey[key]
		if g == nil {
			g = &group{key: key, proto: o.proto, ports: o.ports}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.sev = max(g.sev, sev)
		g.hows = append(g.hows, o.how())
		g.items = append(g.items, "`"+item(o.rule)+"`")
	}
	for _, g := range groups {
		msg := fmt.Sprintf("nothing listens on %s outside loopback, yet %s", g.key, strings.Join(g.hows, "; "))
		if g.sev >= Medium {
			msg += ": whatever listens there next is reachable from the whole internet"
		}
		var names []string
		for _, s := range a.sensitiveIn(g.proto, g.ports) {
			names = append(names, fmt.Sprintf("%d (%s)", s.Port, s.Name))
		}
		if len(names) > 0 {
			msg += "; it holds the sensitive " + strings.Join(names, ", ")
		}
		a.add(kindZombiePort, g.sev, g.key, msg,
			fmt.Sprintf("delete %s from %s; if the port is forwarded (DNAT) to a container or a VM rather than "+
				"served here, ignore this", strings.Join(slices.Compact(g.items), ", "), section(g.proto)))
	}
}

// sensitivePorts: sensitive ports open to the whole internet.
func (a *auditor) sensitivePorts() {
	seen := map[portKey]bool{}
	for _, s := range a.sensitive {
		k := portKey{s.Proto, s.Port}
		if seen[k] {
			continue
		}
		seen[k] = true
		listeners := a.listening[k]
		var ops []*opening
		allZombie := true
		for i := range a.ops {
			o := &a.ops[i]
			if !o.covers(s.Proto, s.Port) || !o.internetOpen() {
				continue
			}
			if o.reach == reachUnfiltered && len(listeners) == 0 {
				continue // udp_unfiltered says it; nothing listens here
			}
			ops = append(ops, o)
			allZombie = allZombie && a.zombie[o]
		}
		if len(ops) == 0 || allZombie {
			continue // closed, or a zombie_port finding covers it
		}
		a.reported[k] = true
		var hows, fixes []string
		for _, o := range ops {
			hows = append(hows, o.how())
			fixes = append(fixes, a.scopeFix(o, s))
		}
		msg := fmt.Sprintf("%s (%s: %s) is open to the whole internet: %s", k, s.Name, s.Why, strings.Join(hows, "; "))
		switch {
		case len(listeners) > 0:
			msg += "; listening: " + describeListeners(listeners)
		case a.listed(s.Proto):
			msg += "; nothing listens on it now"
		}
		a.add(kindSensitivePortOpen, s.Severity, k.String(), msg, strings.Join(slices.Compact(fixes), "; "))
	}
}

// scopeFix says how to stop o opening s's port to all.
func (a *auditor) scopeFix(o *opening, s SensitivePort) string {
	port := strconv.Itoa(int(s.Port))
	sec := section(s.Proto)
	scoped := fmt.Sprintf("{port: %s, from: [%s]}", port, placeholder)
	switch o.reach {
	case reachAll:
		if o.rule.Ports.First == o.rule.Ports.Last {
			return fmt.Sprintf("in %s, replace `%s` with `%s` (the networks that need %s), or delete it and bind %s to loopback",
				sec, item(o.rule), scoped, s.Name, s.Name)
		}
		var rest []string
		if o.rule.Ports.First < s.Port {
			rest = append(rest, yamlPorts(policy.PortRange{First: o.rule.Ports.First, Last: s.Port - 1}))
		}
		if s.Port < o.rule.Ports.Last {
			rest = append(rest, yamlPorts(policy.PortRange{First: s.Port + 1, Last: o.rule.Ports.Last}))
		}
		return fmt.Sprintf("in %s, split `%s` around %s (%s), and add `%s` if anything needs %s",
			sec, item(o.rule), port, strings.Join(rest, ", "), scoped, s.Name)
	case reachWide:
		return fmt.Sprintf("in %s, narrow the from of `%s`: replace %s with the networks that need %s",
			sec, item(o.rule), o.wide, s.Name)
	case reachMonitor:
		return fmt.Sprintf("remove `mode: monitor` from `%s` in %s once xdpguard_rule_packets_total{rule=%q,verdict=\"monitored\"} "+
			"stays at zero for legitimate traffic", item(o.rule), sec, o.rule.Name)
	case reachListening:
		return fmt.Sprintf("add %s to tcp.deny_ports (`deny_ports: [%s]`) and bind %s to loopback, or add `%s` to tcp.allow",
			port, yamlRanges(withPort(a.p.DenyPorts, s.Port)), s.Name, scoped)
	case reachUnfiltered:
		return fmt.Sprintf("add a udp section that leaves %s closed: `udp: {allow: [<the UDP ports to open>]}` "+
			"(replies to this host's own queries still arrive), or bind %s to loopback", port, s.Name)
	}
	return ""
}

// withPort is rs with port added, merged.
func withPort(rs []policy.PortRange, port uint16) []policy.PortRange {
	var s portSet
	for _, r := range rs {
		s.add(r)
	}
	s.add(policy.PortRange{First: port, Last: port})
	return s.ranges()
}

// closedListeners: sockets listening outside loopback on ports no rule
// opens to anyone.
func (a *auditor) closedListeners() {
	for _, k := range a.listenerPorts() {
		if k.proto == UDP && a.p.UDP == nil {
			continue // udp_unfiltered
		}
		if a.opened(k) {
			continue
		}
		if k.proto == TCP && a.p.AllowListening && inRanges(a.p.DenyPorts, k.port) {
			continue // closed on purpose
		}
		ls := a.listening[k]
		sec := section(k.proto)
		port := strconv.Itoa(int(k.port))
		msg := fmt.Sprintf("%s has listeners (%s) but no rule opens it to any source: the service is unreachable "+
			"from outside this host; intended?", k, describeListeners(ls))
		fix := fmt.Sprintf("if it should be reachable, add `{port: %s, from: [%s]}` (or `%s`, open to all) to %s; "+
			"if not, bind it to 127.0.0.1 or ::1", port, placeholder, port, sec)
		sev := Low
		if k.proto == TCP && a.p.AllowListening {
			var others []string
			for _, l := range ls {
				if !slices.Contains(a.p.ListeningUIDs, l.UID) {
					others = append(others, strconv.FormatUint(uint64(l.UID), 10))
				}
			}
			others = slices.Compact(others)
			sev = Medium
			msg = fmt.Sprintf("%s has listeners (%s), but tcp.allow_listening opens only the sockets of "+
				"tcp.listening_users (uids %s), and no rule opens it: the service is unreachable from outside this host",
				k, describeListeners(ls), uidList(a.p.ListeningUIDs))
			fix = fmt.Sprintf("to open it, add uid %s to tcp.listening_users (`listening_users: [%s]`), or add `%s` to %s; "+
				"if it is meant to stay closed, add %s to tcp.deny_ports or bind it to loopback",
				strings.Join(others, ", "), listeningUsersFix(a.p.ListeningUIDs, others), port, sec, port)
		}
		a.add(kindClosedListener, sev, k.String(), msg, fix)
	}
}

func uidList(uids []uint32) string {
	parts := make([]string, len(uids))
	for i, u := range uids {
		parts[i] = strconv.FormatUint(uint64(u), 10)
	}
	return strings.Join(parts, ", ")
}

// listeningUsersFix is tcp.listening_users with more uids (root, implied,
// left out).
func listeningUsersFix(have []uint32, more []string) string {
	var out []string
	for _, u := range have {
		if u != 0 {
			out = append(out, strconv.FormatUint(uint64(u), 10))
		}
	}
	return strings.Join(append(out, more...), ", ")
}

// opened reports whether some rule (timed or not), a listening port, the
// reply range or the absence of a udp section opens k to some source.
func (a *auditor) opened(k portKey) bool {
	for i := range a.ops {
		if a.ops[i].covers(k.proto, k.port) {
			return true
		}
	}
	if k.proto == TCP {
		return a.p.Allows(k.port) // the port of a shadowed rule
	}
	u := a.p.UDP
	if u == nil {
		return true
	}
	if inRanges(u.Allow, k.port) {
		return true
	}
	replies := u.Replies // First 0: none
	if u.RepliesAuto {
		replies = a.ephemeral
	}
	return replies.First != 0 && replies.First <= k.port && k.port <= replies.Last
}

// allowListening: scope_bypassed and listening_unguarded.
func (a *auditor) allowListening() {
	if !a.p.AllowListening {
		return
	}
	var allowed, denied, byListener portSet
	for _, r := range a.p.AllowTCP {
		allowed.add(r)
	}
	for _, r := range a.p.DenyPorts {
		denied.add(r)
	}
	for i := range a.ops {
		if o := &a.ops[i]; o.reach == reachListening {
			byListener.add(o.ports)
		}
	}
	var unguarded portSet
	var sensitiveNames, scopedNames []string
	for i := range a.ops {
		o := &a.ops[i]
		if o.proto != TCP || o.reach != reachScoped {
			continue // the others are open to the whole internet already
		}
		// The ports of a rule with from that a listener opens, or would
		// open, to all.
		added := false
		for p := uint32(o.ports.First); p <= uint32(o.ports.Last); p++ {
			port := uint16(p)
			if allowed.has(port) || denied.has(port) {
				continue
			}
			if !byListener.has(port) {
				unguarded.add(policy.PortRange{First: port, Last: port})
				added = true
				continue
			}
			k := portKey{TCP, port}
			if a.reported[k] {
				continue // sensitive_port_open names it, with the same fix
			}
			a.reported[k] = true
			a.add(kindScopeBypassed, Medium, k.String(),
				fmt.Sprintf("rule %s opens %s only to %s, but a socket listens on it (%s) and tcp.allow_listening "+
					"opens every listening port to all: the rule's from restricts nothing",
					o.rule.Name, k, prefixes(o.rule.From), describeListeners(a.listening[k])),
				fmt.Sprintf("add %d to tcp.deny_ports (`deny_ports: [%s]`): the rule still opens it to its sources",
					port, yamlRanges(withPort(a.p.DenyPorts, port))))
		}
		if added {
			scopedNames = append(scopedNames, fmt.Sprintf("%s (rule %s)", o.ports, o.rule.Name))
		}
	}
	for _, s := range a.sensitive {
		if s.Proto != TCP || allowed.has(s.Port) || denied.has(s.Port) || byListener.has(s.Port) {
			continue
		}
		unguarded.add(policy.PortRange{First: s.Port, Last: s.Port})
		sensitiveNames = append(sensitiveNames, fmt.Sprintf("%d (%s)", s.Port, s.Name))
	}
	rs := unguarded.ranges()
	if len(rs) == 0 {
		return
	}
	var what []string
	if len(sensitiveNames) > 0 {
		what = append(what, "the sensitive ports "+strings.Join(slices.Compact(sensitiveNames), ", "))
	}
	if len(scopedNames) > 0 {
		what = append(what, "the ports of rules with from "+strings.Join(slices.Compact(scopedNames), ", "))
	}
	all := denied
	for _, r := range rs {
		all.add(r)
	}
	a.add(kindListeningUnguarded, Low, "tcp/"+rangeList(rs),
		"tcp.allow_listening opens to all any port a socket of tcp.listening_users listens on outside loopback, and "+
			"tcp.deny_ports does not hold "+strings.Join(what, ", nor ")+": the day a service listens there, it is open to all",
		fmt.Sprintf("write `deny_ports: [%s]` in the tcp section", yamlRanges(all.ranges())))
}

// unlimited: internet-open TCP ports without ratelimit.syn.
func (a *auditor) unlimited() {
	if a.p.SYN != nil {
		return
	}
	var s portSet
	for i := range a.ops {
		if o := &a.ops[i]; o.proto == TCP && o.internetOpen() {
			s.add(o.ports)
		}
	}
	rs := s.ranges()
	if len(rs) == 0 {
		return
	}
	msg := fmt.Sprintf("tcp/%s: open to the whole internet, and ratelimit.syn is not set: any source may open "+
		"connections as fast as it sends SYNs, and none is ever banned", rangeList(rs))
	if a.p.SYNTotal != nil {
		msg += " (ratelimit.syn_total limits each port for all sources together: one flooding source starves the others)"
	}
	a.add(kindUnlimitedOpenPort, Medium, "tcp/"+rangeList(rs), msg,
		"add `ratelimit: {syn: {rate: 100, burst: 200}}` (SYNs per second per source: an IPv4 address, an IPv6 /64; "+
			"raise it for clients behind a NAT), and `ban: 10m` in syn to drop a source over its rate for a while")
}

// udpUnfiltered: no udp section.
func (a *auditor) udpUnfiltered() {
	if a.p.UDP != nil {
		return
	}
	var ports portSet
	var ls []Listener
	for _, k := range a.listenerPorts() {
		if k.proto == UDP {
			ports.add(policy.PortRange{First: k.port, Last: k.port})
			ls = append(ls, a.listening[k]...)
		}
	}
	fix := "add a udp section listing what to open: `udp: {allow: [<the UDP ports to open>]}` " +
		"(replies to this host's own queries, DNS and NTP, still arrive: replies: auto)"
	switch {
	case len(ls) > 0:
		rs := ports.ranges()
		a.add(kindUDPUnfiltered, Medium, "udp",
			fmt.Sprintf("the policy has no udp section, so xdpguard passes every datagram: the sockets on udp/%s listen "+
				"outside loopback (%s) and are reachable from the whole internet", rangeList(rs), describeListeners(ls)),
			fmt.Sprintf("add a udp section listing only what must be reachable, e.g. `udp: {allow: [%s]}` "+
				"with a from on what only some networks need (replies to this host's own queries still arrive: replies: auto)",
				yamlRanges(rs)))
	case !a.in.ListedUDP:
		a.add(kindUDPUnfiltered, Low, "udp",
			"the policy has no udp section, so xdpguard passes every datagram: whatever listens on UDP is reachable "+
				"from the whole internet (the UDP sockets were not listed)", fix)
	}
}

// wideTrust: sources.trust entries that are wide public ranges.
func (a *auditor) wideTrust() {
	for _, t := range a.p.Trust {
		if !a.th.wide(t) {
			continue
		}
		bits := a.th.WideIPv4Bits
		if t.Addr().Is6() {
			bits = a.th.WideIPv6Bits
		}
		sev := Medium
		if t.Bits() == 0 {
			sev = High
		}
		where := "sources.trust"
		fix := fmt.Sprintf("in sources.trust, replace %q with the addresses that need the exemption "+
			"(load-balancer health checks, monitoring: a /32 or /128 each)", t.String())
		if !slices.Contains(a.p.TrustInline, t) {
			var files []string
			for _, l := range a.p.TrustLists {
				files = append(files, l.Path)
			}
			where = "a trust list (" + strings.Join(files, ", ") + ")"
			fix = fmt.Sprintf("remove %s from the trust list that holds it (%s), keeping only the addresses that "+
				"need the exemption", t, strings.Join(files, ", "))
		}
		a.add(kindWideTrust, sev, t.String(),
			fmt.Sprintf("%s holds %s, a public range wider than /%d: its sources meet no rate limit and no ban",
				where, t, bits), fix)
	}
}

// unused: rules nothing was counted under for UnusedFor.
func (a *auditor) unused() {
	u := a.in.Usage
	if u.Since.IsZero() {
		return
	}
	type rule struct {
		name  string
		items []string
		sec   string
	}
	var rules []*rule
	byName := map[string]*rule{}
	consider := func(r *policy.Rule) {
		if a.dead[r] || a.shadowed[r] {
			return
		}
		x := byName[r.Name]
		if x == nil {
			x = &rule{name: r.Name, sec: section(protoOf(r.Proto))}
			byName[r.Name] = x
			rules = append(rules, x)
		}
		x.items = append(x.items, "`"+item(r)+"`")
	}
	for i := range a.p.Open {
		consider(&a.p.Open[i])
	}
	for i := range a.p.Scoped {
		consider(&a.p.Scoped[i])
	}
	for _, r := range rules {
		start := u.Since
		if f := u.FirstSeen[r.name]; f.After(start) {
			start = f
		}
		observed := a.now.Sub(start)
		if observed < a.th.UnusedFor {
			continue
		}
		last := u.LastHit[r.name]
		if !last.IsZero() && a.now.Sub(last) < a.th.UnusedFor {
			continue
		}
		msg := fmt.Sprintf("no packet was counted under rule %s in the %d days its counters were observed (since %s)",
			r.name, days(observed), start.UTC().Format(time.DateOnly))
		if !last.IsZero() {
			msg = fmt.Sprintf("rule %s last counted a packet %d days ago (%s), and none since",
				r.name, days(a.now.Sub(last)), last.UTC().Format(time.DateOnly))
		}
		a.add(kindUnusedRule, Low, r.name, msg,
			fmt.Sprintf("if nothing needs it, delete %s from %s", strings.Join(r.items, ", "), r.sec))
	}
}

func days(d time.Duration) int { return int(d / (24 * time.Hour)) }
