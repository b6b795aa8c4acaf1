package datapath_test

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/policy"
	"github.com/xdpguard/xdpguard/pkg/reference"
)

const xdpDrop, xdpPass = 1, 2

func mustPolicy(t testing.TB, doc string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return p
}

const basePolicy = "tcp:\n  allow: [22, 80, 443, 9000-9002]\n"

func load(t testing.TB, pol *policy.Policy) *datapath.Generation {
	t.Helper()
	return loadHook(t, pol, datapath.HookXDP)
}

// loadHook loads pol's program for hook h, detached.
func loadHook(t testing.TB, pol *policy.Policy, h datapath.Hook) *datapath.Generation {
	t.Helper()
	testutil.RequirePrivileged(t)
	d, err := datapath.LoadDetachedHook(pol, h)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// run sends one frame through the program and returns the verdict and the
// reason whose counter moved (exactly one must).
func run(t testing.TB, d *datapath.Generation, frame []byte) (uint32, datapath.Reason) {
	t.Helper()
	// Both halves of the reason counters: a drop that a monitor-mode rule
	// lets pass is counted in the monitored half.
	read := func() (out [2]maps.Reasons) {
		var err1, err2 error
		out[0], err1 = maps.Of(d.Maps).Reasons()
		out[1], err2 = maps.Of(d.Maps).Monitored()
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := read()
	ret, err := d.Program.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	after := read()
	moved := datapath.Reason(255)
	for half := range after {
		for i := range after[half] {
			switch after[half][i] - before[half][i] {
			case 0:
			case 1:
				if moved != 255 {
					t.Fatalf("two counters moved: %s and %s", moved.Name(), datapath.Reason(i).Name())
				}
				moved = datapath.Reason(i)
			default:
				t.Fatalf("counter %s moved by %d", datapath.Reason(i).Name(), after[half][i]-before[half][i])
			}
		}
	}
	if moved == 255 {
		t.Fatal("no counter moved")
	}
	return ret, moved
}

func v4(dport uint16) testpkt.Frame { return testpkt.NewSYN("192.0.2.1", "198.51.100.1", dport) }
func v6(dport uint16) testpkt.Frame { return testpkt.NewSYN("2001:db8::1", "2001:db8:1::1", dport) }

func with(f testpkt.Frame, mod func(*testpkt.Frame)) testpkt.Frame { mod(&f); return f }

func exts(types ...uint8) []testpkt.Ext {
	var out []testpkt.Ext
	for _, ty := range types {
		out = append(out, testpkt.Ext{Type: ty})
	}
	return out
}

type tcase struct {
	name  string
	frame testpkt.Frame
	want  datapath.Reason
}

// cases are the header variants of the issue and of shared/notes'
// adversarial list, under basePolicy (22, 80, 443, 9000-9002 open).
func cases() []tcase {
	q, qinq := uint16(testpkt.EtherQ), uint16(testpkt.EtherQinQ)
	flags := func(f uint8) func(*testpkt.Frame) { return func(fr *testpkt.Frame) { fr.Flags = f } }
	return []tcase{
		{"v4 SYN open 22", v4(22), datapath.PassSYNAllowed},
		{"v4 SYN open range start", v4(9000), datapath.PassSYNAllowed},
		{"v4 SYN open range end", v4(9002), datapath.PassSYNAllowed},
		{"v4 SYN closed past range", v4(9003), datapath.DropPortNotAllowed},
		{"v4 SYN closed 8080", v4(8080), datapath.DropPortNotAllowed},
		{"v4 SYN closed port 0", v4(0), datapath.DropPortNotAllowed},
		{"v4 SYN closed 65535", v4(65535), datapath.DropPortNotAllowed},
		{"v6 SYN open 443", v6(443), datapath.PassSYNAllowed},
		{"v6 SYN closed 8080", v6(8080), datapath.DropPortNotAllowed},
		// Not a valid source on the wire (RFC 6890): an IPv6 socket would
		// take it for the IPv4 peer, which no IPv4 rule judged.
		{"v6 SYN from an IPv4-mapped source", with(v6(22), func(f *testpkt.Frame) { f.Src = netip.MustParseAddr("::ffff:203.0.113.5") }), datapath.DropMalformed},
		{"v6 ACK from an IPv4-mapped source", with(v6(22), func(f *testpkt.Frame) { f.Src = netip.MustParseAddr("::ffff:203.0.113.5"); f.Flags = testpkt.ACK }), datapath.DropMalformed},
		{"v6 SYN from link-local", with(v6(22), func(f *testpkt.Frame) { f.Src = netip.MustParseAddr("fe80::1") }), datapath.PassSYNAllowed},
		{"v6 SYN from the unspecified address", with(v6(22), func(f *testpkt.Frame) { f.Src = netip.IPv6Unspecified() }), datapath.PassSYNAllowed},
		{"SYN+ACK to closed port (reply to our own connect)", with(v4(8080), flags(testpkt.SYN|testpkt.ACK)), datapath.PassNotSYN},
		{"ACK to closed port", with(v4(8080), flags(testpkt.ACK)), datapath.PassNotSYN},
		{"RST to closed port", with(v4(8080), flags(testpkt.RST)), datapath.PassNotSYN},
		{"FIN+ACK", with(v4(8080), flags(testpkt.FIN|testpkt.ACK)), datapath.PassNotSYN},
		{"NULL flags", with(v4(8080), flags(0)), datapath.PassNotSYN},
		{"SYN+FIN open port", with(v4(22), flags(testpkt.SYN|testpkt.FIN)), datapath.DropInvalidFlags},
		{"SYN+RST open port", with(v4(22), flags(testpkt.SYN|testpkt.RST)), datapath.DropInvalidFlags},
		{"SYN+FIN+RST+PSH+URG xmas", with(v4(22), flags(testpkt.SYN|testpkt.FIN|testpkt.RST|testpkt.PSH|testpkt.URG)), datapath.DropInvalidFlags},
		{"ECN SYN open", with(v4(22), flags(testpkt.SYN|testpkt.ECE|testpkt.CWR)), datapath.PassSYNAllowed},
		{"ECN SYN closed", with(v4(8080), flags(testpkt.SYN|testpkt.ECE|testpkt.CWR)), datapath.DropPortNotAllowed},
		{"SYN+PSH+URG closed", with(v4(8080), flags(testpkt.SYN|testpkt.PSH|testpkt.URG)), datapath.DropPortNotAllowed},
		{"SYN with payload closed", with(v4(8080), func(f *testpkt.Frame) { f.Payload = []byte("hello") }), datapath.DropPortNotAllowed},
		{"SYN with TCP options open", with(v4(22), func(f *testpkt.Frame) { f.TCPOptions = []byte{2, 4, 5, 0xb4, 1, 1, 4, 2} }), datapath.PassSYNAllowed},
		{"ARP", with(v4(8080), func(f *testpkt.Frame) { f.EtherType = testpkt.EtherARP }), datapath.PassNotIP},
		{"UDP to closed port", with(v4(8080), func(f *testpkt.Frame) { f.Proto = testpkt.ProtoUDP }), datapath.PassNotTCP},
		{"ICMPv6 (ND)", with(v6(0), func(f *testpkt.Frame) { f.Proto = testpkt.ProtoICMP6; f.Payload = []byte{135, 0, 0, 0, 0, 0, 0, 0} }), datapath.PassNotTCP},
		// VLAN
		{"802.1Q SYN closed", with(v4(8080), func(f *testpkt.Frame) { f.VLANs = []uint16{q} }), datapath.DropPortNotAllowed},
		{"802.1Q SYN open", with(v4(22), func(f *testpkt.Frame) { f.VLANs = []uint16{q} }), datapath.PassSYNAllowed},
		{"802.1ad SYN closed", with(v4(8080), func(f *testpkt.Frame) { f.VLANs = []uint16{qinq} }), datapath.DropPortNotAllowed},
		{"QinQ SYN closed", with(v4(8080), func(f *testpkt.Frame) { f.VLANs = []uint16{qinq, q} }), datapath.DropPortNotAllowed},
		{"QinQ v6 SYN closed", with(v6(8080), func(f *testpkt.Frame) { f.VLANs = []uint16{qinq, q} }), datapath.DropPortNotAllowed},
		{"QinQ SYN open", with(v6(443), func(f *testpkt.Frame) { f.VLANs = []uint16{qinq, q} }), datapath.PassSYNAllowed},
		{"three tags: past the bound", with(v4(22), func(f *testpkt.Frame) { f.VLANs = []uint16{qinq, q, q} }), datapath.DropMalformed},
		{"VLAN carrying ARP", with(v4(22), func(f *testpkt.Frame) { f.VLANs = []uint16{q}; f.EtherType = testpkt.EtherARP }), datapath.PassNotIP},
		{"VLAN header cut", with(v4(22), func(f *testpkt.Frame) { f.VLANs = []uint16{q}; f.TruncateTo = 16 }), datapath.DropMalformed},
		// IPv4 header
		{"IPv4 options (IHL 6) closed", with(v4(8080), func(f *testpkt.Frame) { f.IPOptions = []byte{0x94, 4, 0, 0} }), datapath.DropPortNotAllowed},
		{"IPv4 options (IHL 15) closed", with(v4(8080), func(f *testpkt.Frame) { f.IPOptions = make([]byte, 40) }), datapath.DropPortNotAllowed},
		{"IPv4 options (IHL 15) open", with(v4(22), func(f *testpkt.Frame) { f.IPOptions = make([]byte, 40) }), datapath.PassSYNAllowed},
		{"IHL 4", with(v4(22), func(f *testpkt.Frame) { f.IHL = 4 }), datapath.DropMalformed},
		{"IHL 0", with(v4(22), func(f *testpkt.Frame) { f.IHL = 0xf0 }), datapath.DropMalformed}, // low nibble 0
		{"IHL past frame", with(v4(22), func(f *testpkt.Frame) { f.IHL = 15 }), datapath.DropMalformed},
		{"version 6 under IPv4 ethertype", with(v4(22), func(f *testpkt.Frame) { f.Version = 6 }), datapath.DropMalformed},
		{"version 4 under IPv6 ethertype", with(v6(22), func(f *testpkt.Frame) { f.Version = 4 }), datapath.DropMalformed},
		{"total length past frame", with(v4(22), func(f *testpkt.Frame) { f.TotLen = 100 }), datapath.DropMalformed},
		{"total length below IHL", with(v4(22), func(f *testpkt.Frame) { f.TotLen = 16 }), datapath.DropMalformed},
		{"total length hides the TCP header", with(v4(8080), func(f *testpkt.Frame) { f.TotLen = 30 }), datapath.DropMalformed},
		{"Ethernet padding after total length", with(v4(8080), func(f *testpkt.Frame) { f.TotLen = 40; f.Payload = make([]byte, 6) }), datapath.DropPortNotAllowed},
		// IPv4 fragments
		{"first fragment with TCP header, closed", with(v4(8080), func(f *testpkt.Frame) { f.MoreFrags = true; f.Payload = make([]byte, 12) }), datapath.DropPortNotAllowed},
		{"first fragment with TCP header, open", with(v4(22), func(f *testpkt.Frame) { f.MoreFrags = true }), datapath.PassSYNAllowed},
		{"tiny first fragment (8 bytes of TCP)", with(v4(22), func(f *testpkt.Frame) { f.MoreFrags = true; f.TotLen = 28; f.TruncateTo = 14 + 28 }), datapath.DropFragment},
		{"first fragment, options beyond it", with(v4(8080), func(f *testpkt.Frame) { f.MoreFrags = true; f.DataOffset = 15 }), datapath.DropPortNotAllowed},
		{"non-first fragment", with(v4(8080), func(f *testpkt.Frame) { f.FragOffset = 185 }), datapath.PassFragment},
		{"last fragment", with(v4(22), func(f *testpkt.Frame) { f.FragOffset = 3; f.Flags = 0 }), datapath.PassFragment},
		{"fragment at offset 8 bytes (RFC 1858 overlap)", with(v4(22), func(f *testpkt.Frame) { f.FragOffset = 1; f.MoreFrags = true }), datapath.DropFragment},
		{"UDP fragment at offset 8 bytes", with(v4(22), func(f *testpkt.Frame) { f.FragOffset = 1; f.Proto = testpkt.ProtoUDP }), datapath.PassFragment},
		// IPv6 extension headers
		{"v6 hop-by-hop, closed", with(v6(8080), func(f *testpkt.Frame) { f.Ext = exts(testpkt.ExtHopByHop) }), datapath.DropPortNotAllowed},
		{"v6 HBH+DST+RT+AH+DST, closed", with(v6(8080), func(f *testpkt.Frame) {
			f.Ext = exts(testpkt.ExtHopByHop, testpkt.ExtDestOpts, testpkt.ExtRouting, testpkt.ExtAH, testpkt.ExtDestOpts)
		}), datapath.DropPortNotAllowed},
		{"v6 AH then HBH (odd order), closed", with(v6(8080), func(f *testpkt.Frame) { f.Ext = exts(testpkt.ExtAH, testpkt.ExtHopByHop) }), datapath.DropPortNotAllowed},
		{"v6 chain at the bound (8), closed", with(v6(8080), func(f *testpkt.Frame) { f.Ext = exts(0, 60, 43, 60, 60, 60, 60, 60) }), datapath.DropPortNotAllowed},
		{"v6 chain at the bound (8), open", with(v6(22), func(f *testpkt.Frame) { f.Ext = exts(0, 60, 43, 60, 60, 60, 60, 60) }), datapath.PassSYNAllowed},
		{"v6 chain past the bound (9)", with(v6(22), func(f *testpkt.Frame) { f.Ext = exts(0, 60, 43, 60, 60, 60, 60, 60, 60) }), datapath.DropMalformed},
		{"v6 long options header, closed", with(v6(8080), func(f *testpkt.Frame) { f.Ext = []testpkt.Ext{{Type: testpkt.ExtDestOpts, Len: 20}} }), datapath.DropPortNotAllowed},
		{"v6 ext header past the frame", with(v6(22), func(f *testpkt.Frame) { f.Ext = []testpkt.Ext{{Type: 60, Len: 3}}; f.TruncateTo = 14 + 40 + 20 }), datapath.DropMalformed},
		{"v6 ext header past payload length", with(v6(22), func(f *testpkt.Frame) { f.Ext = []testpkt.Ext{{Type: 60, Len: 3}}; f.PayloadLen = 16 }), datapath.DropMalformed},
		{"v6 payload length past frame", with(v6(22), func(f *testpkt.Frame) { f.PayloadLen = 200 }), datapath.DropMalformed},
		{"v6 header cut at 39 bytes", with(v6(22), func(f *testpkt.Frame) { f.TruncateTo = 14 + 39 }), datapath.DropMalformed},
		{"v6 no next header", with(v6(22), func(f *testpkt.Frame) { f.Proto = testpkt.NoNextHdr }), datapath.PassNotTCP},
		{"v6 ESP", with(v6(22), func(f *testpkt.Frame) { f.Proto = 50; f.Payload = make([]byte, 16) }), datapath.PassNotTCP},
		{"v6 first fragment, closed", with(v6(8080), func(f *testpkt.Frame) { f.Ext = []testpkt.Ext{{Type: testpkt.ExtFragment, More: true}} }), datapath.DropPortNotAllowed},
		{"v6 first fragment after DST, closed", with(v6(8080), func(f *testpkt.Frame) {
			f.Ext = []testpkt.Ext{{Type: testpkt.ExtDestOpts}, {Type: testpkt.ExtFragment, More: true}}
		}), datapath.DropPortNotAllowed},
		{"v6 tiny first fragment", with(v6(22), func(f *testpkt.Frame) {
			f.Ext = []testpkt.Ext{{Type: testpkt.ExtFragment, More: true}}
			f.PayloadLen = 16
			f.TruncateTo = 14 + 40 + 16
		}), datapath.DropFragment},
		{"v6 chain split by fragmentation (RFC 7112)", with(v6(22), func(f *testpkt.Frame) {
			f.Ext = []testpkt.Ext{{Type: testpkt.ExtFragment, More: true}, {Type: testpkt.ExtDestOpts, Len: 4}}
			f.PayloadLen = 16
			f.TruncateTo = 14 + 40 + 16
		}), datapath.DropMalformed},
		{"v6 non-first fragment", with(v6(8080), func(f *testpkt.Frame) { f.Ext = []testpkt.Ext{{Type: testpkt.ExtFragment, FragOffset: 100}} }), datapath.PassFragment},
		{"v6 fragment at offset 8 bytes", with(v6(22), func(f *testpkt.Frame) { f.Ext = []testpkt.Ext{{Type: testpkt.ExtFragment, FragOffset: 1, More: true}} }), datapath.DropFragment},
		{"v6 atomic fragment, closed", with(v6(8080), func(f *testpkt.Frame) { f.Ext = []testpkt.Ext{{Type: testpkt.ExtFragment}} }), datapath.DropPortNotAllowed},
		// TCP header
		{"TCP data offset 4", with(v4(22), func(f *testpkt.Frame) { f.DataOffset = 4 }), datapath.DropMalformed},
		{"TCP data offset 0", with(v4(22), func(f *testpkt.Frame) { f.DataOffset = 16 }), datapath.DropMalformed}, // 16<<4 == 0
		{"TCP data offset past packet", with(v4(22), func(f *testpkt.Frame) { f.DataOffset = 15 }), datapath.DropMalformed},
		{"TCP header cut", with(v4(22), func(f *testpkt.Frame) { f.TruncateTo = 14 + 20 + 19; f.TotLen = 39 }), datapath.DropMalformed},
	}
}

func TestDataPathTable(t *testing.T) {
	pol := mustPolicy(t, basePolicy)
	d := load(t, pol)
	for _, tc := range cases() {
		t.Run(tc.name, func(t *testing.T) {
			frame := tc.frame.Bytes()
			ret, reason := run(t, d, frame)
			if reason != tc.want {
				t.Fatalf("reason %s, want %s", reason.Name(), tc.want.Name())
			}
			wantRet := uint32(xdpPass)
			if tc.want.Dropped() {
				wantRet = xdpDrop
			}
			if ret != wantRet {
				t.Fatalf("verdict %d, want %d", ret, wantRet)
			}
			if ref := reference.Classify(frame, pol); ref.Reason != tc.want {
				t.Fatalf("reference says %s, want %s", ref.Reason.Name(), tc.want.Name())
			}
		})
	}
}

// Every cut of a closed-port SYN (each variant) is dropped: no truncation
// point turns it into a pass.
func TestDataPathTruncatedAtEveryByte(t *testing.T) {
	pol := mustPolicy(t, basePolicy)
	d := load(t, pol)
	variants := map[string]testpkt.Frame{
		"v4":         v4(8080),
		"v4 options": with(v4(8080), func(f *testpkt.Frame) { f.IPOptions = make([]byte, 8) }),
		"v6":         v6(8080),
		"v6 ext":     with(v6(8080), func(f *testpkt.Frame) { f.Ext = exts(0, 60, 44) }),
		"QinQ v4":    with(v4(8080), func(f *testpkt.Frame) { f.VLANs = []uint16{testpkt.EtherQinQ, testpkt.EtherQ} }),
	}
	for name, f := range variants {
		full := f.Bytes()
		for cut := 14; cut < len(full); cut++ {
			_, reason := run(t, d, full[:cut])
			if !reason.Dropped() {
				t.Errorf("%s cut to %d bytes: %s passes", name, cut, reason.Name())
			}
			if ref := reference.Classify(full[:cut], pol); ref.Reason != reason {
				t.Errorf("%s cut to %d: BPF %s, reference %s", name, cut, reason.Name(), ref.Reason.Name())
			}
		}
	}
}

func TestPortDropCounters(t *testing.T) {
	d := load(t, mustPolicy(t, basePolicy))
	for i := 0; i < 3; i++ {
		run(t, d, v4(8080).Bytes())
	}
	run(t, d, v6(9003).Bytes())
	run(t, d, v4(22).Bytes())
	drops, err := maps.Of(d.Maps).PortDrops(0)
	if err != nil {
		t.Fatal(err)
	}
	want := []maps.PortDrops{{Port: 8080, PortCounters: datapath.PortCounters{NotAllowed: 3}}, {Port: 9003, PortCounters: datapath.PortCounters{NotAllowed: 1}}}
	if fmt.Sprint(drops) != fmt.Sprint(want) {
		t.Fatalf("port drops %v, want %v", drops, want)
	}
}

func srcFrame(src string, dport uint16) []byte {
	dst := "198.51.100.1"
	if netip.MustParseAddr(src).Is6() {
		dst = "2001:db8:1::1"
	}
	return testpkt.NewSYN(src, dst, dport).Bytes()
}

func countReasons(t *testing.T, d *datapath.Generation, frames ...[]byte) map[datapath.Reason]int {
	t.Helper()
	out := map[datapath.Reason]int{}
	for _, f := range frames {
		_, r := run(t, d, f)
		out[r]++
	}
	return out
}

func repeat(f []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = f
	}
	return out
}

// bansOf lists d's bans in force.
func bansOf(d *datapath.Generation) ([]maps.Ban, error) {
	bans, _, err := maps.Of(d.Maps).Bans(0)
	return bans, err
}

// sourceEntries counts d's per-source SYN buckets.
func sourceEntries(d *datapath.Generation) (int, error) {
	c, err := maps.Of(d.Maps).CountSources(datapath.Meta{})
	return c.Entries, err
}
