// Package testpkt builds Ethernet frames for tests, benchmarks and the
// flood generator, including the malformed and evasive variants the data
// path must survive. Defaults make a valid IPv4 TCP SYN.
package testpkt

import (
	"encoding/binary"
	"net/netip"
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
	URG = 0x20
	ECE = 0x40
	CWR = 0x80
)

// Ethertypes and protocol numbers used by tests.
const (
	EtherIPv4  = 0x0800
	EtherIPv6  = 0x86DD
	EtherARP   = 0x0806
	EtherQ     = 0x8100
	EtherQinQ  = 0x88A8
	ProtoTCP   = 6
	ProtoUDP   = 17
	ProtoICMP6 = 58
	// IPv6 extension headers.
	ExtHopByHop = 0
	ExtRouting  = 43
	ExtFragment = 44
	ExtAH       = 51
	ExtDestOpts = 60
	NoNextHdr   = 59
)

// Ext is an IPv6 extension header. Len is in the header's own units (8-byte
// units beyond the first 8, or 4-byte units beyond the first 8 for AH);
// fragment headers use FragOffset/More instead.
type Ext struct {
	Type       uint8
	Len        uint8
	FragOffset uint16 // 8-byte units
	More       bool
}

// Frame describes one Ethernet frame.
type Frame struct {
	SrcMAC, DstMAC [6]byte
	VLANs          []uint16 // TPIDs of the tags, outermost first
	EtherType      uint16   // 0: from Src's family

	Src, Dst netip.Addr
	TTL      uint8

	// IPv4
	IPOptions  []byte // padded to 4 bytes
	IHL        int    // 0: computed
	FragOffset uint16 // 8-byte units
	MoreFrags  bool
	TotLen     int // 0: computed; -1 leaves 0
	Version    int // 0: from family

	// IPv6
	Ext        []Ext
	PayloadLen int // 0: computed; -1 leaves 0

	Proto          uint8 // 0: TCP
	SPort, DPort   uint16
	Flags          uint8
	DataOffset     int // 0: computed (words)
	TCPOptions     []byte
	Payload        []byte
	TruncateTo     int // >0: cut the finished frame to this many bytes
	OmitL4Checksum bool
}

// NewSYN is a plain SYN from src to dst:dport (IPv4 or IPv6 by address).
func NewSYN(src, dst string, dport uint16) Frame {
	return Frame{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SPort: 40000, DPort: dport, Flags: SYN}
}

// Bytes serialises the frame.
func (f Frame) Bytes() []byte {
	l4 := f.l4()
	var l3 []byte
	// IPv6 by the source; an IPv4-mapped source (::ffff:a.b.c.d) sent to
	// an IPv6 destination stays IPv6 on the wire, as a spoofer would send it.
	v6 := f.Src.Is6() && (!f.Src.Is4In6() || (f.Dst.Is6() && !f.Dst.Is4In6()))
	if v6 {
		l3 = f.ipv6(l4)
	} else {
		l3 = f.ipv4(l4)
	}
	b := make([]byte, 0, 64+len(l3))
	b = append(b, f.DstMAC[:]...)
	b = append(b, f.SrcMAC[:]...)
	for _, tpid := range f.VLANs {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, 100) // VID 100
	}
	et := f.EtherType
	if et == 0 {
		et = EtherIPv4
		if v6 {
			et = EtherIPv6
		}
	}
	b = binary.BigEndian.AppendUint16(b, et)
	b = append(b, l3...)
	if f.TruncateTo > 0 && f.TruncateTo < len(b) {
		b = b[:f.TruncateTo]
	}
	return b
}

func (f Frame) proto() uint8 {
	if f.Proto == 0 {
		return ProtoTCP
	}
	return f.Proto
}

func (f Frame) l4() []byte {
	switch f.proto() {
	case ProtoTCP:
		opts := pad(f.TCPOptions, 4)
		doff := f.DataOffset
		if doff == 0 {
			doff = (20 + len(opts)) / 4
		}
		h := make([]byte, 20, 20+len(opts)+len(f.Payload))
		binary.BigEndian.PutUint16(h[0:], f.SPort)
		binary.BigEndian.PutUint16(h[2:], f.DPort)
		binary.BigEndian.PutUint32(h[4:], 1000)
		h[12] = byte(doff << 4)
		h[13] = f.Flags
		binary.BigEndian.PutUint16(h[14:], 64240)
		h = append(h, opts...)
		return append(h, f.Payload...)
	case ProtoUDP:
		h := make([]byte, 8, 8+len(f.Payload))
		binary.BigEndian.PutUint16(h[0:], f.SPort)
		binary.BigEndian.PutUint16(h[2:], f.DPort)
		binary.BigEndian.PutUint16(h[4:], uint16(8+len(f.Payload)))
		return append(h, f.Payload...)
	default:
		return append([]byte{}, f.Payload...)
	}
}

func (f Frame) ipv4(l4 []byte) []byte {
	opts := pad(f.IPOptions, 4)
	ihl := f.IHL
	if ihl == 0 {
		ihl = (20 + len(opts)) / 4
	}
	ver := f.Version
	if ver == 0 {
		ver = 4
	}
	h := make([]byte, 20, 20+len(opts)+len(l4))
	h[0] = byte(ver<<4) | byte(ihl&0x0f)
	tot := f.TotLen
	if tot == 0 {
		tot = 20 + len(opts) + len(l4)
	} else if tot < 0 {
		tot = 0
	}
	binary.BigEndian.PutUint16(h[2:], uint16(tot))
	binary.BigEndian.PutUint16(h[4:], 1)
	fo := f.FragOffset & 0x1fff
	if f.MoreFrags {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], fo)
	h[8] = f.ttl()
	h[9] = f.proto()
	src, dst := f.Src.Unmap().As4(), f.Dst.Unmap().As4()
	copy(h[12:], src[:])
	copy(h[16:], dst[:])
	h = append(h, opts...)
	binary.BigEndian.PutUint16(h[10:], checksum(h[:20+len(opts)], 0))
	if !f.OmitL4Checksum && f.FragOffset == 0 && !f.MoreFrags {
		pseudo := sum(src[:], 0)
		pseudo = sum(dst[:], pseudo)
		pseudo += uint32(f.proto()) + uint32(len(l4))
		setL4Checksum(f.proto(), l4, pseudo)
	}
	return append(h, l4...)
}

func (f Frame) ipv6(l4 []byte) []byte {
	var ext []byte
	next := f.proto()
	// Build the chain back to front so each header names the next.
	for i := len(f.Ext) - 1; i >= 0; i-- {
		e := f.Ext[i]
		var h []byte
		switch e.Type {
		case ExtFragment:
			h = make([]byte, 8)
			fo := e.FragOffset << 3
			if e.More {
				fo |= 1
			}
			binary.BigEndian.PutUint16(h[2:], fo)
			binary.BigEndian.PutUint32(h[4:], 0xabcd)
		case ExtAH:
			h = make([]byte, (int(e.Len)+2)*4)
			h[1] = e.Len
		default:
			h = make([]byte, (int(e.Len)+1)*8)
			h[1] = e.Len
			if e.Type != ExtRouting {
				h[2] = 1 // PadN option covering the rest
				h[3] = byte(len(h) - 4)
			}
		}
		h[0] = next
		next = e.Type
		ext = append(h, ext...)
	}
	h := make([]byte, 40, 40+len(ext)+len(l4))
	ver := f.Version
	if ver == 0 {
		ver = 6
	}
	h[0] = byte(ver << 4)
	pl := f.PayloadLen
	if pl == 0 {
		pl = len(ext) + len(l4)
	} else if pl < 0 {
		pl = 0
	}
	binary.BigEndian.PutUint16(h[4:], uint16(pl))
	h[6] = next
	h[7] = f.ttl()
	src, dst := f.Src.As16(), f.Dst.As16()
	copy(h[8:], src[:])
	copy(h[24:], dst[:])
	if !f.OmitL4Checksum {
		pseudo := sum(src[:], 0)
		pseudo = sum(dst[:], pseudo)
		pseudo += uint32(len(l4)) + uint32(f.proto())
		setL4Checksum(f.proto(), l4, pseudo)
	}
	h = append(h, ext...)
	return append(h, l4...)
}

func (f Frame) ttl() uint8 {
	if f.TTL == 0 {
		return 64
	}
	return f.TTL
}

func setL4Checksum(proto uint8, l4 []byte, pseudo uint32) {
	switch {
	case proto == ProtoTCP && len(l4) >= 18:
		l4[16], l4[17] = 0, 0
		binary.BigEndian.PutUint16(l4[16:], checksum(l4, pseudo))
	case proto == ProtoUDP && len(l4) >= 8:
		l4[6], l4[7] = 0, 0
		binary.BigEndian.PutUint16(l4[6:], checksum(l4, pseudo))
	}
}

func pad(b []byte, to int) []byte {
	out := append([]byte{}, b...)
	for len(out)%to != 0 {
		out = append(out, 0)
	}
	return out
}

func sum(b []byte, s uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func checksum(b []byte, s uint32) uint16 {
	s = sum(b, s)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
