// Package maps reads xdpguard's BPF maps into plain Go values: per-CPU
// counters summed over CPUs, per-port drops, limiter table fill.
package maps

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/pkg/loader"
)

// Reasons holds packet counts indexed by loader.Reason.
type Reasons [loader.NumReasons]uint64

// Total is every packet the program saw.
func (r *Reasons) Total() (n uint64) {
	for _, v := range r {
		n += v
	}
	return n
}

// Dropped is every packet the program dropped.
func (r *Reasons) Dropped() (n uint64) {
	for i, v := range r {
		if loader.Reason(i).Dropped() {
			n += v
		}
	}
	return n
}

// ReadReasons sums the per-CPU reason counters.
func ReadReasons(stats *ebpf.Map) (Reasons, error) { return readReasons(stats, 0) }

// ReadMonitored sums the counters of drops that monitor mode let through:
// what the policy would have dropped, by reason.
func ReadMonitored(stats *ebpf.Map) (Reasons, error) {
	return readReasons(stats, loader.NumReasons)
}

func readReasons(stats *ebpf.Map, base int) (Reasons, error) {
	var out Reasons
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return out, err
	}
	vals := make([]uint64, cpus)
	for i := range out {
		if err := stats.Lookup(uint32(base+i), &vals); err != nil {
			return out, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, v := range vals {
			out[i] += v
		}
	}
	return out, nil
}

// PortDrops are the drops of one destination port.
type PortDrops struct {
	Port uint16
	loader.PortCounters
}

// Total is the port's drops of every reason.
func (p PortDrops) Total() uint64 {
	return p.NotAllowed + p.RateLimited + p.PortRateLimited + p.UdpNotAllowed
}

// ReadPortDrops returns every port with drops, most drops first, summed over
// CPUs. It reads the whole table in a few batch syscalls.
func ReadPortDrops(m *ebpf.Map) ([]PortDrops, error) {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	const chunk = 8192
	keys := make([]uint32, chunk)
	vals := make([]loader.PortCounters, chunk*cpus)
	var out []PortDrops
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			var sum PortDrops
			sum.Port = uint16(keys[i])
			for _, v := range vals[i*cpus : (i+1)*cpus] {
				sum.NotAllowed += v.NotAllowed
				sum.RateLimited += v.RateLimited
				sum.PortRateLimited += v.PortRateLimited
				sum.UdpNotAllowed += v.UdpNotAllowed
			}
			if sum.Total() > 0 {
				out = append(out, sum)
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read port drops: %w", err)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Total() != out[j].Total() {
			return out[i].Total() > out[j].Total()
		}
		return out[i].Port < out[j].Port
	})
	return out, nil
}

// CountEntries counts the entries of the source limiter table, in batches.
func CountEntries(m *ebpf.Map) (int, error) {
	n, _, err := CountSources(m, loader.Meta{})
	return n, err
}

// CountSources counts the entries of the source limiter table and, under
// the limit meta records, those it refuses right now: their next SYN
// would find no token (GCRA time beyond now + limit - interval).
func CountSources(m *ebpf.Map, meta loader.Meta) (entries, limited int, err error) {
	const chunk = 4096
	keys := make([]loader.SrcKey, chunk)
	vals := make([]loader.SourceState, chunk)
	var cursor ebpf.MapBatchCursor
	now := loader.MonotonicNow()
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		entries += n
		if meta.SrcIntervalNs > 0 {
			for _, v := range vals[:n] {
				if v.At+meta.SrcIntervalNs > now+meta.SrcLimitNs {
					limited++
				}
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return entries, limited, nil
		}
		if err != nil {
			return entries, limited, fmt.Errorf("count sources: %w", err)
		}
	}
}

// Rule is one rule's counters, summed over CPUs.
type Rule struct {
	Name      string `json:"name"`
	Passed    uint64 `json:"passed"`
	Dropped   uint64 `json:"dropped"`
	Monitored uint64 `json:"monitored"` // would-be drops let through (monitor mode)
}

// ReadRules returns the counters of every named rule slot, in slot order
// (the implicit rules first).
func ReadRules(names, stats *ebpf.Map) ([]Rule, error) {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	vals := make([]loader.RuleCounters, cpus)
	var out []Rule
	for i := uint32(0); i < names.MaxEntries(); i++ {
		var n loader.RuleName
		if err := names.Lookup(i, &n); err != nil {
			return nil, fmt.Errorf("read rule name %d: %w", i, err)
		}
		name := n.String()
		if name == "" {
			continue
		}
		if err := stats.Lookup(i, &vals); err != nil {
			return nil, fmt.Errorf("read rule %q: %w", name, err)
		}
		r := Rule{Name: name}
		for _, v := range vals {
			r.Passed += v.Passed
			r.Dropped += v.Dropped
			r.Monitored += v.Monitored
		}
		out = append(out, r)
	}
	return out, nil
}

// ReadHealth sums the data path's health counters (loader.Health*).
func ReadHealth(m *ebpf.Map) ([loader.NumHealthCounters]uint64, error) {
	var out [loader.NumHealthCounters]uint64
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return out, err
	}
	vals := make([]uint64, cpus)
	for i := range out {
		if err := m.Lookup(uint32(i), &vals); err != nil {
			return out, fmt.Errorf("read health counter %d: %w", i, err)
		}
		for _, v := range vals {
			out[i] += v
		}
	}
	return out, nil
}

// Source is a source in a per-source table and the packets it refused.
type Source struct {
	Source netip.Prefix `json:"source"` // an IPv4 /32 or IPv6 /64
	Drops  uint64       `json:"drops"`
	// At is the entry's time: GCRA arrival time, or ban end (monotonic ns).
	At uint64 `json:"-"`
}

// ReadSources returns the sources of a per-source table that refused any
// packet, most drops first, at most n (all if n <= 0). It reads the table
// in batches.
func ReadSources(m *ebpf.Map, n int) ([]Source, error) {
	const chunk = 4096
	keys := make([]loader.SrcKey, chunk)
	vals := make([]loader.SourceState, chunk)
	var out []Source
	var cursor ebpf.MapBatchCursor
	for {
		got, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < got; i++ {
			if vals[i].Drops > 0 {
				out = append(out, Source{keys[i].Prefix(), vals[i].Drops, vals[i].At})
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read sources: %w", err)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Drops != out[j].Drops {
			return out[i].Drops > out[j].Drops
		}
		return out[i].Source.Addr().Less(out[j].Source.Addr())
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out, nil
}
