package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// modeTC attaches the tc (SCHED_CLS) build with tcx, first on the
// interface's ingress: what auto chooses for veth, bridges, tun/tap and
// other virtual devices, where native XDP makes the kernel turn every skb
// into an xdp_buff and halves established traffic.
const modeTC Mode = "tc"

// frameMTU is the largest MTU whose frames fit one XDP buffer on every
// driver (veth's limit is about 3,500 bytes with 4 KiB pages): above it the
// program is loaded for multi-buffer frames.
const frameMTU = 1500

// Placement is where xdpguard runs on an interface, and why there.
type Placement struct {
	Mode Mode // native, generic or tc
	Hook datapath.Hook
	Why  string
	// Dispatcher: xdpguard is one program of libxdp's dispatcher on the
	// interface (dispatcher.go), in the dispatcher's mode.
	Dispatcher bool
}

// device describes iface's kind as auto sees it: "physical" (a NIC with a
// bus device), or the netlink kind of a virtual one (veth, bridge, tuntap,
// bond, vlan, ...).
func device(l netlink.Link) string {
	if _, err := os.Stat(filepath.Join("/sys/class/net", l.Attrs().Name, "device")); err == nil {
		return "physical"
	}
	if t := l.Type(); t != "" && t != "device" {
		return t
	}
	return "virtual"
}

// place decides where mode puts xdpguard on l: auto picks native XDP on
// physical NICs and tc on every virtual device; generic only when asked.
// It refuses native XDP where the kernel has none to offer (VLAN
// sub-interfaces) with what to do instead.
// place decides where the filter runs. synProxy: the policy proxies SYNs,
// which needs XDP (XDP_TX), so auto never chooses tc for it.
func place(l netlink.Link, mode Mode, synProxy bool) (Placement, error) {
	if err := bondSlave(l); err != nil {
		return Placement{}, err
	}
	dev := device(l)
	xdpHook := datapath.HookXDP
	if l.Attrs().MTU > frameMTU {
		xdpHook = datapath.HookXDPFrags
	}
	switch mode {
	case modeTC:
		return Placement{modeTC, datapath.HookTC, "asked for (--mode tc)", false}, nil
	case modeGeneric:
		return Placement{modeGeneric, xdpHook, "asked for (--mode generic)", false}, nil
	case ModeNative:
		if dev == "vlan" || dev == "macvlan" || dev == "ipvlan" {
			return Placement{}, fmt.Errorf("%s is a %s sub-interface: its driver has no native XDP; use --mode tc on it, "+
				"or attach to the parent device (the parser reads up to two VLAN tags)", l.Attrs().Name, dev)
		}
		return Placement{ModeNative, xdpHook, "asked for (--mode native)", false}, nil
	case ModeAuto:
		if dev == "physical" {
			return Placement{ModeNative, xdpHook, "auto: a physical NIC, native XDP in its driver", false}, nil
		}
		if synProxy {
			if dev == "vlan" || dev == "macvlan" || dev == "ipvlan" {
				return Placement{modeGeneric, xdpHook, fmt.Sprintf("auto: the policy has syn_proxy, which answers SYNs with XDP_TX, and %s (%s) has no native XDP: generic XDP", l.Attrs().Name, dev), false}, nil
			}
			return Placement{ModeNative, xdpHook, fmt.Sprintf("auto: the policy has syn_proxy, which answers SYNs with XDP_TX: native XDP on %s (a virtual device, %s), at the cost of its established traffic", l.Attrs().Name, dev), false}, nil
		}
		return Placement{modeTC, datapath.HookTC, fmt.Sprintf("auto: %s is a virtual device (%s), where native XDP converts every skb and generic XDP drops floods slower than tc", l.Attrs().Name, dev), false}, nil
	}
	return Placement{}, fmt.Errorf("mode %q: want auto, native, generic or tc", mode)
}

// bondSlave refuses a bond's slave, in every mode, naming the bond.
func bondSlave(l netlink.Link) error {
	if m := l.Attrs().MasterIndex; m != 0 {
		if master, err := netlink.LinkByIndex(m); err == nil && master.Type() == "bond" {
			return fmt.Errorf("%s is a slave of bond %s: attach to %s, whose ingress sees every slave's traffic "+
				"(a bond running XDP keeps its slaves' XDP for itself)", l.Attrs().Name, master.Attrs().Name, master.Attrs().Name)
		}
	}
	return nil
}

// xdpHookFor is the XDP build an interface's MTU needs.
func xdpHookFor(l netlink.Link) datapath.Hook {
	if l.Attrs().MTU > frameMTU {
		return datapath.HookXDPFrags
	}
	return datapath.HookXDP
}

// placeInDispatcher is where xdpguard goes on an interface that runs
// libxdp's dispatcher d: one of its programs, in its mode, first by
// priority. --mode tc keeps its refusal (the dispatcher would run before
// the tc hook); a mode other than the dispatcher's is refused at the join.
func placeInDispatcher(l netlink.Link, mode Mode, d *dispatcher) (Placement, bool) {
	if mode == modeTC {
		return Placement{}, false
	}
	hook := xdpHookFor(l)
	if mode == ModeAuto {
		mode = d.mode
	}
	why := fmt.Sprintf("%s runs libxdp's dispatcher (program %d, %s mode): xdpguard joins it at priority %d, ahead of %s",
		l.Attrs().Name, d.id, d.mode, dispatcherPriority, d.order())
	return Placement{Mode: mode, Hook: hook, Why: why, Dispatcher: true}, true
}

// placementOf is the placement of an adopted link: its kind decides (a
// restart never moves the filter), with the hook matching the MTU now.
func placementOf(l attachment, nl netlink.Link) Placement {
	if s, ok := l.(*dispatcherSlot); ok {
		// The hook of the MTU now (adoptDispatcherSlot set s.frags from it).
		return Placement{Mode: s.mode, Hook: xdpHookFor(nl), Why: "adopted: xdpguard's slot in libxdp's dispatcher", Dispatcher: true}
	}
	if _, ok := l.(*clsactFilter); ok {
		return Placement{modeTC, datapath.HookTC, "adopted: the clsact filter and its pinned program", false}
	}
	info, err := l.Info()
	if err == nil && info.TCX() != nil {
		return Placement{modeTC, datapath.HookTC, "adopted: the pinned tcx link", false}
	}
	p, _ := place(nl, ModeNative, false)
	mode, _, _ := AttachMode(nl.Attrs().Index)
	p.Mode, p.Why = Mode(mode), "adopted: the pinned XDP link"
	return p
}

// attachTC puts prog first on ifindex's tc ingress: with tcx, or, on a
// kernel without it (before 6.6), with a clsact filter. An XDP program
// already there (someone else's: xdpguard's own would be adopted) runs
// before tc and is refused as in XDP mode, unless removed first
// (--replace-foreign).
func attachTC(prog *ebpf.Program, ifindex int) (attachment, error) {
	if mode, id, err := AttachMode(ifindex); err == nil && mode != "none" && mode != "tc" {
		return nil, fmt.Errorf("%w (program %d, %s; see `ip link show`), and it would run before xdpguard's tc hook; "+
			"xdpguard will not replace it unless run with --replace-foreign", ErrForeignProgram, id, mode)
	}
	if forceClsact() {
		return attachClsact(prog, ifindex)
	}
	l, err := link.AttachTCX(link.TCXOptions{Program: prog, Interface: ifindex, Attach: ebpf.AttachTCXIngress, Anchor: link.Head()})
	if errors.Is(err, ebpf.ErrNotSupported) {
		return attachClsact(prog, ifindex)
	}
	if err != nil {
		return nil, fmt.Errorf("attach tc (tcx ingress): %w", err)
	}
	return l, nil
}

// attachPlaced attaches prog where p says.
// dir is the interface's pin directory (a dispatcher slot finds its
// earlier programs by its pinned maps).
func attachPlaced(prog *ebpf.Program, ifindex int, p Placement, dir string) (attachment, error) {
	if p.Dispatcher {
		own, err := ownMap(dir)
		if err != nil {
			return nil, err
		}
		s, err := joinDispatcher(ifindex, p.Mode, prog, p.Hook == datapath.HookXDPFrags, own)
		if err != nil {
			return nil, err // not a nil *dispatcherSlot in an interface
		}
		return s, nil
	}
	if p.Mode == modeTC {
		return attachTC(prog, ifindex)
	}
	return attachXDP(prog, ifindex, p.Mode)
}

// tcxPrograms lists the programs on ifindex's tcx ingress, first first.
func tcxPrograms(ifindex int) ([]ebpf.ProgramID, error) {
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return nil, err
	}
	out := make([]ebpf.ProgramID, 0, len(res.Programs))
	for _, p := range res.Programs {
		out = append(out, p.ID)
	}
	return out, nil
}

// ModeWhy explains, for status, why iface runs in mode (program: xdpguard's,
// which may be a slot of libxdp's dispatcher): auto's reason when
// it is auto's choice there, else what auto would choose (the mode was
// asked for, or adopted from an older xdpguard).
func ModeWhy(iface, mode string, program uint32) string {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return ""
	}
	if where, ok := inDispatcher(l.Attrs().Index, ebpf.ProgramID(program)); ok {
		return where
	}
	p, err := place(l, ModeAuto, false)
	if err != nil {
		return ""
	}
	if string(p.Mode) == mode {
		return p.Why
	}
	// Auto's choice for a policy with syn_proxy (native on any device).
	if sp, err := place(l, ModeAuto, true); err == nil && string(sp.Mode) == mode && sp.Mode != p.Mode {
		return sp.Why
	}
	return fmt.Sprintf("asked for or adopted; auto would choose %s here (%s)", p.Mode, p.Why)
}

// autoFallback is auto's second choice when its first would not attach:
// tc on a NIC whose driver refuses native XDP. Never generic, and never
// past someone else's program. (A kernel without tcx gets clsact:
// attachTC.)
// A policy with syn_proxy falls back to generic XDP instead (XDP_TX works
// there; a tc hook cannot answer).
func autoFallback(mode Mode, first Placement, err error, synProxy bool) (Placement, bool) {
	if mode != ModeAuto || first.Mode != ModeNative || first.Dispatcher || errors.Is(err, ErrForeignProgram) {
		return Placement{}, false
	}
	if synProxy {
		return Placement{modeGeneric, first.Hook, fmt.Sprintf("auto: native XDP refused (%v); the policy has syn_proxy, which needs XDP_TX, so generic XDP", err), false}, true
	}
	return Placement{modeTC, datapath.HookTC, fmt.Sprintf("auto: native XDP refused (%v), so tc", err), false}, true
}
