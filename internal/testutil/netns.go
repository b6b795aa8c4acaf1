package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The network namespace lab of the integration tests and the benchmarks:
// namespaces and veth pairs they make for themselves and remove, pass or
// fail; never the machine's own interfaces.

// Run runs a command (ip, sysctl, ...) and names it in its error.
func Run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// UniqueID is a short random suffix for names of namespaces and devices
// (an interface name holds 15 bytes).
func UniqueID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewNamespaces adds named network namespaces with their loopback up. On
// error those already added are removed.
func NewNamespaces(names ...string) error {
	for i, ns := range names {
		if err := Run("ip", "netns", "add", ns); err != nil {
			DeleteNamespaces(names[:i]...)
			return err
		}
		if err := Run("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			DeleteNamespaces(names[:i+1]...)
			return err
		}
	}
	return nil
}

// DeleteNamespaces removes namespaces (and so their veth ends).
func DeleteNamespaces(names ...string) {
	for _, ns := range names {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

// Veth joins two namespaces with a veth pair, a in nsA and b in nsB, both
// up.
func Veth(a, nsA, b, nsB string) error {
	for _, step := range [][]string{
		{"ip", "link", "add", a, "netns", nsA, "type", "veth", "peer", "name", b, "netns", nsB},
		{"ip", "-n", nsA, "link", "set", a, "up"},
		{"ip", "-n", nsB, "link", "set", b, "up"},
	} {
		if err := Run(step...); err != nil {
			return err
		}
	}
	return nil
}

// InNS runs fn with the calling goroutine's thread in namespace ns; sockets
// made inside stay in ns after it returns.
func InNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return err
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // a thread stuck in the wrong namespace must not be reused
		}
	}()
	return fn()
}

// LinkOf is an interface's index and MAC address in namespace ns.
func LinkOf(ns, name string) (int, net.HardwareAddr, error) {
	var idx int
	var mac net.HardwareAddr
	err := InNS(ns, func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		idx, mac = l.Attrs().Index, l.Attrs().HardwareAddr
		return nil
	})
	return idx, mac, err
}

// SharedBPFFS mounts the host-shared bpffs a daemon under `ip netns exec`
// pins on (its /sys/fs/bpf is hidden there), mode 0700, unless mounted.
func SharedBPFFS() error {
	return Run("sh", "-c", "mkdir -p /run/xdpguard/bpffs && (mountpoint -q /run/xdpguard/bpffs || mount -t bpf -o mode=0700 bpf /run/xdpguard/bpffs)")
}
