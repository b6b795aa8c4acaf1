package reference

import (
	"net/netip"
	"testing"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// No cap on header offsets: a transport header past 4096 bytes is judged
// like any other (the C's cap only bounds pointers in a buffer that is
// always shorter).
func TestClassifyNoOffsetCap(t *testing.T) {
	pol := mustPolicy(t, "tcp:\n  allow: [22]\n")
	f := testpkt.NewSYN("2001:db8::1", "2001:db8:1::1", 22)
	f.Ext = []testpkt.Ext{{Type: testpkt.ExtDestOpts, Len: 255}, {Type: testpkt.ExtDestOpts, Len: 255}, {Type: testpkt.ExtDestOpts, Len: 255}}
	b := f.Bytes()
	if len(b) < 14+40+4096+20 {
		t.Fatalf("only %d bytes", len(b))
	}
	if v := Classify(b, pol); v.Reason != datapath.PassSYNAllowed || v.Class != ClassSYN {
		t.Fatalf("SYN behind 6 KiB of options: %+v", v)
	}
	f.DPort = 23
	if v := Classify(f.Bytes(), pol); v.Reason != datapath.DropPortNotAllowed {
		t.Fatalf("closed port behind 6 KiB of options: %s", v.Reason.Name())
	}
}

// §1.4 and §1.5: an IPv4-mapped source is malformed before any list
// judges it; IPv4 prefixes never match IPv6 sources (no unmapping, not even
// of the deprecated IPv4-compatible form).
func TestClassifySourceFamilies(t *testing.T) {
	pol := mustPolicy(t, "tcp:\n  allow: [22]\nsources:\n  deny: [10.0.0.0/8]\n  trust: [\"2001:db8:aa::/48\"]\n")
	for src, want := range map[string]datapath.Reason{
		"10.1.2.3":          datapath.DropSourceDenied,
		"::ffff:10.1.2.3":   datapath.DropMalformed,
		"::ffff:192.0.2.1":  datapath.DropMalformed,
		"::10.1.2.3":        datapath.PassSYNAllowed,
		"::":                datapath.PassSYNAllowed,
		"fe80::1":           datapath.PassSYNAllowed,
		"ff02::1":           datapath.PassSYNAllowed,
		"2001:db8:aa::1":    datapath.PassSYNAllowed,
		"255.255.255.255":   datapath.PassSYNAllowed,
		"0.0.0.0":           datapath.PassSYNAllowed,
		"169.254.1.1":       datapath.PassSYNAllowed,
		"::ffff:0.0.0.0":    datapath.DropMalformed,
		"::ffff:255.0.0.11": datapath.DropMalformed,
	} {
		dst := "198.51.100.1"
		if netip.MustParseAddr(src).Is6() {
			dst = "2001:db8:1::1"
		}
		f := testpkt.NewSYN(src, dst, 22)
		f.Flags = testpkt.ACK // whatever it carries
		if want == datapath.PassSYNAllowed {
			f.Flags = testpkt.SYN
		}
		if v := Classify(f.Bytes(), pol); v.Reason != want {
			t.Errorf("%s: %s, want %s", src, v.Reason.Name(), want.Name())
		}
	}
}

// §2: which rule admits, and what a monitor-mode rule does and does not
// turn into its would-be drop.
func TestClassifyRules(t *testing.T) {
	pol := mustPolicy(t, `tcp:
  allow:
    - port: 3306
      from: [10.1.0.0/16]
      name: db
    - 3306
    - port: 8080
      from: [10.1.0.0/16]
      mode: monitor
      name: trial
  allow_listening: true
udp:
  allow:
    - port: 40005
      from: [10.1.0.0/16]
      mode: monitor
      name: udp-trial
  replies: 40000-40010
`).WithListening([]uint16{9090, 3306})
	for _, c := range []struct {
		src   string
		port  uint16
		udp   bool
		want  datapath.Reason
		rule  string
		class Class
	}{
		{"10.1.2.3", 3306, false, datapath.PassSYNAllowed, "tcp/3306", ClassSYN}, // open rules first
		{"192.0.2.1", 9090, false, datapath.PassSYNAllowed, "tcp/listening", ClassSYN},
		{"10.1.2.3", 8080, false, datapath.PassSYNAllowed, "trial", ClassSYN},
		{"192.0.2.1", 8080, false, datapath.DropPortNotAllowed, "trial", ClassSYN}, // would-be drop: §3 still judges it
		{"192.0.2.1", 8081, false, datapath.DropPortNotAllowed, "tcp/closed", ClassNone},
		{"10.1.2.3", 40005, true, datapath.PassUDPAllowed, "udp-trial", ClassDatagram},
		{"192.0.2.1", 40005, true, datapath.PassUDPReply, "udp/replies", ClassNone}, // a reply is no drop
		{"192.0.2.1", 40011, true, datapath.DropUDPPortNotAllowed, "udp/closed", ClassNone},
	} {
		dst := "198.51.100.1"
		f := testpkt.NewSYN(c.src, dst, c.port)
		if c.udp {
			f.Proto = testpkt.ProtoUDP
		}
		v := Classify(f.Bytes(), pol)
		if v.Reason != c.want || v.Rule != c.rule || v.Class != c.class || v.Port != c.port {
			t.Errorf("%s to %d (UDP %v): %+v, want %s under %q, class %d", c.src, c.port, c.udp, v, c.want.Name(), c.rule, c.class)
		}
	}
}
