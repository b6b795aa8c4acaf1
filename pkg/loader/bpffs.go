package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultBPFFS is where bpffs is normally mounted.
const DefaultBPFFS = "/sys/fs/bpf"

// ResolvePinRoot returns the directory under which this network namespace's
// pins live: <bpffs>/xdpguard/ in the host namespace, and
// <bpffs>/xdpguard/netns-<inode>/ in others, so that two namespaces with an
// interface of the same name never share pins.
//
// `ip netns exec` mounts a fresh /sys in a private mount namespace, hiding
// the host's bpffs, and a bpffs mounted there would vanish (and detach the
// filter) when the command exits. So when /sys/fs/bpf is not a bpffs and we
// are not in the host's mount namespace, we use the host's bpffs through
// /proc/1/root. When we are in the host's mount namespace and bpffs is not
// mounted, we mount it, as systemd would.
func ResolvePinRoot(bpffs string) (string, error) {
	base, err := findBPFFS(bpffs)
	if err != nil {
		return "", err
	}
	root := filepath.Join(base, "xdpguard")
	same, err := sameNamespace("net")
	if err != nil {
		return "", err
	}
	if !same {
		var st unix.Stat_t
		if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
			return "", fmt.Errorf("network namespace: %w", err)
		}
		root = filepath.Join(root, fmt.Sprintf("netns-%d", st.Ino))
	}
	return root, nil
}

func findBPFFS(path string) (string, error) {
	if isBPFFS(path) {
		return path, nil
	}
	sameMnt, err := sameNamespace("mnt")
	if err != nil {
		return "", err
	}
	if !sameMnt {
		host := filepath.Join("/proc/1/root", path)
		if isBPFFS(host) {
			return host, nil
		}
		return "", fmt.Errorf("%s is not a bpffs in this mount namespace (ip netns exec hides the host's) "+
			"and the host has none mounted there either: run `mount -t bpf bpf %s` on the host first", path, path)
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	if err := unix.Mount("bpf", path, "bpf", 0, "mode=0700"); err != nil {
		return "", fmt.Errorf("%s is not a bpffs and mounting one failed: %w (mount it with `mount -t bpf bpf %s`)", path, err, path)
	}
	return path, nil
}

func isBPFFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// sameNamespace reports whether we share namespace kind ("net", "mnt") with PID 1.
func sameNamespace(kind string) (bool, error) {
	self, err := os.Readlink("/proc/self/ns/" + kind)
	if err != nil {
		return false, fmt.Errorf("read own %s namespace: %w", kind, err)
	}
	init, err := os.Readlink("/proc/1/ns/" + kind)
	if errors.Is(err, os.ErrPermission) {
		return true, nil // cannot tell; assume the host
	}
	if err != nil {
		return false, fmt.Errorf("read PID 1's %s namespace: %w", kind, err)
	}
	return strings.TrimSpace(self) == strings.TrimSpace(init), nil
}
