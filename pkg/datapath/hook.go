package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Hook is where a generation's program runs: one object holds an XDP and a
// tc (SCHED_CLS) entry over the same judge, maps and compiled policy
// (bpf/xdpguard.c, bpf/tc.h), and a generation loads the one its hook
// needs.
type Hook uint8

const (
	// HookXDP is the XDP program (native or generic).
	HookXDP Hook = iota
	// HookXDPFrags is the XDP program loaded with BPF_F_XDP_HAS_FRAGS,
	// for interfaces whose MTU needs multi-buffer frames (veth above about
	// 3.5 KB): a frame's length is then the sum of its buffers.
	HookXDPFrags
	// HookTC is the SCHED_CLS program, for tcx or a clsact filter.
	HookTC
)

func (h Hook) String() string {
	switch h {
	case HookXDP:
		return "xdp"
	case HookXDPFrags:
		return "xdp.frags"
	case HookTC:
		return "tc"
	}
	return fmt.Sprintf("hook(%d)", uint8(h))
}

// Pass is the return value of h's program for a frame that passes
// (XDP_PASS; TC_ACT_UNSPEC, tcx's TCX_NEXT, so the next program on the
// hook runs); Drop that of a dropped one.
func (h Hook) Pass() uint32 {
	if h == HookTC {
		return ^uint32(0) // TC_ACT_UNSPEC (-1)
	}
	return 2 // XDP_PASS
}

// Drop is the return value of h's program for a dropped frame.
func (h Hook) Drop() uint32 {
	if h == HookTC {
		return 2 // TC_ACT_SHOT
	}
	return 1 // XDP_DROP
}

// xdpProgram and tcProgram load one of the object's programs with every
// map (LoadAndAssign loads only what the target names).
type xdpProgram struct {
	*xdpguardMaps
	Program *ebpf.Program `ebpf:"xdpguard"`
}

type tcProgram struct {
	*xdpguardMaps
	Program *ebpf.Program `ebpf:"xdpguard_tc"`
}

// hookTarget prepares spec for hook h (the frags flag, the xdp_frags knob;
// an extension of dispatcher's slot when set) and returns what
// LoadAndAssign fills, and a func that moves the loaded program into objs
// (which closes it).
func hookTarget(spec *ebpf.CollectionSpec, h Hook, dispatcher *ebpf.Program, objs *xdpguardObjects) (any, func() *ebpf.Program, error) {
	frags := h == HookXDPFrags
	if err := spec.Variables[xdpguardVarXdpFrags].Set(flag(frags)); err != nil {
		return nil, nil, fmt.Errorf("set %s: %w", xdpguardVarXdpFrags, err)
	}
	switch h {
	case HookXDP, HookXDPFrags:
		ps := spec.Programs[xdpguardProgXdpguard]
		ps.Flags &^= unix.BPF_F_XDP_HAS_FRAGS
		if frags {
			ps.Flags |= unix.BPF_F_XDP_HAS_FRAGS
		}
		if dispatcher != nil {
			// A component carries no frags flag: the dispatcher does, when
			// every component can take frags (libxdp's protocol). Any
			// slot's stub will do as the load's target: the loader attaches
			// it to the slot it takes.
			ps.Type, ps.AttachType = ebpf.Extension, ebpf.AttachNone
			ps.AttachTarget, ps.AttachTo = dispatcher, DispatcherSlot(0)
			ps.Flags &^= unix.BPF_F_XDP_HAS_FRAGS
		}
		t := &xdpProgram{xdpguardMaps: &objs.xdpguardMaps}
		return t, func() *ebpf.Program { objs.Xdpguard = t.Program; return t.Program }, nil
	case HookTC:
		if dispatcher != nil {
			return nil, nil, errors.New("a tc program cannot join an XDP dispatcher")
		}
		t := &tcProgram{xdpguardMaps: &objs.xdpguardMaps}
		return t, func() *ebpf.Program { objs.XdpguardTc = t.Program; return t.Program }, nil
	}
	return nil, nil, fmt.Errorf("unknown hook %d", h)
}
