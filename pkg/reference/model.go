package reference

import (
	"maps"
	"net/netip"
	"slices"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// GCRA is one limiter's parameters (docs/datapath.md §3, "GCRA"; ITU-T
// I.371 virtual scheduling): each event costs Interval ns and a bucket may
// run at most Limit ns ahead of the clock. The zero GCRA is no limiter.
type GCRA struct{ Interval, Limit uint64 }

// NewGCRA is the limiter of a policy limit: interval = round(1e9 / rate) ns
// (halves rounded up), limit = burst * interval. A nil limit is none.
func NewGCRA(l *policy.Limit) GCRA {
	if l == nil {
		return GCRA{}
	}
	interval := uint64(1e9) / l.Rate
	if rem := uint64(1e9) % l.Rate; 2*rem >= l.Rate {
		interval++
	}
	return GCRA{Interval: interval, Limit: l.Burst * interval}
}

// On reports whether the limiter is in force.
func (g GCRA) On() bool { return g.Interval != 0 }

// Take takes one event at now from a bucket whose theoretical arrival time
// is tat (0: a new bucket): it admits when, once charged, the bucket runs at
// most Limit ahead of now. It returns the bucket's new tat: base + Interval
// when admitted; when refused, tat unchanged, or now + Limit when the bucket
// is further ahead than the limit even before this event (a lowered limit).
func (g GCRA) Take(tat, now uint64) (newTAT uint64, admitted bool) {
	base := max(tat, now)
	if base+g.Interval-now <= g.Limit {
		return base + g.Interval, true
	}
	if base-now > g.Limit {
		return now + g.Limit, false
	}
	return tat, false
}

// Peek reports whether Take would admit, changing nothing.
func (g GCRA) Peek(tat, now uint64) bool {
	_, ok := g.Take(tat, now)
	return ok
}

// KeyOf is the key of a source's per-source state (§3, "Keys"): an IPv4
// address (/32); a link-local IPv6 address (fe80::/10) whole (/128); the
// /64 of any other IPv6 address.
func KeyOf(src netip.Addr) netip.Prefix {
	switch {
	case src.Is4():
		return netip.PrefixFrom(src, 32)
	case linkLocalV6.Contains(src):
		return netip.PrefixFrom(src, 128)
	}
	return netip.PrefixFrom(src, 64).Masked()
}

var (
	linkLocalV6 = netip.MustParsePrefix("fe80::/10")
	linkLocalV4 = netip.MustParsePrefix("169.254.0.0/16")
)

// Bucket is a per-source limiter bucket: its theoretical arrival time, and
// how many takes it refused (what `top` ranks).
type Bucket struct {
	TAT     uint64
	Refused uint64
}

// Ban is a source's ban: when it ends (CLOCK_MONOTONIC ns) and how many
// packets it dropped.
type Ban struct {
	End   uint64
	Drops uint64
}

// Health are the data path's health counters the model keeps.
type Health struct {
	// BansProtected counts bans not written because the source is
	// protected (bans_refused{cause="protected"}).
	BansProtected uint64
	// BansNotStored counts bans not written because the ban table was
	// full (bans_refused{cause="table_full"}).
	BansNotStored uint64
	// SourceInserts counts SYN buckets created (ratelimit source inserts).
	SourceInserts uint64
	// LimiterContended counts takes admitted after losing 8
	// compare-and-swaps in a row: never, in a model that judges one packet
	// at a time.
	LimiterContended uint64
}

// BanTableSize is how many bans the ban table holds (§3, step 5).
const BanTableSize = 65536

// Model is §3 of docs/datapath.md on top of Classify: the SYN, ICMP and
// per-port limiters, bans, trust and protected sources, with the time of
// each packet given by the caller. It judges one packet at a time, so no
// take is ever contended.
//
// Its per-source tables never evict: it matches the data path only while
// fewer distinct keys than the data path's LRU tables hold (max_sources
// for SYNs, 65,536 for ICMP requests) have used them; an eviction makes the
// data path's limit looser for the evicted source (§3, "Tables").
//
// Limit bans are in force whenever ratelimit.syn.ban is set, except in a
// policy in monitor mode; prefix bans (SetRangeBan) always (§3, "Bans").
type Model struct {
	pol *policy.Policy
	// precise: the limiters read the precise clock (§3, "Clocks").
	precise         bool
	syn, total, icm GCRA
	banNs           uint64

	synBuckets  map[netip.Prefix]*Bucket
	icmpBuckets map[netip.Prefix]*Bucket
	ports       [65536]uint64
	bans        map[netip.Prefix]*Ban
	rangeBans   map[netip.Prefix]*Ban
	protected   map[netip.Prefix]bool
	health      Health
	// BanTableSize is the ban table's capacity; BanTableSize by default.
	BanTableSize int
}

// NewModel is the data path under pol with empty state. preciseClock says
// whether the generation's limiters read the precise clock: what the
// loader decides from the coarse clock's tick (datapath.NeedsPreciseClock).
func NewModel(pol *policy.Policy, preciseClock bool) *Model {
	m := &Model{
		pol: pol, precise: preciseClock,
		syn: NewGCRA(pol.SYN), total: NewGCRA(pol.SYNTotal), icm: NewGCRA(pol.ICMPEcho),
		synBuckets: map[netip.Prefix]*Bucket{}, icmpBuckets: map[netip.Prefix]*Bucket{},
		bans: map[netip.Prefix]*Ban{}, rangeBans: map[netip.Prefix]*Ban{},
		protected:    map[netip.Prefix]bool{},
		BanTableSize: BanTableSize,
	}
	if bansOn(pol) {
		m.banNs = uint64(pol.Ban)
	}
	return m
}

// SetProtected makes the protected keys (xdpg_protected) those of addrs,
// as the daemon keeps them: an IPv6 address protects its /64.
func (m *Model) SetProtected(addrs ...netip.Addr) {
	clear(m.protected)
	for _, a := range addrs {
		m.protected[KeyOf(a)] = true
	}
}

// Judge judges one frame arriving at precise time precise (CLOCK_MONOTONIC
// ns) and coarse time coarse (CLOCK_MONOTONIC_COARSE, ≤ precise), and
// updates the state as the data path must.
func (m *Model) Judge(frame []byte, precise, coarse uint64) Verdict {
	v := Classify(frame, m.pol)
	if v.Reason == datapath.DropSourceDenied && m.protected[KeyOf(v.Addr)] {
		// §1.5: sources.deny does not cut a protected source.
		undenied := *m.pol
		undenied.Deny = nil
		v = Classify(frame, &undenied)
	}
	now := coarse
	if m.precise {
		now = precise
	}
	switch v.Class {
	case ClassSYN:
		return m.syn3(v, now, coarse)
	case ClassDatagram:
		return m.datagram3(v, coarse)
	case ClassICMPRequest:
		return m.icmp3(v, now, coarse)
	}
	return v
}

// trusted: the source is inside sources.trust (§3, "Trust").
func (m *Model) trusted(src netip.Addr) bool { return contains(m.pol.Trust, src) }

// activeBan is K's ban if it is active at coarse; a ban found ended is
// deleted (§3, "Bans").
func (m *Model) activeBan(k netip.Prefix, coarse uint64) *Ban {
	b := m.bans[k]
	if b == nil {
		return nil
	}
	if b.End > coarse {
		return b
	}
	delete(m.bans, k)
	return nil
}

// banNesting is how many nested prefix bans the data path looks through
// for one in force (§3, "Prefix bans").
const banNesting = 4

// rangeBan is the prefix ban covering src that is in force at coarse: the
// longest prefix holding src decides; if its ban has ended, the next
// longest does, at most banNesting of them. Ended ones stay (the daemon
// sweeps them).
func (m *Model) rangeBan(src netip.Addr, coarse uint64) *Ban {
	var covering []netip.Prefix
	for p := range m.rangeBans {
		if p.Contains(src) {
			covering = append(covering, p)
		}
	}
	slices.SortFunc(covering, func(a, b netip.Prefix) int { return b.Bits() - a.Bits() })
	for i, p := range covering {
		if i == banNesting {
			break
		}
		if b := m.rangeBans[p]; b.End > coarse {
			return b
		}
	}
	return nil
}

// banOf is the ban src serves (§3, "Bans"): its key's limit ban, else a
// prefix ban, unless src is protected or link-local.
func (m *Model) banOf(src netip.Addr, coarse uint64) *Ban {
	if m.banNs != 0 {
		if b := m.activeBan(KeyOf(src), coarse); b != nil {
			return b
		}
	}
	if linkLocalV4.Contains(src) || linkLocalV6.Contains(src) || m.protected[KeyOf(src)] {
		return nil // exempt from prefix bans
	}
	return m.rangeBan(src, coarse)
}

func banned(v Verdict, b *Ban) Verdict {
	b.Drops++
	v.Reason, v.Monitored = datapath.DropBanned, false
	return v
}

// refused is a SYN §3 drops: still counted under the rule that admitted
// it (or the monitor-mode rule it would have been the drop of), but a drop.
func refused(v Verdict, r datapath.Reason) Verdict {
	v.Reason, v.Monitored = r, false
	return v
}

// syn3 judges a SYN admitted by §2 (§3, steps 1-7). v is its verdict when
// nothing stops it (step 7).
func (m *Model) syn3(v Verdict, now, coarse uint64) Verdict {
	if m.trusted(v.Addr) { // 1
		return v
	}
	if b := m.banOf(v.Addr, coarse); b != nil { // 2
		return banned(v, b)
	}
	if !m.syn.On() && !m.total.On() { // 3
		return v
	}
	k := KeyOf(v.Addr)
	if m.total.On() && !m.total.Peek(m.ports[v.Port], now) { // 4
		return refused(v, datapath.DropPortRateLimited)
	}
	if m.syn.On() { // 5
		b := m.synBuckets[k]
		if b == nil {
			b = &Bucket{}
			m.synBuckets[k] = b
			m.health.SourceInserts++
		}
		tat, ok := m.syn.Take(b.TAT, now)
		b.TAT = tat
		if !ok {
			b.Refused++
			if m.banNs != 0 {
				m.ban(v.Addr, k, now)
			}
			return refused(v, datapath.DropRateLimited)
		}
	}
	if m.total.On() { // 6
		tat, ok := m.total.Take(m.ports[v.Port], now)
		m.ports[v.Port] = tat
		if !ok {
			return refused(v, datapath.DropPortRateLimited)
		}
	}
	return v // 7
}

// ban bans K until now + ban, unless S is protected or the table is full.
func (m *Model) ban(src netip.Addr, k netip.Prefix, now uint64) {
	switch {
	case linkLocalV4.Contains(src) || linkLocalV6.Contains(src) || m.protected[k]:
		m.health.BansProtected++
	case m.bans[k] == nil && len(m.bans) >= m.BanTableSize:
		m.health.BansNotStored++
	default:
		m.bans[k] = &Ban{End: now + m.banNs}
	}
}

// datagram3 judges a datagram a rule admitted (§3): bans only.
func (m *Model) datagram3(v Verdict, coarse uint64) Verdict {
	// §3 checks the ban, then trust: a ban found ended is deleted even
	// when the source is trusted.
	if b := m.banOf(v.Addr, coarse); b != nil && !m.trusted(v.Addr) {
		return banned(v, b)
	}
	return v
}

// icmp3 judges an ICMP request (§3).
func (m *Model) icmp3(v Verdict, now, coarse uint64) Verdict {
	if m.trusted(v.Addr) {
		return v
	}
	if b := m.banOf(v.Addr, coarse); b != nil {
		return banned(v, b)
	}
	k := KeyOf(v.Addr)
	if m.icm.On() {
		b := m.icmpBuckets[k]
		if b == nil {
			b = &Bucket{}
			m.icmpBuckets[k] = b
		}
		tat, ok := m.icm.Take(b.TAT, now)
		b.TAT = tat
		if !ok {
			b.Refused++
			v.Reason = datapath.DropICMPRateLimited
		}
	}
	return v
}

// SYNBuckets is a copy of the per-source SYN buckets, by key.
func (m *Model) SYNBuckets() map[netip.Prefix]Bucket { return copyOf(m.synBuckets) }

// SYNBucket is key k's SYN bucket, if it has one.
func (m *Model) SYNBucket(k netip.Prefix) (Bucket, bool) { return lookup(m.synBuckets, k) }

// ICMPBucket is key k's ICMP request bucket, if it has one.
func (m *Model) ICMPBucket(k netip.Prefix) (Bucket, bool) { return lookup(m.icmpBuckets, k) }

// ICMPBuckets is a copy of the per-source ICMP request buckets, by key.
func (m *Model) ICMPBuckets() map[netip.Prefix]Bucket { return copyOf(m.icmpBuckets) }

// Bans is a copy of the ban table, ended bans not yet seen included.
func (m *Model) Bans() map[netip.Prefix]Ban { return copyOf(m.bans) }

// BanOf is the ban of src's key, if the table holds one (ended or not).
func (m *Model) BanOf(src netip.Addr) (Ban, bool) { return lookup(m.bans, KeyOf(src)) }

// PortTAT is the theoretical arrival time of port's syn_total bucket (0
// when never charged).
func (m *Model) PortTAT(port uint16) uint64 { return m.ports[port] }

// Health is the health counters.
func (m *Model) Health() Health { return m.health }

// PutSYNBucket, PutICMPBucket and PutPortTAT write a bucket as a previous
// generation of the program (whose tables carry over a reload) left it.
func (m *Model) PutSYNBucket(k netip.Prefix, b Bucket) { m.synBuckets[k] = &b }

// PutICMPBucket: see PutSYNBucket.
func (m *Model) PutICMPBucket(k netip.Prefix, b Bucket) { m.icmpBuckets[k] = &b }

// PutPortTAT: see PutSYNBucket.
func (m *Model) PutPortTAT(port uint16, tat uint64) { m.ports[port] = tat }

// SetBan writes (or with end 0, deletes) the ban of the source's key, as
// `xdpguard unban` or a test filling the table does.
func (m *Model) SetBan(src netip.Addr, end uint64) {
	if end == 0 {
		delete(m.bans, KeyOf(src))
		return
	}
	m.bans[KeyOf(src)] = &Ban{End: end}
}

// SetRangeBan writes (or with end 0, deletes) the prefix ban of p, as
// `xdpguard ban CIDR` and the feeds do.
func (m *Model) SetRangeBan(p netip.Prefix, end uint64) {
	p = p.Masked()
	if end == 0 {
		delete(m.rangeBans, p)
		return
	}
	m.rangeBans[p] = &Ban{End: end}
}

// RangeBans is a copy of the prefix bans, ended ones not yet swept
// included.
func (m *Model) RangeBans() map[netip.Prefix]Ban { return copyOf(m.rangeBans) }

func lookup[V any](in map[netip.Prefix]*V, k netip.Prefix) (V, bool) {
	if v := in[k]; v != nil {
		return *v, true
	}
	var zero V
	return zero, false
}

func copyOf[V any](in map[netip.Prefix]*V) map[netip.Prefix]V {
	out := make(map[netip.Prefix]V, len(in))
	for k, v := range maps.All(in) {
		out[k] = *v
	}
	return out
}
