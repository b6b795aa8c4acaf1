package datapath

import (
	"encoding/binary"
	"net/netip"
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

// EventBudget is the events budget the daemon sets (struct
// xdpg_event_budget).
type EventBudget = xdpguardXdpgEventBudget
