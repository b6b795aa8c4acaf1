package trace

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/listening"
	"github.com/xdpguard/xdpguard/pkg/policy"
	"github.com/xdpguard/xdpguard/pkg/protect"
	"github.com/xdpguard/xdpguard/pkg/reference"
)

// sampleOf is what the data path would send for frame judged as reason.
func sampleOf(frame []byte, reason datapath.Reason, passed bool) *datapath.TraceSample {
	s := &datapath.TraceSample{FrameLen: uint32(len(frame)), Reason: uint8(reason), Rule: datapath.RuleSlotNone}
	s.HeadLen = uint16(copy(s.Head[:], frame))
	if passed {
		s.Passed = 1
	}
	return s
}

func packetOf(f testpkt.Frame, reason datapath.Reason, passed bool) Packet {
	wall := func(uint64) time.Time { return time.Unix(0, 0).UTC() }
	return decode(sampleOf(f.Bytes(), reason, passed), "eth1", wall, func(uint16) string { return "" })
}

func TestDecodeLines(t *testing.T) {
	syn := testpkt.NewSYN("192.0.2.7", "198.51.100.1", 22)
	v6 := testpkt.NewSYN("2001:db8::7", "2001:db8:1::1", 443)
	v6.Ext = []testpkt.Ext{{Type: 0}, {Type: 60}}
	v6.VLANs = []uint16{testpkt.EtherQ}
	v6.Flags = testpkt.SYN | testpkt.ACK
	udp := testpkt.NewSYN("192.0.2.7", "198.51.100.1", 53)
	udp.Proto = testpkt.ProtoUDP
	big := testpkt.NewSYN("192.0.2.7", "198.51.100.1", 22)
	big.Payload = make([]byte, 1400) // beyond the head: padded back to its length
	for _, c := range []struct {
		p    Packet
		want string
	}{
		{packetOf(syn, datapath.PassSYNAllowed, true), "00:00:00.000 eth1 tcp 192.0.2.7:40000 > 198.51.100.1:22 SYN | pass syn_allowed rule=-"},
		{packetOf(syn, datapath.DropPortNotAllowed, true), "would-drop port_not_allowed"},
		{packetOf(syn, datapath.DropPortNotAllowed, false), "> 198.51.100.1:22 SYN | drop port_not_allowed"},
		{packetOf(v6, datapath.PassNotSYN, true), "tcp [2001:db8::7]:40000 > [2001:db8:1::1]:443 vlan [100] SYN,ACK | pass not_syn"},
		{packetOf(udp, datapath.PassNotTCP, true), "udp 192.0.2.7:40000 > 198.51.100.1:53 | pass not_tcp"},
	} {
		if got := c.p.Line(); !strings.Contains(got, c.want) {
			t.Errorf("line %q, want it to contain %q", got, c.want)
		}
	}
	p := packetOf(big, datapath.PassNotSYN, true)
	if len(p.frame) != len(big.Bytes()) || reference.Classify(p.frame, mustPolicy(t, "tcp:\n  allow: [22]\n")).Reason != datapath.PassSYNAllowed {
		t.Errorf("a frame longer than the head: the model does not see what the kernel saw (%d bytes)", len(p.frame))
	}
}

func mustPolicy(t *testing.T, doc string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Preview: today's verdicts are the samples' (the kernel's); a limit's or
// a ban's drop is not compared; the model's disagreement with the kernel is
// counted; cuts and openings are grouped by source and port.
func TestPreviewJudges(t *testing.T) {
	cur := mustPolicy(t, "tcp:\n  allow: [22, 80]\n")
	cand := mustPolicy(t, "tcp:\n  allow: [22, 443]\n")
	pv := NewPreview(cur, cand, nil)
	a, b := "192.0.2.7", "192.0.2.8"
	for range 3 {
		pv.Add(packetOf(testpkt.NewSYN(a, "198.51.100.1", 80), datapath.PassSYNAllowed, true))
	}
	pv.Add(packetOf(testpkt.NewSYN(b, "198.51.100.1", 80), datapath.PassSYNAllowed, true))
	pv.Add(packetOf(testpkt.NewSYN(b, "198.51.100.1", 443), datapath.DropPortNotAllowed, false))
	pv.Add(packetOf(testpkt.NewSYN(b, "198.51.100.1", 22), datapath.PassSYNAllowed, true))
	pv.Add(packetOf(testpkt.NewSYN(b, "198.51.100.1", 22), datapath.DropRateLimited, false))
	pv.Add(packetOf(testpkt.NewSYN(b, "198.51.100.1", 22), datapath.DropPortNotAllowed, false)) // not what the file says
	r := pv.Report()
	if r.Samples != 8 || r.Compared != 7 || r.LimitedToday != 1 || r.ModelDisagrees != 1 {
		t.Errorf("report %+v", r)
	}
	if r.Cut.Samples != 4 || len(r.Cut.Flows) != 2 || r.Cut.Flows[0].Source != a || r.Cut.Flows[0].Samples != 3 ||
		r.Cut.TopPorts[0] != (Count{"tcp/80", 4}) || r.Cut.TopSources[0] != (Count{a, 3}) {
		t.Errorf("cut %+v", r.Cut)
	}
	// Port 22 dropped today (by the sample) and open in the candidate:
	// opened, as is 443.
	if r.Opened.Samples != 2 || r.Opened.TopSources[0] != (Count{b, 2}) {
		t.Errorf("opened %+v", r.Opened)
	}
}

// Warnings: an established SSH session's client whose port the candidate
// closes, or whom it denies (unless protected: the data path keeps a
// protected source exempt from deny, and the warning says the list holds
// it); nothing for a candidate that keeps them.
func TestWarnings(t *testing.T) {
	sess := []listening.Conn{{Local: netip.MustParseAddrPort("198.51.100.1:22"), Peer: netip.MustParseAddrPort("192.0.2.7:50000")}}
	resolver := protect.Sources{netip.MustParseAddr("2001:db8::53"): datapath.ProtectResolver}
	both := protect.Sources{netip.MustParseAddr("2001:db8::53"): datapath.ProtectResolver, netip.MustParseAddr("192.0.2.7"): datapath.ProtectSSH}
	deny := "tcp:\n  allow: [22]\nsources:\n  deny: [192.0.2.0/24, \"2001:db8::/32\"]\n"
	for _, c := range []struct {
		doc  string
		prot protect.Sources
		want []string
	}{
		{"tcp:\n  allow: [22]\n", both, nil},
		{"tcp:\n  allow: [80]\n", both, []string{"refuses new SSH connections from 192.0.2.7"}},
		{deny, resolver, []string{"CUTS the established SSH session", "holds 2001:db8::53, a protected source"}},
		{deny, both, []string{"holds 192.0.2.7, a protected source", "holds 2001:db8::53, a protected source"}},
	} {
		got := Warnings(mustPolicy(t, c.doc), sess, c.prot)
		if len(got) != len(c.want) {
			t.Errorf("%q: warnings %+v, want %q", c.doc, got, c.want)
			continue
		}
		for i, w := range c.want {
			if !strings.Contains(got[i].What, w) {
				t.Errorf("%q: warning %q, want %q", c.doc, got[i].What, w)
			}
		}
	}
}

// A protected source in the candidate's deny list is judged undenied, as
// the data path does: no cut reported for it.
func TestPreviewKeepsProtectedUndenied(t *testing.T) {
	cand := mustPolicy(t, "tcp:\n  allow: [22]\nsources:\n  deny: [192.0.2.0/24]\n")
	frame := tcpFrame(netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("198.51.100.1"), 40000, 22, 0x02)
	if v := judge(frame, cand, nil); v.Reason != datapath.DropSourceDenied {
		t.Fatalf("unprotected: %s", v.Reason.Name())
	}
	keys := protectedKeys(protect.Sources{netip.MustParseAddr("192.0.2.7"): datapath.ProtectGateway})
	if v := judge(frame, cand, keys); v.Reason != datapath.PassSYNAllowed {
		t.Errorf("protected: %s, want syn_allowed", v.Reason.Name())
	}
}

func TestSetSource(t *testing.T) {
	var c datapath.TraceConfig
	c.SetSource(netip.MustParsePrefix("10.1.0.0/16"))
	if c.Mask[2] != 0xffffffff || c.Mask[3] != 0x0000ffff || c.Addr[2] != 0xffff0000 || c.Addr[3] != 0x010a {
		t.Errorf("10.1.0.0/16: addr %x mask %x", c.Addr, c.Mask)
	}
	c.SetSource(netip.Prefix{})
	if c.Mask != [4]uint32{} {
		t.Errorf("every source: mask %x", c.Mask)
	}
}
