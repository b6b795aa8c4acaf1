package datapath_test

import (
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

const udpPolicy = basePolicy + `udp:
  allow:
    - 53
    - port: 5000
      from: [10.1.0.0/16]
  replies: 40000-40010
`

func udpFrame(src string, dport uint16, mod ...func(*testpkt.Frame)) testpkt.Frame {
	dst := "198.51.100.1"
	if netip.MustParseAddr(src).Is6() {
		dst = "2001:db8:1::1"
	}
	f := testpkt.NewSYN(src, dst, dport)
	f.Proto = testpkt.ProtoUDP
	f.Payload = []byte("query")
	for _, m := range mod {
		m(&f)
	}
	return f
}

func TestUDPAllowList(t *testing.T) {
	d := load(t, mustPolicy(t, udpPolicy))
	for _, tc := range []tcase{
		{"open port", udpFrame("192.0.2.1", 53), datapath.PassUDPAllowed},
		{"open port, IPv6", udpFrame("2001:db8::1", 53), datapath.PassUDPAllowed},
		{"scoped port, listed source", udpFrame("10.1.2.3", 5000), datapath.PassUDPAllowed},
		{"scoped port, other source", udpFrame("10.2.2.3", 5000), datapath.DropUDPPortNotAllowed},
		{"reply range start", udpFrame("192.0.2.1", 40000), datapath.PassUDPReply},
		{"reply range end", udpFrame("192.0.2.1", 40010), datapath.PassUDPReply},
		{"past the reply range", udpFrame("192.0.2.1", 40011), datapath.DropUDPPortNotAllowed},
		{"closed port", udpFrame("192.0.2.1", 161), datapath.DropUDPPortNotAllowed},
		{"closed port behind QinQ", udpFrame("192.0.2.1", 161, func(f *testpkt.Frame) { f.VLANs = []uint16{testpkt.EtherQinQ, testpkt.EtherQ} }), datapath.DropUDPPortNotAllowed},
		{"UDP header cut", udpFrame("192.0.2.1", 53, func(f *testpkt.Frame) { f.Payload = nil; f.TruncateTo = 14 + 20 + 6; f.TotLen = 26 }), datapath.DropMalformed},
		{"tiny first fragment", udpFrame("192.0.2.1", 53, func(f *testpkt.Frame) { f.MoreFrags = true; f.Payload = nil; f.TruncateTo = 14 + 20 + 4; f.TotLen = 24 }), datapath.DropFragment},
		{"first fragment to a closed port", udpFrame("192.0.2.1", 161, func(f *testpkt.Frame) { f.MoreFrags = true }), datapath.DropUDPPortNotAllowed},
		{"later fragment", udpFrame("192.0.2.1", 161, func(f *testpkt.Frame) { f.FragOffset = 20 }), datapath.PassFragment},
		{"TCP still judged as before", v4(8080), datapath.DropPortNotAllowed},
		{"the TCP scoped bitmap does not open UDP", udpFrame("192.0.2.1", 22), datapath.DropUDPPortNotAllowed},
	} {
		if _, got := run(t, d, tc.frame.Bytes()); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got.Name(), tc.want.Name())
		}
	}
}

func TestUDPPortDropCounters(t *testing.T) {
	d := load(t, mustPolicy(t, udpPolicy))
	for i := 0; i < 3; i++ {
		run(t, d, udpFrame("192.0.2.1", 161).Bytes())
	}
	drops, err := maps.Of(d.Maps).PortDrops(0)
	if err != nil || len(drops) != 1 || drops[0].Port != 161 || drops[0].UdpNotAllowed != 3 || drops[0].Total() != 3 {
		t.Fatalf("port drops %+v %v", drops, err)
	}
}

// With replies: auto the kernel's ephemeral range is used.
func TestUDPRepliesAuto(t *testing.T) {
	d := load(t, mustPolicy(t, basePolicy+"udp:\n  allow: [53]\n"))
	// The range as the kernel states it, read here, not through the
	// function the loader compiles from.
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	var first, last uint16
	if _, err := fmt.Sscan(string(b), &first, &last); err != nil || first == 0 || last < first || last == 65535 {
		t.Fatalf("ip_local_port_range %q: the test needs a range inside 1..65534", b)
	}
	for port, want := range map[uint16]datapath.Reason{
		first: datapath.PassUDPReply, last: datapath.PassUDPReply, uint16((uint32(first) + uint32(last)) / 2): datapath.PassUDPReply,
		first - 1: datapath.DropUDPPortNotAllowed, last + 1: datapath.DropUDPPortNotAllowed,
	} {
		if _, got := run(t, d, udpFrame("192.0.2.1", port).Bytes()); got != want {
			t.Errorf("port %d (ephemeral range %d-%d): %s, want %s", port, first, last, got.Name(), want.Name())
		}
	}
}
