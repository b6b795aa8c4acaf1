package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// scratchBPFFS mounts a private bpffs for one test and unmounts it after.
func scratchBPFFS(t *testing.T) string {
	t.Helper()
	testutil.RequirePrivileged(t)
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount a scratch bpffs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// pinMap pins a small array map at path, as another tool would.
func pinMap(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Pin(path); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool { _, err := os.Lstat(path); return err == nil }

// An interface name that is a path ("..", "a/b") never reaches the pin
// root: detach used to RemoveAll <bpffs>/xdpguard/.., i.e. the whole bpffs
// with other tools' pins on it.
func TestDetachNeverRemovesOtherToolsPins(t *testing.T) {
	fs := scratchBPFFS(t)
	other := filepath.Join(fs, "cilium", "cilium_calls")
	pinMap(t, other)
	beside := filepath.Join(fs, "xdpguard", "calico_state") // in our pin root, not ours
	pinMap(t, beside)
	for _, name := range []string{"..", ".", "../cilium", "a/b", "", "eth0\x00", "way-too-long-name", "eth 0"} {
		_, err := execute(t, "--bpffs", fs, "detach", "--iface", name)
		if err == nil || !strings.Contains(err.Error(), "--iface") {
			t.Errorf("detach --iface %q: %v, want a refusal naming --iface", name, err)
		}
		if name == "" {
			continue // an empty --iface list means every interface
		}
		if _, err := execute(t, "--bpffs", fs, "unban", "192.0.2.1", "--iface", name); err == nil || !strings.Contains(err.Error(), "--iface") {
			t.Errorf("unban --iface %q: %v, want a refusal naming --iface", name, err)
		}
	}
	if !exists(other) || !exists(beside) {
		t.Fatalf("another tool's pins were removed: %s %v, %s %v", other, exists(other), beside, exists(beside))
	}

	// A pin directory of ours that also holds a file we did not pin: our
	// pins go, the stranger and the directory stay, and detach says so.
	dir := filepath.Join(fs, "xdpguard", "eth9")
	pinMap(t, filepath.Join(dir, "xdpg_stats"))
	pinMap(t, filepath.Join(dir, "xdpg_generation"))
	stranger := filepath.Join(dir, "not_ours")
	pinMap(t, stranger)
	_, err := execute(t, "--bpffs", fs, "detach", "--iface", "eth9")
	if err == nil || !strings.Contains(err.Error(), "not_ours") {
		t.Errorf("detach with a foreign pin inside: %v, want it named", err)
	}
	if exists(filepath.Join(dir, "xdpg_stats")) || exists(filepath.Join(dir, "xdpg_generation")) {
		t.Error("detach left xdpguard's own pins")
	}
	if !exists(stranger) || !exists(other) || !exists(beside) {
		t.Error("detach removed a pin xdpguard did not create")
	}
	// A symlink named like an interface is not followed.
	pinMap(t, filepath.Join(fs, "victim", "xdpg_stats"))
	if err := os.Symlink(filepath.Join(fs, "victim"), filepath.Join(fs, "xdpguard", "eth8")); err != nil {
		t.Fatal(err)
	}
	if _, err := execute(t, "--bpffs", fs, "detach", "--iface", "eth8"); err == nil {
		t.Error("detach through a symlinked pin directory succeeded")
	}
	if !exists(filepath.Join(fs, "victim", "xdpg_stats")) {
		t.Error("detach followed a symlink and removed what it points to")
	}
}

// Commands that only read (or remove) pins never create a directory or
// mount a bpffs: a mistyped --bpffs is said, not made.
func TestReadOnlyCommandsCreateNothing(t *testing.T) {
	typo := filepath.Join(t.TempDir(), "sys", "fs", "bfp")
	for _, args := range [][]string{
		{"status"}, {"status", "--output", "json"}, {"stats", "--count", "1", "--interval", "100ms"}, {"top", "--count", "1", "--interval", "100ms"},
		{"bans"}, {"unban", "192.0.2.1"}, {"detach", "--all"}, {"history", "--audit-log", filepath.Join(typo, "history.jsonl")},
		{"explain", "--src", "192.0.2.1", "--proto", "icmp"},
	} {
		_, _ = execute(t, append([]string{"--bpffs", typo}, args...)...)
		if exists(typo) || exists(filepath.Dir(typo)) {
			t.Fatalf("%v created %s", args, typo)
		}
	}
}
