package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Rule counter slots (bpf/types.h enum xdpg_rule_slot).
const (
	ruleSlotFirstNamed = uint32(xdpguardXdpgRuleSlotXDPG_RULE_FIRST_NAMED)
	ruleSlots          = uint32(xdpguardXdpgRuleSlotXDPG_RULE_MAX)
	// RuleSlotNone is the slot of a verdict that is no rule's.
	RuleSlotNone = uint16(xdpguardXdpgRuleSlotXDPG_RULE_NONE)
)

// RuleCounters is what a rule's packets became (struct xdpg_rule_counters).
type RuleCounters = xdpguardXdpgRuleCounters

// RuleName is a rule slot's name (struct xdpg_rule_name).
type RuleName = xdpguardXdpgRuleName

// encodeRuleName is s as the C char array (cut to fit, NUL-terminated).
func encodeRuleName(s string) RuleName {
	var n RuleName
	for i := 0; i < len(s) && i < len(n.Name)-1; i++ {
		n.Name[i] = int8(s[i])
	}
	return n
}

func (n *RuleName) String() string { return cString(n.Name[:]) }

// cString reads a NUL-terminated C char array as bpf2go exports it.
func cString(chars []int8) string {
	b := make([]byte, 0, len(chars))
	for _, c := range chars {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// ruleSlots gives each rule name of a generation its counter slot in the
// pinned xdpg_rule_names/xdpg_rule_stats: the implicit rules their fixed
// slots, a name already there its slot (so counters carry across
// reloads), a new name a free slot with its counters zeroed. Slots of
// names the running generation still uses are never taken, so they count
// on until the switch; commit frees them.
type ruleSlotTable struct {
	names, stats *ebpf.Map
	slot         map[string]uint16
	added        []uint32 // slots this generation named, freed if it is abandoned
}

func assignRuleSlots(names, stats *ebpf.Map, wanted []string) (*ruleSlotTable, error) {
	t := &ruleSlotTable{names: names, stats: stats, slot: map[string]uint16{}}
	for i, n := range policy.ImplicitRules {
		t.slot[n] = uint16(i)
		v := encodeRuleName(n)
		if err := names.Put(uint32(i), &v); err != nil {
			return nil, fmt.Errorf("name rule slot %d: %w", i, err)
		}
	}
	used := make([]bool, ruleSlots)
	existing := map[string]uint32{}
	for i := ruleSlotFirstNamed; i < ruleSlots; i++ {
		var v RuleName
		if err := names.Lookup(i, &v); err != nil {
			return nil, fmt.Errorf("read rule slot %d: %w", i, err)
		}
		if s := v.String(); s != "" {
			used[i] = true
			existing[s] = i
		}
	}
	next := ruleSlotFirstNamed
	for _, n := range wanted {
		if _, ok := t.slot[n]; ok {
			continue
		}
		if i, ok := existing[n]; ok {
			t.slot[n] = uint16(i)
			continue
		}
		for next < ruleSlots && used[next] {
			next++
		}
		if next == ruleSlots {
			t.release()
			return nil, fmt.Errorf("no free rule counter slot for %q (%d in use)", n, ruleSlots)
		}
		zero := make([]RuleCounters, ebpf.MustPossibleCPU())
		if err := stats.Put(next, zero); err != nil {
			t.release()
			return nil, fmt.Errorf("reset rule slot %d: %w", next, err)
		}
		v := encodeRuleName(n)
		if err := names.Put(next, &v); err != nil {
			t.release()
			return nil, fmt.Errorf("name rule slot %d: %w", next, err)
		}
		used[next] = true
		t.slot[n] = uint16(next)
		t.added = append(t.added, next)
	}
	return t, nil
}

// release frees the slots this table named (the generation was abandoned).
func (t *ruleSlotTable) release() {
	for _, i := range t.added {
		var empty RuleName
		_ = t.names.Put(i, &empty)
	}
	t.added = nil
}

// retire frees every named slot this generation does not use: the one
// before it no longer runs.
func (t *ruleSlotTable) retire() error {
	keep := map[uint32]bool{}
	for _, s := range t.slot {
		keep[uint32(s)] = true
	}
	var errs []error
	for i := ruleSlotFirstNamed; i < ruleSlots; i++ {
		if keep[i] {
			continue
		}
		var v RuleName
		if err := t.names.Lookup(i, &v); err != nil || v.String() == "" {
			continue
		}
		var empty RuleName
		errs = append(errs, t.names.Put(i, &empty))
	}
	t.added = nil
	return errors.Join(errs...)
}

// portRules is the program's port_rules: the slot of the rule counting
// each port open to all and, below them, of each monitor-mode rule's ports;
// TCP ports, then UDP ports. In the host's byte order, as bytes: setting a
// 256 KiB variable from a []uint16 goes through reflection, 30x slower.
func (t *ruleSlotTable) portRules(open, monitor [2][]policy.RuleRange) []byte {
	values := make([]uint16, 2*65536)
	for i := range values {
		values[i] = RuleSlotNone
	}
	for _, table := range [][2][]policy.RuleRange{monitor, open} {
		for half, ranges := range table {
			for _, rr := range ranges {
				for p := uint32(rr.Ports.First); p <= uint32(rr.Ports.Last); p++ {
					values[uint32(half)*65536+p] = t.slot[rr.Rule]
				}
			}
		}
	}
	out := make([]byte, 0, 2*len(values))
	for _, v := range values {
		out = binary.NativeEndian.AppendUint16(out, v)
	}
	return out
}

// groupRuleKey is a key of xdpg_group_rule.
type groupRuleKey = xdpguardXdpgGroupRuleKey

// groupRuleKeys splits a scoped group's port range into the aligned blocks
// the trie matches by prefix.
func groupRuleKeys(group int, udp bool, r policy.PortRange) []groupRuleKey {
	var out []groupRuleKey
	lo, hi := uint32(r.First), uint32(r.Last)
	for lo <= hi {
		// The largest block aligned at lo that fits in [lo, hi].
		size := uint32(1) << min(bits.TrailingZeros32(lo|1<<16), 16)
		for lo+size-1 > hi {
			size >>= 1
		}
		data := uint32(group)<<17 | lo
		if udp {
			data |= 1 << 16
		}
		k := groupRuleKey{Prefixlen: 16 + 16 - uint32(bits.TrailingZeros32(size))}
		binary.BigEndian.PutUint32(k.Data[:], data)
		out = append(out, k)
		lo += size
	}
	return out
}

// groupRuleEntries counts the entries fillGroupRules writes.
func groupRuleEntries(st policy.ScopedTable) int {
	n := 0
	for g, halves := range st.Rules {
		for half, ranges := range halves {
			for _, rr := range ranges {
				n += len(groupRuleKeys(g, half == 1, rr.Ports))
			}
		}
	}
	return n
}

func (t *ruleSlotTable) fillGroupRules(m *ebpf.Map, st policy.ScopedTable) error {
	for g, halves := range st.Rules {
		for half, ranges := range halves {
			for _, rr := range ranges {
				for _, k := range groupRuleKeys(g, half == 1, rr.Ports) {
					if err := m.Put(&k, t.slot[rr.Rule]); err != nil {
						return fmt.Errorf("group %d rule %q: %w", g, rr.Rule, err)
					}
				}
			}
		}
	}
	return nil
}

func rulePorts(rs []policy.RuleRange) []policy.PortRange {
	out := make([]policy.PortRange, len(rs))
	for i, r := range rs {
		out[i] = r.Ports
	}
	return out
}
