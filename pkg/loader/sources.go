package loader

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// LPMKey is a key of the source tries (struct xdpg_lpm_key).
type LPMKey = xdpguardXdpgLpmKey

// NewLPMKey encodes a prefix the way the data path looks sources up:
// family first (always covered by the prefix), then the address.
func NewLPMKey(p netip.Prefix) LPMKey {
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
// The spec's size is set to match, as map replacement requires.
func sourceTrie(spec *ebpf.MapSpec, prefixes []netip.Prefix) (*ebpf.Map, error) {
	spec.MaxEntries = uint32(max(len(prefixes), 1))
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create trie: %w", err)
	}
	one := uint8(1)
	for _, p := range prefixes {
		k := NewLPMKey(p)
		if err := m.Put(&k, one); err != nil {
			m.Close()
			return nil, fmt.Errorf("add %s: %w", p, err)
		}
	}
	if err := m.Freeze(); err != nil {
		m.Close()
		return nil, fmt.Errorf("freeze trie: %w", err)
	}
	return m, nil
}

func flag(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
