package audit

import (
	"net/netip"
	"slices"
	"sort"
)

// notPublic are the blocks whose addresses are not globally reachable:
// the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and
// its updates) where "Globally Reachable" is False and no more specific
// entry is True, plus the multicast blocks, which are never sources. A
// prefix inside one of them is not public, whatever its length. netip's
// IsPrivate, IsLoopback, IsLinkLocalUnicast, IsMulticast and IsUnspecified
// answer for an address; a prefix needs containment, so the blocks are
// listed (TestNotPublicAgreesWithNetip holds the two together).
//
// Left out, as public: 192.0.0.0/24 and 2001::/23, which hold globally
// reachable entries (192.0.0.9/32, 2001:3::/32, ...); 2002::/16 (6to4) and
// 64:ff9b::/96 (NAT64), which carry public IPv4 addresses.
var notPublic = func() []netip.Prefix {
	ps := []netip.Prefix{}
	for _, s := range []string{
		"0.0.0.0/8",       // "this network" (RFC 791)
		"10.0.0.0/8",      // private (RFC 1918)
		"100.64.0.0/10",   // shared address space, carrier-grade NAT (RFC 6598)
		"127.0.0.0/8",     // loopback (RFC 1122)
		"169.254.0.0/16",  // link-local (RFC 3927)
		"172.16.0.0/12",   // private (RFC 1918)
		"192.0.2.0/24",    // documentation, TEST-NET-1 (RFC 5737)
		"192.168.0.0/16",  // private (RFC 1918)
		"198.18.0.0/15",   // benchmarking (RFC 2544)
		"198.51.100.0/24", // documentation, TEST-NET-2 (RFC 5737)
		"203.0.113.0/24",  // documentation, TEST-NET-3 (RFC 5737)
		"224.0.0.0/4",     // multicast (RFC 5771)
		"240.0.0.0/4",     // reserved, and 255.255.255.255 (RFC 1112, RFC 919)
		"::/128",          // unspecified (RFC 4291)
		"::1/128",         // loopback (RFC 4291)
		"::ffff:0:0/96",   // IPv4-mapped (RFC 4291)
		"64:ff9b:1::/48",  // local-use IPv4/IPv6 translation (RFC 8215)
		"100::/64",        // discard-only (RFC 6666)
		"2001:db8::/32",   // documentation (RFC 3849)
		"3fff::/20",       // documentation (RFC 9637)
		"5f00::/16",       // SRv6 SIDs (RFC 9602)
		"fc00::/7",        // unique local (RFC 4193)
		"fe80::/10",       // link-local (RFC 4291)
		"ff00::/8",        // multicast (RFC 4291)
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	slices.SortFunc(ps, comparePrefix)
	return ps
}()

// isPublic reports whether p holds globally reachable addresses: it is
// not inside a notPublic block.
func isPublic(p netip.Prefix) bool {
	return !within(notPublic, p)
}

// within reports whether p is inside one of blocks, sorted and not nested.
func within(blocks []netip.Prefix, p netip.Prefix) bool {
	_, ok := holder(blocks, p)
	return ok
}

// holder is the prefix of ps (sorted by comparePrefix, none inside
// another) that holds p: only the last one starting at or before p's
// address can.
func holder(ps []netip.Prefix, p netip.Prefix) (netip.Prefix, bool) {
	p = p.Masked()
	i := sort.Search(len(ps), func(i int) bool { return ps[i].Addr().Compare(p.Addr()) > 0 })
	if i > 0 && ps[i-1].Bits() <= p.Bits() && ps[i-1].Contains(p.Addr()) {
		return ps[i-1], true
	}
	return netip.Prefix{}, false
}

// wide reports whether p is a public prefix shorter than the thresholds
// (set: withDefaults), 0.0.0.0/0 and ::/0 included.
func (t Thresholds) wide(p netip.Prefix) bool {
	limit := t.WideIPv6Bits
	if p.Addr().Is4() {
		limit = t.WideIPv4Bits
	}
	return p.Bits() < limit && isPublic(p)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// sortedPrefixes is ps, sorted and without prefixes inside another: as
// the policy keeps sources.deny, checked rather than assumed.
func sortedPrefixes(ps []netip.Prefix) []netip.Prefix {
	if slices.IsSortedFunc(ps, comparePrefix) && !nested(ps) {
		return ps
	}
	ps = slices.Clone(ps)
	for i := range ps {
		ps[i] = ps[i].Masked()
	}
	slices.SortFunc(ps, comparePrefix)
	var out []netip.Prefix
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func nested(sorted []netip.Prefix) bool {
	for i := 1; i < len(sorted); i++ {
		if a := sorted[i-1]; a.Bits() <= sorted[i].Bits() && a.Contains(sorted[i].Addr()) {
			return true
		}
	}
	return false
}
