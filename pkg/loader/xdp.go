package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Mode selects how XDP is attached.
type Mode string

// Attach modes. Auto chooses by device (see place): native XDP on physical
// NICs, tc (modeTC) on virtual devices; generic only when asked.
const (
	ModeAuto    Mode = "auto"
	ModeNative  Mode = "native"
	modeGeneric Mode = "generic"
)

// ParseMode validates a --mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeNative, modeGeneric, modeTC:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want auto, native, generic or tc", s)
}

// ErrForeignProgram: the interface runs an XDP program xdpguard did not
// attach.
var ErrForeignProgram = errors.New("another XDP program is attached")

// RemoveForeignXDP detaches the XDP program attached to iface through
// netlink (as `ip link set dev IFACE xdp ...` does) and returns its ID. A
// program held by another process's bpf_link cannot be removed this way:
// its owner must close it.
func RemoveForeignXDP(iface string) (uint32, error) {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return 0, err
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return 0, nil
	}
	flags := map[uint32]int{nl.XDP_ATTACHED_DRV: nl.XDP_FLAGS_DRV_MODE, nl.XDP_ATTACHED_SKB: nl.XDP_FLAGS_SKB_MODE, nl.XDP_ATTACHED_HW: unix.XDP_FLAGS_HW_MODE}[x.AttachMode]
	if err := netlink.LinkSetXdpFdWithFlags(l, -1, flags); err != nil {
		return x.ProgId, fmt.Errorf("%s: remove XDP program %d: %w (attached by a bpf_link? its owner must close it)", iface, x.ProgId, err)
	}
	return x.ProgId, nil
}

func attachXDP(prog *ebpf.Program, ifindex int, mode Mode) (attachment, error) {
	opts := link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode}
	if mode == modeGeneric {
		opts.Flags = link.XDPGenericMode
	}
	l, err := link.AttachXDP(opts)
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("%w (see `ip link show`); xdpguard will not replace it unless run with --replace-foreign: %v", ErrForeignProgram, err)
	}
	if err != nil {
		return nil, fmt.Errorf("attach XDP (%s): %w", mode, err)
	}
	return l, nil
}

// AttachMode reports how xdpguard's kind of program is attached to ifindex
// right now ("native", "generic", "offload", "tc" or "none") and the
// program ID the kernel reports (for tc, the first on tcx ingress).
func AttachMode(ifindex int) (string, uint32, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return "", 0, err
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		if ids, err := tcxPrograms(ifindex); err == nil && len(ids) > 0 {
			return "tc", uint32(ids[0]), nil
		}
		if id, err := clsactProgram(ifindex); err == nil && id != 0 {
			return "tc", uint32(id), nil
		}
		return "none", 0, nil
	}
	switch x.AttachMode {
	case nl.XDP_ATTACHED_DRV:
		return "native", x.ProgId, nil
	case nl.XDP_ATTACHED_SKB:
		return "generic", x.ProgId, nil
	case nl.XDP_ATTACHED_HW:
		return "offload", x.ProgId, nil
	}
	return "multi", x.ProgId, nil
}

// Runs reports whether ifindex runs program (xdpguard's, by ID) right now,
// and the XDP mode in effect. An error means the interface is gone.
func Runs(ifindex int, program uint32) (mode string, running bool, err error) {
	mode, id, err := AttachMode(ifindex)
	if err != nil {
		return "", false, err
	}
	if mode != "none" && program != 0 && id == program {
		return mode, true, nil
	}
	if program != 0 && (mode == "native" || mode == "generic") {
		if _, ok := inDispatcher(ifindex, ebpf.ProgramID(program)); ok {
			return mode, true, nil
		}
	}
	// On tcx, xdpguard's program may run behind another's, or beside a
	// foreign XDP program.
	if ids, err := tcxPrograms(ifindex); err == nil && program != 0 {
		for _, x := range ids {
			if uint32(x) == program {
				return "tc", true, nil
			}
		}
	}
	if id, err := clsactProgram(ifindex); err == nil && program != 0 && uint32(id) == program {
		return "tc", true, nil
	}
	return mode, false, nil
}
