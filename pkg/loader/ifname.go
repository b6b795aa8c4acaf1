package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/cilium/ebpf"
)

// ifNameSize is the kernel's IFNAMSIZ: a name and its NUL.
const ifNameSize = 16

// CheckInterfaceName accepts only what the kernel accepts as an interface
// name (dev_valid_name): 1 to 15 bytes, not "." or "..", no "/", ":",
// whitespace or NUL. An interface name becomes a directory under the pin
// root, so a name such as ".." must never reach a path.
func CheckInterfaceName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("interface name is empty")
	case len(name) >= ifNameSize:
		return fmt.Errorf("interface name %q is longer than %d bytes", name, ifNameSize-1)
	case name == "." || name == "..":
		return fmt.Errorf("%q is not an interface name", name)
	case strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || r == 0 || unicode.IsSpace(r) }):
		return fmt.Errorf("interface name %q contains '/', ':', a space or NUL", name)
	}
	return nil
}

// ownPins names the files xdpguard pins in an interface's directory: the
// link and every map the program pins by name (from the generated spec, so
// a new map needs no edit here).
func ownPins() (map[string]bool, error) {
	spec, err := loadXdpguard()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	names := map[string]bool{linkPin: true}
	for name, m := range spec.Maps {
		if m.Pinning == ebpf.PinByName {
			names[name] = true
		}
	}
	return names, nil
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
	own, err := ownPins()
	if err != nil {
		return err
	}
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
