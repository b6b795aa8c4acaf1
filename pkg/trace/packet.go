// Package trace runs `xdpguard trace` and `xdpguard preview`: it turns the
// data path's sampling on in an interface's pins (xdpg_trace), reads the
// samples (xdpg_trace_ring), decodes their headers and, for a preview,
// judges each sample again under a candidate policy with pkg/reference.
//
// What is exact: each sample's verdict, reason and rule are the loaded
// program's own, for that packet. What is sampled: which packets are seen,
// within a budget (samples per second, with a burst) that a flood of
// matching packets uses up; what it leaves out is counted, not shown.
package trace

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// Packet is one sampled packet, decoded.
type Packet struct {
	Time      time.Time `json:"time"`
	Interface string    `json:"interface"`
	VLAN      []uint16  `json:"vlan,omitempty"`
	Proto     string    `json:"proto"`
	Src       string    `json:"src"`
	Dst       string    `json:"dst"`
	SrcPort   uint16    `json:"sport,omitempty"`
	DstPort   uint16    `json:"dport,omitempty"`
	Flags     string    `json:"flags,omitempty"`
	ICMPType  *uint8    `json:"icmp_type,omitempty"`
	Verdict   string    `json:"verdict"` // pass, drop, would-drop (monitor)
	Reason    string    `json:"reason"`
	Rule      string    `json:"rule,omitempty"`
	Length    uint32    `json:"length"`
	// Generation is the policy generation that judged it (low 32 bits).
	Generation uint32 `json:"generation"`

	reason datapath.Reason
	passed bool
	src    netip.Addr
	frame  []byte
}

// Verdict of a sample: pass, drop, or would-drop (a drop monitor mode let
// through).
func verdictOf(r datapath.Reason, passed bool) string {
	switch {
	case !passed:
		return "drop"
	case r.Dropped():
		return "would-drop"
	}
	return "pass"
}

// decode turns a sample into a Packet; rule names its rule slot.
func decode(s *datapath.TraceSample, iface string, wall func(ktime uint64) time.Time, rule func(uint16) string) Packet {
	r := datapath.Reason(s.Reason)
	p := Packet{
		Time: wall(s.KtimeNs), Interface: iface, Verdict: verdictOf(r, s.Passed != 0), Reason: r.Name(),
		Rule: rule(s.Rule), Length: s.FrameLen, Generation: s.Generation,
		reason: r, passed: s.Passed != 0, frame: s.Frame(),
	}
	p.parse(s.Head[:min(int(s.HeadLen), datapath.TraceHead)])
	return p
}

// parse reads the headers the sample holds: Ethernet, up to two VLAN tags,
// IPv4 or IPv6 (through its extension headers), then TCP, UDP or ICMP.
func (p *Packet) parse(b []byte) {
	p.Proto = "?"
	if len(b) < 14 {
		return
	}
	et, off := binary.BigEndian.Uint16(b[12:]), 14
	for (et == 0x8100 || et == 0x88a8) && len(b) >= off+4 {
		p.VLAN = append(p.VLAN, binary.BigEndian.Uint16(b[off:])&0xfff)
		et, off = binary.BigEndian.Uint16(b[off+2:]), off+4
	}
	var proto uint8
	later := false
	switch et {
	case 0x0800:
		if len(b) < off+20 {
			return
		}
		ihl := int(b[off]&0xf) * 4
		s, _ := netip.AddrFromSlice(b[off+12 : off+16])
		d, _ := netip.AddrFromSlice(b[off+16 : off+20])
		p.src, p.Src, p.Dst = s, s.String(), d.String()
		proto = b[off+9]
		later = binary.BigEndian.Uint16(b[off+6:])&0x1fff != 0
		off += ihl
	case 0x86dd:
		if len(b) < off+40 {
			return
		}
		s, _ := netip.AddrFromSlice(b[off+8 : off+24])
		d, _ := netip.AddrFromSlice(b[off+24 : off+40])
		p.src, p.Src, p.Dst = s, s.String(), d.String()
		proto, off = b[off+6], off+40
	ext:
		for i := 0; i < 8 && len(b) >= off+8; i++ {
			switch proto {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				proto, off = b[off], off+8+int(b[off+1])*8
				continue
			case 44: // fragment
				later = later || binary.BigEndian.Uint16(b[off+2:])&0xfff8 != 0
				proto, off = b[off], off+8
				continue
			case 51: // authentication header
				proto, off = b[off], off+(int(b[off+1])+2)*4
				continue
			}
			break ext
		}
	default:
		p.Proto = fmt.Sprintf("ether 0x%04x", et)
		return
	}
	switch proto {
	case 6:
		p.Proto = "tcp"
	case 17:
		p.Proto = "udp"
	case 1, 58:
		p.Proto = map[uint8]string{1: "icmp", 58: "icmpv6"}[proto]
	default:
		p.Proto = fmt.Sprintf("ip %d", proto)
	}
	if later {
		p.Flags = "fragment"
		return
	}
	switch {
	case (proto == 6 || proto == 17) && len(b) >= off+4:
		p.SrcPort, p.DstPort = binary.BigEndian.Uint16(b[off:]), binary.BigEndian.Uint16(b[off+2:])
		if proto == 6 && len(b) >= off+14 {
			p.Flags = tcpFlags(b[off+13])
		}
	case (proto == 1 || proto == 58) && len(b) > off:
		t := b[off]
		p.ICMPType = &t
	}
}

func tcpFlags(f uint8) string {
	var out []string
	for i, n := range []string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"} {
		if f&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// Line is the packet as one line of text: time, interface, 5-tuple, flags,
// verdict, reason, rule.
func (p Packet) Line() string {
	ep := func(a string, port uint16) string {
		if p.Proto != "tcp" && p.Proto != "udp" {
			return a
		}
		if strings.Contains(a, ":") {
			return fmt.Sprintf("[%s]:%d", a, port)
		}
		return fmt.Sprintf("%s:%d", a, port)
	}
	var extra []string
	if len(p.VLAN) > 0 {
		extra = append(extra, fmt.Sprintf("vlan %v", p.VLAN))
	}
	if p.Flags != "" {
		extra = append(extra, p.Flags)
	}
	if p.ICMPType != nil {
		extra = append(extra, fmt.Sprintf("type %d", *p.ICMPType))
	}
	rule := p.Rule
	if rule == "" {
		rule = "-"
	}
	return fmt.Sprintf("%s %s %s %s > %s %s %s %s rule=%s", p.Time.Format("15:04:05.000"), p.Interface, p.Proto,
		ep(p.Src, p.SrcPort), ep(p.Dst, p.DstPort), strings.Join(append(extra, "|"), " "), p.Verdict, p.Reason, rule)
}
