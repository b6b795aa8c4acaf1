package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// DefaultBPFFS is where bpffs is normally mounted.
const DefaultBPFFS = "/sys/fs/bpf"

// sharedBPFFS is the fallback bpffs for daemons started with `ip netns
// exec`, which mounts a fresh /sys and so hides the host's /sys/fs/bpf.
// /run is shared with the host there, so a bpffs the host mounts here is
// visible inside, and pins on it outlive the daemon.
const sharedBPFFS = "/run/xdpguard/bpffs"

// ResolvePinRoot returns the directory under which this network namespace's
// pins live: <bpffs>/xdpguard/ in an unnamed (usually the host's) namespace,
// <bpffs>/xdpguard/netns-<name>/ in a namespace named by `ip netns`, so two
// namespaces with an interface of the same name never share pins. With
// mount (the daemon), a missing bpffs is mounted at bpffs; without (every
// command that only reads or removes pins), nothing is created or mounted:
// an error wrapping ErrNoBPFFS says what is missing.
func ResolvePinRoot(bpffs string, mount bool) (string, error) {
	ns := namedNetns()
	base, err := findBPFFS(bpffs, ns != "", mount)
	if err != nil {
		return "", err
	}
	root := filepath.Join(base, "xdpguard")
	if ns != "" {
		root = filepath.Join(root, "netns-"+ns)
	}
	return root, nil
}

// ErrNoBPFFS: no bpffs where xdpguard pins, so nothing of it is pinned.
var ErrNoBPFFS = errors.New("no bpffs")

// mountAdvice is how an operator mounts the host-shared bpffs: mode 0700,
// or any local user could create entries in it.
const mountAdvice = "mkdir -p " + sharedBPFFS + " && mount -t bpf -o mode=0700 bpf " + sharedBPFFS

func findBPFFS(path string, inNamedNetns, mount bool) (string, error) {
	if isBPFFS(path) {
		return path, nil
	}
	if isBPFFS(sharedBPFFS) {
		return sharedBPFFS, nil
	}
	if !mount {
		return "", fmt.Errorf("%w at %s or %s: xdpguard has pinned nothing here (is --bpffs right?)", ErrNoBPFFS, path, sharedBPFFS)
	}
	if inNamedNetns {
		// Probably `ip netns exec`: a bpffs mounted now would live in its
		// private mount namespace and vanish, detaching the filter, when
		// this process exits.
		return "", fmt.Errorf("%s is not a bpffs here (`ip netns exec` mounts a fresh /sys). "+
			"On the host, run `%s` once; xdpguard then uses it, and its pins outlive the daemon", path, mountAdvice)
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	if err := unix.Mount("bpf", path, "bpf", 0, "mode=0700"); err != nil {
		return "", fmt.Errorf("%s is not a bpffs and mounting one failed: %w (mount it with `mount -t bpf -o mode=0700 bpf %s`)", path, err, path)
	}
	return path, nil
}

// checkPinDir refuses a pin directory another local user could control:
// it and every directory above it up to the bpffs mount (the pin root,
// <bpffs>/xdpguard, included) must be a real directory (no symlink), owned
// by root or by us, and writable by no one else. Otherwise a user could
// pre-create the pin root and have the daemon pin the filter, and its
// counters, where they can remove or replace them.
func checkPinDir(dir string) error {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		parent, err := os.Stat(filepath.Dir(p))
		if err != nil {
			return err
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		pst, _ := parent.Sys().(*syscall.Stat_t)
		if st == nil || pst == nil || st.Dev != pst.Dev || p == "/" {
			return nil // the bpffs mount itself: its mode is the mount's
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			return fmt.Errorf("%s is a symlink: refusing to pin through it", p)
		case !fi.IsDir():
			return fmt.Errorf("%s is not a directory", p)
		case st.Uid != 0 && st.Uid != uint32(os.Geteuid()):
			return fmt.Errorf("%s is owned by uid %d, not root: refusing to pin there (remove it)", p, st.Uid)
		case fi.Mode().Perm()&0o022 != 0:
			return fmt.Errorf("%s has mode %#o: others can write it; refusing to pin there (chmod go-w)", p, fi.Mode().Perm())
		}
	}
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
