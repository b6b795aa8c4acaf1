package explain

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// The TCP flags a query may set (--flags).
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
	flagURG = 0x20
	flagECE = 0x40
	flagCWR = 0x80
)

var flagNames = []struct {
	name string
	bit  uint8
}{{"fin", flagFIN}, {"syn", flagSYN}, {"rst", flagRST}, {"psh", flagPSH}, {"ack", flagACK}, {"urg", flagURG}, {"ece", flagECE}, {"cwr", flagCWR}}

// ParseFlags reads TCP flags written as names joined by commas or `|`
// ("syn", "syn,ack", "ack|psh").
func ParseFlags(s string) (uint8, error) {
	var out uint8
	for _, f := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return r == ',' || r == '|' || r == '+' }) {
		found := false
		for _, n := range flagNames {
			if n.name == strings.TrimSpace(f) {
				out |= n.bit
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown TCP flag %q (fin, syn, rst, psh, ack, urg, ece, cwr)", f)
		}
	}
	if out == 0 {
		return 0, errors.New("no TCP flag given")
	}
	return out, nil
}

// flagString names flags, e.g. "syn,ack".
func flagString(f uint8) string {
	var out []string
	for _, n := range flagNames {
		if f&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, ",")
}

// Query is the packet explain judges: what arrives on the interface.
type Query struct {
	Src, Dst     netip.Addr
	Proto        string // tcp, udp or icmp (ICMPv6 for IPv6 addresses)
	Sport, Dport uint16
	Flags        uint8  // TCP; 0 is a SYN
	ICMPType     uint8  // ICMP; with ICMPTypeSet, else an echo request
	ICMPTypeSet  bool   // ICMPType was given
	VLAN         uint16 // an 802.1Q tag with this ID, 0 for none
}

// Validate checks a query before anything is loaded: the addresses of one
// family, a known protocol, ports where they are needed.
func (q *Query) Validate() error {
	if !q.Src.IsValid() {
		return errors.New("--src: an address is needed")
	}
	q.Src = q.Src.Unmap()
	if !q.Dst.IsValid() {
		if q.Src.Is4() {
			q.Dst = netip.MustParseAddr("192.0.2.1")
		} else {
			q.Dst = netip.MustParseAddr("2001:db8::1")
		}
	}
	q.Dst = q.Dst.Unmap()
	if q.Src.Is4() != q.Dst.Is4() {
		return fmt.Errorf("--src %s and --dst %s: not of one address family", q.Src, q.Dst)
	}
	if q.VLAN > 4094 {
		return fmt.Errorf("--vlan %d: a VLAN ID is 0 to 4094", q.VLAN)
	}
	switch q.Proto {
	case "tcp", "udp":
		if q.Dport == 0 {
			return fmt.Errorf("--dport: %s needs a destination port (1..65535)", q.Proto)
		}
		if q.Sport == 0 {
			q.Sport = 40000
		}
		if q.Proto == "tcp" && q.Flags == 0 {
			q.Flags = flagSYN
		}
	case "icmp":
		if !q.ICMPTypeSet {
			q.ICMPType = 8
			if q.Src.Is6() {
				q.ICMPType = 128
			}
		}
	default:
		return fmt.Errorf("--proto %q: tcp, udp or icmp", q.Proto)
	}
	return nil
}

// Frame builds the Ethernet frame of the query, with its VLAN tag if any,
// and correct checksums (the data path reads none, the kernel would).
func (q *Query) Frame() []byte {
	var l4 []byte
	proto := uint8(6)
	switch q.Proto {
	case "tcp":
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], q.Sport)
		binary.BigEndian.PutUint16(l4[2:], q.Dport)
		binary.BigEndian.PutUint32(l4[4:], 1)
		if q.Flags&flagACK != 0 {
			binary.BigEndian.PutUint32(l4[8:], 1)
		}
		l4[12] = 5 << 4
		l4[13] = q.Flags
		binary.BigEndian.PutUint16(l4[14:], 64240)
	case "udp":
		proto = 17
		l4 = make([]byte, 8+8)
		binary.BigEndian.PutUint16(l4[0:], q.Sport)
		binary.BigEndian.PutUint16(l4[2:], q.Dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		copy(l4[8:], "xdpguard")
	case "icmp":
		proto = 1
		if q.Src.Is6() {
			proto = 58
		}
		l4 = make([]byte, 8+8)
		l4[0] = q.ICMPType
		binary.BigEndian.PutUint16(l4[4:], 0x7867) // id
		binary.BigEndian.PutUint16(l4[6:], 1)      // sequence
		copy(l4[8:], "xdpguard")
	}
	var ip []byte
	src, dst := q.Src.AsSlice(), q.Dst.AsSlice()
	if q.Src.Is4() {
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		ip[6] = 0x40 // don't fragment
		ip[8] = 64
		ip[9] = proto
		copy(ip[12:], src)
		copy(ip[16:], dst)
		binary.BigEndian.PutUint16(ip[10:], checksum(0, ip))
	} else {
		ip = make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		ip[6] = proto
		ip[7] = 64
		copy(ip[8:], src)
		copy(ip[24:], dst)
	}
	if proto != 1 || q.Src.Is6() { // TCP, UDP and ICMPv6 cover a pseudo-header
		var sum uint32
		for i := 0; i+1 < len(src); i += 2 {
			sum += uint32(src[i])<<8 | uint32(src[i+1])
			sum += uint32(dst[i])<<8 | uint32(dst[i+1])
		}
		sum += uint32(proto) + uint32(len(l4))
		c := checksum(sum, l4)
		if proto == 17 && c == 0 {
			c = 0xffff
		}
		off := map[uint8]int{6: 16, 17: 6, 58: 2}[proto]
		binary.BigEndian.PutUint16(l4[off:], c)
	} else {
		binary.BigEndian.PutUint16(l4[2:], checksum(0, l4))
	}
	eth := make([]byte, 12, 22)
	copy(eth, []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2})
	if q.VLAN != 0 {
		eth = binary.BigEndian.AppendUint16(eth, 0x8100)
		eth = binary.BigEndian.AppendUint16(eth, q.VLAN)
	}
	if q.Src.Is4() {
		eth = binary.BigEndian.AppendUint16(eth, 0x0800)
	} else {
		eth = binary.BigEndian.AppendUint16(eth, 0x86dd)
	}
	return append(append(eth, ip...), l4...)
}

// checksum is the Internet checksum of b, starting from a partial sum.
func checksum(sum uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
