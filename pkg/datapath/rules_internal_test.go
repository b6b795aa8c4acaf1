package datapath

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// A rule keeps its counter slot, and so its counts, across generations
// while its name stays; a new name gets a zeroed slot; a removed name's
// slot is freed only once the generation that dropped it is in force, and
// nothing of an abandoned generation stays.
func TestRuleSlotsAcrossGenerations(t *testing.T) {
	testutil.RequirePrivileged(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	spec, err := loadXdpguard()
	if err != nil {
		t.Fatal(err)
	}
	newMap := func(name string) *ebpf.Map {
		ms := spec.Maps[name].Copy()
		ms.Pinning = ebpf.PinNone
		m, err := ebpf.NewMap(ms)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	names, stats := newMap(xdpguardMapXdpgRuleNames), newMap(xdpguardMapXdpgRuleStats)
	cpus := ebpf.MustPossibleCPU()
	bump := func(slot uint16, n uint64) {
		vals := make([]RuleCounters, cpus)
		vals[0].Passed = n
		if err := stats.Put(uint32(slot), vals); err != nil {
			t.Fatal(err)
		}
	}
	passed := func(slot uint16) uint64 {
		vals := make([]RuleCounters, cpus)
		if err := stats.Lookup(uint32(slot), &vals); err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, v := range vals {
			n += v.Passed
		}
		return n
	}
	nameAt := func(slot uint16) string {
		var n RuleName
		if err := names.Lookup(uint32(slot), &n); err != nil {
			t.Fatal(err)
		}
		return n.String()
	}
	with := func(extra ...string) []string {
		return append(append([]string(nil), policy.ImplicitRules...), extra...)
	}

	g1, err := assignRuleSlots(names, stats, with("ssh", "web"))
	if err != nil {
		t.Fatal(err)
	}
	if g1.slot[policy.RuleTCPClosed] != 0 || g1.slot["ssh"] < uint16(ruleSlotFirstNamed) {
		t.Fatalf("slots %v", g1.slot)
	}
	if err := g1.retire(); err != nil {
		t.Fatal(err)
	}
	bump(g1.slot["ssh"], 5)
	bump(g1.slot["web"], 7)

	// A generation that is abandoned leaves no name behind.
	abandoned, err := assignRuleSlots(names, stats, with("ssh", "trial"))
	if err != nil {
		t.Fatal(err)
	}
	trialSlot := abandoned.slot["trial"]
	abandoned.release()
	if got := nameAt(trialSlot); got != "" {
		t.Fatalf("abandoned rule still named in slot %d: %q", trialSlot, got)
	}

	// Stale counts in a reused slot must not leak into a new rule.
	bump(trialSlot, 99)
	g2, err := assignRuleSlots(names, stats, with("ssh", "db"))
	if err != nil {
		t.Fatal(err)
	}
	if g2.slot["ssh"] != g1.slot["ssh"] || passed(g2.slot["ssh"]) != 5 {
		t.Fatalf("ssh moved from slot %d to %d or lost its count (%d)", g1.slot["ssh"], g2.slot["ssh"], passed(g2.slot["ssh"]))
	}
	if g2.slot["db"] == g1.slot["web"] {
		t.Fatal("db took web's slot while the old generation still counts there")
	}
	if passed(g2.slot["db"]) != 0 {
		t.Fatalf("new rule db starts at %d", passed(g2.slot["db"]))
	}
	if nameAt(g1.slot["web"]) != "web" {
		t.Fatal("web freed before the switch")
	}
	if err := g2.retire(); err != nil {
		t.Fatal(err)
	}
	if got := nameAt(g1.slot["web"]); got != "" {
		t.Fatalf("removed rule web still named: %q", got)
	}
}

func TestGroupRuleKeysCoverRangeExactly(t *testing.T) {
	for _, r := range []policy.PortRange{{First: 1, Last: 65535}, {First: 30000, Last: 32767}, {First: 3306, Last: 3306}, {First: 0, Last: 65535}, {First: 65535, Last: 65535}} {
		covered := map[uint32]bool{}
		for _, k := range groupRuleKeys(3, true, r) {
			data := uint32(k.Data[0])<<24 | uint32(k.Data[1])<<16 | uint32(k.Data[2])<<8 | uint32(k.Data[3])
			if data>>17 != 3 || data>>16&1 != 1 {
				t.Fatalf("%v: key %x names another group or protocol", r, data)
			}
			size := uint32(1) << (32 - k.Prefixlen)
			base := data & 0xffff
			if base%size != 0 {
				t.Fatalf("%v: block %d/%d not aligned", r, base, k.Prefixlen)
			}
			for p := base; p < base+size; p++ {
				if covered[p] {
					t.Fatalf("%v: port %d covered twice", r, p)
				}
				covered[p] = true
			}
		}
		for p := uint32(0); p < 65536; p++ {
			if covered[p] != (uint32(r.First) <= p && p <= uint32(r.Last)) {
				t.Fatalf("%v: port %d covered=%v", r, p, covered[p])
			}
		}
	}
}
