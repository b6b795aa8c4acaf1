package maps

import (
	"errors"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// SynProxy is what the SYN proxy did: its counters (datapath.SynProxy*)
// and the ports auto proxies right now.
type SynProxy struct {
	Counters [datapath.NumSynProxyCounters]uint64
	Engaged  []uint16
}

// SynProxy reads the SYN proxy's counters and the auto ports engaged now.
func (s *Set) SynProxy() (SynProxy, error) {
	var out SynProxy
	if err := need(s.XdpgSynproxyStats, "xdpg_synproxy_stats"); err != nil {
		return out, err
	}
	if err := sumCounters(s.XdpgSynproxyStats, 0, out.Counters[:]); err != nil {
		return out, err
	}
	if s.XdpgSynproxyPorts == nil {
		return out, nil
	}
	now := datapath.MonotonicNow()
	keys := make([]uint32, 4096)
	vals := make([]datapath.SynProxyPort, 4096)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := s.XdpgSynproxyPorts.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if vals[i].EngagedUntil > now {
				out.Engaged = append(out.Engaged, uint16(keys[i]))
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}
