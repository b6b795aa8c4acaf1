// Package reference is the specification of xdpguard's data path written as
// plain Go: what verdict, and why, every frame gets under a policy.
//
// It implements docs/datapath.md, the specification, and the RFCs that
// document cites; it is written from them, not translated from bpf/*.c, so
// that a mistake in one shows up as a mismatch with the other. Section
// numbers in the comments (§1.3, §3) are that document's.
//
// Classify states the stateless rules (§1 headers, §2 ports): for a SYN,
// datagram or ICMP request that §3 would go on to judge, it gives the
// verdict of a packet no limit, ban or trust stops. Model adds §3: the
// limiters (GCRA), bans, trust and protected sources, driven by explicit
// timestamps. The BPF program must agree with both, frame by frame and state
// by state; pkg/loader's differential, model and fuzz tests check that.
package reference

import (
	"encoding/binary"
	"net/netip"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Bounds xdpguard chooses where the RFCs set none (§1.1, §1.3).
//
// There is no bound on header offsets (the C caps them at 4096 to bound its
// pointers for the verifier): an XDP program without multi-buffer support
// sees one linear buffer of less than a page, so the cap never binds.
// BPF_PROG_RUN puts at most a page less its headroom and tailroom (3,520
// bytes on x86-64) of a frame in that buffer and any more in fragments the
// program cannot read: tests compare frames shorter than that.
const (
	// maxVLANTags 802.1Q/802.1ad tags are looked through; one more is
	// malformed (§1.1).
	maxVLANTags = 2
	// maxExtHdrs IPv6 extension headers are followed; a longer chain is
	// malformed (§1.3).
	maxExtHdrs = 8
)

// Class is what §3 (limits, bans and trust) judges a packet as, if anything.
type Class uint8

const (
	// ClassNone: §3 does not judge the packet; Classify's verdict is final.
	ClassNone Class = iota
	// ClassSYN: a SYN admitted by §2 (by a rule, or as the would-be drop of
	// a monitor-mode rule).
	ClassSYN
	// ClassDatagram: a UDP datagram admitted by a rule (§2).
	ClassDatagram
	// ClassICMPRequest: an ICMP or ICMPv6 request (§1.8) under a policy that
	// judges ICMP.
	ClassICMPRequest
)

// Verdict is the outcome for one frame.
type Verdict struct {
	Reason datapath.Reason
	// Port is the destination port of a TCP SYN or of a UDP datagram judged
	// under udp (§1.7, §1.9), else 0.
	Port uint16
	// Addr is the packet's source address, for IP packets whose header
	// could be read (§1.2, §1.3).
	Addr netip.Addr
	// Rule is the rule the packet is counted under ("" for none, §2): for
	// a SYN or datagram a rule admits, that rule, whatever §3 then decides;
	// for one no rule admits, the monitor-mode rule naming its port, else
	// the implicit rule (tcp/closed, udp/replies, udp/closed); sources/deny
	// for a denied source.
	Rule string
	// Monitored: a monitor-mode rule let this drop pass (§2).
	Monitored bool
	// Class is what §3 judges the packet as.
	Class Class
}

// Passes reports whether the frame goes on to the stack: it is not a drop,
// or the policy (or the monitor-mode rule that decided) only monitors.
func (v Verdict) Passes(pol *policy.Policy) bool {
	return !v.Reason.Dropped() || pol.Monitor || v.Monitored
}

// Classify judges one frame by §1 and §2 alone. A SYN, datagram or ICMP
// request that §3 would judge gets the verdict it has when no limit, ban or
// trust decides (syn_allowed, udp_allowed, not_tcp, or a monitor-mode rule's
// would-be drop), with Class saying so; Model.Judge applies §3.
func Classify(frame []byte, pol *policy.Policy) Verdict {
	return pkt{b: frame}.classify(pol)
}

// admittedBy is the rule that admits a SYN (proto TCP) or datagram (UDP) to
// port from src (§2), "" when none does. §2 lists the rules that can admit:
// a rule open to all, for TCP a port a listening socket opens
// (tcp/listening), a rule whose from contains the source; the first of
// them in that order wins, and within rules of one kind the first in the
// file. (A policy.Policy keeps open and scoped rules apart, so this is the
// only order it can state: an open rule counts before a scoped rule even
// when the scoped one comes first in the file.)
func admittedBy(pol *policy.Policy, proto uint8, port uint16, src netip.Addr) string {
	in := func(r policy.PortRange) bool { return r.First <= port && port <= r.Last }
	for _, r := range pol.Open {
		if r.Proto == proto && in(r.Ports) {
			return r.Name
		}
	}
	// AllowTCP holds the open rules' ports and, with allow_listening, the
	// listening sockets' (policy.WithListening): what no open rule named
	// above is a listening socket's.
	if proto == policy.ProtoTCP && pol.Allows(port) {
		return policy.RuleTCPListening
	}
	for _, r := range pol.Scoped {
		if r.Proto == proto && in(r.Ports) && contains(r.From, src) {
			return r.Name
		}
	}
	return ""
}

// contains reports whether src lies in one of the prefixes. An IPv4 prefix
// holds only IPv4 sources and an IPv6 prefix only IPv6 ones (§1.5): no
// unmapping.
func contains(prefixes []netip.Prefix, src netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// Ethertypes (IEEE 802.3, 802.1Q, 802.1ad) and protocol numbers (IANA).
const (
	etherIPv4  = 0x0800
	etherIPv6  = 0x86DD
	ether8021Q = 0x8100
	ether8021D = 0x88A8

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58

	// IPv6 extension headers the kernel walks before the upper layer
	// (RFC 8200 §4, RFC 4302).
	extHopByHop = 0
	extRouting  = 43
	extFragment = 44
	extAH       = 51
	extDestOpts = 60
)

type pkt struct{ b []byte }

// has reports whether n bytes at off are inside the frame.
func (p pkt) has(off, n int) bool { return off >= 0 && off+n <= len(p.b) }

func (p pkt) u16(off int) int { return int(binary.BigEndian.Uint16(p.b[off:])) }

// l3 is what the network layer says about the transport header.
type l3 struct {
	src netip.Addr
	v6  bool
	// proto is the upper-layer protocol (IPv4 protocol, IPv6 last next
	// header); l4Off where its header starts, l4Len how many bytes of it
	// the IP header says this packet carries.
	proto        uint8
	l4Off, l4Len int
	// firstFrag: offset 0 with more fragments to come. laterFrag: a
	// non-zero offset (in 8-byte units: fragOff).
	firstFrag, laterFrag bool
	fragOff              int
}

func isVLAN(t int) bool { return t == ether8021Q || t == ether8021D }

func malformed() Verdict { return Verdict{Reason: datapath.DropMalformed} }

// classify applies §1 and §2.
func (p pkt) classify(pol *policy.Policy) Verdict {
	// §1.1 Ethernet: 14 bytes, up to two tags, each 4 bytes.
	if !p.has(0, 14) {
		return malformed()
	}
	off, etype := 14, p.u16(12)
	for tags := 0; isVLAN(etype); tags++ {
		if tags == maxVLANTags || !p.has(off, 4) {
			return malformed()
		}
		etype = p.u16(off + 2)
		off += 4
	}
	var h l3
	var ok bool
	switch etype {
	case etherIPv4:
		h, ok = p.ipv4(off)
	case etherIPv6:
		h, ok = p.ipv6(off)
	default:
		return Verdict{Reason: datapath.PassNotIP}
	}
	if !ok {
		return Verdict{Reason: datapath.DropMalformed, Addr: h.src}
	}
	v := Verdict{Addr: h.src}
	// §1.5: a denied source loses every IP packet, whatever it carries,
	// unless it is a link-local neighbour (protected sources: Model).
	if contains(pol.Deny, h.src) && !linkLocalV4.Contains(h.src) && !linkLocalV6.Contains(h.src) {
		v.Reason, v.Rule = datapath.DropSourceDenied, policy.RuleSourcesDeny
		return v
	}
	// §1.6: a later fragment carries no transport header (RFC 791, RFC
	// 8200 §4.5); a TCP one at offset 1 can only be the overlap of RFC 1858.
	if h.laterFrag {
		v.Reason = datapath.PassFragment
		if h.proto == protoTCP && h.fragOff == 1 {
			v.Reason = datapath.DropFragment
		}
		return v
	}
	// whole reports whether the transport header's first n bytes are in
	// this packet; if not, the verdict is fragment dropped for a first
	// fragment (§1.6: the rest would come in the next one), else malformed.
	whole := func(n int) (Verdict, bool) {
		if p.has(h.l4Off, n) && h.l4Len >= n {
			return v, true
		}
		if h.firstFrag {
			return Verdict{Reason: datapath.DropFragment, Addr: h.src}, false
		}
		return Verdict{Reason: datapath.DropMalformed, Addr: h.src}, false
	}
	switch {
	case h.proto == protoUDP && pol.UDP != nil: // §1.7
		if bad, ok := whole(8); !ok {
			return bad
		}
		return p.udp(v, h, pol)
	case isICMP(h): // §1.8
		if bad, ok := whole(1); !ok {
			return bad
		}
		v.Reason = datapath.PassNotTCP
		if isRequest(p.b[h.l4Off], h.v6) {
			v.Class = ClassICMPRequest
		}
		return v
	case h.proto != protoTCP:
		v.Reason = datapath.PassNotTCP
		return v
	}
	// §1.9 TCP (RFC 9293 §3.1).
	if bad, ok := whole(20); !ok {
		return bad
	}
	doff := int(p.b[h.l4Off+12]>>4) * 4
	if doff < 20 || (!h.firstFrag && doff > h.l4Len) {
		return Verdict{Reason: datapath.DropMalformed, Addr: h.src}
	}
	const fin, syn, rst, ack = 0x01, 0x02, 0x04, 0x10
	switch flags := p.b[h.l4Off+13]; {
	case flags&(syn|ack) != syn:
		v.Reason = datapath.PassNotSYN
		return v
	case flags&(fin|rst) != 0:
		v.Reason = datapath.DropInvalidFlags
		return v
	}
	v.Port = uint16(p.u16(h.l4Off + 2))
	return synPorts(v, pol)
}

// synPorts applies §2 to a SYN.
func synPorts(v Verdict, pol *policy.Policy) Verdict {
	if v.Rule = admittedBy(pol, policy.ProtoTCP, v.Port, v.Addr); v.Rule != "" {
		v.Reason, v.Class = datapath.PassSYNAllowed, ClassSYN
		return v
	}
	v.Reason = datapath.DropPortNotAllowed
	if m := pol.MonitorRule(policy.ProtoTCP, v.Port); m != nil {
		// The would-be drop of a monitor-mode rule: §3 still applies.
		v.Rule, v.Monitored, v.Class = m.Name, true, ClassSYN
		return v
	}
	// Dropped here, before any clock or state (§2).
	v.Rule = policy.RuleTCPClosed
	return v
}

// udp applies §2 to a datagram (its 8-byte header is there).
func (p pkt) udp(v Verdict, h l3, pol *policy.Policy) Verdict {
	v.Port = uint16(p.u16(h.l4Off + 2))
	if v.Rule = admittedBy(pol, policy.ProtoUDP, v.Port, v.Addr); v.Rule != "" {
		v.Reason, v.Class = datapath.PassUDPAllowed, ClassDatagram
		return v
	}
	replies := pol.UDP.Replies
	if pol.UDP.RepliesAuto {
		replies, _ = datapath.EphemeralPorts()
	}
	// A reply passes: it is no drop, so no monitor-mode rule's would-be
	// drop either.
	if replies.First != 0 && replies.First <= v.Port && v.Port <= replies.Last {
		v.Reason, v.Rule = datapath.PassUDPReply, policy.RuleUDPReplies
		return v
	}
	v.Reason, v.Rule = datapath.DropUDPPortNotAllowed, policy.RuleUDPClosed
	if m := pol.MonitorRule(policy.ProtoUDP, v.Port); m != nil {
		v.Rule, v.Monitored = m.Name, true
	}
	return v
}

// isICMP: ICMP over IPv4 (RFC 792), ICMPv6 over IPv6 (RFC 4443). Each is
// only its own family's: protocol 58 over IPv4 or 1 over IPv6 is neither.
func isICMP(h l3) bool {
	if h.v6 {
		return h.proto == protoICMPv6
	}
	return h.proto == protoICMP
}

// isRequest reports whether an ICMP type asks this host for an answer
// (§1.8): echo (8), timestamp (13), information (15) requests (RFC 792),
// address mask requests (17, RFC 950); ICMPv6 echo requests (128, RFC
// 4443) and node information queries (139, RFC 4620).
func isRequest(typ uint8, v6 bool) bool {
	if v6 {
		return typ == 128 || typ == 139
	}
	return typ == 8 || typ == 13 || typ == 15 || typ == 17
}

// ipv4 reads the IPv4 header at off (§1.2, RFC 791 §3.1).
func (p pkt) ipv4(off int) (l3, bool) {
	var h l3
	if !p.has(off, 20) {
		return h, false
	}
	h.src = netip.AddrFrom4([4]byte(p.b[off+12 : off+16]))
	ihl := int(p.b[off]&0x0f) * 4
	tot := p.u16(off + 2)
	if p.b[off]>>4 != 4 || ihl < 20 || tot < ihl || tot > len(p.b)-off {
		return h, false
	}
	// Flags (reserved, DF, MF) and the offset in 8-byte units.
	frag := p.u16(off + 6)
	h.fragOff = frag & 0x1fff
	h.laterFrag = h.fragOff != 0
	h.firstFrag = h.fragOff == 0 && frag&0x2000 != 0
	h.proto = p.b[off+9]
	h.l4Off, h.l4Len = off+ihl, tot-ihl
	return h, true
}

// ipv6 reads the IPv6 header at off and the extension headers before the
// upper layer (§1.3, RFC 8200 §3-4), and rejects sources §1.4 rules out.
func (p pkt) ipv6(off int) (l3, bool) {
	h := l3{v6: true}
	if !p.has(off, 40) {
		return h, false
	}
	h.src = netip.AddrFrom16([16]byte(p.b[off+8 : off+24]))
	if p.b[off]>>4 != 6 {
		return h, false
	}
	// Payload length 0: a jumbogram (RFC 2675), bounded by the frame.
	end := len(p.b)
	if pl := p.u16(off + 4); pl != 0 {
		end = off + 40 + pl
	}
	if end > len(p.b) {
		return h, false
	}
	// §1.4: ::ffff:0:0/96 is never a valid source on the wire (RFC 6890
	// §2.2.3, RFC 4291 §2.5.5.2).
	if h.src.Is4In6() {
		return h, false
	}
	next := p.b[off+6]
	off += 40
	for n := 0; isExt(next); n++ {
		if n == maxExtHdrs {
			return h, false // a longer chain than xdpguard follows
		}
		// Every extension header is at least 8 bytes; it must fit the
		// payload.
		if off+8 > end {
			return h, false
		}
		var hlen int
		switch next {
		case extFragment: // RFC 8200 §4.5
			hlen = 8
			w := p.u16(off + 2) // offset (13 bits), reserved (2), M
			if fo := w >> 3; fo != 0 {
				h.laterFrag, h.fragOff = true, fo
			} else if w&1 != 0 {
				h.firstFrag = true
			}
		case extAH: // RFC 4302 §2.2: in 4-byte units, less 2
			hlen = (int(p.b[off+1]) + 2) * 4
		default: // RFC 8200 §4.3, 4.4, 4.6: in 8-byte units, less 1
			hlen = (int(p.b[off+1]) + 1) * 8
		}
		next = p.b[off]
		off += hlen
		if off > end {
			return h, false
		}
		if h.laterFrag {
			break // the rest is the fragment's payload
		}
	}
	h.proto, h.l4Off, h.l4Len = next, off, end-off
	return h, true
}

func isExt(n uint8) bool {
	return n == extHopByHop || n == extRouting || n == extFragment || n == extAH || n == extDestOpts
}

// bansOn: bans are written and enforced (§3, "Bans"): ratelimit.syn.ban is
// set and the policy is not in monitor mode.
func bansOn(pol *policy.Policy) bool { return pol.SYN != nil && pol.Ban > 0 && !pol.Monitor }
