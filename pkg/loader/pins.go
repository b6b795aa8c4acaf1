package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

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
		iface := datapath.PinDirInterface(e.Name())
		if !e.IsDir() || CheckInterfaceName(iface) != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(pinRoot, e.Name(), "xdpg_generation")); err == nil {
			out = append(out, iface)
		}
	}
	sort.Strings(out)
	return out, nil
}

// lockDir takes an exclusive, non-blocking lock on dir, so two daemons never
// manage one interface. The lock lives as long as the returned file.
func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errors.New("another xdpguard process manages this interface")
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// checkSchema refuses pins written by an xdpguard with another map schema.
func checkSchema(dir string) error {
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "xdpg_generation"), nil)
	if err != nil {
		return nil // nothing pinned yet
	}
	defer m.Close()
	var meta datapath.Meta
	if err := m.Lookup(uint32(0), &meta); err != nil {
		return fmt.Errorf("read pinned generation in %s: %w", dir, err)
	}
	if meta.SchemaVersion != 0 && (meta.SchemaVersion < datapath.MinSchemaVersion || meta.SchemaVersion > datapath.SchemaVersion) {
		return fmt.Errorf("pins in %s have schema version %d, this xdpguard uses %d (and adopts %d to %[3]d); "+
			"remove them with `xdpguard detach` and start again", dir, meta.SchemaVersion, datapath.SchemaVersion, datapath.MinSchemaVersion)
	}
	return nil
}

// Detach removes xdpguard from iface: the link is detached and every pin of
// the interface removed. It refuses while a daemon holds the interface.
func Detach(pinRoot, iface string) error {
	if err := CheckInterfaceName(iface); err != nil {
		return err
	}
	dir := datapath.PinDir(pinRoot, iface)
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
	// A slot in libxdp's dispatcher (any program there using this
	// interface's pinned maps): left first, so the other programs go on
	// in a dispatcher without xdpguard; if that fails nothing is removed,
	// or the slot would run on with no pin left to find it by.
	if own, err := ownMap(dir); err == nil {
		if nl, err := netlink.LinkByName(iface); err == nil && runsDispatcher(nl.Attrs().Index) {
			if err := leaveDispatcher(nl.Attrs().Index, own); err != nil && !errors.Is(err, errNotDispatcher) {
				return fmt.Errorf("%s: leave libxdp's dispatcher: %w; nothing removed (run detach again)", iface, err)
			}
		}
	}
	if l, err := link.LoadPinnedLink(filepath.Join(dir, datapath.LinkPin), nil); err == nil {
		if info, err := l.Info(); err == nil && info.Type == link.TracingType {
			// The dispatcher slot's link: left above.
		} else if err := l.Detach(); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("detach link: %w", err))
		}
		errs = append(errs, l.Unpin(), l.Close())
	}
	errs = append(errs, removeClsact(iface))
	if err := removePinDir(dir); err != nil {
		errs = append(errs, err)
	}
	_ = os.Remove(pinRoot) // only succeeds once no interface is left
	return errors.Join(errs...)
}

// ownPins names the files xdpguard pins in an interface's directory: the
// link and every map the program pins by name (from the generated spec, so
// a new map needs no edit here).
func ownPins() map[string]bool {
	names := map[string]bool{datapath.LinkPin: true}
	for _, n := range datapath.PinnedMaps() {
		names[n] = true
	}
	return names
}

// removePinDir removes xdpguard's pins from dir, then dir once empty. It
// works only on a bpffs, never follows a symlink, and never removes a file
// it did not pin: anything else found there stays, and is reported.
func removePinDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (a symlink?): not removed", dir)
	}
	if !isBPFFS(dir) {
		return fmt.Errorf("%s is not on a bpffs: not removed", dir)
	}
	own := ownPins()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	var foreign []string
	for _, e := range entries {
		if !own[e.Name()] || !e.Type().IsRegular() {
			foreign = append(foreign, e.Name())
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(foreign) > 0 {
		errs = append(errs, fmt.Errorf("%s: left %s in place: not pinned by xdpguard", dir, strings.Join(foreign, ", ")))
	} else if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
