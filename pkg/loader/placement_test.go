package loader

import (
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// Auto's choice by device, and the refusals: tc on every virtual kind,
// native on a NIC (a name under /sys/class/net with a bus device: lo has
// none, so a physical NIC is faked by kind "device" only where the host
// has one), generic only when asked, frags above 1500 bytes of MTU, and
// native XDP refused on VLAN sub-interfaces with what to do.
func TestPlace(t *testing.T) {
	attrs := func(name string, mtu int) netlink.LinkAttrs { return netlink.LinkAttrs{Name: name, MTU: mtu} }
	for _, tc := range []struct {
		link     netlink.Link
		mode     Mode
		synProxy bool
		want     Mode
		hook     datapath.Hook
		why      string
	}{
		{&netlink.Veth{LinkAttrs: attrs("xgtest-veth", 1500)}, ModeAuto, false, modeTC, datapath.HookTC, "virtual device (veth)"},
		{&netlink.Bridge{LinkAttrs: attrs("xgtest-br", 1500)}, ModeAuto, false, modeTC, datapath.HookTC, "(bridge)"},
		{&netlink.Tuntap{LinkAttrs: attrs("xgtest-tap", 1500)}, ModeAuto, false, modeTC, datapath.HookTC, "(tuntap)"},
		{&netlink.Bond{LinkAttrs: attrs("xgtest-bond", 1500)}, ModeAuto, false, modeTC, datapath.HookTC, "(bond)"},
		{&netlink.Vlan{LinkAttrs: attrs("xgtest-vlan", 1500)}, ModeAuto, false, modeTC, datapath.HookTC, "(vlan)"},
		{&netlink.Veth{LinkAttrs: attrs("xgtest-veth", 1500)}, ModeNative, false, ModeNative, datapath.HookXDP, "asked"},
		{&netlink.Veth{LinkAttrs: attrs("xgtest-veth", 9000)}, ModeNative, false, ModeNative, datapath.HookXDPFrags, "asked"},
		{&netlink.Veth{LinkAttrs: attrs("xgtest-veth", 9000)}, modeGeneric, false, modeGeneric, datapath.HookXDPFrags, "asked"},
		{&netlink.Veth{LinkAttrs: attrs("xgtest-veth", 9000)}, modeTC, false, modeTC, datapath.HookTC, "asked"},
		// A policy with syn_proxy needs XDP_TX: auto takes native XDP on a
		// virtual device too.
		{&netlink.Veth{LinkAttrs: attrs("xgtest-veth", 1500)}, ModeAuto, true, ModeNative, datapath.HookXDP, "syn_proxy"},
		{&netlink.Vlan{LinkAttrs: attrs("xgtest-vlan", 1500)}, ModeAuto, true, modeGeneric, datapath.HookXDP, "syn_proxy"},
	} {
		p, err := place(tc.link, tc.mode, tc.synProxy)
		if err != nil || p.Mode != tc.want || p.Hook != tc.hook || !strings.Contains(p.Why, tc.why) {
			t.Errorf("%s %s, mode %s: %+v %v; want %s, %s, why with %q", tc.link.Type(), tc.link.Attrs().Name, tc.mode, p, err, tc.want, tc.hook, tc.why)
		}
	}
	if _, err := place(&netlink.Vlan{LinkAttrs: attrs("xgtest-vlan", 1500)}, ModeNative, false); err == nil || !strings.Contains(err.Error(), "--mode tc") {
		t.Errorf("native on a VLAN sub-interface: %v, want a refusal naming --mode tc", err)
	}
	if _, err := place(&netlink.Veth{LinkAttrs: attrs("xgtest-veth", 1500)}, Mode("turbo"), false); err == nil {
		t.Error("mode turbo accepted")
	}
}

// Auto's second choice: tc when a NIC's driver refuses native XDP;
// nothing past a foreign program, and nothing for an explicit mode.
func TestAutoFallback(t *testing.T) {
	native := Placement{Mode: ModeNative, Hook: datapath.HookXDP}
	tc := Placement{Mode: modeTC, Hook: datapath.HookTC}
	if p, ok := autoFallback(ModeAuto, native, unix.EOPNOTSUPP, false); !ok || p.Mode != modeTC || p.Hook != datapath.HookTC || !strings.Contains(p.Why, "native XDP refused") {
		t.Errorf("native refused: %+v %v, want tc", p, ok)
	}
	if _, ok := autoFallback(ModeAuto, native, ErrForeignProgram, false); ok {
		t.Error("fell back past a foreign program")
	}
	if _, ok := autoFallback(ModeNative, native, unix.EOPNOTSUPP, false); ok {
		t.Error("an explicit mode fell back")
	}
	if _, ok := autoFallback(ModeAuto, tc, unix.EPERM, false); ok {
		t.Error("tc refused fell back")
	}
	// syn_proxy needs XDP_TX: generic, never tc.
	if p, ok := autoFallback(ModeAuto, native, unix.EOPNOTSUPP, true); !ok || p.Mode != modeGeneric || p.Hook != datapath.HookXDP || !strings.Contains(p.Why, "syn_proxy") {
		t.Errorf("native refused with syn_proxy: %+v %v, want generic", p, ok)
	}
}
