package maps

import (
	"container/heap"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Meta is the record of the generation in force.
func (s *Set) Meta() (datapath.Meta, error) {
	var meta datapath.Meta
	if err := need(s.XdpgGeneration, "xdpg_generation"); err != nil {
		return meta, err
	}
	err := s.XdpgGeneration.Lookup(uint32(0), &meta)
	return meta, err
}

// Reasons holds packet counts indexed by datapath.Reason.
type Reasons [datapath.NumReasons]uint64

// Total is every packet the program saw.
func (r *Reasons) Total() (n uint64) {
	for _, v := range r {
		n += v
	}
	return n
}

// Dropped is every packet the program dropped.
func (r *Reasons) Dropped() (n uint64) {
	for i, v := range r {
		if datapath.Reason(i).Dropped() {
			n += v
		}
	}
	return n
}

// Reasons sums the per-CPU reason counters.
func (s *Set) Reasons() (Reasons, error) { return s.reasons(0) }

// Monitored sums the counters of drops that monitor mode let through: what
// the policy would have dropped, by reason.
func (s *Set) Monitored() (Reasons, error) { return s.reasons(datapath.NumReasons) }

func (s *Set) reasons(base int) (Reasons, error) {
	var out Reasons
	if err := need(s.XdpgStats, "xdpg_stats"); err != nil {
		return out, err
	}
	return out, sumCounters(s.XdpgStats, base, out[:])
}

// sumCounters fills out with the per-CPU u64 counters of m from index base
// on, summed; indices beyond m (an array of an older schema) stay 0.
func sumCounters(m *ebpf.Map, base int, out []uint64) error {
	p, err := newPerCPU[uint64]()
	if err != nil {
		return err
	}
	for i := range out {
		if uint32(base+i) >= m.MaxEntries() {
			break
		}
		if out[i], err = p.sum(m, uint32(base+i), func(t *uint64, v uint64) { *t += v }); err != nil {
			return fmt.Errorf("read counter %d: %w", base+i, err)
		}
	}
	return nil
}

// PortDrops are the drops of one destination port.
type PortDrops struct {
	Port uint16
	datapath.PortCounters
}

// Total is the port's drops of every reason.
func (p PortDrops) Total() uint64 {
	return p.NotAllowed + p.RateLimited + p.PortRateLimited + p.UdpNotAllowed
}

// PortDrops returns the ports with drops, most drops first, at most n (all
// when n <= 0), summed over CPUs, reading the table in batches.
func (s *Set) PortDrops(n int) ([]PortDrops, error) {
	if err := need(s.XdpgPortDrops, "xdpg_port_drops"); err != nil {
		return nil, err
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	top := newBounded(n, func(a, b PortDrops) bool {
		if a.Total() != b.Total() {
			return a.Total() < b.Total()
		}
		return a.Port > b.Port
	})
	err = eachBatch(s.XdpgPortDrops, cpus, func(keys []uint32, vals []datapath.PortCounters) {
		for i, k := range keys {
			sum := PortDrops{Port: uint16(k)}
			for _, v := range vals[i*cpus : (i+1)*cpus] {
				sum.NotAllowed += v.NotAllowed
				sum.RateLimited += v.RateLimited
				sum.PortRateLimited += v.PortRateLimited
				sum.UdpNotAllowed += v.UdpNotAllowed
			}
			if sum.Total() > 0 {
				top.add(sum)
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read port drops: %w", err)
	}
	return top.sorted(), nil
}

// Rule is one rule's counters, summed over CPUs.
type Rule struct {
	Name      string `json:"name"`
	Passed    uint64 `json:"passed"`
	Dropped   uint64 `json:"dropped"`
	Monitored uint64 `json:"monitored"` // would-be drops let through (monitor mode)
}

// Rules returns the counters of every named rule slot, in slot order (the
// implicit rules first).
func (s *Set) Rules() ([]Rule, error) {
	if err := errors.Join(need(s.XdpgRuleNames, "xdpg_rule_names"), need(s.XdpgRuleStats, "xdpg_rule_stats")); err != nil {
		return nil, err
	}
	p, err := newPerCPU[datapath.RuleCounters]()
	if err != nil {
		return nil, err
	}
	var out []Rule
	for i := uint32(0); i < s.XdpgRuleNames.MaxEntries(); i++ {
		var n datapath.RuleName
		if err := s.XdpgRuleNames.Lookup(i, &n); err != nil {
			return nil, fmt.Errorf("read rule name %d: %w", i, err)
		}
		name := n.String()
		if name == "" {
			continue
		}
		c, err := p.sum(s.XdpgRuleStats, i, func(t *datapath.RuleCounters, v datapath.RuleCounters) {
			t.Passed += v.Passed
			t.Dropped += v.Dropped
			t.Monitored += v.Monitored
		})
		if err != nil {
			return nil, fmt.Errorf("read rule %q: %w", name, err)
		}
		out = append(out, Rule{Name: name, Passed: c.Passed, Dropped: c.Dropped, Monitored: c.Monitored})
	}
	return out, nil
}

// RuleNameAt is the name of the rule in a counter slot, "" if none.
func (s *Set) RuleNameAt(slot uint16) string {
	if slot == datapath.RuleSlotNone || s.XdpgRuleNames == nil {
		return ""
	}
	var n datapath.RuleName
	if err := s.XdpgRuleNames.Lookup(uint32(slot), &n); err != nil {
		return ""
	}
	return n.String()
}

// Health sums the data path's health counters (datapath.Health*).
func (s *Set) Health() ([datapath.NumHealthCounters]uint64, error) {
	var out [datapath.NumHealthCounters]uint64
	if err := need(s.XdpgHealth, "xdpg_health"); err != nil {
		return out, err
	}
	// A health array of an older schema is shorter: what it lacks is 0.
	return out, sumCounters(s.XdpgHealth, 0, out[:])
}

// SourceCount is the per-source SYN table's fill: its entries, those its
// limit refuses right now, and its size.
type SourceCount struct {
	Entries, Limited int
	Capacity         uint32
}

// CountSources counts the entries of the SYN limiter table and, under the
// limit meta records, those it refuses right now: their next SYN would
// find no token (GCRA time beyond now + limit - interval).
func (s *Set) CountSources(meta datapath.Meta) (SourceCount, error) {
	var c SourceCount
	if err := need(s.XdpgSrcBuckets, "xdpg_src_buckets"); err != nil {
		return c, err
	}
	c.Capacity = s.XdpgSrcBuckets.MaxEntries()
	now := datapath.MonotonicNow()
	err := eachBatch(s.XdpgSrcBuckets, 1, func(keys []datapath.SrcKey, vals []datapath.SourceState) {
		c.Entries += len(keys)
		if meta.SrcIntervalNs > 0 {
			for _, v := range vals {
				if v.At+meta.SrcIntervalNs > now+meta.SrcLimitNs {
					c.Limited++
				}
			}
		}
	})
	if err != nil {
		return c, fmt.Errorf("count sources: %w", err)
	}
	return c, nil
}

// Source is a source in a per-source table and the packets it refused.
type Source struct {
	Source netip.Prefix `json:"source"` // an IPv4 /32, an IPv6 /64 or link-local /128
	Drops  uint64       `json:"drops"`
	// At is the entry's time: GCRA arrival time, or ban end (monotonic ns).
	At uint64 `json:"-"`
}

func moreDrops(a, b Source) bool {
	if a.Drops != b.Drops {
		return a.Drops < b.Drops
	}
	return b.Source.Addr().Less(a.Source.Addr())
}

// Sources returns the sources of the SYN limiter table that refused any
// SYN, most refusals first, at most n (all when n <= 0): a bounded heap
// while the table is read in batches, not a sort of the whole table.
func (s *Set) Sources(n int) ([]Source, error) {
	if err := need(s.XdpgSrcBuckets, "xdpg_src_buckets"); err != nil {
		return nil, err
	}
	top := newBounded(n, moreDrops)
	err := eachBatch(s.XdpgSrcBuckets, 1, func(keys []datapath.SrcKey, vals []datapath.SourceState) {
		for i := range keys {
			if vals[i].Drops > 0 {
				top.add(Source{keys[i].Prefix(), vals[i].Drops, vals[i].At})
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read sources: %w", err)
	}
	return top.sorted(), nil
}

// Ban is a banned source (an address or prefix), when its ban ends, who
// banned it and why, and the packets it dropped.
type Ban struct {
	Source netip.Prefix
	// Until is in CLOCK_MONOTONIC nanoseconds, the data path's clock.
	Until  uint64
	Drops  uint64
	Origin datapath.BanOrigin // whose end Until is
	Reason string
	// UntilOf is each origin's end of this prefix's ban (0: none; a
	// prefix may be banned by several origins, each lifting only its own).
	UntilOf [datapath.NumBanOrigins]uint64
}

// Holds reports whether origin's ban of the prefix is in force at now.
func (b Ban) Holds(origin datapath.BanOrigin, now uint64) bool {
	return int(origin) < len(b.UntilOf) && b.UntilOf[origin] > now
}

// Bans lists the bans in force of both tables (the data path's own, and
// the operators' and feeds' prefixes; ended ones not yet removed are left
// out), most drops first, at most n (all when n <= 0), and counts them by
// origin.
func (s *Set) Bans(n int) (bans []Ban, byOrigin map[datapath.BanOrigin]int, err error) {
	if err := need(s.XdpgBans, "xdpg_bans"); err != nil {
		return nil, nil, err
	}
	now := datapath.MonotonicNow()
	byOrigin = map[datapath.BanOrigin]int{}
	top := newBounded(n, func(a, b Ban) bool {
		if a.Drops != b.Drops {
			return a.Drops < b.Drops
		}
		return b.Source.Addr().Less(a.Source.Addr())
	})
	err = eachBatch(s.XdpgBans, 1, func(keys []datapath.SrcKey, vals []datapath.SourceState) {
		for i := range keys {
			if vals[i].At > now {
				byOrigin[datapath.BanLimit]++
				b := Ban{Source: keys[i].Prefix(), Until: vals[i].At, Drops: vals[i].Drops, Origin: datapath.BanLimit}
				b.UntilOf[datapath.BanLimit] = vals[i].At
				top.add(b)
			}
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read bans: %w", err)
	}
	if s.XdpgBanRanges != nil { // pins of an older schema have none
		var k datapath.LPMKey
		var v datapath.BanRange
		it := s.XdpgBanRanges.Iterate()
		for it.Next(&k, &v) {
			if v.Until > now {
				b := Ban{Source: k.Prefix(), Until: v.Until, Drops: v.Drops, Origin: datapath.BanOrigin(v.Origin), Reason: v.ReasonText(), UntilOf: v.UntilOf}
				for o := range b.UntilOf {
					if b.Holds(datapath.BanOrigin(o), now) {
						byOrigin[datapath.BanOrigin(o)]++
					}
				}
				top.add(b)
			}
		}
		if err := it.Err(); err != nil {
			return nil, nil, fmt.Errorf("read prefix bans: %w", err)
		}
	}
	return top.sorted(), byOrigin, nil
}

// Ban bans a prefix (an address is a /32 or /128) until until (monotonic
// ns), for origin and why, in xdpg_ban_ranges: an operator's or a feed's
// ban. Each origin holds its own end of a prefix's ban, and a later ban
// from the same origin replaces that origin's (shorter or longer); the
// prefix is banned until the latest end of any origin, so no origin
// shortens another's. It reports whether origin's end is now the one in
// force (false: another origin's ban outlasts it).
func (s *Set) Ban(p netip.Prefix, until uint64, origin datapath.BanOrigin, reason string) (bool, error) {
	if err := need(s.XdpgBanRanges, "xdpg_ban_ranges"); err != nil {
		return false, err
	}
	if origin == datapath.BanLimit || int(origin) >= datapath.NumBanOrigins {
		return false, fmt.Errorf("ban %s: origin %v cannot write a prefix ban", p, origin)
	}
	v, ok, err := s.rangeBan(p)
	if err != nil {
		return false, err
	}
	if !ok {
		v = datapath.BanRange{Bits: uint8(p.Bits())} // a fresh ban: no drops, no other origin
	}
	v.UntilOf[origin] = until
	settle(&v)
	if v.Origin == uint8(origin) {
		v.SetReason(reason) // the reason shown is the deciding origin's
	}
	k := datapath.LPMKeyOf(p.Masked())
	if err := s.XdpgBanRanges.Put(&k, &v); err != nil {
		return false, fmt.Errorf("ban %s: %w", p, err)
	}
	return v.Origin == uint8(origin), nil
}

// settle sets a prefix ban's end to the latest of its origins' ends, and
// its origin to that end's. (An ended end never outlasts one in force, so
// no clock is read: the data path's may be a test's.)
func settle(v *datapath.BanRange) {
	v.Until, v.Origin = 0, 0
	for o, end := range v.UntilOf {
		if end > v.Until {
			v.Until, v.Origin = end, uint8(o)
		}
	}
}

// Lift lifts origin's ban of exactly p: a feed's deletion never lifts an
// operator's ban or another feed's of the same prefix (the prefix stays
// banned until the latest of theirs), nor the data path's limit ban of the
// address. It reports whether origin held one.
func (s *Set) Lift(p netip.Prefix, origin datapath.BanOrigin) (bool, error) {
	if err := need(s.XdpgBanRanges, "xdpg_ban_ranges"); err != nil {
		return false, err
	}
	v, ok, err := s.rangeBan(p)
	now := datapath.MonotonicNow()
	if err != nil || !ok || int(origin) >= len(v.UntilOf) || v.UntilOf[origin] <= now {
		return false, err
	}
	v.UntilOf[origin] = 0
	settle(&v)
	k := datapath.LPMKeyOf(p.Masked())
	if v.Until <= now { // no other origin's ban is in force
		if err := s.XdpgBanRanges.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return false, fmt.Errorf("unban %s: %w", p, err)
		}
		return true, nil
	}
	v.SetReason("") // it was origin's, or is another's we no longer know
	if err := s.XdpgBanRanges.Put(&k, &v); err != nil {
		return false, fmt.Errorf("unban %s: %w", p, err)
	}
	return true, nil
}

// rangeBan is the prefix ban of exactly p, if there is one. (A trie's
// lookup answers the longest prefix holding p: a wider one, whose bits
// tell it apart, is not p's.)
func (s *Set) rangeBan(p netip.Prefix) (datapath.BanRange, bool, error) {
	var v datapath.BanRange
	k := datapath.LPMKeyOf(p.Masked())
	err := s.XdpgBanRanges.Lookup(&k, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return v, false, nil
	}
	if err != nil {
		return v, false, fmt.Errorf("look up the ban of %s: %w", p, err)
	}
	return v, int(v.Bits) == p.Bits(), nil
}

// Unban lifts the bans of p: for an address, the data path's ban of its
// key (its /64 for IPv6) and an operator's ban of the address itself; for
// a prefix, an operator's or a feed's ban of exactly that prefix. It
// reports whether there was one.
func (s *Set) Unban(p netip.Prefix) (bool, error) {
	if err := need(s.XdpgBans, "xdpg_bans"); err != nil {
		return false, err
	}
	lifted := false
	if p.IsSingleIP() {
		k := datapath.SrcKeyOf(p.Addr())
		err := s.XdpgBans.Delete(&k)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return false, err
		}
		lifted = err == nil
	}
	if s.XdpgBanRanges != nil {
		k := datapath.LPMKeyOf(p.Masked())
		err := s.XdpgBanRanges.Delete(&k)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return lifted, err
		}
		lifted = lifted || err == nil
	}
	return lifted, nil
}

// SweepBans deletes the bans that have ended, in both tables (the data
// path deletes its own only when their source sends again; a spoofed
// source never does; it never deletes an operator's), and reports how many
// it removed.
func (s *Set) SweepBans() (int, error) {
	if err := need(s.XdpgBans, "xdpg_bans"); err != nil {
		return 0, err
	}
	now := datapath.MonotonicNow()
	var ended []datapath.SrcKey
	err := eachBatch(s.XdpgBans, 1, func(keys []datapath.SrcKey, vals []datapath.SourceState) {
		for i := range keys {
			if vals[i].At <= now {
				ended = append(ended, keys[i])
			}
		}
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range ended {
		if err := s.XdpgBans.Delete(&k); err == nil {
			n++
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, err
		}
	}
	if s.XdpgBanRanges == nil {
		return n, nil
	}
	var endedRanges []datapath.LPMKey
	var k datapath.LPMKey
	var v datapath.BanRange
	it := s.XdpgBanRanges.Iterate()
	for it.Next(&k, &v) {
		if v.Until <= now {
			endedRanges = append(endedRanges, k)
		}
	}
	if err := it.Err(); err != nil {
		return n, err
	}
	for _, k := range endedRanges {
		if err := s.XdpgBanRanges.Delete(&k); err == nil {
			n++
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, err
		}
	}
	return n, nil
}

// Protected is a source the data path never bans, and why.
type Protected struct {
	Source netip.Prefix // the ban key's prefix: an IPv6 address protects its /64
	Why    datapath.Protection
}

// Protected lists the sources in xdpg_protected.
func (s *Set) Protected() ([]Protected, error) {
	if err := need(s.XdpgProtected, "xdpg_protected"); err != nil {
		return nil, err
	}
	var out []Protected
	var k datapath.SrcKey
	var why uint32
	it := s.XdpgProtected.Iterate()
	for it.Next(&k, &why) {
		out = append(out, Protected{k.Prefix(), datapath.Protection(why)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Source.String() < out[j].Source.String() })
	return out, it.Err()
}

// SetProtected makes xdpg_protected hold exactly want (address -> why):
// entries not wanted any more are deleted, the others written.
func (s *Set) SetProtected(want map[netip.Addr]datapath.Protection) error {
	if err := need(s.XdpgProtected, "xdpg_protected"); err != nil {
		return err
	}
	keys := map[datapath.SrcKey]datapath.Protection{}
	for a, why := range want {
		keys[datapath.SrcKeyOf(a)] |= why
	}
	var stale []datapath.SrcKey
	var k datapath.SrcKey
	var why uint32
	it := s.XdpgProtected.Iterate()
	for it.Next(&k, &why) {
		if w, ok := keys[k]; !ok {
			stale = append(stale, k)
		} else if datapath.Protection(why) == w {
			delete(keys, k) // already there
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read protected sources: %w", err)
	}
	var errs []error
	for _, k := range stale {
		if err := s.XdpgProtected.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	for k, w := range keys {
		if err := s.XdpgProtected.Put(&k, uint32(w)); err != nil {
			errs = append(errs, fmt.Errorf("protect %s: %w", k.Prefix(), err))
		}
	}
	return errors.Join(errs...)
}

// SetEventBudget sets how many drop events per second (with a burst) the
// data path may send; rate 0 turns events off.
func (s *Set) SetEventBudget(rate, burst uint64) error {
	if err := need(s.XdpgEventConfig, "xdpg_event_config"); err != nil {
		return err
	}
	var b datapath.EventBudget
	if rate > 0 {
		g := (&policy.Limit{Rate: rate, Burst: max(burst, 1)}).GCRA()
		b.IntervalNs, b.LimitNs = g.IntervalNs, g.LimitNs
	}
	if err := s.XdpgEventConfig.Put(uint32(0), &b); err != nil {
		return fmt.Errorf("set the events budget: %w", err)
	}
	return nil
}

// bounded keeps the n greatest items it is given (all when n <= 0).
type bounded[T any] struct {
	n     int
	less  func(a, b T) bool
	items []T
}

func newBounded[T any](n int, less func(a, b T) bool) *bounded[T] {
	return &bounded[T]{n: n, less: less}
}

func (b *bounded[T]) Len() int           { return len(b.items) }
func (b *bounded[T]) Less(i, j int) bool { return b.less(b.items[i], b.items[j]) }
func (b *bounded[T]) Swap(i, j int)      { b.items[i], b.items[j] = b.items[j], b.items[i] }
func (b *bounded[T]) Push(x any)         { b.items = append(b.items, x.(T)) }
func (b *bounded[T]) Pop() any {
	x := b.items[len(b.items)-1]
	b.items = b.items[:len(b.items)-1]
	return x
}

func (b *bounded[T]) add(x T) {
	switch {
	case b.n <= 0 || len(b.items) < b.n:
		heap.Push(b, x)
	case b.less(b.items[0], x): // x beats the least kept
		b.items[0] = x
		heap.Fix(b, 0)
	}
}

// sorted is what was kept, greatest first.
func (b *bounded[T]) sorted() []T {
	out := append([]T(nil), b.items...)
	sort.Slice(out, func(i, j int) bool { return b.less(out[j], out[i]) })
	return out
}
