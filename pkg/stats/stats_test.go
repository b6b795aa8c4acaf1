package stats

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

func TestCompareRatesAndRanking(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a, b, c := netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.2/32"), netip.MustParsePrefix("2001:db8::/64")
	port := func(p uint16, na uint64) maps.PortDrops {
		return maps.PortDrops{Port: p, PortCounters: datapath.PortCounters{NotAllowed: na}}
	}
	prev := &Sample{Time: t0, Interfaces: map[string]*Iface{"eth1": {
		Ports:   map[uint16]maps.PortDrops{22: port(22, 100), 23: port(23, 5)},
		Limited: []maps.Source{{Source: a, Drops: 1000}, {Source: b, Drops: 10}},
	}}}
	prev.Interfaces["eth1"].Reasons[datapath.DropPortNotAllowed] = 105
	made := time.Now() // the ban's end is set from the clock here; Compare reads it again
	cur := &Sample{Time: t0.Add(2 * time.Second), Interfaces: map[string]*Iface{"eth1": {
		Ports:   map[uint16]maps.PortDrops{22: port(22, 100), 23: port(23, 205), 24: port(24, 1)},
		Limited: []maps.Source{{Source: a, Drops: 1000}, {Source: b, Drops: 410}, {Source: c, Drops: 2}},
		Banned:  []maps.Ban{{Source: c, Until: datapath.MonotonicNow() + uint64(30*time.Second), Drops: 7}},
	}}}
	cur.Interfaces["eth1"].Reasons[datapath.DropPortNotAllowed] = 306
	got := Compare(prev, cur, 2)
	since := time.Since(made) // however long this goroutine was held off the CPU
	if len(got) != 1 {
		t.Fatalf("%d interfaces", len(got))
	}
	r := got[0]
	if d := r.Drops["port_not_allowed"]; d.Total != 306 || d.Rate != 100.5 {
		t.Errorf("port_not_allowed %+v, want 306 total at 100.5/s", d)
	}
	// Ports and sources rank by rate, then total, and are cut to the limit.
	if len(r.Ports) != 2 || r.Ports[0].Port != 23 || r.Ports[0].Total.Rate != 100 || r.Ports[1].Port != 24 {
		t.Errorf("ports %+v, want 23 (100/s) then 24 (0.5/s)", r.Ports)
	}
	if len(r.Sources) != 2 || r.Sources[0].Source != b || r.Sources[0].Drops.Rate != 200 || r.Sources[1].Source != c {
		t.Errorf("sources %+v, want %s (200/s) then %s (new, 1/s)", r.Sources, b, c)
	}
	if len(r.Bans) != 1 || r.Bans[0].Drops.Total != 7 || r.Bans[0].Left < 30*time.Second-since || r.Bans[0].Left > 30*time.Second {
		t.Errorf("bans %+v, want 7 drops and between %v and 30s left", r.Bans, 30*time.Second-since)
	}
	// Without a previous sample: totals, no rates.
	if first := Compare(nil, cur, 0)[0]; first.Drops["port_not_allowed"].Rate != 0 || len(first.Ports) != 3 {
		t.Errorf("first sample %+v", first)
	}
}

// A counter that went backwards (pins recreated) reads as no rate, not as
// a huge one.
func TestCounterReset(t *testing.T) {
	if c := counter(5, 1000, 1); c.Rate != 0 || c.Total != 5 {
		t.Errorf("%+v", c)
	}
}

// The SYN proxy's rates: cookies, ACKs, the SYNs it did not answer (every
// cause summed) and the auto ports engaged; nothing when it did nothing.
func TestSynProxyRates(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var before, after maps.SynProxy
	before.Counters[datapath.SynProxyCookiesSent] = 100
	after.Counters[datapath.SynProxyCookiesSent] = 300
	after.Counters[datapath.SynProxyACKsValid] = 40
	after.Counters[datapath.SynProxyACKsInvalid] = 2
	after.Counters[datapath.SynProxyOverBudgetSrc] = 6
	after.Counters[datapath.SynProxyNoListener] = 4
	after.Engaged = []uint16{80}
	prev := &Sample{Time: t0, Interfaces: map[string]*Iface{"eth1": {SynProxy: &before}, "eth2": {SynProxy: &maps.SynProxy{}}}}
	cur := &Sample{Time: t0.Add(2 * time.Second), Interfaces: map[string]*Iface{"eth1": {SynProxy: &after}, "eth2": {SynProxy: &maps.SynProxy{}}}}
	got := Compare(prev, cur, 0)
	sp := got[0].SynProxy
	if sp == nil || sp.CookiesSent.Rate != 100 || sp.CookiesSent.Total != 300 || sp.ACKsValid.Total != 40 || sp.ACKsInvalid.Rate != 1 ||
		sp.NotAnswered.Total != 10 || sp.NotAnswered.Rate != 5 || len(sp.Engaged) != 1 || sp.Engaged[0] != 80 {
		t.Errorf("eth1: %+v", sp)
	}
	if got[1].SynProxy != nil {
		t.Errorf("eth2 proxied nothing, got %+v", got[1].SynProxy)
	}
}
