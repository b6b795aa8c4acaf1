package datapath

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// linkLocalV6 is where IPv6 sources are keyed per address, not per /64:
// a link-local /64 is every neighbour on the link.
var linkLocalV6 = netip.MustParsePrefix("fe80::/10")

// The widest prefixes a feed (CrowdSec, fail2ban: anything but the
// operator at the command line) may ban: a poisoned feed must not ban a
// large part of the internet.
const (
	MinFeedBitsV4 = 8
	MinFeedBitsV6 = 16
)

// FeedBanPrefix is what a feed's ban of p covers: p, but an IPv6 address
// (not link-local) becomes its /64, the key of the data path's own
// per-source state, since one host holds a whole /64 and rotating the low
// bits must not escape a ban. A prefix wider than MinFeedBits is refused.
func FeedBanPrefix(p netip.Prefix) (netip.Prefix, error) {
	a := p.Addr()
	if a.Is4() && p.Bits() < MinFeedBitsV4 || a.Is6() && p.Bits() < MinFeedBitsV6 {
		return p, fmt.Errorf("%s is wider than a feed may ban (/%d for IPv4, /%d for IPv6)", p, MinFeedBitsV4, MinFeedBitsV6)
	}
	if a.Is6() && p.Bits() > 64 && !linkLocalV6.Contains(a) {
		return netip.PrefixFrom(a, 64).Masked(), nil
	}
	return p, nil
}

// SrcKeyOf is the limiter and ban key of a source: an IPv4 address, the /64
// of an IPv6 address, or a link-local IPv6 address whole.
func SrcKeyOf(a netip.Addr) SrcKey {
	var b [16]byte
	if a = a.Unmap(); a.Is4() {
		b = netip.AddrFrom4(a.As4()).As16() // ::ffff:a.b.c.d
	} else {
		b = a.As16()
		if !linkLocalV6.Contains(a) {
			clear(b[8:])
		}
	}
	var k SrcKey
	for i := range k.Addr {
		k.Addr[i] = binary.LittleEndian.Uint32(b[i*4:]) // bytes in network order, as in the packet
	}
	return k
}

// Prefix is what a key stands for: an IPv4 /32, an IPv6 /64, or a
// link-local IPv6 /128.
func (k SrcKey) Prefix() netip.Prefix {
	var b [16]byte
	for i, w := range k.Addr {
		binary.LittleEndian.PutUint32(b[i*4:], w)
	}
	a := netip.AddrFrom16(b)
	switch {
	case a.Is4In6():
		return netip.PrefixFrom(a.Unmap(), 32)
	case linkLocalV6.Contains(a):
		return netip.PrefixFrom(a, 128)
	}
	return netip.PrefixFrom(a, 64)
}

// SourceState is an entry of the per-source tables (struct xdpg_source):
// the GCRA arrival time or the ban's end, and the packets it refused.
type SourceState = xdpguardXdpgSource

// MonotonicNow is the data path's clock (CLOCK_MONOTONIC ns).
func MonotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// Path is the policy file recorded with the generation, if any.
func (m *Meta) Path() string { return cString(m.PolicyPath[:]) }

// SetPath records the policy file (cut to fit).
func (m *Meta) SetPath(path string) {
	m.PolicyPath = [256]int8{}
	for i := 0; i < len(path) && i < len(m.PolicyPath)-1; i++ {
		m.PolicyPath[i] = int8(path[i])
	}
}

// Protection is why a source is never banned (enum xdpg_protection bits).
type Protection uint32

// The reasons the daemon protects a source (bpf/types.h).
const (
	ProtectSSH      = Protection(xdpguardXdpgProtectionXDPG_PROTECT_SSH)
	ProtectGateway  = Protection(xdpguardXdpgProtectionXDPG_PROTECT_GATEWAY)
	ProtectResolver = Protection(xdpguardXdpgProtectionXDPG_PROTECT_RESOLVER)
)

// String names the reasons, e.g. "gateway,resolver".
func (p Protection) String() string {
	var out []string
	for _, r := range []struct {
		bit  Protection
		name string
	}{{ProtectSSH, "ssh-session"}, {ProtectGateway, "gateway"}, {ProtectResolver, "resolver"}} {
		if p&r.bit != 0 {
			out = append(out, r.name)
		}
	}
	return strings.Join(out, ",")
}

// BanOrigin says who banned a source (enum xdpg_ban_origin).
type BanOrigin uint8

// The origins of bans: the data path's own (a missed SYN rate), the CLI's,
// and the feeds'.
const (
	BanLimit    = BanOrigin(xdpguardXdpgBanOriginXDPG_BAN_LIMIT)
	BanCLI      = BanOrigin(xdpguardXdpgBanOriginXDPG_BAN_CLI)
	BanCrowdSec = BanOrigin(xdpguardXdpgBanOriginXDPG_BAN_CROWDSEC)
	BanFail2ban = BanOrigin(xdpguardXdpgBanOriginXDPG_BAN_FAIL2BAN)
	// NumBanOrigins is how many origins there are (BanLimit first).
	NumBanOrigins = int(xdpguardXdpgBanOriginXDPG_BAN_ORIGINS)
)

var banOriginNames = [NumBanOrigins]string{"limit", "cli", "crowdsec", "fail2ban"}

// String is the origin's name (its metric label).
func (o BanOrigin) String() string {
	if int(o) < NumBanOrigins {
		return banOriginNames[o]
	}
	return "unknown"
}

// BanOrigins lists every origin.
func BanOrigins() []BanOrigin {
	out := make([]BanOrigin, NumBanOrigins)
	for i := range out {
		out[i] = BanOrigin(i)
	}
	return out
}

// ParseBanOrigin reads an origin's name.
func ParseBanOrigin(s string) (BanOrigin, bool) {
	for i, n := range banOriginNames {
		if n == s {
			return BanOrigin(i), true
		}
	}
	return 0, false
}

// BanRange is an entry of xdpg_ban_ranges (struct xdpg_ban_range).
type BanRange = xdpguardXdpgBanRange

// ReasonText is the ban's reason text.
func (b *BanRange) ReasonText() string { return cString(b.Reason[:]) }

// MaxBanReason is how many bytes of a ban's reason are kept.
const MaxBanReason = len(BanRange{}.Reason) - 1

// SetReason records the reason, cut to MaxBanReason bytes at a character's
// boundary, with control characters (a tab, an escape sequence from a
// feed's scenario name) and invalid UTF-8 made spaces, so that what
// `bans` prints cannot break its columns or drive the terminal.
func (b *BanRange) SetReason(s string) {
	b.Reason = [len(b.Reason)]int8{}
	n := 0
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			r = ' '
		}
		var enc [utf8.UTFMax]byte
		k := utf8.EncodeRune(enc[:], r)
		if n+k > MaxBanReason {
			break
		}
		for i := 0; i < k; i++ {
			b.Reason[n+i] = int8(enc[i])
		}
		n += k
	}
}
