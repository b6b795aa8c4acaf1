package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"sort"
	"testing"
)

func randomPrefix(r *rand.Rand) netip.Prefix {
	if r.IntN(2) == 0 {
		a := netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
		return netip.PrefixFrom(a, 8+r.IntN(25)).Masked()
	}
	var b [16]byte
	b[0], b[1], b[2], b[3], b[15] = 0x20, 0x01, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))
	return netip.PrefixFrom(netip.AddrFrom16(b), 16+r.IntN(113)).Masked()
}

// disjoint keeps a random list's prefixes that overlap none kept before,
// sorted as sourceList leaves a list.
func disjoint(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		ok := true
		for _, o := range out {
			ok = ok && !o.Overlaps(p)
		}
		if ok {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return comparePrefix(out[i], out[j]) < 0 })
	return out
}

// overlapping finds exactly the pairs a test of every pair finds.
func TestOverlappingMatchesEveryPair(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		var as, bs []netip.Prefix
		for i := 0; i < 30; i++ {
			as, bs = append(as, randomPrefix(r)), append(bs, randomPrefix(r))
		}
		as, bs = disjoint(as), disjoint(bs)
		want := map[netip.Prefix]bool{}
		for _, b := range bs {
			for _, a := range as {
				if a.Overlaps(b) {
					want[b] = true
				}
			}
		}
		got := map[netip.Prefix]bool{}
		for _, o := range overlapping(as, bs) {
			if !o[0].Overlaps(o[1]) {
				t.Fatalf("%v reported, but they do not overlap", o)
			}
			got[o[1]] = true
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: overlapping found %v, every pair %v\nas %v\nbs %v", round, got, want, as, bs)
		}
	}
}

// The flattened scoped table opens, to every address, exactly the ports of
// the rules whose from contains it (checked against the rules one by one).
func TestScopedTableMatchesRules(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 100; round++ {
		p := &Policy{}
		for i := 0; i < 1+r.IntN(6); i++ {
			var from []netip.Prefix
			for j := 0; j < 1+r.IntN(8); j++ {
				from = append(from, randomPrefix(r))
			}
			lo := uint16(1 + r.IntN(60))
			rule := Rule{Proto: []uint8{ProtoTCP, ProtoUDP}[r.IntN(2)], Ports: PortRange{lo, lo + uint16(r.IntN(4))}, From: from, Name: fmt.Sprint("r", i)}
			p.Scoped = append(p.Scoped, rule)
		}
		st := p.ScopedTable()
		for k := 0; k < 200; k++ {
			addr := randomPrefix(r).Addr()
			// The table's answer: the longest prefix containing addr.
			best := -1
			for i, pf := range st.Prefixes {
				if pf.Contains(addr) && (best < 0 || pf.Bits() > st.Prefixes[best].Bits()) {
					best = i
				}
			}
			for port := uint16(1); port < 70; port++ {
				for _, proto := range []uint8{ProtoTCP, ProtoUDP} {
					want := p.scopedAllows(proto, port, addr)
					got := false
					if best >= 0 {
						for _, pr := range st.Groups[st.Group[best]][protoIndex(proto)] {
							got = got || (pr.First <= port && port <= pr.Last)
						}
					}
					if got != want {
						t.Fatalf("round %d: %s proto %d port %d: table %v, rules %v\n%+v", round, addr, proto, port, got, want, p.Scoped)
					}
				}
			}
		}
	}
}
