package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
)

// StateMaps are the pinned maps that outlive program generations.
type StateMaps struct {
	Stats      *ebpf.Map
	PortDrops  *ebpf.Map
	SrcBuckets *ebpf.Map
	Generation *ebpf.Map
	Bans       *ebpf.Map
	// RuleStats and RuleNames: per-rule counters and the rules' names.
	RuleStats *ebpf.Map
	RuleNames *ebpf.Map
	// Health counts events left out and limiter inserts; Events and
	// EventBudget carry sampled drops to the daemon.
	Health      *ebpf.Map
	Events      *ebpf.Map
	EventBudget *ebpf.Map
	// Protected holds the sources never banned (SetProtected).
	Protected *ebpf.Map
}

// Pinned is a read-only view of an interface's pinned filter, for `status`.
type Pinned struct {
	Iface string
	Dir   string
	StateMaps
	Link link.Link
}

// Close releases the handles; the filter is untouched.
func (p *Pinned) Close() error {
	var errs []error
	for _, m := range []*ebpf.Map{p.Stats, p.PortDrops, p.SrcBuckets, p.Generation, p.Bans, p.RuleStats, p.RuleNames, p.Health, p.Events, p.EventBudget, p.Protected} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	if p.Link != nil {
		errs = append(errs, p.Link.Close())
	}
	return errors.Join(errs...)
}

// Interfaces lists the interfaces with pins under pinRoot.
func Interfaces(pinRoot string) ([]string, error) {
	entries, err := os.ReadDir(pinRoot)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() || CheckInterfaceName(e.Name()) != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(pinRoot, e.Name(), generationPin)); err == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// OpenPinned opens the pins of iface, read-only unless writable (unban).
func OpenPinned(pinRoot, iface string, writable bool) (*Pinned, error) {
	if err := CheckInterfaceName(iface); err != nil {
		return nil, err
	}
	p := &Pinned{Iface: iface, Dir: filepath.Join(pinRoot, iface)}
	if err := checkPinDir(p.Dir); err != nil {
		return nil, fmt.Errorf("%s: %w", iface, err)
	}
	opts := &ebpf.LoadPinOptions{ReadOnly: !writable}
	for name, dst := range map[string]**ebpf.Map{
		"xdpg_stats": &p.Stats, "xdpg_port_drops": &p.PortDrops,
		srcBucketsPin: &p.SrcBuckets, generationPin: &p.Generation, xdpguardMapXdpgBans: &p.Bans,
		xdpguardMapXdpgRuleStats: &p.RuleStats, xdpguardMapXdpgRuleNames: &p.RuleNames,
		xdpguardMapXdpgHealth: &p.Health, xdpguardMapXdpgEvents: &p.Events, xdpguardMapXdpgEventConfig: &p.EventBudget,
		xdpguardMapXdpgProtected: &p.Protected,
	} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(p.Dir, name), opts)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("%s: open pinned %s: %w", iface, name, err)
		}
		*dst = m
	}
	if l, err := link.LoadPinnedLink(filepath.Join(p.Dir, linkPin), nil); err == nil {
		p.Link = l
	}
	return p, nil
}

// ReadMeta reads the generation record.
func ReadMeta(m *ebpf.Map) (Meta, error) {
	var meta Meta
	err := m.Lookup(uint32(0), &meta)
	return meta, err
}

// AttachMode reports how XDP is attached to ifindex right now ("native",
// "generic", "offload", or "none") and the program ID the kernel reports.
func AttachMode(ifindex int) (string, uint32, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return "", 0, err
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
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
	return mode, mode != "none" && program != 0 && id == program, nil
}

// Detach removes xdpguard from iface: the link is detached and every pin of
// the interface removed. It refuses while a daemon holds the interface.
func Detach(pinRoot, iface string) error {
	if err := CheckInterfaceName(iface); err != nil {
		return err
	}
	dir := filepath.Join(pinRoot, iface)
	if fi, err := os.Lstat(dir); err != nil {
		return fmt.Errorf("%s: no xdpguard pins in %s", iface, pinRoot)
	} else if !fi.IsDir() {
		return fmt.Errorf("%s: %s is not a directory (a symlink?): not touched", iface, dir)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("%s: %w; stop it first (the filter stays in place), then detach", iface, err)
	}
	defer lock.Close()
	var errs []error
	if l, err := link.LoadPinnedLink(filepath.Join(dir, linkPin), nil); err == nil {
		if err := l.Detach(); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("detach link: %w", err))
		}
		errs = append(errs, l.Unpin(), l.Close())
	}
	if err := removePinDir(dir); err != nil {
		errs = append(errs, err)
	}
	_ = os.Remove(pinRoot) // only succeeds once no interface is left
	return errors.Join(errs...)
}

// Path is the policy file recorded with the generation, if any.
func (m *Meta) Path() string { return cString(m.PolicyPath[:]) }
