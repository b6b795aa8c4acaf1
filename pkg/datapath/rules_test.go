package datapath_test

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Per-rule counters: a SYN counts under the rule that opens its port to its
// source; rate-limited SYNs count as that rule's drops; rules sharing a name
// share counters; a monitor-mode rule passes what it would drop, counted
// as monitored, while rate limits still drop.
const rulesPolicy = `tcp:
  allow:
    - port: 22
      name: ssh
    - port: 2222
      name: ssh
    - port: 5432
      from: [192.0.2.0/24]
      name: db
    - port: 8080
      from: [192.0.2.0/24]
      mode: monitor
      name: trial
ratelimit:
  syn: {rate: 1, burst: 2}
`

func TestRuleCounters(t *testing.T) {
	d := load(t, mustPolicy(t, rulesPolicy))
	verdicts := map[uint32]int{}
	send := func(f []byte, n int) {
		for i := 0; i < n; i++ {
			ret, _ := run(t, d, f)
			verdicts[ret]++
		}
	}
	send(srcFrame("192.0.2.1", 22), 1)
	send(srcFrame("192.0.2.2", 2222), 1)
	send(srcFrame("192.0.2.3", 5432), 3)    // 2 pass, then rate limited
	send(srcFrame("198.51.100.1", 5432), 1) // not in from: closed
	send(srcFrame("192.0.2.4", 8080), 1)    // in from: passes under trial
	send(srcFrame("198.51.100.2", 8080), 3) // would drop: 2 pass, then rate limited
	send(srcFrame("198.51.100.3", 9999), 2)

	want := map[string]maps.Rule{
		"ssh":                   {Name: "ssh", Passed: 2},
		"db":                    {Name: "db", Passed: 2, Dropped: 1},
		"trial":                 {Name: "trial", Passed: 1, Monitored: 2, Dropped: 1},
		policy.RuleTCPClosed:    {Name: policy.RuleTCPClosed, Dropped: 3},
		policy.RuleUDPClosed:    {Name: policy.RuleUDPClosed},
		policy.RuleTCPListening: {Name: policy.RuleTCPListening},
	}
	got := ruleCounts(t, d)
	for name, w := range want {
		if got[name] != w {
			t.Errorf("rule %s: %+v, want %+v", name, got[name], w)
		}
	}
	if verdicts[xdpPass] != 1+1+2+1+2 || verdicts[xdpDrop] != 1+1+1+2 {
		t.Errorf("verdicts %v", verdicts)
	}
	mon, _ := maps.Of(d.Maps).Monitored()
	if mon[datapath.DropPortNotAllowed] != 2 {
		t.Errorf("monitored port_not_allowed = %d, want 2", mon[datapath.DropPortNotAllowed])
	}
}

// In monitor mode (the whole policy), what a rule would drop counts as
// monitored, never as dropped.
func TestRuleCountersInMonitorMode(t *testing.T) {
	d := load(t, mustPolicy(t, "mode: monitor\n"+rulesPolicy))
	for i := 0; i < 3; i++ {
		if ret, err := d.Program.Run(&ebpf.RunOptions{Data: srcFrame("192.0.2.3", 5432)}); err != nil || ret != xdpPass {
			t.Fatalf("ret %d, err %v", ret, err)
		}
	}
	if _, err := d.Program.Run(&ebpf.RunOptions{Data: srcFrame("192.0.2.3", 9)}); err != nil {
		t.Fatal(err)
	}
	got := ruleCounts(t, d)
	if w := (maps.Rule{Name: "db", Passed: 2, Monitored: 1}); got["db"] != w {
		t.Errorf("db %+v, want %+v", got["db"], w)
	}
	if w := (maps.Rule{Name: policy.RuleTCPClosed, Monitored: 1}); got[policy.RuleTCPClosed] != w {
		t.Errorf("tcp/closed %+v, want %+v", got[policy.RuleTCPClosed], w)
	}
}
