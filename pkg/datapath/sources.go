package datapath

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// LPMKey is a key of the source tries (struct xdpg_lpm_key).
type LPMKey = xdpguardXdpgLpmKey

// LPMKeyOf encodes a prefix the way the data path looks sources up:
// family first (always covered by the prefix), then the address.
func LPMKeyOf(p netip.Prefix) LPMKey {
	var k LPMKey
	a := p.Addr().Unmap()
	b := a.AsSlice()
	k.Family = 6
	if a.Is4() {
		k.Family = 4
	}
	for i := 0; i < len(b); i += 4 {
		// Addresses are stored in network byte order, as in the packet.
		k.Addr[i/4] = uint32(b[i]) | uint32(b[i+1])<<8 | uint32(b[i+2])<<16 | uint32(b[i+3])<<24
	}
	k.Prefixlen = 32 + uint32(p.Bits())
	return k
}

// sourceTrie builds a generation's read-only source list: created, filled
// and frozen before the program that uses it is loaded, so it never changes
// under a running program. An empty list gets a one-slot empty trie (the
// program does not look it up).
func sourceTrie(spec *ebpf.MapSpec, prefixes []netip.Prefix) (*ebpf.Map, error) {
	return frozenMap(spec, len(prefixes), func(m *ebpf.Map) error {
		keys := make([]LPMKey, len(prefixes))
		vals := make([]uint8, len(prefixes))
		for i, p := range prefixes {
			keys[i], vals[i] = LPMKeyOf(p), 1
		}
		return putAll(m, keys, vals, func(i int) string { return prefixes[i].String() })
	})
}

// deniedSources is sources.deny as the data path holds it (source_denied):
// IPv4 prefixes of /24 or wider as /24 blocks, IPv4 addresses apart, the
// rest in the trie.
type deniedSources struct {
	blocks []netip.Prefix
	hosts  []uint32 // addresses as the packet has them (LPMKey.Addr[0])
	trie   []netip.Prefix
}

// denyBlockBits is the prefix length of one bit of xdpg_deny_blocks.
const denyBlockBits = 24

func splitDeny(deny []netip.Prefix) deniedSources {
	var d deniedSources
	for _, p := range deny {
		switch {
		case p.Addr().Is4() && p.Bits() <= denyBlockBits:
			d.blocks = append(d.blocks, p)
		case p.Addr().Is4() && p.Bits() == 32:
			if d.hosts == nil {
				d.hosts = make([]uint32, 0, len(deny)) // a host list is most often most of it
			}
			d.hosts = append(d.hosts, LPMKeyOf(p).Addr[0])
		default:
			d.trie = append(d.trie, p)
		}
	}
	return d
}

// denyBlock is a word of xdpg_deny_blocks (struct xdpg_deny_block).
type denyBlock = xdpguardXdpgDenyBlock

// denyBlocks builds the generation's /24 table: bit b of word w's fields
// stands for the block of addresses (w*64 + b) << 8, denied whole, holding
// a denied address, holding a denied /25-/31. Every IPv4 entry marks its
// block, so the data path looks the hash or the trie up only in a block
// that holds an entry of it (deny.h). An empty table when there is no
// IPv4 entry (has_deny_blocks 0).
func denyBlocks(spec *ebpf.MapSpec, d deniedSources) (*ebpf.Map, error) {
	if !d.hasV4() {
		return frozenMap(spec, 0, func(*ebpf.Map) error { return nil })
	}
	words := make([]denyBlock, xdpgDenyBlockWords)
	block := func(a [4]byte) uint32 { return uint32(a[0])<<16 | uint32(a[1])<<8 | uint32(a[2]) }
	for _, p := range d.blocks {
		first := block(p.Addr().As4())
		for b := first; b < first+1<<(denyBlockBits-p.Bits()); b++ {
			words[b/64].Denied |= 1 << (b % 64)
		}
	}
	for _, h := range d.hosts {
		var a [4]byte
		binary.LittleEndian.PutUint32(a[:], h)
		b := block(a)
		words[b/64].Hosts |= 1 << (b % 64)
	}
	for _, p := range d.trie {
		if p.Addr().Is4() {
			b := block(p.Addr().As4())
			words[b/64].Longer |= 1 << (b % 64)
		}
	}
	keys := make([]uint32, len(words))
	for i := range keys {
		keys[i] = uint32(i)
	}
	return frozenMap(spec, len(words), func(m *ebpf.Map) error {
		return putAll(m, keys, words, func(i int) string { return fmt.Sprintf("word %d", i) })
	})
}

// hasV4 reports whether sources.deny has an IPv4 entry (has_deny_blocks);
// hasV6, an IPv6 one (has_deny: the trie is looked up for IPv6 sources).
func (d deniedSources) hasV4() bool {
	return len(d.blocks) > 0 || len(d.hosts) > 0 || slices.ContainsFunc(d.trie, func(p netip.Prefix) bool { return p.Addr().Is4() })
}

func (d deniedSources) hasV6() bool {
	return slices.ContainsFunc(d.trie, func(p netip.Prefix) bool { return !p.Addr().Is4() })
}

// xdpgDenyBlockWords is XDPG_DENY_BLOCK_WORDS: 2^24 /24 blocks, 64 a word.
const xdpgDenyBlockWords = 1 << (denyBlockBits - 6)

// denyHosts builds the generation's hash of denied IPv4 addresses.
func denyHosts(spec *ebpf.MapSpec, hosts []uint32) (*ebpf.Map, error) {
	vals := make([]uint8, len(hosts))
	for i := range vals {
		vals[i] = 1
	}
	return frozenMap(spec, len(hosts), func(m *ebpf.Map) error {
		return putAll(m, hosts, vals, func(i int) string {
			var b [4]byte
			binary.LittleEndian.PutUint32(b[:], hosts[i])
			return netip.AddrFrom4(b).String()
		})
	})
}

// putAll writes keys[i] -> vals[i] in one batch (half the time of single
// updates for 10,000 CIDRs), or one by one where the kernel has no batch
// updates for the map type, naming the entry that fails.
func putAll[K, V any](m *ebpf.Map, keys []K, vals []V, name func(int) string) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := m.BatchUpdate(keys, vals, nil); err == nil {
		return nil
	}
	for i := range keys {
		if err := m.Put(&keys[i], &vals[i]); err != nil {
			return fmt.Errorf("add %s: %w", name(i), err)
		}
	}
	return nil
}

// scopedMaps builds a generation's source-scoped rules: the trie from each
// rule prefix to its group, and each group's port bitmap.
func scopedMaps(trieSpec, groupSpec *ebpf.MapSpec, t policy.ScopedTable) (trie, groups *ebpf.Map, err error) {
	trie, err = frozenMap(trieSpec, len(t.Prefixes), func(m *ebpf.Map) error {
		for i, p := range t.Prefixes {
			k := LPMKeyOf(p)
			if err := m.Put(&k, uint32(t.Group[i])); err != nil {
				return fmt.Errorf("add %s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	// Each group holds a TCP then a UDP bitmap of 1024 words.
	groups, err = frozenMap(groupSpec, len(t.Groups)*2048, func(m *ebpf.Map) error {
		for g, ports := range t.Groups {
			for half, pr := range ports {
				bitmap := portBitmap(pr)
				keys := make([]uint32, len(bitmap))
				for i := range keys {
					keys[i] = uint32(g*2048 + half*1024 + i)
				}
				if _, err := m.BatchUpdate(keys, bitmap[:], nil); err != nil {
					return fmt.Errorf("group %d: %w", g, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		trie.Close()
		return nil, nil, err
	}
	return trie, groups, nil
}

// frozenMap creates a map from spec sized for n entries (at least one, as
// the kernel requires), fills it, and freezes it so it can never change
// under a program (arrays excepted, see below). The spec's size is set to match, as map replacement
// requires.
func frozenMap(spec *ebpf.MapSpec, n int, fill func(*ebpf.Map) error) (*ebpf.Map, error) {
	spec.MaxEntries = uint32(max(n, 1))
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", spec.Name, err)
	}
	if err := fill(m); err != nil {
		m.Close()
		return nil, err
	}
	// Not arrays: the verifier constant-folds reads from frozen read-only
	// arrays and refuses (EOPNOTSUPP) when they have more than one entry.
	// Such an array stays read-only to the program (BPF_F_RDONLY_PROG), and
	// no one else holds its FD.
	if spec.Type != ebpf.Array {
		if err := m.Freeze(); err != nil {
			m.Close()
			return nil, fmt.Errorf("freeze %s: %w", spec.Name, err)
		}
	}
	return m, nil
}

// EphemeralPorts is this network namespace's net.ipv4.ip_local_port_range
// (which IPv6 uses too): where replies to our own UDP traffic arrive.
func EphemeralPorts() (policy.PortRange, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return policy.PortRange{}, fmt.Errorf("udp.replies auto: %w", err)
	}
	var lo, hi uint16
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo == 0 || hi < lo {
		return policy.PortRange{}, fmt.Errorf("udp.replies auto: cannot read ip_local_port_range %q", strings.TrimSpace(string(b)))
	}
	return policy.PortRange{First: lo, Last: hi}, nil
}

// portBitmap sets bit p for every port p in the ranges.
func portBitmap(ranges []policy.PortRange) [1024]uint64 {
	var b [1024]uint64
	for _, r := range ranges {
		for p := uint32(r.First); p <= uint32(r.Last); p++ {
			b[p/64] |= 1 << (p % 64)
		}
	}
	return b
}

func flag(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// Prefix is the prefix a key stands for.
func (k LPMKey) Prefix() netip.Prefix {
	var b [16]byte
	for i, w := range k.Addr {
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(w), byte(w>>8), byte(w>>16), byte(w>>24)
	}
	bits := int(k.Prefixlen) - 32
	if k.Family == 4 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(b[:4])), bits)
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), bits)
}
