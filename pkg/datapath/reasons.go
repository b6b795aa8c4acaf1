package datapath

// Reason is why the data path gave a packet its verdict (enum xdpg_reason).
type Reason = xdpguardXdpgReason

// The reasons, mirroring bpf/types.h.
const (
	PassNotIP                 = xdpguardXdpgReasonXDPG_PASS_NOT_IP
	PassNotTCP                = xdpguardXdpgReasonXDPG_PASS_NOT_TCP
	PassNotSYN                = xdpguardXdpgReasonXDPG_PASS_NOT_SYN
	PassFragment              = xdpguardXdpgReasonXDPG_PASS_FRAGMENT
	PassSYNAllowed            = xdpguardXdpgReasonXDPG_PASS_SYN_ALLOWED
	PassUDPAllowed            = xdpguardXdpgReasonXDPG_PASS_UDP_ALLOWED
	PassUDPReply              = xdpguardXdpgReasonXDPG_PASS_UDP_REPLY
	DropPortNotAllowed        = xdpguardXdpgReasonXDPG_DROP_PORT_NOT_ALLOWED
	DropRateLimited           = xdpguardXdpgReasonXDPG_DROP_RATE_LIMITED
	DropPortRateLimited       = xdpguardXdpgReasonXDPG_DROP_PORT_RATE_LIMITED
	DropMalformed             = xdpguardXdpgReasonXDPG_DROP_MALFORMED
	DropFragment              = xdpguardXdpgReasonXDPG_DROP_FRAGMENT
	DropInvalidFlags          = xdpguardXdpgReasonXDPG_DROP_INVALID_FLAGS
	DropSourceDenied          = xdpguardXdpgReasonXDPG_DROP_SOURCE_DENIED
	DropBanned                = xdpguardXdpgReasonXDPG_DROP_BANNED
	DropUDPPortNotAllowed     = xdpguardXdpgReasonXDPG_DROP_UDP_PORT_NOT_ALLOWED
	DropICMPRateLimited       = xdpguardXdpgReasonXDPG_DROP_ICMP_RATE_LIMITED
	NumReasons            int = int(xdpguardXdpgReasonXDPG_REASON_MAX)
)

var reasonNames = [NumReasons]string{
	PassNotIP:             "not_ip",
	PassNotTCP:            "not_tcp",
	PassNotSYN:            "not_syn",
	PassFragment:          "fragment",
	PassSYNAllowed:        "syn_allowed",
	PassUDPAllowed:        "udp_allowed",
	PassUDPReply:          "udp_reply",
	DropPortNotAllowed:    "port_not_allowed",
	DropRateLimited:       "rate_limited",
	DropPortRateLimited:   "port_rate_limited",
	DropMalformed:         "malformed",
	DropFragment:          "fragment",
	DropInvalidFlags:      "invalid_flags",
	DropSourceDenied:      "source_denied",
	DropBanned:            "banned",
	DropUDPPortNotAllowed: "udp_port_not_allowed",
	DropICMPRateLimited:   "icmp_rate_limited",
}

// Name is the reason's metric label value.
func (r Reason) Name() string {
	if int(r) < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Dropped reports whether packets with this reason are dropped.
func (r Reason) Dropped() bool { return r >= DropPortNotAllowed && int(r) < NumReasons }

// AllReasons lists every reason in enum order.
func AllReasons() []Reason {
	rs := make([]Reason, NumReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// PortCounters are the per-port drop counts (struct xdpg_port_counters).
type PortCounters = xdpguardXdpgPortCounters

// SrcKey is a per-source limiter key (struct xdpg_src_key).
type SrcKey = xdpguardXdpgSrcKey

// Meta describes the generation in force (struct xdpg_meta).
type Meta = xdpguardXdpgMeta

// MetaMonitor is XDPG_META_MONITOR: Meta.Flags bit of a monitoring generation.
const MetaMonitor = 1

// SchemaVersion is XDPG_SCHEMA_VERSION in bpf/types.h; TestSchemaVersion
// keeps them equal.
const SchemaVersion = 3
