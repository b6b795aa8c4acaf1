package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// maxSourceEntries bounds each source list (deny, trust).
const maxSourceEntries = 1 << 20

// sourceList validates a list of CIDRs (or bare addresses, meaning one
// host). Host bits, IPv4-mapped IPv6, duplicates and entries inside another
// entry of the same list are errors: each one points at a typo or a list
// that does not say what its author thinks.
func (v *validator) sourceList(path string, items []string) []netip.Prefix {
	if len(items) > maxSourceEntries {
		v.fail(path, "%d entries; at most %d", len(items), maxSourceEntries)
		return nil
	}
	type entry struct {
		p   netip.Prefix
		idx int
	}
	var out []entry
	for i, s := range items {
		at := fmt.Sprintf("%s[%d]", path, i)
		p, err := parsePrefix(s)
		if err != nil {
			v.fail(at, "%v", err)
			continue
		}
		out = append(out, entry{p, i})
	}
	// Sorted by address then length, an entry that contains a later one
	// comes right before it (or before a run of entries it contains).
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].p.Addr().Compare(out[j].p.Addr()); c != 0 {
			return c < 0
		}
		return out[i].p.Bits() < out[j].p.Bits()
	})
	var prefixes []netip.Prefix
	var outer *entry
	for i := range out {
		e := &out[i]
		if outer != nil && outer.p.Overlaps(e.p) {
			if outer.p == e.p {
				v.fail(fmt.Sprintf("%s[%d]", path, e.idx), "%s is listed twice (also entry %d)", e.p, outer.idx)
			} else {
				v.fail(fmt.Sprintf("%s[%d]", path, e.idx), "%s is inside %s (entry %d): remove one", e.p, outer.p, outer.idx)
			}
			continue
		}
		outer = e
		prefixes = append(prefixes, e.p)
	}
	return prefixes
}

func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if !strings.Contains(s, "/") { // no failed parse first: a list has a million
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, fmt.Errorf("%q is not an address or CIDR", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	} else {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, fmt.Errorf("%q is not an address or CIDR", s)
		}
	}
	if p.Addr().Is4In6() {
		return p, fmt.Errorf("%q is an IPv4-mapped IPv6 address: write it as IPv4", s)
	}
	if p.Addr().Zone() != "" {
		return p, fmt.Errorf("%q has a zone; CIDRs cannot", s)
	}
	if m := p.Masked(); m != p {
		return p, fmt.Errorf("%q has host bits set: did you mean %s?", s, m)
	}
	return p, nil
}

// contains reports whether addr is in one of the prefixes.
func contains(prefixes []netip.Prefix, addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// inSorted is contains for prefixes sorted and non-overlapping (what
// sourceList and union leave): only the last one starting at or before
// addr can hold it.
func inSorted(prefixes []netip.Prefix, addr netip.Addr) bool {
	addr = addr.Unmap()
	i := sort.Search(len(prefixes), func(i int) bool { return prefixes[i].Addr().Compare(addr) > 0 })
	return i > 0 && prefixes[i-1].Contains(addr)
}

// overlapping lists the pairs (a, b) of a prefix of as overlapping one of
// bs, both sorted and non-overlapping. Two prefixes overlap when one holds
// the other: b's only possible holder in as is the last one starting at or
// before b, and anything of as that b holds starts at the first one at or
// after b. Two binary searches per b: a million denied against a thousand
// trusted costs nothing.
func overlapping(as, bs []netip.Prefix) [][2]netip.Prefix {
	var out [][2]netip.Prefix
	for _, b := range bs {
		i := sort.Search(len(as), func(i int) bool { return as[i].Addr().Compare(b.Addr()) > 0 })
		if i > 0 && as[i-1].Overlaps(b) {
			out = append(out, [2]netip.Prefix{as[i-1], b})
			continue
		}
		if i < len(as) && b.Contains(as[i].Addr()) {
			out = append(out, [2]netip.Prefix{as[i], b})
		}
	}
	return out
}
