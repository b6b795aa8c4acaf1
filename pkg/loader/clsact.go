package loader

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The tc hook on kernels without tcx (before 6.6): a direct-action bpf
// filter on the interface's clsact ingress, at xdpguard's priority and
// handle, replaced in one netlink request at a switch. A filter is no
// bpf_link and needs no pin: it holds its program in the kernel, and
// adoption, status and detach find it by priority, handle and name.
// (Pinning the program instead is refused on hosts whose BPF LSM denies
// program pins, as this one does.)

// clsactPriority and clsactHandle name xdpguard's filter: priority 1 runs
// before every filter of a larger priority number.
const (
	clsactPriority = 1
	clsactHandle   = 0x58475244 // "XGRD"
)

// attachment is what a guard holds on its interface: a bpf_link (XDP,
// tcx) or a clsact filter.
type attachment interface {
	Update(*ebpf.Program) error
	Pin(string) error
	Close() error
	Info() (*link.Info, error)
}

type clsactFilter struct {
	ifindex int
	prog    *ebpf.Program // the program in force (owned by its generation)
}

func clsactBPF(ifindex int, prog *ebpf.Program) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex, Parent: netlink.HANDLE_MIN_INGRESS,
			Handle: clsactHandle, Priority: clsactPriority, Protocol: unix.ETH_P_ALL,
		},
		Fd: prog.FD(), Name: "xdpguard_tc", DirectAction: true,
	}
}

// attachClsact adds the clsact qdisc if missing and xdpguard's filter.
// Someone else's filter at xdpguard's priority and handle is refused.
func attachClsact(prog *ebpf.Program, ifindex int) (attachment, error) {
	q := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
	if err := netlink.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("attach tc (clsact qdisc): %w", err)
	}
	if id, err := clsactProgram(ifindex); err == nil && id != 0 {
		return nil, fmt.Errorf("%w: a clsact filter (program %d) holds xdpguard's priority %d and handle %#x", ErrForeignProgram, id, clsactPriority, clsactHandle)
	}
	if err := netlink.FilterAdd(clsactBPF(ifindex, prog)); err != nil {
		return nil, fmt.Errorf("attach tc (clsact filter): %w", err)
	}
	return &clsactFilter{ifindex: ifindex, prog: prog}, nil
}

// clsactProgram is the program ID of xdpguard's clsact filter on ifindex,
// or 0.
func clsactProgram(ifindex int) (ebpf.ProgramID, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return 0, err
	}
	fs, err := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		return 0, err
	}
	for _, f := range fs {
		if b, ok := f.(*netlink.BpfFilter); ok && b.Handle == clsactHandle && b.Priority == clsactPriority && strings.HasPrefix(b.Name, "xdpguard_tc") {
			return ebpf.ProgramID(b.Id), nil
		}
	}
	return 0, nil
}

// Update replaces the filter's program in one request: each packet meets
// the old program or the new one.
func (f *clsactFilter) Update(p *ebpf.Program) error {
	if err := netlink.FilterReplace(clsactBPF(f.ifindex, p)); err != nil {
		return fmt.Errorf("replace the clsact filter: %w", err)
	}
	f.prog = p
	return nil
}

// Pin pins nothing: the filter outlives the daemon on its own.
func (*clsactFilter) Pin(string) error { return nil }

// Close releases nothing: the filter stays, holding its program.
func (f *clsactFilter) Close() error { return nil }

func (f *clsactFilter) Info() (*link.Info, error) {
	id, err := clsactProgram(f.ifindex)
	if err != nil {
		return nil, err
	}
	return &link.Info{Program: id}, nil
}

// adoptClsact takes over xdpguard's clsact filter on ifindex, if there is
// one (a restart on a kernel without tcx).
func adoptClsact(ifindex int) (attachment, bool) {
	if id, err := clsactProgram(ifindex); err != nil || id == 0 {
		return nil, false
	}
	return &clsactFilter{ifindex: ifindex}, true
}

// removeClsact deletes xdpguard's clsact filter on the interface iface
// (detach). The qdisc stays: other filters may use it.
func removeClsact(iface string) error {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return nil // the interface is gone, and its filters with it
	}
	if id, err := clsactProgram(l.Attrs().Index); err != nil || id == 0 {
		return nil
	}
	f := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_MIN_INGRESS,
		Handle: clsactHandle, Priority: clsactPriority, Protocol: unix.ETH_P_ALL}}
	if err := netlink.FilterDel(f); err != nil {
		return fmt.Errorf("remove the clsact filter: %w", err)
	}
	return nil
}

// ClsactProgram is the ID of the program of xdpguard's clsact filter on
// iface, or 0 (status, when there is no pinned link).
func ClsactProgram(iface string) ebpf.ProgramID {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return 0
	}
	id, _ := clsactProgram(l.Attrs().Index)
	return id
}
