package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxExamples bounds the sources a SourceChange names: a list of a million
// entries may change by as many.
const maxExamples = 10

// Change is what moving from one policy to another changes: who reaches
// which port, what is only counted, the timed rules, the limits and
// settings, the deny and trust sources, the list files. It is computed from
// what the policies mean, not from their text: reordered rules, a range
// written as single ports, an address written as a /32 or rules renamed
// change nothing. Every section is a list (empty, never null, in JSON).
type Change struct {
	// Ports are the ports opened to all sources, or no longer open to
	// all: tcp.allow and udp.allow, and with no udp section every UDP
	// port (0-65535).
	Ports []PortChange `json:"ports"`
	// Scoped are the ports that some sources now reach, or no longer,
	// through rules with from (ports whose change is the same for all are
	// in Ports). An address's change is that of the longest Prefix
	// holding it; an address no Prefix holds has none.
	Scoped []ScopeChange `json:"scoped"`
	// Monitor are the ports a monitor-mode rule now names, or no longer.
	Monitor []MonitorChange `json:"monitor"`
	// Timed are the timed rules (expires, schedule) added, removed or
	// changed, as written; what they open at the time compared is in the
	// sections above.
	Timed []TimedChange `json:"timed"`
	// Limits are ratelimit.syn, ratelimit.syn_total, icmp.echo,
	// ratelimit.syn.ban and ratelimit.syn.max_sources, each old → new.
	Limits []SettingChange `json:"limits"`
	// Settings are mode, tcp.allow_listening, tcp.deny_ports,
	// tcp.listening_users, udp, udp.replies and the crowdsec section.
	Settings []SettingChange `json:"settings"`
	// Deny and Trust compare the sources denied and trusted (the inline
	// entries and the lists' together, as the data path has them).
	Deny  SourceChange `json:"deny"`
	Trust SourceChange `json:"trust"`
	// Lists are the deny and trust list files added, removed, or giving
	// another number of entries.
	Lists []ListChange `json:"lists"`
}

// Ports is a range of ports of one protocol.
type Ports struct {
	Proto string `json:"proto"` // tcp or udp
	First uint16 `json:"first"`
	Last  uint16 `json:"last"`
}

func (p Ports) String() string { return p.Proto + " " + PortRange{p.First, p.Last}.String() }

func (p Ports) count() int { return int(p.Last) - int(p.First) + 1 }

// PortChange is a range of ports opened to all or closed to all.
type PortChange struct {
	Ports
	Change string `json:"change"` // opened or closed
}

func (c PortChange) String() string { return c.Ports.String() + " " + c.Change + " to all" }

// ScopeChange is what changes for the sources in Prefix (but those of a
// longer prefix with an item of its own): the ports they now reach and
// those they no longer reach. Inside is the wider prefix whose item this
// one overrides, if any: "unchanged" says that, unlike Inside's sources,
// these see no change.
type ScopeChange struct {
	Prefix netip.Prefix  `json:"prefix"`
	Inside *netip.Prefix `json:"inside,omitempty"`
	Opened []Ports       `json:"opened"`
	Closed []Ports       `json:"closed"`
}

func (c ScopeChange) String() string {
	s := c.Prefix.String()
	if c.Inside != nil {
		s += " (inside " + c.Inside.String() + ")"
	}
	var parts []string
	if len(c.Opened) > 0 {
		parts = append(parts, "now reaches "+joinPorts(c.Opened))
	}
	if len(c.Closed) > 0 {
		parts = append(parts, "no longer reaches "+joinPorts(c.Closed))
	}
	if len(parts) == 0 {
		return s + ": unchanged"
	}
	return s + " " + strings.Join(parts, "; ")
}

// MonitorChange is a range of ports a monitor-mode rule now names
// ("monitored": a SYN or datagram no rule admits passes, counted as that
// rule's would-be drop) or no longer names ("enforced": it is dropped).
// Rule is the rule that names them (in the new policy, or the old).
type MonitorChange struct {
	Ports
	Rule   string `json:"rule"`
	Change string `json:"change"` // monitored or enforced
}

func (c MonitorChange) String() string {
	if c.Change == "monitored" {
		return fmt.Sprintf("%s now monitored (rule %s): what no rule admits passes, counted", c.Ports, c.Rule)
	}
	return fmt.Sprintf("%s no longer monitored (was rule %s): what no rule admits is dropped", c.Ports, c.Rule)
}

// TimedRule is the timed rules that share a condition, a mode and a from
// list, their ports together (so splitting a range into rules, or
// renaming them, changes nothing).
type TimedRule struct {
	Names    []string       `json:"names"`
	Ports    []Ports        `json:"ports"`
	From     []netip.Prefix `json:"from,omitempty"` // absent: all sources
	Monitor  bool           `json:"monitor,omitempty"`
	Expires  *time.Time     `json:"expires,omitempty"`
	Schedule string         `json:"schedule,omitempty"`
	// Active says whether they apply at the time compared.
	Active bool `json:"active"`
}

func (r TimedRule) String() string {
	from := "all"
	if len(r.From) > 0 {
		var ps []string
		for i, p := range r.From {
			if i == 3 {
				ps = append(ps, fmt.Sprintf("+%d more", len(r.From)-3))
				break
			}
			ps = append(ps, p.String())
		}
		from = strings.Join(ps, ", ")
	}
	s := fmt.Sprintf("%s: %s from %s", strings.Join(r.Names, ", "), joinPorts(r.Ports), from)
	if r.Monitor {
		s += ", mode monitor"
	}
	if r.Expires != nil {
		s += ", until " + r.Expires.Format(time.RFC3339)
	}
	if r.Schedule != "" {
		s += ", schedule " + r.Schedule
	}
	if r.Active {
		return s + " (active)"
	}
	return s + " (inactive)"
}

// TimedChange is a timed rule added (New), removed (Old) or changed (both).
type TimedChange struct {
	Change string     `json:"change"` // added, removed or changed
	Old    *TimedRule `json:"old,omitempty"`
	New    *TimedRule `json:"new,omitempty"`
}

func (c TimedChange) String() string {
	switch {
	case c.Old == nil:
		return "timed rule added: " + c.New.String()
	case c.New == nil:
		return "timed rule removed: " + c.Old.String()
	}
	return "timed rule changed: " + c.Old.String() + " → " + c.New.String()
}

// SettingChange is one setting's value before and after, as the policy
// file says it ("none" when absent).
type SettingChange struct {
	Key string `json:"key"`
	Old string `json:"old"`
	New string `json:"new"`
}

func (c SettingChange) String() string { return c.Key + ": " + c.Old + " → " + c.New }

// SourceChange compares two source lists entry by entry: Old and New are
// their sizes, Added and Removed count the entries of one not in the
// other (a list narrowed from 10.0.0.0/8 to 10.1.0.0/16 adds one and
// removes one), with the first maxExamples of each.
type SourceChange struct {
	Old             int            `json:"old"`
	New             int            `json:"new"`
	Added           int            `json:"added"`
	Removed         int            `json:"removed"`
	AddedExamples   []netip.Prefix `json:"added_examples"`
	RemovedExamples []netip.Prefix `json:"removed_examples"`
}

// Empty reports whether the lists hold the same entries.
func (c SourceChange) Empty() bool { return c.Added == 0 && c.Removed == 0 }

func (c SourceChange) String() string {
	s := fmt.Sprintf("+%d -%d entries (%d → %d)", c.Added, c.Removed, c.Old, c.New)
	examples := func(verb string, ps []netip.Prefix, n int) {
		if n == 0 {
			return
		}
		strs := make([]string, len(ps))
		for i, p := range ps {
			strs[i] = p.String()
		}
		s += "; " + verb + " " + strings.Join(strs, ", ")
		if n > len(ps) {
			s += fmt.Sprintf(" and %d more", n-len(ps))
		}
	}
	examples("added", c.AddedExamples, c.Added)
	examples("removed", c.RemovedExamples, c.Removed)
	return s
}

// ListChange is a list file added, removed, or giving another number of
// entries ("changed"; a change of its entries is in Deny or Trust).
type ListChange struct {
	List       string `json:"list"` // deny or trust
	File       string `json:"file"`
	Change     string `json:"change"` // added, removed or changed
	OldEntries int    `json:"old_entries"`
	NewEntries int    `json:"new_entries"`
}

func (c ListChange) String() string {
	switch c.Change {
	case "added":
		return fmt.Sprintf("%s list %s added (%d entries)", c.List, c.File, c.NewEntries)
	case "removed":
		return fmt.Sprintf("%s list %s removed (%d entries)", c.List, c.File, c.OldEntries)
	}
	return fmt.Sprintf("%s list %s: %d → %d entries", c.List, c.File, c.OldEntries, c.NewEntries)
}

// Diff is what changes from one policy to another, each evaluated at t:
// what they open is what they put in force then (At: the timed rules that
// apply), and Timed compares their timed rules as written. Diff of two
// policies in force (InForce, or WithListening for the listening ports)
// gives the change of a switch; policies with equal digests give a Change
// whose only entries can be in Lists and the crowdsec settings, which the
// digest leaves out. O(n) in the deny and trust entries, O(n log n) in the
// rules' from entries.
func Diff(from, to *Policy, t time.Time) Change {
	a, b := from.At(t), to.At(t)
	ea, eb := exposureOf(a), exposureOf(b)
	c := Change{
		Ports:    diffPorts(ea, eb),
		Scoped:   diffScoped(ea, eb),
		Monitor:  diffMonitor(ea, eb),
		Timed:    diffTimed(from, to, t),
		Limits:   diffLimits(from, to),
		Settings: diffSettings(from, to),
		Deny:     diffSources(from.Deny, to.Deny),
		Trust:    diffSources(from.Trust, to.Trust),
		Lists:    append(diffLists("deny", from.DenyLists, to.DenyLists), diffLists("trust", from.TrustLists, to.TrustLists)...),
	}
	c.fill()
	return c
}

// fill makes every list non-nil, for JSON.
func (c *Change) fill() {
	nonNil := func(ps *[]Ports) {
		if *ps == nil {
			*ps = []Ports{}
		}
	}
	for i := range c.Scoped {
		nonNil(&c.Scoped[i].Opened)
		nonNil(&c.Scoped[i].Closed)
	}
	if c.Ports == nil {
		c.Ports = []PortChange{}
	}
	if c.Scoped == nil {
		c.Scoped = []ScopeChange{}
	}
	if c.Monitor == nil {
		c.Monitor = []MonitorChange{}
	}
	if c.Timed == nil {
		c.Timed = []TimedChange{}
	}
	if c.Limits == nil {
		c.Limits = []SettingChange{}
	}
	if c.Settings == nil {
		c.Settings = []SettingChange{}
	}
	if c.Lists == nil {
		c.Lists = []ListChange{}
	}
	for _, s := range []*SourceChange{&c.Deny, &c.Trust} {
		if s.AddedExamples == nil {
			s.AddedExamples = []netip.Prefix{}
		}
		if s.RemovedExamples == nil {
			s.RemovedExamples = []netip.Prefix{}
		}
	}
}

// Empty reports whether nothing changes.
func (c Change) Empty() bool {
	return len(c.Ports)+len(c.Scoped)+len(c.Monitor)+len(c.Timed)+len(c.Limits)+len(c.Settings)+len(c.Lists) == 0 &&
		c.Deny.Empty() && c.Trust.Empty()
}

// Lines describes every change, one a line, exposure first.
func (c Change) Lines() []string {
	var out []string
	add := func(s fmt.Stringer) { out = append(out, s.String()) }
	for _, x := range c.Ports {
		add(x)
	}
	for _, x := range c.Scoped {
		add(x)
	}
	for _, x := range c.Monitor {
		add(x)
	}
	for _, x := range c.Timed {
		add(x)
	}
	for _, x := range c.Limits {
		add(x)
	}
	for _, x := range c.Settings {
		add(x)
	}
	if !c.Deny.Empty() {
		out = append(out, "sources.deny: "+c.Deny.String())
	}
	if !c.Trust.Empty() {
		out = append(out, "sources.trust: "+c.Trust.String())
	}
	for _, x := range c.Lists {
		add(x)
	}
	return out
}

// Summary is the change in one line: "+2 ports, -1 port, 3 sources denied
// more, limits changed"; "no change" when there is none.
func (c Change) Summary() string {
	var parts []string
	say := func(n int, s string) {
		if n > 0 {
			parts = append(parts, s)
		}
	}
	opened, closed := 0, 0
	for _, p := range c.Ports {
		if p.Change == "opened" {
			opened += p.count()
		} else {
			closed += p.count()
		}
	}
	say(opened, "+"+plural(opened, "port"))
	say(closed, "-"+plural(closed, "port"))
	say(len(c.Scoped), "reach changed for "+plural(len(c.Scoped), "prefix"))
	monitored, enforced := 0, 0
	for _, m := range c.Monitor {
		if m.Change == "monitored" {
			monitored += m.count()
		} else {
			enforced += m.count()
		}
	}
	say(monitored, plural(monitored, "port")+" monitored")
	say(enforced, plural(enforced, "port")+" no longer monitored")
	timed := map[string]int{}
	for _, t := range c.Timed {
		timed[t.Change]++
	}
	for _, k := range []string{"added", "removed", "changed"} {
		say(timed[k], plural(timed[k], "timed rule")+" "+k)
	}
	say(len(c.Limits), "limits changed")
	var keys []string
	for _, s := range c.Settings {
		if s.Key == "mode" {
			parts = append(parts, "mode "+s.New)
			continue
		}
		if k, _, _ := strings.Cut(s.Key, "."); k == "crowdsec" {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
			continue
		}
		keys = append(keys, s.Key)
	}
	say(len(keys), strings.Join(keys, ", ")+" changed")
	say(c.Deny.Added, plural(c.Deny.Added, "source")+" denied more")
	say(c.Deny.Removed, plural(c.Deny.Removed, "source")+" denied less")
	say(c.Trust.Added, plural(c.Trust.Added, "source")+" trusted more")
	say(c.Trust.Removed, plural(c.Trust.Removed, "source")+" trusted less")
	say(len(c.Lists), plural(len(c.Lists), "list file")+" changed")
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, ", ")
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "x") {
		return strconv.Itoa(n) + " " + noun + "es"
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func joinPorts(ps []Ports) string {
	strs := make([]string, len(ps))
	for i, p := range ps {
		strs[i] = p.String()
	}
	return strings.Join(strs, ", ")
}

var protoNames = [2]string{"tcp", "udp"}

// portsOf names ranges of one protocol (0 TCP, 1 UDP).
func portsOf(proto int, rs []PortRange) []Ports {
	out := make([]Ports, len(rs))
	for i, r := range rs {
		out[i] = Ports{protoNames[proto], r.First, r.Last}
	}
	return out
}

// exposure is what a policy in force opens: the ports open to all, the
// scoped table, the monitored ports.
type exposure struct {
	all   [2][]PortRange
	table ScopedTable
}

func exposureOf(p *Policy) exposure {
	e := exposure{table: p.ScopedTable()}
	e.all[0] = mergeRanges(slices.Clone(p.AllowTCP))
	if p.UDP == nil {
		e.all[1] = []PortRange{{0, 65535}} // every datagram passes
	} else {
		e.all[1] = mergeRanges(slices.Clone(p.UDP.Allow))
	}
	return e
}

// subtract is a minus b, both sorted and merged (mergeRanges).
func subtract(a, b []PortRange) []PortRange {
	var out []PortRange
	j := 0
	for _, r := range a {
		lo, hi := uint32(r.First), uint32(r.Last)
		for j < len(b) && uint32(b[j].Last) < lo {
			j++
		}
		for k := j; k < len(b) && uint32(b[k].First) <= hi && lo <= hi; k++ {
			if uint32(b[k].First) > lo {
				out = append(out, PortRange{uint16(lo), b[k].First - 1})
			}
			lo = max(lo, uint32(b[k].Last)+1)
		}
		if lo <= hi {
			out = append(out, PortRange{uint16(lo), uint16(hi)})
		}
	}
	return out
}

func diffPorts(a, b exposure) []PortChange {
	var out []PortChange
	for i := range 2 {
		for _, p := range portsOf(i, subtract(b.all[i], a.all[i])) {
			out = append(out, PortChange{p, "opened"})
		}
		for _, p := range portsOf(i, subtract(a.all[i], b.all[i])) {
			out = append(out, PortChange{p, "closed"})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Proto != out[j].Proto {
			return out[i].Proto < out[j].Proto
		}
		return out[i].First < out[j].First
	})
	return out
}

// scopeValue is what changes for the sources of one prefix: TCP and UDP
// ports opened and closed.
type scopeValue struct{ opened, closed [2][]PortRange }

func (v scopeValue) equal(w scopeValue) bool {
	for i := range 2 {
		if !slices.Equal(v.opened[i], w.opened[i]) || !slices.Equal(v.closed[i], w.closed[i]) {
			return false
		}
	}
	return true
}

// diffScoped compares the scoped tables exactly. The prefixes of both,
// sorted, are walked with a stack of those holding the current one: a
// source's group on either side is that of the longest prefix holding it
// there, which is the prefix itself or the nearest on the stack that side
// names. What changes for a prefix is the difference of the two groups'
// ports, less the ports open to all on either side (their change, if any,
// is the same for every source: Ports says it). A prefix whose change is
// its nearest wider item's is left out, so the longest item holding an
// address says its change, and an address no item holds has none. O(n) in
// the prefixes after the tables' own sort.
func diffScoped(a, b exposure) []ScopeChange {
	var open [2][]PortRange // open to all on either side
	for i := range 2 {
		open[i] = mergeRanges(append(slices.Clone(a.all[i]), b.all[i]...))
	}
	type entry struct {
		p      netip.Prefix
		ga, gb int // own group in a and b, -1 when that side does not name it
		value  scopeValue
		shown  int // index in out of the item its sources read, -1 for none
	}
	ta, tb := a.table, b.table
	entries := make([]entry, 0, len(ta.Prefixes)+len(tb.Prefixes))
	for i, j := 0, 0; i < len(ta.Prefixes) || j < len(tb.Prefixes); {
		var c int
		switch {
		case i == len(ta.Prefixes):
			c = 1
		case j == len(tb.Prefixes):
			c = -1
		default:
			c = comparePrefix(ta.Prefixes[i], tb.Prefixes[j])
		}
		switch {
		case c < 0:
			entries = append(entries, entry{p: ta.Prefixes[i], ga: ta.Group[i], gb: -1})
			i++
		case c > 0:
			entries = append(entries, entry{p: tb.Prefixes[j], ga: -1, gb: tb.Group[j]})
			j++
		default:
			entries = append(entries, entry{p: ta.Prefixes[i], ga: ta.Group[i], gb: tb.Group[j]})
			i++
			j++
		}
	}
	ports := func(t ScopedTable, g, proto int) []PortRange {
		if g < 0 {
			return nil
		}
		return t.Groups[g][proto]
	}
	var out []ScopeChange
	var stack []entry
	for _, e := range entries {
		for len(stack) > 0 {
			top := stack[len(stack)-1].p
			if top.Bits() < e.p.Bits() && top.Contains(e.p.Addr()) {
				break
			}
			stack = stack[:len(stack)-1]
		}
		parent := entry{ga: -1, gb: -1, shown: -1}
		if len(stack) > 0 {
			parent = stack[len(stack)-1]
		}
		if e.ga < 0 {
			e.ga = parent.ga
		}
		if e.gb < 0 {
			e.gb = parent.gb
		}
		for i := range 2 {
			pa, pb := ports(ta, e.ga, i), ports(tb, e.gb, i)
			e.value.opened[i] = subtract(subtract(pb, pa), open[i])
			e.value.closed[i] = subtract(subtract(pa, pb), open[i])
		}
		e.shown = parent.shown
		if !e.value.equal(parent.value) {
			sc := ScopeChange{Prefix: e.p}
			if parent.shown >= 0 {
				in := out[parent.shown].Prefix
				sc.Inside = &in
			}
			for i := range 2 {
				sc.Opened = append(sc.Opened, portsOf(i, e.value.opened[i])...)
				sc.Closed = append(sc.Closed, portsOf(i, e.value.closed[i])...)
			}
			e.shown = len(out)
			out = append(out, sc)
		}
		stack = append(stack, e)
	}
	return out
}

func diffMonitor(a, b exposure) []MonitorChange {
	var out []MonitorChange
	set := func(rs []RuleRange) []PortRange {
		var ps []PortRange
		for _, r := range rs {
			ps = append(ps, r.Ports)
		}
		return mergeRanges(ps)
	}
	for i := range 2 {
		ma, mb := a.table.Monitor[i], b.table.Monitor[i]
		sa, sb := set(ma), set(mb)
		for _, r := range mb {
			for _, p := range portsOf(i, subtract([]PortRange{r.Ports}, sa)) {
				out = append(out, MonitorChange{p, r.Rule, "monitored"})
			}
		}
		for _, r := range ma {
			for _, p := range portsOf(i, subtract([]PortRange{r.Ports}, sb)) {
				out = append(out, MonitorChange{p, r.Rule, "enforced"})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Proto != out[j].Proto {
			return out[i].Proto < out[j].Proto
		}
		return out[i].First < out[j].First
	})
	return out
}

// timedGroup is the timed rules of a policy that share a condition, a mode
// and a from list.
type timedGroup struct {
	rule  TimedRule
	ports [2][]PortRange
}

func timedGroups(p *Policy, t time.Time) map[string]*timedGroup {
	groups := map[string]*timedGroup{}
	for _, r := range p.Scoped {
		if !r.timed() {
			continue
		}
		from := make([]netip.Prefix, len(r.From))
		for i, f := range r.From {
			from[i] = f.Masked()
		}
		slices.SortFunc(from, comparePrefix)
		from = slices.Compact(from)
		var key strings.Builder
		fmt.Fprint(&key, r.Monitor, " ")
		if !r.Expires.IsZero() {
			key.WriteString(r.Expires.UTC().Format(time.RFC3339Nano))
		}
		key.WriteString(" ")
		if r.Schedule != nil {
			key.WriteString(r.Schedule.String())
		}
		for _, f := range from {
			key.WriteString(" " + f.String())
		}
		g := groups[key.String()]
		if g == nil {
			active, _ := r.ActiveAt(t)
			g = &timedGroup{rule: TimedRule{Monitor: r.Monitor, Active: active}}
			if len(from) > 0 {
				g.rule.From = from
			}
			if !r.Expires.IsZero() {
				e := r.Expires
				g.rule.Expires = &e
			}
			if r.Schedule != nil {
				g.rule.Schedule = r.Schedule.String()
			}
			groups[key.String()] = g
		}
		if !slices.Contains(g.rule.Names, r.Name) {
			g.rule.Names = append(g.rule.Names, r.Name)
		}
		i := protoIndex(r.Proto)
		g.ports[i] = append(g.ports[i], r.Ports)
	}
	for _, g := range groups {
		slices.Sort(g.rule.Names)
		for i := range 2 {
			g.ports[i] = mergeRanges(g.ports[i])
			g.rule.Ports = append(g.rule.Ports, portsOf(i, g.ports[i])...)
		}
	}
	return groups
}

// diffTimed compares the timed rules as written: a group on both sides
// with other ports is changed, and so is a group gone that shares a name
// with one come (an expiry moved, a schedule changed); the rest are
// removed and added.
func diffTimed(from, to *Policy, t time.Time) []TimedChange {
	ga, gb := timedGroups(from, t), timedGroups(to, t)
	var out []TimedChange
	var gone, come []*TimedRule
	for _, k := range sortedKeys(ga) {
		a := ga[k]
		b, ok := gb[k]
		switch {
		case !ok:
			gone = append(gone, &a.rule)
		case !slices.Equal(a.ports[0], b.ports[0]) || !slices.Equal(a.ports[1], b.ports[1]):
			out = append(out, TimedChange{"changed", &a.rule, &b.rule})
		}
	}
	for _, k := range sortedKeys(gb) {
		if _, ok := ga[k]; !ok {
			come = append(come, &gb[k].rule)
		}
	}
	paired := make([]bool, len(come))
	for _, a := range gone {
		match := -1
		for j, b := range come {
			if !paired[j] && slices.ContainsFunc(a.Names, func(n string) bool { return slices.Contains(b.Names, n) }) {
				match = j
				break
			}
		}
		if match < 0 {
			out = append(out, TimedChange{Change: "removed", Old: a})
			continue
		}
		paired[match] = true
		out = append(out, TimedChange{"changed", a, come[match]})
	}
	for j, b := range come {
		if !paired[j] {
			out = append(out, TimedChange{Change: "added", New: b})
		}
	}
	name := func(c TimedChange) string {
		if c.New != nil {
			return strings.Join(c.New.Names, ",")
		}
		return strings.Join(c.Old.Names, ",")
	}
	sort.SliceStable(out, func(i, j int) bool { return name(out[i]) < name(out[j]) })
	return out
}

func sortedKeys(m map[string]*timedGroup) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func diffLimits(a, b *Policy) []SettingChange {
	var out []SettingChange
	add := func(key, was, now string) {
		if was != now {
			out = append(out, SettingChange{key, was, now})
		}
	}
	limit := func(l *Limit) string {
		if l == nil {
			return "none"
		}
		return fmt.Sprintf("%d/s burst %d", l.Rate, l.Burst)
	}
	ban := func(d time.Duration) string {
		if d == 0 {
			return "none"
		}
		return d.String()
	}
	add("ratelimit.syn", limit(a.SYN), limit(b.SYN))
	add("ratelimit.syn.max_sources", strconv.FormatUint(uint64(a.MaxSources), 10), strconv.FormatUint(uint64(b.MaxSources), 10))
	add("ratelimit.syn.ban", ban(a.Ban), ban(b.Ban))
	add("ratelimit.syn_total", limit(a.SYNTotal), limit(b.SYNTotal))
	add("icmp.echo", limit(a.ICMPEcho), limit(b.ICMPEcho))
	return out
}

func diffSettings(a, b *Policy) []SettingChange {
	var out []SettingChange
	add := func(key, was, now string) {
		if was != now {
			out = append(out, SettingChange{key, was, now})
		}
	}
	mode := func(p *Policy) string {
		if p.Monitor {
			return "monitor"
		}
		return "enforce"
	}
	ranges := func(rs []PortRange) string {
		if len(rs) == 0 {
			return "none"
		}
		strs := make([]string, len(rs))
		for i, r := range rs {
			strs[i] = r.String()
		}
		return strings.Join(strs, ", ")
	}
	uids := func(us []uint32) string {
		strs := make([]string, len(us))
		for i, u := range us {
			strs[i] = strconv.FormatUint(uint64(u), 10)
		}
		return strings.Join(strs, ", ")
	}
	replies := func(u *UDPPolicy) string {
		switch {
		case u.RepliesAuto:
			return "auto"
		case u.Replies.First == 0:
			return "none"
		}
		return u.Replies.String()
	}
	udp := func(p *Policy) string {
		if p.UDP == nil {
			return "none (every datagram passes)"
		}
		return "filtered by udp.allow, replies " + replies(p.UDP)
	}
	add("mode", mode(a), mode(b))
	add("tcp.allow_listening", strconv.FormatBool(a.AllowListening), strconv.FormatBool(b.AllowListening))
	add("tcp.deny_ports", ranges(a.DenyPorts), ranges(b.DenyPorts))
	add("tcp.listening_users", uids(a.ListeningUIDs), uids(b.ListeningUIDs))
	if a.UDP != nil && b.UDP != nil {
		add("udp.replies", replies(a.UDP), replies(b.UDP))
	} else {
		add("udp", udp(a), udp(b))
	}
	// The crowdsec section: its address, key file and interval, never
	// the key.
	crowdsec := func(c *CrowdSec) string {
		if c == nil {
			return "none"
		}
		return fmt.Sprintf("%s, api_key_file %s, interval %s", c.URL, c.APIKeyFile, c.Interval)
	}
	if ca, cb := a.CrowdSec, b.CrowdSec; ca != nil && cb != nil {
		add("crowdsec.url", ca.URL, cb.URL)
		add("crowdsec.api_key_file", ca.APIKeyFile, cb.APIKeyFile)
		add("crowdsec.interval", ca.Interval.String(), cb.Interval.String())
	} else {
		add("crowdsec", crowdsec(ca), crowdsec(cb))
	}
	return out
}

// diffSources merges two lists sorted by address then length with none
// inside another (as Policy.Deny and Trust are): O(n), allocating only the
// examples.
func diffSources(a, b []netip.Prefix) SourceChange {
	c := SourceChange{Old: len(a), New: len(b)}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var cmp int
		switch {
		case i == len(a):
			cmp = 1
		case j == len(b):
			cmp = -1
		default:
			cmp = comparePrefix(a[i], b[j])
		}
		switch {
		case cmp == 0:
			i++
			j++
		case cmp < 0:
			if c.Removed++; len(c.RemovedExamples) < maxExamples {
				c.RemovedExamples = append(c.RemovedExamples, a[i])
			}
			i++
		default:
			if c.Added++; len(c.AddedExamples) < maxExamples {
				c.AddedExamples = append(c.AddedExamples, b[j])
			}
			j++
		}
	}
	return c
}

// diffLists compares list files by the file they name (two policies in
// different directories may name different files alike).
func diffLists(kind string, a, b []SourceList) []ListChange {
	file := func(l SourceList) string {
		if l.File != "" {
			return l.File
		}
		return l.Path
	}
	entries := map[string]int{}
	for _, l := range a {
		entries[file(l)] = l.Entries
	}
	var out []ListChange
	seen := map[string]bool{}
	for _, l := range b {
		f := file(l)
		seen[f] = true
		old, ok := entries[f]
		switch {
		case !ok:
			out = append(out, ListChange{kind, f, "added", 0, l.Entries})
		case old != l.Entries:
			out = append(out, ListChange{kind, f, "changed", old, l.Entries})
		}
	}
	for _, l := range a {
		if f := file(l); !seen[f] {
			out = append(out, ListChange{kind, f, "removed", l.Entries, 0})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out
}
