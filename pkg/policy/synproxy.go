package policy

import (
	"fmt"
	"time"
)

// SynProxyMode is a tcp.allow rule's syn_proxy: whether the data path
// answers the SYNs to its ports itself, with SYN cookies (docs/synproxy.md).
type SynProxyMode uint8

// The values of syn_proxy.
const (
	SynProxyOff    SynProxyMode = iota // the listener answers (the default)
	SynProxyAlways                     // every SYN is answered with a cookie from XDP
	SynProxyAuto                       // only while the port's SYN rate is above synproxy.auto_above
)

func (m SynProxyMode) String() string {
	switch m {
	case SynProxyAlways:
		return "always"
	case SynProxyAuto:
		return "auto"
	}
	return "off"
}

// SynProxy is the synproxy section: how auto engages and the SYN-ACK
// budgets that keep a spoofed flood from making the host a reflector.
type SynProxy struct {
	// AutoAbove is the SYN rate (per second, per port, all sources) above
	// which an auto port is proxied; AutoHold how long it stays proxied
	// after the last second over it (the hysteresis).
	AutoAbove uint64
	AutoHold  time.Duration
	// PerSource and Total budget the SYN-ACKs sent: per source (IPv4 /32,
	// IPv6 /64) and all together. What is over is dropped and counted.
	PerSource Limit
	Total     Limit
}

// Defaults of the synproxy section.
var (
	defaultAutoHold          = 10 * time.Second
	defaultSynProxyPerSource = Limit{Rate: 200, Burst: 400}
	defaultSynProxyTotal     = Limit{Rate: 2_000_000, Burst: 2_000_000}
)

type rawSynProxy struct {
	AutoAbove *int64  `yaml:"auto_above"`
	AutoHold  *string `yaml:"auto_hold"`
	Budget    *struct {
		PerSource *struct {
			Rate  *int64 `yaml:"rate"`
			Burst *int64 `yaml:"burst"`
		} `yaml:"per_source"`
		Total *struct {
			Rate  *int64 `yaml:"rate"`
			Burst *int64 `yaml:"burst"`
		} `yaml:"total"`
	} `yaml:"budget"`
}

// synProxyMode parses a rule's syn_proxy value.
func (v *validator) synProxyMode(path string, x any) (SynProxyMode, bool) {
	switch x {
	case "off":
		return SynProxyOff, true
	case "always":
		return SynProxyAlways, true
	case "auto":
		return SynProxyAuto, true
	}
	v.fail(path, "%v: want always, auto or off", x)
	return SynProxyOff, false
}

// synProxy validates the synproxy section against the rules that use it.
func (v *validator) synProxy(raw *rawSynProxy, p *Policy) {
	var always, auto bool
	for _, list := range [][]Rule{p.Open, p.Scoped} {
		for _, r := range list {
			always = always || r.SynProxy == SynProxyAlways
			auto = auto || r.SynProxy == SynProxyAuto
		}
	}
	if !always && !auto {
		if raw != nil {
			v.fail("$.synproxy", "only means something with a tcp.allow rule that has syn_proxy: always or auto")
		}
		return
	}
	sp := &SynProxy{AutoHold: defaultAutoHold, PerSource: defaultSynProxyPerSource, Total: defaultSynProxyTotal}
	p.SynProxy = sp
	if raw == nil {
		raw = &rawSynProxy{}
	}
	if raw.AutoAbove != nil {
		if n, ok := v.inRange("$.synproxy.auto_above", *raw.AutoAbove, 1, maxRate, " SYNs per second"); ok {
			sp.AutoAbove = n
		}
	}
	if auto && raw.AutoAbove == nil {
		v.fail("$.synproxy.auto_above", "syn_proxy: auto needs the SYN rate (per second, per port) above which it proxies")
	}
	if !auto && raw.AutoAbove != nil {
		v.fail("$.synproxy.auto_above", "only means something with a rule that has syn_proxy: auto")
	}
	if raw.AutoHold != nil {
		d, err := time.ParseDuration(*raw.AutoHold)
		switch {
		case err != nil:
			v.fail("$.synproxy.auto_hold", "%q is not a duration (like 10s, 1m)", *raw.AutoHold)
		case d < time.Second || d > time.Hour:
			v.fail("$.synproxy.auto_hold", "%s is out of range [1s, 1h]", d)
		default:
			sp.AutoHold = d
		}
	}
	if b := raw.Budget; b != nil {
		if s := b.PerSource; s != nil {
			if l := v.limit("$.synproxy.budget.per_source", s.Rate, s.Burst); l != nil {
				sp.PerSource = *l
			}
		}
		if s := b.Total; s != nil {
			if l := v.limit("$.synproxy.budget.total", s.Rate, s.Burst); l != nil {
				sp.Total = *l
			}
		}
	}
}

// SynProxyPorts lists the ports whose SYNs are proxied in mode (always or
// auto), merged; a port both modes name is always's.
func (p *Policy) SynProxyPorts(mode SynProxyMode) []PortRange {
	var always, auto []PortRange
	for _, list := range [][]Rule{p.Open, p.Scoped} {
		for _, r := range list {
			if r.Proto != ProtoTCP {
				continue
			}
			switch r.SynProxy {
			case SynProxyAlways:
				always = append(always, r.Ports)
			case SynProxyAuto:
				auto = append(auto, r.Ports)
			}
		}
	}
	always = mergeRanges(always)
	if mode == SynProxyAlways {
		return always
	}
	return subtractRanges(mergeRanges(auto), always)
}

// subtractRanges is a minus b, both sorted and merged.
func subtractRanges(a, b []PortRange) []PortRange {
	var out []PortRange
	for _, r := range a {
		lo, hi := uint32(r.First), uint32(r.Last)
		for _, s := range b {
			if uint32(s.Last) < lo || uint32(s.First) > hi {
				continue
			}
			if uint32(s.First) > lo {
				out = append(out, PortRange{uint16(lo), s.First - 1})
			}
			lo = uint32(s.Last) + 1
		}
		if lo <= hi {
			out = append(out, PortRange{uint16(lo), uint16(hi)})
		}
	}
	return out
}

// digest text and YAML of the section.
func (sp *SynProxy) String() string {
	if sp == nil {
		return "synproxy off"
	}
	return fmt.Sprintf("synproxy auto_above %d hold %s budget %d/%d per source %d/%d total",
		sp.AutoAbove, sp.AutoHold, sp.PerSource.Rate, sp.PerSource.Burst, sp.Total.Rate, sp.Total.Burst)
}

func (sp *SynProxy) yaml() string {
	if sp == nil {
		return ""
	}
	s := "synproxy:\n"
	if sp.AutoAbove > 0 {
		s += fmt.Sprintf("  auto_above: %d\n", sp.AutoAbove)
	}
	s += fmt.Sprintf("  auto_hold: %s\n", sp.AutoHold)
	s += fmt.Sprintf("  budget:\n    per_source: {rate: %d, burst: %d}\n    total: {rate: %d, burst: %d}\n",
		sp.PerSource.Rate, sp.PerSource.Burst, sp.Total.Rate, sp.Total.Burst)
	return s
}
