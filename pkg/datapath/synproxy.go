package datapath

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// The SYN proxy's option bits (bpf/synproxy.h XDPG_SPO_*).
const (
	spoTimestamps = 1
	spoSACK       = 2
	spoWscale     = 4
)

// SynProxyHost is what the SYN proxy needs to know of the host: the
// network namespace's TCP settings, which decide what a cookie can carry
// and whether the listener accepts one, and the interface's MTU, which
// decides the MSS the SYN-ACK advertises.
type SynProxyHost struct {
	Syncookies    int // net.ipv4.tcp_syncookies: 2 needed
	Timestamps    int // net.ipv4.tcp_timestamps: 2 lets the options ride in TSval
	SACK          bool
	WindowScaling bool
	Wscale        uint8 // the listener's window scale (tcp_select_initial_window)
	Window        uint16
	MTU           int
}

func readSysctl(name string) (int, error) {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("%s: empty", name)
	}
	return strconv.Atoi(f[len(f)-1]) // tcp_rmem: its max is the last field
}

// ReadSynProxyHost reads the namespace's TCP settings and iface's MTU
// (1500 when iface is "" or unknown).
func ReadSynProxyHost(iface string) (SynProxyHost, error) {
	var h SynProxyHost
	var errs []error
	get := func(name string) int {
		v, err := readSysctl(name)
		errs = append(errs, err)
		return v
	}
	h.Syncookies = get("net.ipv4.tcp_syncookies")
	h.Timestamps = get("net.ipv4.tcp_timestamps")
	h.SACK = get("net.ipv4.tcp_sack") != 0
	h.WindowScaling = get("net.ipv4.tcp_window_scaling") != 0
	space := get("net.ipv4.tcp_rmem")
	// net.core.rmem_max is the init namespace's alone before 6.5 or so
	// (absent in others): without it, tcp_rmem's max decides.
	if v, err := readSysctl("net.core.rmem_max"); err == nil {
		space = max(space, v)
	}
	if err := errors.Join(errs...); err != nil {
		return h, fmt.Errorf("read the TCP settings: %w", err)
	}
	// As tcp_select_initial_window: the scale for the largest window
	// the listener may ever offer.
	if space > 0 {
		h.Wscale = uint8(min(max(bits.Len32(uint32(space))-1-15, 0), 14))
	}
	h.MTU = 1500
	if iface != "" {
		if ifi, err := net.InterfaceByName(iface); err == nil && ifi.MTU >= 1280 {
			h.MTU = ifi.MTU
		}
	}
	// The first window: a whole number of segments under 64 KiB, as the
	// listener's would be (it announces its own with its first ACK).
	seg := h.MTU - 40 - 12
	h.Window = uint16(65535 / seg * seg)
	return h, nil
}

// Problems says why the SYN proxy cannot work in this namespace, if it
// cannot.
func (h SynProxyHost) Problems() []string {
	var out []string
	if h.Syncookies != 2 {
		out = append(out, fmt.Sprintf("net.ipv4.tcp_syncookies is %d: the listener accepts a cookie it did not send only with 2 "+
			"(the daemon sets it; `sysctl -w net.ipv4.tcp_syncookies=2`)", h.Syncookies))
	}
	return out
}

// Degraded says what the SYN proxy loses in this namespace.
func (h SynProxyHost) Degraded() []string {
	if h.Timestamps == 2 {
		return nil
	}
	return []string{fmt.Sprintf("net.ipv4.tcp_timestamps is %d, not 2: SYN-ACKs carry MSS only "+
		"(window scale and SACK ride in the timestamp, which needs no per-connection offset)", h.Timestamps)}
}

// PrepareSynProxyHost sets what the SYN proxy needs in the current network
// namespace, when pol proxies a port: tcp_syncookies=2 and, from the
// default 1, tcp_timestamps=2. It returns what it changed ("name old ->
// new").
func PrepareSynProxyHost(pol *policy.Policy) ([]string, error) {
	if pol.SynProxy == nil {
		return nil, nil
	}
	var changed []string
	set := func(name string, from []int, to int) error {
		cur, err := readSysctl(name)
		if err != nil {
			return err
		}
		for _, f := range from {
			if cur == f {
				if err := os.WriteFile("/proc/sys/"+strings.ReplaceAll(name, ".", "/"), []byte(strconv.Itoa(to)), 0o644); err != nil {
					return fmt.Errorf("set %s=%d for syn_proxy: %w", name, to, err)
				}
				changed = append(changed, fmt.Sprintf("%s %d -> %d", name, cur, to))
			}
		}
		return nil
	}
	if err := set("net.ipv4.tcp_syncookies", []int{0, 1}, 2); err != nil {
		return changed, err
	}
	if err := set("net.ipv4.tcp_timestamps", []int{1}, 2); err != nil {
		return changed, err
	}
	return changed, nil
}

// CheckSynProxyKernel probes the helpers the SYN proxy calls from XDP.
func CheckSynProxyKernel() error {
	for _, fn := range []asm.BuiltinFunc{asm.FnSkcLookupTcp, asm.FnTcpGenSyncookie, asm.FnTcpCheckSyncookie, asm.FnXdpAdjustTail} {
		if err := features.HaveProgramHelper(ebpf.XDP, fn); err != nil {
			return fmt.Errorf("syn_proxy needs the XDP helper %s (kernel 5.4 or later, CONFIG_SYN_COOKIES): %w", fn, err)
		}
	}
	return nil
}

// synproxyRodata is the SYN proxy's part of the program's .rodata.
func synproxyRodata(pol *policy.Policy, iface string) (map[string]any, error) {
	sp := pol.SynProxy
	if sp == nil {
		return map[string]any{xdpguardVarHasSynproxy: uint8(0)}, nil
	}
	if err := CheckSynProxyKernel(); err != nil {
		return nil, err
	}
	h, err := ReadSynProxyHost(iface)
	if err != nil {
		return nil, err
	}
	if p := h.Problems(); len(p) > 0 {
		return nil, fmt.Errorf("syn_proxy: %s", strings.Join(p, "; "))
	}
	var opts uint8
	if h.Timestamps == 2 {
		opts |= spoTimestamps
	}
	if h.SACK {
		opts |= spoSACK
	}
	if h.WindowScaling {
		opts |= spoWscale
	}
	auto := (&policy.Limit{Rate: max(sp.AutoAbove, 1), Burst: max(sp.AutoAbove, 1)}).GCRA()
	src, total := sp.PerSource.GCRA(), sp.Total.GCRA()
	// The seen table's hash key: secret, so no spoofer can pick sources
	// that share a victim's slot (bpf/synproxy.h, sp_first_sighting).
	var seenKey [4]uint32
	if err := binary.Read(rand.Reader, binary.LittleEndian, &seenKey); err != nil {
		return nil, fmt.Errorf("syn_proxy: random key: %w", err)
	}
	return map[string]any{
		xdpguardVarSynproxySeenKey:         seenKey,
		xdpguardVarHasSynproxy:             uint8(1),
		xdpguardVarSynproxyOpts:            opts,
		xdpguardVarSynproxyWscale:          h.Wscale,
		xdpguardVarSynproxyMss4:            uint16(h.MTU - 40),
		xdpguardVarSynproxyMss6:            uint16(h.MTU - 60),
		xdpguardVarSynproxyWindow:          h.Window,
		xdpguardVarSynproxyAutoIntervalNs:  auto.IntervalNs,
		xdpguardVarSynproxyAutoLimitNs:     auto.LimitNs,
		xdpguardVarSynproxyAutoHoldNs:      uint64(sp.AutoHold.Nanoseconds()),
		xdpguardVarSynproxySrcIntervalNs:   src.IntervalNs,
		xdpguardVarSynproxySrcLimitNs:      src.LimitNs,
		xdpguardVarSynproxyTotalIntervalNs: total.IntervalNs,
		xdpguardVarSynproxyTotalLimitNs:    total.LimitNs,
		xdpguardVarSynproxyAlwaysPorts:     portBitmap(pol.SynProxyPorts(policy.SynProxyAlways)),
		xdpguardVarSynproxyAutoPorts:       portBitmap(pol.SynProxyPorts(policy.SynProxyAuto)),
	}, nil
}

// The SYN proxy's counters (xdpg_synproxy_stats, bpf/synproxy.h), in order.
const (
	SynProxyCookiesSent     = int(xdpguardXdpgSynproxyCounterXDPG_SP_COOKIES_SENT)
	SynProxyACKsValid       = int(xdpguardXdpgSynproxyCounterXDPG_SP_ACKS_VALID)
	SynProxyACKsInvalid     = int(xdpguardXdpgSynproxyCounterXDPG_SP_ACKS_INVALID)
	SynProxyOverBudgetSrc   = int(xdpguardXdpgSynproxyCounterXDPG_SP_OVER_BUDGET_SOURCE)
	SynProxyOverBudgetTotal = int(xdpguardXdpgSynproxyCounterXDPG_SP_OVER_BUDGET_TOTAL)
	SynProxyNoListener      = int(xdpguardXdpgSynproxyCounterXDPG_SP_NO_LISTENER)
	SynProxyCookieFailed    = int(xdpguardXdpgSynproxyCounterXDPG_SP_COOKIE_FAILED)
	SynProxyFragment        = int(xdpguardXdpgSynproxyCounterXDPG_SP_FRAGMENT)
	SynProxyAutoEngaged     = int(xdpguardXdpgSynproxyCounterXDPG_SP_AUTO_ENGAGED)
	SynProxyProvenSYNs      = int(xdpguardXdpgSynproxyCounterXDPG_SP_PROVEN_SYNS)
	SynProxyTxFailed        = int(xdpguardXdpgSynproxyCounterXDPG_SP_TX_FAILED)
	NumSynProxyCounters     = int(xdpguardXdpgSynproxyCounterXDPG_SP_MAX)
)

// SynProxyPort is auto's state of one port (xdpg_synproxy_ports).
type SynProxyPort = xdpguardXdpgSynproxyPort
