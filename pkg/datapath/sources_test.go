package datapath_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/datapath"
)

const listsPolicy = basePolicy + `ratelimit:
  syn:
    rate: 1
    burst: 2
  syn_total:
    rate: 1
    burst: 4
sources:
  deny: [203.0.113.0/24, "2001:db8:bad::/48", "::/8"]
  trust: [192.0.2.10, "2001:db8:7::/64"]
`

func TestDenyList(t *testing.T) {
	d := load(t, mustPolicy(t, listsPolicy))
	udp := with(testpkt.NewSYN("203.0.113.5", "198.51.100.1", 53), func(f *testpkt.Frame) { f.Proto = testpkt.ProtoUDP })
	ack := with(testpkt.NewSYN("203.0.113.5", "198.51.100.1", 22), func(f *testpkt.Frame) { f.Flags = testpkt.ACK })
	for _, tc := range []tcase{
		{"denied SYN to an open port", testpkt.NewSYN("203.0.113.5", "198.51.100.1", 22), datapath.DropSourceDenied},
		{"denied ACK", ack, datapath.DropSourceDenied},
		{"denied UDP", udp, datapath.DropSourceDenied},
		{"denied later fragment", with(testpkt.NewSYN("203.0.113.5", "198.51.100.1", 22), func(f *testpkt.Frame) { f.FragOffset = 50 }), datapath.DropSourceDenied},
		{"denied behind QinQ", with(testpkt.NewSYN("203.0.113.5", "198.51.100.1", 22), func(f *testpkt.Frame) { f.VLANs = []uint16{testpkt.EtherQinQ, testpkt.EtherQ} }), datapath.DropSourceDenied},
		{"denied IPv6 /48", testpkt.NewSYN("2001:db8:bad:ff::1", "2001:db8:1::1", 22), datapath.DropSourceDenied},
		{"denied IPv6 behind extension headers", with(testpkt.NewSYN("2001:db8:bad::1", "2001:db8:1::1", 22), func(f *testpkt.Frame) { f.Ext = exts(0, 60) }), datapath.DropSourceDenied},
		{"neighbour of the denied /24", testpkt.NewSYN("203.0.114.5", "198.51.100.1", 22), datapath.PassSYNAllowed},
		{"IPv4 is not in IPv6 ::/8", testpkt.NewSYN("10.0.0.1", "198.51.100.1", 22), datapath.PassSYNAllowed},
		{"ARP from a denied host still passes", with(testpkt.NewSYN("203.0.113.5", "198.51.100.1", 22), func(f *testpkt.Frame) { f.EtherType = testpkt.EtherARP }), datapath.PassNotIP},
	} {
		if _, got := run(t, d, tc.frame.Bytes()); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got.Name(), tc.want.Name())
		}
	}
}

func TestTrustedSourcesSkipLimitsNotPorts(t *testing.T) {
	d := load(t, mustPolicy(t, listsPolicy))
	got := countReasons(t, d, repeat(srcFrame("192.0.2.10", 22), 10)...)
	if got[datapath.PassSYNAllowed] != 10 {
		t.Fatalf("trusted source: %v, want all 10 past the limits", got)
	}
	got = countReasons(t, d, repeat(srcFrame("2001:db8:7::99", 22), 10)...)
	if got[datapath.PassSYNAllowed] != 10 {
		t.Fatalf("trusted IPv6 /64: %v", got)
	}
	if got := countReasons(t, d, srcFrame("192.0.2.10", 8080)); got[datapath.DropPortNotAllowed] != 1 {
		t.Fatalf("trusted source to a closed port: %v, want dropped", got)
	}
	// Trusted SYNs neither enter the source table nor spend the port's
	// budget: an untrusted source still has its own burst of 2.
	if n, _ := sourceEntries(d); n != 0 {
		t.Fatalf("%d sources tracked after trusted SYNs only", n)
	}
	got = countReasons(t, d, repeat(srcFrame("192.0.2.11", 22), 4)...)
	if got[datapath.PassSYNAllowed] != 2 || got[datapath.DropRateLimited] != 2 {
		t.Fatalf("untrusted neighbour: %v, want 2 passed, 2 rate_limited", got)
	}
}

// The data path holds sources.deny three ways (a /24 table for IPv4 /24
// and wider, a hash of IPv4 addresses, a trie for the rest; the table also
// marks the blocks holding an address or a /25-/31, where the others are
// looked up); each edge of each kind matches exactly, also beside another
// kind in the same /24, and the fast path (a plain ACK) agrees.
func TestDenyListKinds(t *testing.T) {
	for _, tc := range []struct {
		deny string
		in   []string
		out  []string
	}{
		{"[0.0.0.0/0]", []string{"0.0.0.1", "255.255.255.254", "10.1.2.3"}, []string{"2001:db8::1"}},
		{"[10.0.0.0/8]", []string{"10.0.0.0", "10.255.255.255"}, []string{"9.255.255.255", "11.0.0.0"}},
		{"[10.20.30.0/24, 10.20.32.0/23]", []string{"10.20.30.0", "10.20.30.255", "10.20.32.9", "10.20.33.255"}, []string{"10.20.29.255", "10.20.31.0", "10.20.34.0"}},
		{"[198.51.100.7]", []string{"198.51.100.7"}, []string{"198.51.100.6", "198.51.100.8", "7.100.51.198"}},
		{"[198.51.100.16/28]", []string{"198.51.100.16", "198.51.100.31"}, []string{"198.51.100.15", "198.51.100.32"}},
		{"[198.51.100.7, 198.51.100.64/27, 198.51.101.0/24]", []string{"198.51.100.7", "198.51.100.64", "198.51.100.95", "198.51.101.128"},
			[]string{"198.51.100.6", "198.51.100.8", "198.51.100.63", "198.51.100.96", "198.51.102.0", "198.51.99.7"}},
		{`[198.51.100.128/25, 203.0.113.9, 100.64.0.0/10, "2001:db8::/32"]`,
			[]string{"198.51.100.200", "203.0.113.9", "100.127.255.255", "2001:db8:ffff::1"},
			[]string{"198.51.100.127", "203.0.113.8", "100.128.0.0", "2001:db9::1", "::ffff:203.0.113.8"}},
	} {
		d := load(t, mustPolicy(t, basePolicy+"sources:\n  deny: "+tc.deny+"\n"))
		for _, src := range tc.in {
			if _, got := run(t, d, srcFrame(src, 22)); got != datapath.DropSourceDenied {
				t.Errorf("deny %s: %s got %s, want it denied", tc.deny, src, got.Name())
			}
			dst := "198.51.100.1"
			if strings.Contains(src, ":") {
				dst = "2001:db8:1::1"
			}
			ack := with(testpkt.NewSYN(src, dst, 22), func(f *testpkt.Frame) { f.Flags = testpkt.ACK })
			if _, got := run(t, d, ack.Bytes()); got != datapath.DropSourceDenied {
				t.Errorf("deny %s: %s's ACK got %s (the fast path must deny it too)", tc.deny, src, got.Name())
			}
		}
		for _, src := range tc.out {
			if _, got := run(t, d, srcFrame(src, 22)); got == datapath.DropSourceDenied {
				t.Errorf("deny %s: %s denied", tc.deny, src)
			}
		}
	}
}

// Ten thousand entries load into one generation and match exactly.
func TestLargeDenyList(t *testing.T) {
	var b strings.Builder
	b.WriteString(basePolicy + "sources:\n  deny:\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&b, "    - 100.%d.%d.0/24\n", 64+i/256, i%256)
	}
	d := load(t, mustPolicy(t, b.String()))
	for src, want := range map[string]datapath.Reason{
		"100.64.0.1":   datapath.DropSourceDenied,
		"100.103.15.9": datapath.DropSourceDenied, // entry 9999 = 100.(64+39).15.0/24
		"100.103.16.1": datapath.PassSYNAllowed,   // just past the last
		"100.63.255.1": datapath.PassSYNAllowed,
	} {
		if _, got := run(t, d, srcFrame(src, 22)); got != want {
			t.Errorf("%s: %s, want %s", src, got.Name(), want.Name())
		}
	}
}
