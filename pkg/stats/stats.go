// Package stats samples the pinned counters of every filtered interface
// and turns two samples into rates, for `xdpguard stats` and `xdpguard top`.
// It reads pins only, so it works whether or not the daemon runs.
package stats

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

// Sample is every interface's counters at one time.
type Sample struct {
	Time       time.Time
	Interfaces map[string]*Iface
}

// Iface is one interface's counters.
type Iface struct {
	Reasons   maps.Reasons
	Monitored maps.Reasons
	Ports     map[uint16]maps.PortDrops
	Limited   []maps.Source // sources with refused SYNs, most first
	Banned    []maps.Ban
	SynProxy  *maps.SynProxy // nil: pins of an older schema
}

// Take reads the pins of ifaces under root. With sources > 0 the sources
// most refused, and the bans with most drops, are read too, that many of
// each at most (a bounded walk of the tables, whatever their size).
func Take(root string, ifaces []string, sources int) (*Sample, error) {
	s := &Sample{Time: time.Now(), Interfaces: map[string]*Iface{}}
	for _, name := range ifaces {
		set, err := maps.Open(datapath.PinDir(root, name), false)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		snap := set.Snapshot(maps.SnapshotOptions{TopSources: sources, TopBans: sources})
		set.Close()
		if snap.Reasons == nil || snap.Monitored == nil {
			return nil, fmt.Errorf("%s: %s", name, strings.Join(snap.Problems, "; "))
		}
		it := &Iface{Reasons: *snap.Reasons, Monitored: *snap.Monitored, Ports: map[uint16]maps.PortDrops{}, Limited: snap.Limited, Banned: snap.Bans, SynProxy: snap.SynProxy}
		for _, pd := range snap.Ports {
			it.Ports[pd.Port] = pd
		}
		s.Interfaces[name] = it
	}
	return s, nil
}

// Counter is a total and its rate per second over the last interval.
type Counter struct {
	Total uint64  `json:"total"`
	Rate  float64 `json:"per_second"`
}

func counter(cur, prev uint64, secs float64) Counter {
	c := Counter{Total: cur}
	if cur >= prev && secs > 0 {
		c.Rate = float64(cur-prev) / secs
	}
	return c
}

// Rates is one interface's rates between two samples.
type Rates struct {
	Interface string             `json:"interface"`
	Packets   Counter            `json:"packets"`
	Dropped   Counter            `json:"dropped"`
	Drops     map[string]Counter `json:"drops"`     // by reason
	Passes    map[string]Counter `json:"passes"`    // by reason
	Monitored map[string]Counter `json:"monitored"` // would-be drops let through, by reason
	Ports     []PortRate         `json:"ports"`     // most dropped first (by rate, then total)
	Sources   []SourceRate       `json:"rate_limited_sources,omitempty"`
	Bans      []BanRate          `json:"banned_sources,omitempty"`
	SynProxy  *SynProxyRate      `json:"syn_proxy,omitempty"` // nil: it never answered or checked anything
}

// SynProxyRate is what the SYN proxy did (docs/synproxy.md): SYN-ACKs sent
// with a cookie, the ACKs it checked, the SYNs it did not answer (over a
// budget, no listener, ...), the SYNs of proven sources, and the auto ports
// proxying now.
type SynProxyRate struct {
	CookiesSent Counter  `json:"cookies_sent"`
	ACKsValid   Counter  `json:"acks_valid"`
	ACKsInvalid Counter  `json:"acks_invalid"`
	NotAnswered Counter  `json:"syns_not_answered"`
	ProvenSYNs  Counter  `json:"proven_syns"`
	Engaged     []uint16 `json:"auto_engaged_ports,omitempty"`
}

// synProxyRate is c's SYN proxy rates against p (nil when it did nothing).
func synProxyRate(c, p *maps.SynProxy, secs float64) *SynProxyRate {
	if c == nil {
		return nil
	}
	var pc [datapath.NumSynProxyCounters]uint64
	if p != nil {
		pc = p.Counters
	}
	notAnswered := func(v [datapath.NumSynProxyCounters]uint64) uint64 {
		return v[datapath.SynProxyOverBudgetSrc] + v[datapath.SynProxyOverBudgetTotal] + v[datapath.SynProxyNoListener] +
			v[datapath.SynProxyCookieFailed] + v[datapath.SynProxyFragment] + v[datapath.SynProxyTxFailed]
	}
	r := &SynProxyRate{
		CookiesSent: counter(c.Counters[datapath.SynProxyCookiesSent], pc[datapath.SynProxyCookiesSent], secs),
		ACKsValid:   counter(c.Counters[datapath.SynProxyACKsValid], pc[datapath.SynProxyACKsValid], secs),
		ACKsInvalid: counter(c.Counters[datapath.SynProxyACKsInvalid], pc[datapath.SynProxyACKsInvalid], secs),
		NotAnswered: counter(notAnswered(c.Counters), notAnswered(pc), secs),
		ProvenSYNs:  counter(c.Counters[datapath.SynProxyProvenSYNs], pc[datapath.SynProxyProvenSYNs], secs),
		Engaged:     c.Engaged,
	}
	if r.CookiesSent.Total+r.ACKsValid.Total+r.ACKsInvalid.Total+r.NotAnswered.Total+r.ProvenSYNs.Total == 0 && len(r.Engaged) == 0 {
		return nil
	}
	return r
}

// PortRate is a port's drops.
type PortRate struct {
	Port        uint16  `json:"port"`
	NotAllowed  Counter `json:"port_not_allowed"`
	RateLimited Counter `json:"rate_limited"` // per source and per port
	UDP         Counter `json:"udp_port_not_allowed"`
	Total       Counter `json:"total"`
}

// SourceRate is a source's refused SYNs.
type SourceRate struct {
	Source netip.Prefix `json:"source"`
	Drops  Counter      `json:"drops"`
}

// BanRate is a banned source, its drops and the time its ban has left.
type BanRate struct {
	Source netip.Prefix  `json:"source"`
	Drops  Counter       `json:"drops"`
	Left   time.Duration `json:"ban_left_ns"`
}

// Compare computes cur's rates against prev (nil: totals only), keeping
// the top n ports and sources (all if n <= 0).
func Compare(prev, cur *Sample, n int) []Rates {
	var secs float64
	if prev != nil {
		secs = cur.Time.Sub(prev.Time).Seconds()
	}
	var names []string
	for name := range cur.Interfaces {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []Rates
	for _, name := range names {
		c := cur.Interfaces[name]
		p := &Iface{Ports: map[uint16]maps.PortDrops{}}
		if prev != nil && prev.Interfaces[name] != nil {
			p = prev.Interfaces[name]
		}
		r := Rates{Interface: name, Drops: map[string]Counter{}, Passes: map[string]Counter{}, Monitored: map[string]Counter{},
			Packets: counter(c.Reasons.Total(), p.Reasons.Total(), secs),
			Dropped: counter(c.Reasons.Dropped(), p.Reasons.Dropped(), secs)}
		for _, reason := range datapath.AllReasons() {
			if reason.Dropped() {
				r.Drops[reason.Name()] = counter(c.Reasons[reason], p.Reasons[reason], secs)
				r.Monitored[reason.Name()] = counter(c.Monitored[reason], p.Monitored[reason], secs)
			} else {
				r.Passes[reason.Name()] = counter(c.Reasons[reason], p.Reasons[reason], secs)
			}
		}
		for port, cd := range c.Ports {
			pd := p.Ports[port]
			r.Ports = append(r.Ports, PortRate{
				Port:        port,
				NotAllowed:  counter(cd.NotAllowed, pd.NotAllowed, secs),
				RateLimited: counter(cd.RateLimited+cd.PortRateLimited, pd.RateLimited+pd.PortRateLimited, secs),
				UDP:         counter(cd.UdpNotAllowed, pd.UdpNotAllowed, secs),
				Total:       counter(cd.Total(), pd.Total(), secs),
			})
		}
		sort.Slice(r.Ports, func(i, j int) bool {
			return hotter(r.Ports[i].Total, r.Ports[j].Total, r.Ports[i].Port < r.Ports[j].Port)
		})
		r.Ports = top(r.Ports, n)

		before := map[netip.Prefix]uint64{}
		for _, s := range p.Limited {
			before[s.Source] = s.Drops
		}
		for _, s := range c.Limited {
			r.Sources = append(r.Sources, SourceRate{s.Source, counter(s.Drops, before[s.Source], secs)})
		}
		sort.Slice(r.Sources, func(i, j int) bool {
			return hotter(r.Sources[i].Drops, r.Sources[j].Drops, r.Sources[i].Source.Addr().Less(r.Sources[j].Source.Addr()))
		})
		r.Sources = top(r.Sources, n)

		clear(before)
		for _, b := range p.Banned {
			before[b.Source] = b.Drops
		}
		now := datapath.MonotonicNow()
		for _, b := range c.Banned {
			left := time.Duration(0)
			if b.Until > now {
				left = time.Duration(b.Until - now)
			}
			r.Bans = append(r.Bans, BanRate{b.Source, counter(b.Drops, before[b.Source], secs), left})
		}
		sort.Slice(r.Bans, func(i, j int) bool {
			return hotter(r.Bans[i].Drops, r.Bans[j].Drops, r.Bans[i].Source.Addr().Less(r.Bans[j].Source.Addr()))
		})
		r.Bans = top(r.Bans, n)
		r.SynProxy = synProxyRate(c.SynProxy, p.SynProxy, secs)
		out = append(out, r)
	}
	return out
}

// hotter orders by rate, then total, then tie.
func hotter(a, b Counter, tie bool) bool {
	if a.Rate != b.Rate {
		return a.Rate > b.Rate
	}
	if a.Total != b.Total {
		return a.Total > b.Total
	}
	return tie
}

func top[T any](xs []T, n int) []T {
	if n > 0 && len(xs) > n {
		return xs[:n]
	}
	return xs
}
