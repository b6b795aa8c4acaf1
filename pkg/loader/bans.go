package loader

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// SrcKeyOf is the limiter and ban key of a source: an IPv4 address, or the
// /64 of an IPv6 address.
func SrcKeyOf(a netip.Addr) SrcKey {
	var b [16]byte
	if a = a.Unmap(); a.Is4() {
		b = netip.AddrFrom4(a.As4()).As16() // ::ffff:a.b.c.d
	} else {
		b = a.As16()
		clear(b[8:])
	}
	var k SrcKey
	for i := range k.Addr {
		k.Addr[i] = binary.LittleEndian.Uint32(b[i*4:]) // bytes in network order, as in the packet
	}
	return k
}

// Prefix is what a key stands for: an IPv4 /32 or an IPv6 /64.
func (k SrcKey) Prefix() netip.Prefix {
	var b [16]byte
	for i, w := range k.Addr {
		binary.LittleEndian.PutUint32(b[i*4:], w)
	}
	a := netip.AddrFrom16(b)
	if a.Is4In6() {
		return netip.PrefixFrom(a.Unmap(), 32)
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
