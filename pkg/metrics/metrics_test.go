package metrics

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	xtestutil "github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// A rule name that is not UTF-8, written into the pinned names map by
// another root tool, is a scrape error, not a panic that kills the daemon.
func TestInvalidRuleNameDoesNotPanic(t *testing.T) {
	xtestutil.RequirePrivileged(t)
	pol, err := policy.Parse("p", []byte("tcp:\n  allow: [22]\n"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := datapath.LoadDetached(pol)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var bad datapath.RuleName
	for i, b := range []byte{'x', 0xff, 0xfe, 'y'} {
		bad.Name[i] = int8(b)
	}
	if err := d.XdpgRuleNames.Put(uint32(9), &bad); err != nil {
		t.Fatal(err)
	}
	counts := make([]datapath.RuleCounters, ebpf.MustPossibleCPU())
	counts[0].Passed = 5
	if err := d.XdpgRuleStats.Put(uint32(9), counts); err != nil {
		t.Fatal(err)
	}
	c := NewCollector(func(fn func([]Target)) { fn([]Target{{Iface: "eth0", Maps: maps.Of(d.Maps)}}) }, 10)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if _, err := reg.Gather(); err != nil {
		t.Logf("gather: %v", err) // the other metrics are still served
	}
	var m dto.Metric
	if err := c.scrapeErrors.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n < 1 {
		t.Errorf("scrape errors %v, want the bad name counted", n)
	}
}
