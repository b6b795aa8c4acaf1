package loader

import (
	"fmt"
	"strings"
	"unicode"
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
