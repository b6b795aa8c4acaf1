package loader

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Event is a sampled drop from the data path (struct xdpg_event).
type Event = xdpguardXdpgEvent

// EventMonitored is set in Event.Flags when the drop was let through.
const EventMonitored = 1

// Source is the event's source address, invalid when the packet had none
// the parser could read.
func (e *Event) Source() netip.Addr {
	var b [16]byte
	for i, w := range e.Saddr {
		// Stored in network byte order, as in the packet.
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	switch e.Family {
	case 4:
		return netip.AddrFrom16(b).Unmap()
	case 6:
		return netip.AddrFrom16(b)
	}
	return netip.Addr{}
}

// Health counters of the data path (bpf/types.h enum xdpg_health_counter).
const (
	HealthEventsOverBudget = int(xdpguardXdpgHealthCounterXDPG_HEALTH_EVENTS_OVER_BUDGET)
	HealthEventsRingFull   = int(xdpguardXdpgHealthCounterXDPG_HEALTH_EVENTS_RING_FULL)
	HealthSourceInserts    = int(xdpguardXdpgHealthCounterXDPG_HEALTH_SRC_INSERTS)
	HealthBansNotStored    = int(xdpguardXdpgHealthCounterXDPG_HEALTH_BANS_NOT_STORED)
	HealthBansProtected    = int(xdpguardXdpgHealthCounterXDPG_HEALTH_BANS_PROTECTED)
	HealthLimiterContended = int(xdpguardXdpgHealthCounterXDPG_HEALTH_LIMITER_CONTENDED)
	NumHealthCounters      = int(xdpguardXdpgHealthCounterXDPG_HEALTH_MAX)
)

// SetEventBudget sets how many drop events per second (with a burst) the
// data path may send; rate 0 turns events off.
func SetEventBudget(m *ebpf.Map, rate, burst uint64) error {
	var b xdpguardXdpgEventBudget
	if rate > 0 {
		g := (&policy.Limit{Rate: rate, Burst: max(burst, 1)}).GCRA()
		b.IntervalNs, b.LimitNs = g.IntervalNs, g.LimitNs
	}
	if err := m.Put(uint32(0), &b); err != nil {
		return fmt.Errorf("set the events budget: %w", err)
	}
	return nil
}

// RuleNameAt is the name of the rule in a counter slot, "" if none.
func RuleNameAt(names *ebpf.Map, slot uint16) string {
	if slot == ruleSlotNone || names == nil {
		return ""
	}
	var n RuleName
	if err := names.Lookup(uint32(slot), &n); err != nil {
		return ""
	}
	return n.String()
}
