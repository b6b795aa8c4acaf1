package main

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
)

// netset is a synthetic blocklist shaped like the FireHOL and Spamhaus
// netsets operators feed xdpguard: sorted (IPv4, then IPv6), mostly IPv4
// addresses, some /24s, fewer wider blocks and /25–/31s, about 1% IPv6;
// no entry inside, or adjacent to, another (so every tool keeps them all
// and the count is exact).
type netset struct {
	v4, v6 []netip.Prefix
	// bumped are indices of v4 addresses (/32s) the changed version moves
	// one address up (always free: entries are at least two addresses
	// apart).
	bumped []int
	seed   uint64
}

// The mix, in hundredths of the whole list; /32s are the rest of IPv4.
const (
	mixWide  = 4  // IPv4 /16–/23
	mixC     = 10 // IPv4 /24
	mixSmall = 5  // IPv4 /25–/31
	mixV6    = 1  // IPv6
	// netsetChanges is how many entries a reload changes.
	netsetChanges = 10
)

// reserved4 is what real lists leave out (and 198.18.0.0/15 is the lab's).
var reserved4 = []string{"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
	"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3"}

type span struct{ lo, hi uint64 } // inclusive

func prefixSpan4(s string) span {
	p := netip.MustParsePrefix(s)
	a := p.Addr().As4()
	lo := uint64(a[0])<<24 | uint64(a[1])<<16 | uint64(a[2])<<8 | uint64(a[3])
	return span{lo, lo + 1<<(32-p.Bits()) - 1}
}

// genNetset makes an n-entry list, the same for the same seed.
func genNetset(n int, seed uint64) (*netset, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s := &netset{seed: seed}
	n6 := n * mixV6 / 100
	n4 := n - n6
	bits := make([]int, 0, n4)
	some := func(count, lo, hi int) {
		for range count {
			bits = append(bits, lo+rng.IntN(hi-lo+1))
		}
	}
	some(n*mixWide/100, 16, 23)
	some(n*mixC/100, 24, 24)
	some(n*mixSmall/100, 25, 31)
	some(n4-len(bits), 32, 32)
	rng.Shuffle(len(bits), func(i, j int) { bits[i], bits[j] = bits[j], bits[i] })

	var res []span
	var usable float64 = 1 << 32
	for _, r := range reserved4 {
		sp := prefixSpan4(r)
		res = append(res, sp)
		usable -= float64(sp.hi - sp.lo + 1)
	}
	// What the entries take, with what aligning each to its size wastes
	// (half its size on average): the rest is spread between them.
	var taken float64
	for _, b := range bits {
		taken += 1.5 * float64(uint64(1)<<(32-b))
	}
	meanGap := 0.8 * (usable - taken) / float64(max(n4, 1))
	if meanGap < 4 {
		return nil, fmt.Errorf("netset: %d IPv4 entries do not fit the address space", n4)
	}
	s.v4 = make([]netip.Prefix, 0, n4)
	cur := uint64(1) << 24
	for _, b := range bits {
		size := uint64(1) << (32 - b)
	align:
		cur = (cur + size - 1) &^ (size - 1)
		for _, r := range res {
			if cur <= r.hi && cur+size-1 >= r.lo {
				cur = r.hi + 1
				goto align
			}
		}
		if cur+size > 1<<32 {
			return nil, fmt.Errorf("netset: ran out of IPv4 space at entry %d", len(s.v4))
		}
		a := netip.AddrFrom4([4]byte{byte(cur >> 24), byte(cur >> 16), byte(cur >> 8), byte(cur)})
		s.v4 = append(s.v4, netip.PrefixFrom(a, b))
		// At least two free addresses after each entry: one for the
		// changed version to move a /32 to, one to keep it apart.
		cur += size + 2 + uint64(rng.ExpFloat64()*meanGap)
	}

	// IPv6 in 2001::/16 to 2fff::/16, walking the upper 64 bits; a /128
	// takes its /64.
	s.v6 = make([]netip.Prefix, 0, n6)
	hi, end := uint64(0x2001)<<48, uint64(0x3000)<<48
	gap6 := 0.5 * float64(end-hi) / float64(max(n6, 1))
	for range n6 {
		var b int
		switch x := rng.IntN(100); {
		case x < 10:
			b = 29 + rng.IntN(4)
		case x < 55:
			b = 48
		case x < 65:
			b = 56
		case x < 90:
			b = 64
		default:
			b = 128
		}
		size := uint64(1)
		if b <= 64 {
			size = uint64(1) << (64 - b)
		}
		hi = (hi + size - 1) &^ (size - 1)
		if hi+size > end || hi+size < hi {
			return nil, fmt.Errorf("netset: ran out of IPv6 space at entry %d", len(s.v6))
		}
		var a [16]byte
		for i := range 8 {
			a[i] = byte(hi >> (56 - 8*i))
		}
		if b == 128 {
			lo := rng.Uint64() | 1
			for i := range 8 {
				a[8+i] = byte(lo >> (56 - 8*i))
			}
		}
		s.v6 = append(s.v6, netip.PrefixFrom(netip.AddrFrom16(a), b))
		hi += size + 1 + uint64(rng.ExpFloat64()*gap6)
	}

	// The reload's changes: addresses spread over the list.
	for k := range netsetChanges {
		for i := k * len(s.v4) / netsetChanges; i < len(s.v4); i++ {
			if s.v4[i].Bits() == 32 {
				s.bumped = append(s.bumped, i)
				break
			}
		}
	}
	return s, nil
}

func (s *netset) entries() int { return len(s.v4) + len(s.v6) }

// mix describes the list's shares, as counted.
func (s *netset) mix() string {
	var wide, c, small, host int
	for _, p := range s.v4 {
		switch b := p.Bits(); {
		case b == 32:
			host++
		case b == 24:
			c++
		case b < 24:
			wide++
		default:
			small++
		}
	}
	pct := func(k int) string { return fmt.Sprintf("%.1f%%", 100*float64(k)/float64(max(s.entries(), 1))) }
	return fmt.Sprintf("%s IPv4 addresses, %s /24, %s /16–/23, %s /25–/31, %s IPv6 prefixes", pct(host), pct(c), pct(wide), pct(small), pct(len(s.v6)))
}

// v4At is v4[i] as the changed version has it.
func (s *netset) v4At(i int, changed bool) netip.Prefix {
	p := s.v4[i]
	if changed {
		for _, j := range s.bumped {
			if j == i {
				return netip.PrefixFrom(p.Addr().Next(), 32)
			}
		}
	}
	return p
}

// text is the list in the netset format: a FireHOL-style header, bare
// addresses for /32 and /128, Spamhaus-style "; SBL" notes on some blocks.
func (s *netset) text(changed bool) []byte {
	var b strings.Builder
	b.Grow(s.entries() * 17)
	fmt.Fprintf(&b, "#\n# xdpguard_bench\n# ipv4 hash:net ipset\n#\n# synthetic (seed %d), sorted, %d entries, none inside another:\n# %s\n#\n",
		s.seed, s.entries(), s.mix())
	b.WriteString("; Spamhaus-style notes follow some entries\n")
	for i := range s.v4 {
		p := s.v4At(i, changed)
		writeEntry(&b, p)
		if p.Bits() <= 24 && i%4 == 0 {
			fmt.Fprintf(&b, " ; SBL%06d", 100000+i%900000)
		}
		b.WriteByte('\n')
	}
	b.WriteString("\n# IPv6\n")
	for _, p := range s.v6 {
		writeEntry(&b, p)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

func writeEntry(b *strings.Builder, p netip.Prefix) {
	if p.IsSingleIP() {
		b.WriteString(p.Addr().String())
		return
	}
	b.WriteString(p.String())
}

// ipsetRestore is the list's IPv4 entries as `ipset restore` input for
// one hash:net set.
func (s *netset) ipsetRestore(set string) []byte {
	var b strings.Builder
	b.Grow(len(s.v4) * 26)
	fmt.Fprintf(&b, "create %s hash:net family inet hashsize %d maxelem 2000000\n", set, hashSize(len(s.v4)))
	for _, p := range s.v4 {
		b.WriteString("add " + set + " ")
		writeEntry(&b, p)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// hashSize is the power of two at or above n (ipset's initial buckets).
func hashSize(n int) int {
	h := 1024
	for h < n {
		h *= 2
	}
	return h
}

// nftTable is the list's IPv4 entries as an `nft -f` file: one table with
// one interval set.
func (s *netset) nftTable(table string) []byte {
	var b strings.Builder
	b.Grow(len(s.v4) * 20)
	fmt.Fprintf(&b, "table ip %s {\n\tset deny {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = {\n", table)
	for i, p := range s.v4 {
		b.WriteString("\t\t\t")
		writeEntry(&b, p)
		if i < len(s.v4)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("\t\t}\n\t}\n}\n")
	return []byte(b.String())
}
