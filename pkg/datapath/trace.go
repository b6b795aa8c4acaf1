package datapath

import (
	"encoding/binary"
	"net/netip"
)

// TraceConfig is the trace in progress (struct xdpg_trace_config, the one
// entry of the pinned xdpg_trace): written by `xdpguard trace` and
// `preview`, cleared by them or, once UntilNs has passed, by the data path.
type TraceConfig = xdpguardXdpgTraceConfig

// TraceSample is one sampled packet (struct xdpg_trace_sample): its verdict
// and its first TraceHead bytes.
type TraceSample = xdpguardXdpgTraceSample

// What a trace samples (TraceConfig.Kinds, bpf/types.h XDPG_TRACE_*).
const (
	TraceAll = 1 // every packet
	TraceSYN = 2 // TCP SYNs (SYN set, ACK clear)
	TraceUDP = 4 // UDP datagrams (not later fragments)
)

// TraceHead is how many bytes of a frame a sample holds.
const TraceHead = len(TraceSample{}.Head)

// SetSource makes the trace match the sources of p: the address and mask
// of the data path's source form (IPv4 as ::ffff:a.b.c.d), word by word in
// network order. An invalid p matches every IPv4 and IPv6 source.
func (c *TraceConfig) SetSource(p netip.Prefix) {
	c.Addr, c.Mask = [4]uint32{}, [4]uint32{}
	if !p.IsValid() {
		return
	}
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	a := p.Masked().Addr().As16()
	var m [16]byte
	for i := range bits {
		m[i/8] |= 0x80 >> (i % 8)
	}
	for i := range 4 {
		c.Addr[i] = binary.LittleEndian.Uint32(a[4*i:])
		c.Mask[i] = binary.LittleEndian.Uint32(m[4*i:])
	}
}

// Frame is the sampled frame: its first bytes, padded with zeros to its
// length, so a parser reading the lengths in its headers sees what the data
// path saw in every header the head holds.
func (s *TraceSample) Frame() []byte {
	n := int(s.HeadLen)
	if n > TraceHead {
		n = TraceHead
	}
	out := make([]byte, max(int(s.FrameLen), n))
	copy(out, s.Head[:n])
	return out
}
