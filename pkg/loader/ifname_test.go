package loader

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/pkg/maps"
)

func TestCheckInterfaceName(t *testing.T) {
	for name, ok := range map[string]bool{
		"eth0": true, "veth-a.100": true, "enp0s31f6": true, "a": true, "123456789012345": true,
		"": false, ".": false, "..": false, "a/b": false, "../x": false, "eth0:1": false,
		"eth 0": false, "eth\t0": false, "eth0\x00": false, "1234567890123456": false,
	} {
		if err := CheckInterfaceName(name); (err == nil) != ok {
			t.Errorf("CheckInterfaceName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

// A pin directory another local user could control is refused: owned by
// someone else, writable by others, or a symlink (a user who pre-creates
// <bpffs>/xdpguard would otherwise get the filter pinned where they can
// remove it).
func TestPinDirectoriesOthersControlAreRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (mount a bpffs); CI=true forbids skipping")
		}
		t.Skip("needs root")
	}
	fs := t.TempDir()
	if err := unix.Mount("bpf", fs, "bpf", 0, "mode=1777"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(fs, unix.MNT_DETACH)
	root := filepath.Join(fs, "xdpguard")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "eth0"), 0o700))
	if err := checkPinDir(filepath.Join(root, "eth0")); err != nil {
		t.Fatalf("root's own 0700 directories under a 1777 bpffs: %v", err)
	}
	must(os.Chown(root, 1000, 1000))
	if err := checkPinDir(filepath.Join(root, "eth0")); err == nil || !strings.Contains(err.Error(), "owned by uid 1000") {
		t.Errorf("pin root owned by uid 1000: %v", err)
	}
	must(os.Chown(root, 0, 0))
	must(os.Chmod(filepath.Join(root, "eth0"), 0o777))
	if err := checkPinDir(filepath.Join(root, "eth0")); err == nil || !strings.Contains(err.Error(), "others can write it") {
		t.Errorf("pin directory mode 0777: %v", err)
	}
	must(os.Chmod(filepath.Join(root, "eth0"), 0o700))
	must(os.MkdirAll(filepath.Join(fs, "elsewhere"), 0o700))
	must(os.Symlink(filepath.Join(fs, "elsewhere"), filepath.Join(root, "eth1")))
	if err := checkPinDir(filepath.Join(root, "eth1")); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("symlinked pin directory: %v", err)
	}
	if _, err := maps.Open(filepath.Join(root, "eth1"), false); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("status through a symlinked pin directory: %v", err)
	}
}
