package explain

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// role is how the program loaded beside the live one gets a map.
type role int

const (
	// view: the live map itself. Only for maps the kernel refuses the
	// program any write to (BPF_F_RDONLY_PROG), checked on the live map.
	view role = iota
	// bySource: a copy holding the live entries of the source's keys
	// (tables keyed by struct xdpg_src_key).
	bySource
	// byPrefix: a copy holding every live prefix that holds the source
	// (the prefix-ban trie: any lookup of the source answers the same).
	byPrefix
	// whole: a copy of every entry (the per-port buckets, 512 KiB).
	whole
	// fresh: a new, empty map: counters (zero, so the slot that moves is
	// the packet's), events (off), what only Go reads.
	fresh
)

// roles gives every map of the program its role; TestEveryMapHasARole
// fails on a map added to bpf/maps.h without one.
var roles = map[string]role{
	".rodata":           view,
	"xdpg_deny":         view,
	"xdpg_deny_blocks":  view,
	"xdpg_deny_hosts":   view,
	"xdpg_trust":        view,
	"xdpg_scoped_src":   view,
	"xdpg_group_ports":  view,
	"xdpg_group_rule":   view,
	"xdpg_src_buckets":  bySource,
	"xdpg_icmp_buckets": bySource,
	"xdpg_bans":         bySource,
	"xdpg_protected":    bySource,
	"xdpg_ban_ranges":   byPrefix,
	"xdpg_port_buckets": whole,
	// The SYN proxy's: the SYN-ACK budgets and the proven sources are
	// per source like the limiters; the auto-engage state per port and the
	// total budget are copied whole; its counters and scratch start fresh.
	"xdpg_synproxy_budget": bySource,
	"xdpg_proven":          bySource,
	"xdpg_synproxy_ports":  whole,
	"xdpg_synproxy_total":  whole,
	"xdpg_synproxy_stats":  fresh,
	// The trace entry starts fresh (no trace: the run samples nothing),
	// and so does its ring.
	".data." + datapath.TracePin: fresh,
	"xdpg_trace_ring":            fresh,
	"xdpg_sp_scratch":            fresh,
	"xdpg_sp_seen":               whole, // sources seen once (256 KiB): a second SYN gets its budget bucket
	".bss":                       whole, // the BTF anchors of bpf2go's types: never written
	"xdpg_stats":                 fresh,
	"xdpg_port_drops":            fresh,
	"xdpg_rule_stats":            fresh,
	"xdpg_rule_names":            fresh,
	"xdpg_health":                fresh,
	"xdpg_events":                fresh,
	"xdpg_event_config":          fresh,
	"xdpg_generation":            fresh,
}

// copyEntries bounds the copies' tables: a few keys are copied, the run
// adds at most one entry to each.
const copyEntries = 256

// shadow is the program loaded beside the live one, and its maps.
type shadow struct {
	coll   *ebpf.Collection
	prog   *ebpf.Program
	keys   []datapath.SrcKey
	before map[string]map[datapath.SrcKey]datapath.SourceState // bySource copies of state tables
	bans   []banEntry                                          // the byPrefix copy
	port   uint64                                              // the port bucket of the query's port, before
	hook   datapath.Hook                                       // the hook of the program in force
	q      Query
	// Outcome, from its own counters.
	ruleSlot uint16
	denied   bool
}

type banEntry struct {
	k datapath.LPMKey
	v datapath.BanRange
}

// srcKeys are the keys a per-source table may hold the source under: its
// limiter key (SrcKeyOf) and the whole address. Copying both leaves the
// choice to the program.
func srcKeys(a netip.Addr) []datapath.SrcKey {
	k := datapath.SrcKeyOf(a)
	whole := datapath.SrcKey{}
	b := a.As16()
	if a.Is4() {
		b = netip.AddrFrom4(a.As4()).As16()
	}
	for i := range whole.Addr {
		whole.Addr[i] = uint32(b[i*4]) | uint32(b[i*4+1])<<8 | uint32(b[i*4+2])<<16 | uint32(b[i*4+3])<<24
	}
	if whole == k {
		return []datapath.SrcKey{k}
	}
	return []datapath.SrcKey{k, whole}
}

func loadShadow(lv *live, q Query) (_ *shadow, err error) {
	spec := lv.spec
	sh := &shadow{q: q, keys: srcKeys(q.Src), before: map[string]map[datapath.SrcKey]datapath.SourceState{}}
	// The program of the hook in force (XDP, or tc on a tc-attached
	// interface) is the one loaded beside it: the other is left out.
	sh.hook = datapath.HookXDP
	if lv.info.Type == ebpf.SchedCLS {
		sh.hook = datapath.HookTC
	}
	for name := range spec.Programs {
		if name != sh.hook.ProgramName() {
			delete(spec.Programs, name)
		}
	}
	repl := map[string]*ebpf.Map{}
	var own []*ebpf.Map
	// The copies are filled once the program is loaded, just before it
	// runs: the verifier takes a while, and a bucket copied before it
	// would be stale (a flooding source's refilled). The small per-source
	// copies go last.
	var early, late []func() error
	defer func() {
		for _, m := range own {
			m.Close() // the collection holds its own references
		}
	}()
	newCopy := func(name string, entries uint32) (*ebpf.Map, error) {
		ms := spec.Maps[name]
		ms.Pinning = ebpf.PinNone
		ms.Contents = nil
		if entries != 0 {
			ms.MaxEntries = entries
		}
		m, err := ebpf.NewMap(ms)
		if err != nil {
			return nil, fmt.Errorf("copy of %s: %w", name, err)
		}
		own = append(own, m)
		repl[name] = m
		return m, nil
	}
	for name, ms := range spec.Maps {
		r, ok := roles[name]
		if !ok {
			return nil, fmt.Errorf("map %s has no role in explain: it cannot be judged safely", name)
		}
		ms.Pinning = ebpf.PinNone
		src := lv.byName[name]
		if src == nil && r != view {
			r = fresh // the program in force does not use it: neither does this one
		}
		switch r {
		case view:
			if src == nil {
				return nil, fmt.Errorf("the program in force does not use %s", name)
			}
			if src.Flags()&unix.BPF_F_RDONLY_PROG == 0 {
				return nil, fmt.Errorf("the live %s is writable by the program: refusing to share it", name)
			}
			ms.MaxEntries = src.MaxEntries()
			repl[name] = src
		case bySource:
			cp, err := newCopy(name, copyEntries)
			if err != nil {
				return nil, err
			}
			late = append(late, func() error { return sh.copySource(name, src, cp) })
		case byPrefix:
			cp, err := newCopy(name, copyEntries)
			if err != nil {
				return nil, err
			}
			late = append(late, func() error { return sh.copyPrefixes(src, cp) })
		case whole:
			ms.Flags = src.Flags() // data sections are BPF_F_MMAPABLE once loaded
			cp, err := newCopy(name, 0)
			if err != nil {
				return nil, err
			}
			early = append(early, func() error {
				if q.Proto == "tcp" && name == "xdpg_port_buckets" {
					_ = src.Lookup(uint32(q.Dport), &sh.port)
				}
				if err := copyArray(src, cp); err != nil {
					return fmt.Errorf("copy %s: %w", name, err)
				}
				return nil
			})
		case fresh: // made by the load, from the spec
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("the program in force is another xdpguard version's: its maps differ (%w); run that version's explain", err)
		}
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("the verifier rejected the program beside the one in force: %+v", ve)
		}
		return nil, fmt.Errorf("load the program beside the one in force: %w", err)
	}
	sh.coll, sh.prog = coll, coll.Programs[sh.hook.ProgramName()]
	pi, err := sh.prog.Info()
	if err != nil {
		sh.close()
		return nil, fmt.Errorf("read the program loaded beside: %w", err)
	}
	if pi.Tag != lv.info.Tag {
		sh.close()
		return nil, fmt.Errorf("the program in force (tag %s) is not the one this xdpguard builds (tag %s): "+
			"it was loaded by another version; run that version's explain", lv.info.Tag, pi.Tag)
	}
	for _, fill := range append(early, late...) {
		if err := fill(); err != nil {
			sh.close()
			return nil, err
		}
	}
	return sh, nil
}

// copySource copies the live entries of the source's keys into cp.
func (sh *shadow) copySource(name string, src, cp *ebpf.Map) error {
	val := make([]byte, src.ValueSize())
	for _, k := range sh.keys {
		if err := src.Lookup(&k, &val); errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		} else if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if err := cp.Put(&k, val); err != nil {
			return fmt.Errorf("copy %s: %w", name, err)
		}
		if len(val) == 16 { // struct xdpg_source: kept to tell what the run changed
			var st datapath.SourceState
			if err := cp.Lookup(&k, &st); err != nil {
				return fmt.Errorf("read the copy of %s: %w", name, err)
			}
			if sh.before[name] == nil {
				sh.before[name] = map[datapath.SrcKey]datapath.SourceState{}
			}
			sh.before[name][k] = st
		}
	}
	return nil
}

// copyPrefixes copies every live prefix ban holding the source into cp.
func (sh *shadow) copyPrefixes(src, cp *ebpf.Map) error {
	if err := containingBans(src, sh.q.Src, func(k datapath.LPMKey, v datapath.BanRange) {
		sh.bans = append(sh.bans, banEntry{k, v})
	}); err != nil {
		return err
	}
	for _, b := range sh.bans {
		if err := cp.Put(&b.k, &b.v); err != nil {
			return fmt.Errorf("copy xdpg_ban_ranges: %w", err)
		}
	}
	return nil
}

// copyArray copies every entry of an array map.
func copyArray(src, dst *ebpf.Map) error {
	n := int(src.MaxEntries())
	keys := make([]uint32, n)
	vals := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(int(src.ValueSize()), reflect.TypeFor[byte]())), n, n)
	var cursor ebpf.MapBatchCursor
	got, err := src.BatchLookup(&cursor, keys, vals.Interface(), nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	_, err = dst.BatchUpdate(keys[:got], vals.Slice(0, got).Interface(), nil)
	return err
}

func (sh *shadow) close() {
	if sh.coll != nil {
		sh.coll.Close()
	}
}

// perCPUNonZero returns, for each key of a per-CPU array whose values
// summed over the CPUs are not zero, the summed value.
func perCPUNonZero[V any](m *ebpf.Map, add func(*V, V), zero func(V) bool) (map[uint32]V, error) {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	out := map[uint32]V{}
	buf := make([]V, cpus)
	for i := uint32(0); i < m.MaxEntries(); i++ {
		if err := m.Lookup(i, &buf); err != nil {
			return nil, err
		}
		var sum V
		for _, v := range buf {
			add(&sum, v)
		}
		if !zero(sum) {
			out[i] = sum
		}
	}
	return out, nil
}

// outcome reads the run's verdict from the program's return and its own
// counters, and what it changed in the copies.
func (sh *shadow) outcome(res *Result, ret uint32) error {
	stats, err := perCPUNonZero(sh.coll.Maps["xdpg_stats"], func(t *uint64, v uint64) { *t += v }, func(v uint64) bool { return v == 0 })
	if err != nil {
		return fmt.Errorf("read the run's counters: %w", err)
	}
	if len(stats) != 1 {
		return fmt.Errorf("the run counted %d reasons, not one: %v", len(stats), stats)
	}
	var idx uint32
	for i := range stats {
		idx = i
	}
	monitored := idx >= uint32(datapath.NumReasons)
	reason := datapath.Reason(idx % uint32(datapath.NumReasons))
	res.Reason = reason.Name()
	sh.denied = reason == datapath.DropSourceDenied
	pass, drop := sh.hook.Pass(), sh.hook.Drop()
	switch {
	case ret == pass && monitored:
		res.Verdict = "would-drop"
	case ret == pass:
		res.Verdict = "pass"
	case ret == drop && reason < datapath.DropPortNotAllowed: // a drop of a packet the rules pass
		// The SYN proxy's: an ACK that is no valid cookie of the port's
		// listener, or a SYN over the SYN-ACK budget.
		res.Verdict = "drop"
		res.Effects = append(res.Effects, "dropped by the SYN proxy: an ACK with no valid cookie, or a SYN over the SYN-ACK budget (xdpguard_synproxy_*)")
	case ret == drop:
		res.Verdict = "drop"
	case ret == 3 && sh.hook != datapath.HookTC: // XDP_TX
		res.Verdict = "answered"
		res.Effects = append(res.Effects, "answered by the SYN proxy with a SYN-ACK carrying the listener's cookie: the listener sees the connection once the client's ACK proves it")
	default:
		return fmt.Errorf("the %s program returned %d: not a verdict it gives", sh.hook, ret)
	}
	rules, err := perCPUNonZero(sh.coll.Maps["xdpg_rule_stats"], func(t *datapath.RuleCounters, v datapath.RuleCounters) {
		t.Passed += v.Passed
		t.Dropped += v.Dropped
		t.Monitored += v.Monitored
	}, func(v datapath.RuleCounters) bool { return v == datapath.RuleCounters{} })
	if err != nil {
		return fmt.Errorf("read the run's rule counters: %w", err)
	}
	sh.ruleSlot = datapath.RuleSlotNone
	if len(rules) > 1 {
		return fmt.Errorf("the run counted %d rules, not one", len(rules))
	}
	for slot, c := range rules {
		sh.ruleSlot = uint16(slot)
		switch {
		case c.Passed > 0:
			res.RuleCounter = "passed"
		case c.Dropped > 0:
			res.RuleCounter = "dropped"
		default:
			res.RuleCounter = "monitored"
		}
	}
	return sh.effects(res)
}

// effects compares the copies after the run with the live entries they
// were made of: what the packet would change, had it arrived.
func (sh *shadow) effects(res *Result) error {
	wallNow, now := time.Now(), datapath.MonotonicNow()
	at := func(mono uint64) string {
		return wallNow.Add(time.Duration(int64(mono - now))).UTC().Round(time.Second).Format(time.RFC3339)
	}
	var out []string
	for _, t := range []struct{ name, what string }{
		{"xdpg_src_buckets", "its SYN bucket"}, {"xdpg_icmp_buckets", "its ICMP bucket"},
	} {
		for _, k := range sh.keys {
			var after datapath.SourceState
			if sh.coll.Maps[t.name].Lookup(&k, &after) != nil {
				continue
			}
			before := sh.before[t.name][k]
			switch {
			case after.Drops > before.Drops:
				out = append(out, t.what+" refuses it (its refused count grows)")
			case after.At != before.At:
				out = append(out, "takes a token from "+t.what)
			}
		}
	}
	for _, k := range sh.keys {
		var after datapath.SourceState
		err := sh.coll.Maps["xdpg_bans"].Lookup(&k, &after)
		before, had := sh.before["xdpg_bans"][k]
		switch {
		case err == nil && (!had || after.At != before.At):
			out = append(out, fmt.Sprintf("bans %s until %s (origin limit)", k.Prefix(), at(after.At)))
		case err == nil && after.Drops > before.Drops:
			out = append(out, fmt.Sprintf("counts a drop under the ban of %s", k.Prefix()))
		case err != nil && had:
			out = append(out, fmt.Sprintf("removes the ended ban of %s", k.Prefix()))
		}
	}
	for _, b := range sh.bans {
		var after datapath.BanRange
		if sh.coll.Maps["xdpg_ban_ranges"].Lookup(&b.k, &after) == nil && after.Drops > b.v.Drops {
			out = append(out, fmt.Sprintf("counts a drop under the ban of %s (origin %s)", b.k.Prefix(), datapath.BanOrigin(b.v.Origin)))
		}
	}
	if sh.q.Proto == "tcp" {
		var after uint64
		if sh.coll.Maps["xdpg_port_buckets"].Lookup(uint32(sh.q.Dport), &after) == nil && after != sh.port {
			out = append(out, fmt.Sprintf("takes a token from port %d's bucket (syn_total)", sh.q.Dport))
		}
	}
	sort.Strings(out)
	res.Effects = append(res.Effects, out...)
	return nil
}
