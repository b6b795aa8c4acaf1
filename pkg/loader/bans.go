package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// linkLocalV6 is where IPv6 sources are keyed per address, not per /64:
// a link-local /64 is every neighbour on the link.
var linkLocalV6 = netip.MustParsePrefix("fe80::/10")

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

// Ban is a banned source, when its ban ends, and the packets it dropped.
type Ban struct {
	Source netip.Prefix
	// Until is in CLOCK_MONOTONIC nanoseconds, the data path's clock.
	Until uint64
	Drops uint64
}

// MonotonicNow is the data path's clock.
func MonotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// ReadBans lists the bans in force (expired ones not yet removed by the
// data path are left out).
func ReadBans(m *ebpf.Map) ([]Ban, error) {
	now := MonotonicNow()
	var out []Ban
	var k SrcKey
	var v SourceState
	it := m.Iterate()
	for it.Next(&k, &v) {
		if v.At > now {
			out = append(out, Ban{k.Prefix(), v.At, v.Drops})
		}
	}
	return out, it.Err()
}

// Unban lifts the ban of the source containing addr. It reports whether
// there was one.
func Unban(m *ebpf.Map, addr netip.Addr) (bool, error) {
	k := SrcKeyOf(addr)
	err := m.Delete(&k)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return false, nil
	}
	return err == nil, err
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

// Protected is a source the data path never bans, and why.
type Protected struct {
	Source netip.Prefix // the ban key's prefix: an IPv6 address protects its /64
	Why    Protection
}

// ReadProtected lists the sources in xdpg_protected.
func ReadProtected(m *ebpf.Map) ([]Protected, error) {
	var out []Protected
	var k SrcKey
	var why uint32
	it := m.Iterate()
	for it.Next(&k, &why) {
		out = append(out, Protected{k.Prefix(), Protection(why)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Source.String() < out[j].Source.String() })
	return out, it.Err()
}

// SetProtected makes xdpg_protected hold exactly want (address -> why):
// entries not wanted any more are deleted, the others written.
func SetProtected(m *ebpf.Map, want map[netip.Addr]Protection) error {
	keys := map[SrcKey]Protection{}
	for a, why := range want {
		keys[SrcKeyOf(a)] |= why
	}
	var stale []SrcKey
	var k SrcKey
	var why uint32
	it := m.Iterate()
	for it.Next(&k, &why) {
		if w, ok := keys[k]; !ok {
			stale = append(stale, k)
		} else if Protection(why) == w {
			delete(keys, k) // already there
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read protected sources: %w", err)
	}
	var errs []error
	for _, k := range stale {
		if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	for k, w := range keys {
		if err := m.Put(&k, uint32(w)); err != nil {
			errs = append(errs, fmt.Errorf("protect %s: %w", k.Prefix(), err))
		}
	}
	return errors.Join(errs...)
}

// SweepBans deletes the bans that have ended (the data path deletes one
// only when its source sends again; a spoofed source never does) and
// reports how many it removed.
func SweepBans(m *ebpf.Map) (int, error) {
	now := MonotonicNow()
	var ended []SrcKey
	var k SrcKey
	var v SourceState
	it := m.Iterate()
	for it.Next(&k, &v) {
		if v.At <= now {
			ended = append(ended, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, k := range ended {
		if err := m.Delete(&k); err == nil {
			n++
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, err
		}
	}
	return n, nil
}
