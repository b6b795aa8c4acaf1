package loader

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// DefaultBPFFS is where bpffs is normally mounted.
const DefaultBPFFS = "/sys/fs/bpf"

// SharedBPFFS is the fallback bpffs for daemons started with `ip netns
// exec`, which mounts a fresh /sys and so hides the host's /sys/fs/bpf.
// /run is shared with the host there, so a bpffs the host mounts here is
// visible inside, and pins on it outlive the daemon.
const SharedBPFFS = "/run/xdpguard/bpffs"

// ResolvePinRoot returns the directory under which this network namespace's
// pins live: <bpffs>/xdpguard/ in an unnamed (usually the host's) namespace,
// <bpffs>/xdpguard/netns-<name>/ in a namespace named by `ip netns`, so two
// namespaces with an interface of the same name never share pins.
func ResolvePinRoot(bpffs string) (string, error) {
	ns := namedNetns()
	base, err := findBPFFS(bpffs, ns != "")
	if err != nil {
		return "", err
	}
	root := filepath.Join(base, "xdpguard")
	if ns != "" {
		root = filepath.Join(root, "netns-"+ns)
	}
	return root, nil
}

func findBPFFS(path string, inNamedNetns bool) (string, error) {
	if isBPFFS(path) {
		return path, nil
	}
	if isBPFFS(SharedBPFFS) {
		return SharedBPFFS, nil
	}
	if inNamedNetns {
		// Probably `ip netns exec`: a bpffs mounted now would live in its
		// private mount namespace and vanish, detaching the filter, when
		// this process exits.
		return "", fmt.Errorf("%s is not a bpffs here (`ip netns exec` mounts a fresh /sys). "+
			"On the host, run `mkdir -p %[2]s && mount -t bpf bpf %[2]s` once; xdpguard then uses it, "+
			"and its pins outlive the daemon", path, SharedBPFFS)
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

// namedNetns returns the `ip netns` name of our network namespace, or "".
func namedNetns() string {
	var self unix.Stat_t
	if unix.Stat("/proc/self/ns/net", &self) != nil {
		return ""
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/run/netns", e.Name()), &st) == nil && st.Ino == self.Ino && st.Dev == self.Dev {
			return e.Name()
		}
	}
	return ""
}
