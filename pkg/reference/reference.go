// Package reference is the specification of xdpguard's data path written as
// plain Go: what verdict, and why, every frame gets under a policy (rate
// limits and bans aside: they are stateful, and tested by the BPF tables). The BPF
// program must agree with it on every frame; the differential and fuzz tests
// in pkg/loader check that. It is written from docs/ARCHITECTURE.md, not
// translated from the C, so that a mistake in one shows up as a mismatch.
package reference

import (
	"encoding/binary"
	"net/netip"

	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Bounds of the parser (bpf/parsing.h).
const (
	MaxVLANTags = 2
	MaxExtHdrs  = 8
	MaxHdrOff   = 4096
)

// Verdict is the outcome for one frame.
type Verdict struct {
	Reason loader.Reason
	// Port is the destination port of a SYN that reached the port check,
	// or of a UDP datagram under udp.allow.
	Port uint16
	// Addr is the packet's source address, for IP packets.
	Addr netip.Addr
	// Rule is the rule the packet is counted under ("" for none): the
	// first rule in the file that opens its port to its source (open
	// rules before scoped ones), else tcp/listening for a port only a
	// listening socket opens; for a drop, the monitor-mode rule that lets
	// it pass, or the implicit rule that drops it.
	Rule string
	// Monitored: a monitor-mode rule let this drop pass.
	Monitored bool
}

// Passes reports whether the frame goes on to the stack.
func (v Verdict) Passes(pol *policy.Policy) bool {
	return !v.Reason.Dropped() || pol.Monitor || v.Monitored
}

// Classify judges one frame. It states the stateless rules only: rate
// limits, bans and ICMP echo limits depend on what came before, so a SYN or
// echo request the policy lets through is a pass here; the BPF tables test
// the limiters against the data path itself (a policy without limits, or
// with limits that are never reached, compares exactly).
func Classify(frame []byte, pol *policy.Policy) Verdict {
	p := pkt{b: frame}
	v := p.classify(pol)
	if v.Reason != PendingSYN {
		return v
	}
	v.Reason = loader.PassSYNAllowed
	if v.Rule = admittedBy(pol, policy.ProtoTCP, v.Port, v.Addr); v.Rule != "" {
		return v
	}
	v.Reason = loader.DropPortNotAllowed
	v.Rule = policy.RuleTCPClosed
	if m := pol.MonitorRule(policy.ProtoTCP, v.Port); m != nil {
		v.Rule, v.Monitored = m.Name, true
	}
	return v
}

// admittedBy is the rule that opens port to src, "" when none does.
func admittedBy(pol *policy.Policy, proto uint8, port uint16, src netip.Addr) string {
	in := func(r policy.PortRange) bool { return r.First <= port && port <= r.Last }
	for _, r := range pol.Open {
		if r.Proto == proto && in(r.Ports) {
			return r.Name
		}
	}
	if proto == policy.ProtoTCP && pol.Allows(port) {
		return policy.RuleTCPListening
	}
	for _, r := range pol.Scoped {
		if r.Proto == proto && in(r.Ports) && policy.Contains(r.From, src) {
			return r.Name
		}
	}
	return ""
}

// PendingSYN marks a valid SYN whose port and limits are still to be judged.
const PendingSYN = loader.Reason(255)

type pkt struct{ b []byte }

// has reports whether n bytes at off are inside the frame.
func (p pkt) has(off, n int) bool { return off <= MaxHdrOff && off+n <= len(p.b) }

func (p pkt) u16(off int) int { return int(binary.BigEndian.Uint16(p.b[off:])) }

type l3 struct {
	l4Off, l4Len         int
	proto                uint8
	firstFrag, laterFrag bool
	fragOffOne           bool
	addr                 netip.Addr
	v6                   bool
}

func isVLAN(t int) bool { return t == 0x8100 || t == 0x88A8 }

// classify applies every rule but the TCP port and limits.
func (p pkt) classify(pol *policy.Policy) Verdict {
	if !p.has(0, 14) {
		return Verdict{Reason: loader.DropMalformed}
	}
	off, etype := 14, p.u16(12)
	for i := 0; i < MaxVLANTags && isVLAN(etype); i++ {
		if !p.has(off, 4) {
			return Verdict{Reason: loader.DropMalformed}
		}
		etype = p.u16(off + 2)
		off += 4
	}
	if isVLAN(etype) {
		return Verdict{Reason: loader.DropMalformed} // more tags than we look through
	}
	var h l3
	var ok bool
	switch etype {
	case 0x0800:
		h, ok = p.ipv4(off)
	case 0x86DD:
		h, ok = p.ipv6(off)
	default:
		return Verdict{Reason: loader.PassNotIP}
	}
	if !ok {
		return Verdict{Reason: loader.DropMalformed}
	}
	// A denied source loses every IP packet, whatever it carries.
	if policy.Contains(pol.Deny, h.addr) {
		return Verdict{Reason: loader.DropSourceDenied, Addr: h.addr, Rule: policy.RuleSourcesDeny}
	}
	if h.laterFrag {
		if h.fragOffOne && h.proto == 6 {
			return Verdict{Reason: loader.DropFragment}
		}
		return Verdict{Reason: loader.PassFragment}
	}
	if h.proto == 17 && pol.UDP != nil {
		return p.udp(h, pol)
	}
	if pol.ICMPEcho != nil && ((h.v6 && h.proto == 58) || (!h.v6 && h.proto == 1)) {
		if !p.has(h.l4Off, 1) || h.l4Len < 1 {
			if h.firstFrag {
				return Verdict{Reason: loader.DropFragment}
			}
			return Verdict{Reason: loader.DropMalformed}
		}
		// Only the type byte must be there; echo requests are then limited
		// (stateful, not modelled) and everything else passes.
		return Verdict{Reason: loader.PassNotTCP, Addr: h.addr}
	}
	if h.proto != 6 {
		return Verdict{Reason: loader.PassNotTCP}
	}
	if !p.has(h.l4Off, 20) || h.l4Len < 20 {
		if h.firstFrag {
			return Verdict{Reason: loader.DropFragment}
		}
		return Verdict{Reason: loader.DropMalformed}
	}
	doff := int(p.b[h.l4Off+12]>>4) * 4
	if doff < 20 || (!h.firstFrag && doff > h.l4Len) {
		return Verdict{Reason: loader.DropMalformed}
	}
	flags := p.b[h.l4Off+13]
	const fin, syn, rst, ack = 0x01, 0x02, 0x04, 0x10
	if flags&(syn|ack) != syn {
		return Verdict{Reason: loader.PassNotSYN}
	}
	if flags&(fin|rst) != 0 {
		return Verdict{Reason: loader.DropInvalidFlags}
	}
	return Verdict{Reason: PendingSYN, Port: uint16(p.u16(h.l4Off + 2)), Addr: h.addr}
}

// udp judges a datagram under udp.allow: open (to this source), a reply
// to our own traffic (destination in the ephemeral range), or dropped.
func (p pkt) udp(h l3, pol *policy.Policy) Verdict {
	if !p.has(h.l4Off, 8) || h.l4Len < 8 {
		if h.firstFrag {
			return Verdict{Reason: loader.DropFragment}
		}
		return Verdict{Reason: loader.DropMalformed}
	}
	v := Verdict{Port: uint16(p.u16(h.l4Off + 2)), Addr: h.addr}
	replies := pol.UDP.Replies
	if pol.UDP.RepliesAuto {
		replies, _ = loader.EphemeralPorts()
	}
	v.Rule = admittedBy(pol, policy.ProtoUDP, v.Port, h.addr)
	switch m := pol.MonitorRule(policy.ProtoUDP, v.Port); {
	case v.Rule != "":
		v.Reason = loader.PassUDPAllowed
	case replies.First != 0 && replies.First <= v.Port && v.Port <= replies.Last:
		v.Reason, v.Rule = loader.PassUDPReply, policy.RuleUDPReplies
	case m != nil:
		v.Reason, v.Rule, v.Monitored = loader.DropUDPPortNotAllowed, m.Name, true
	default:
		v.Reason, v.Rule = loader.DropUDPPortNotAllowed, policy.RuleUDPClosed
	}
	return v
}

func (p pkt) ipv4(off int) (l3, bool) {
	var h l3
	if !p.has(off, 20) || p.b[off]>>4 != 4 {
		return h, false
	}
	hlen := int(p.b[off]&0x0f) * 4
	tot := p.u16(off + 2)
	if hlen < 20 || tot < hlen || off+tot > len(p.b) {
		return h, false
	}
	frag := p.u16(off + 6)
	h.laterFrag = frag&0x1fff != 0
	h.fragOffOne = frag&0x1fff == 1
	h.firstFrag = frag&0x1fff == 0 && frag&0x2000 != 0
	h.proto = p.b[off+9]
	h.addr = netip.AddrFrom4([4]byte(p.b[off+12 : off+16]))
	h.l4Off, h.l4Len = off+hlen, tot-hlen
	return h, true
}

func isExt(n uint8) bool { return n == 0 || n == 43 || n == 44 || n == 51 || n == 60 }

func (p pkt) ipv6(off int) (l3, bool) {
	var h l3
	if !p.has(off, 40) || p.b[off]>>4 != 6 {
		return h, false
	}
	end := len(p.b) // a zero payload length (jumbogram) is bounded by the frame
	if pl := p.u16(off + 4); pl != 0 {
		end = off + 40 + pl
	}
	if end > len(p.b) {
		return h, false
	}
	next := p.b[off+6]
	h.addr = netip.AddrFrom16([16]byte(p.b[off+8 : off+24]))
	h.v6 = true
	if h.addr.Is4In6() {
		return h, false // not a valid source on the wire (RFC 6890)
	}
	off += 40
	for i := 0; i < MaxExtHdrs && isExt(next) && !h.laterFrag; i++ {
		if !p.has(off, 8) {
			return h, false
		}
		var hlen int
		switch next {
		case 44:
			hlen = 8
			fo := p.u16(off + 2)
			if fo&0xfff8 != 0 {
				h.laterFrag, h.fragOffOne = true, fo>>3 == 1
			} else if fo&1 != 0 {
				h.firstFrag = true
			}
		case 51:
			hlen = (int(p.b[off+1]) + 2) * 4
		default:
			hlen = (int(p.b[off+1]) + 1) * 8
		}
		next = p.b[off]
		off += hlen
		if off > end {
			return h, false
		}
	}
	if isExt(next) && !h.laterFrag {
		return h, false // chain longer than we walk
	}
	h.proto, h.l4Off, h.l4Len = next, off, end-off
	return h, true
}
