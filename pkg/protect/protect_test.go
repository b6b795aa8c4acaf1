package protect

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/pkg/datapath"
)

func TestResolvers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	doc := "# generated\nsearch example.org\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n" +
		"nameserver fe80::1%eth0\nnameserver 127.0.0.53\noptions edns0\nnameserver not-an-address\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	got := Sources{}
	if err := resolvers(path, got); err != nil {
		t.Fatal(err)
	}
	want := Sources{
		netip.MustParseAddr("192.0.2.53"): datapath.ProtectResolver, netip.MustParseAddr("2001:db8::53"): datapath.ProtectResolver,
		netip.MustParseAddr("fe80::1"): datapath.ProtectResolver,
	}
	if !got.Equal(want) {
		t.Errorf("resolvers %v, want %v (loopback stubs left out)", got, want)
	}
}

// Only sockets held by an SSH server process count, under either of the
// names OpenSSH's processes have.
func TestSSHServerSockets(t *testing.T) {
	proc := t.TempDir()
	for pid, p := range map[string]struct {
		comm   string
		target string
	}{"10": {"sshd", "socket:[111]"}, "11": {"nginx", "socket:[222]"}, "12": {"sshd-session", "socket:[333]"}, "13": {"sshd", "/dev/null"}} {
		if err := os.MkdirAll(filepath.Join(proc, pid, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "comm"), []byte(p.comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p.target, filepath.Join(proc, pid, "fd", "3")); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Host{Proc: proc}.sshdSockets()
	if err != nil || len(got) != 2 || !got[111] || !got[333] {
		t.Errorf("sshd sockets %v (%v), want 111 and 333", got, err)
	}
}

// In a network namespace of its own: the default gateways (IPv4, IPv6) and
// the client of $SSH_CONNECTION are found; other routes' next hops are not.
func TestDiscoverGatewaysAndSession(t *testing.T) {
	testutil.RequirePrivileged(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err)
		}
	}()
	// A veth pair: this kernel has no dummy devices.
	dummy := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xgprot0"}, PeerName: "xgprot1"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(netlink.LinkAdd(dummy))
	must(netlink.LinkSetUp(dummy))
	if peer, err := netlink.LinkByName("xgprot1"); err == nil {
		must(netlink.LinkSetUp(peer))
	}
	for _, a := range []string{"10.9.0.2/24", "2001:db8:9::2/64"} {
		addr, _ := netlink.ParseAddr(a)
		addr.Flags = 0x80 // IFA_F_NODAD
		must(netlink.AddrAdd(dummy, addr))
	}
	_, other, _ := net.ParseCIDR("198.51.100.0/24")
	must(netlink.RouteAdd(&netlink.Route{LinkIndex: dummy.Index, Gw: net.ParseIP("10.9.0.1")}))
	must(netlink.RouteAdd(&netlink.Route{LinkIndex: dummy.Index, Gw: net.ParseIP("2001:db8:9::1")}))
	must(netlink.RouteAdd(&netlink.Route{LinkIndex: dummy.Index, Dst: other, Gw: net.ParseIP("10.9.0.254")}))
	h := Host{Proc: t.TempDir(), SSHConnection: "203.0.113.9 50000 10.9.0.2 22"}
	got, err := h.Discover()
	if err != nil {
		t.Fatal(err)
	}
	want := Sources{
		netip.MustParseAddr("10.9.0.1"): datapath.ProtectGateway, netip.MustParseAddr("2001:db8:9::1"): datapath.ProtectGateway,
		netip.MustParseAddr("203.0.113.9"): datapath.ProtectSSH,
	}
	if !got.Equal(want) {
		t.Errorf("found %v, want %v", got, want)
	}
}
