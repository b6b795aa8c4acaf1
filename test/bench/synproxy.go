package main

import (
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// The SYN proxy's rows (-only synproxy), on the whole-path harness of
// wire.go (generator on CPU 0, the filter's NAPI threaded on CPU 1, the
// legitimate client connecting to dut:8022 every 20 ms): a random-source
// SYN flood at 8022, which a listener serves, answered (p) by xdpguard with
// cookies (syn_proxy: always) and (k) by the listener itself with its own
// cookies (no XDP filter, tcp_syncookies=2); beside (b), xdpguard dropping
// the same flood at a closed port. "Mpps" of p and k is SYN-ACKs sent.
//
// A SYN-ACK sent by XDP_TX on vethB (or by the listener, in k) would be
// received by vethA on the filter's CPU, where a NIC would put it on the
// wire: vethA's NAPI runs threaded on the generator's CPU for these rows
// (flood.replies), and the generator side's XDP program (gen.c's pass)
// drops the answers there. The proxy answers in the generator's own page (veth
// hands frames over without a copy), so for (p) the generator rewrites
// each frame from its template (flood.proxied).

// spFloodSources is how many sources the SYN proxy's floods rotate over
// (100.64.0.0/10, visited in a scrambled order): a spoofed flood's sources
// hardly repeat, and these repeat only every 4M SYNs, seconds apart.
const spFloodSources = 1 << 22

// synproxyBenchPolicy proxies 8022; the budgets are the host's capacity,
// not a limit (each flood source sends a few SYNs).
const synproxyBenchPolicy = `tcp:
  allow:
    - 22
    - {port: 8022, syn_proxy: always}
synproxy:
  budget:
    per_source: {rate: 1000, burst: 1000}
    total: {rate: 10000000, burst: 10000000}
`

func synproxyScenarios() []scenario {
	all := scenarios([3]int{1000, 2000, 5000}) // only "b" is used: the smallest scale rows
	b := all[slices.IndexFunc(all, func(sc scenario) bool { return sc.Key == "b" })]
	b.progStats = true
	return []scenario{
		b,
		{Key: "p", Name: "xdpguard syn_proxy: always, random-source flood at the served port: cookies sent", flood: flood{dport: 8022, sources: spFloodSources, scramble: true, proxied: true},
			setup: attachSynProxy, dropped: cookiesSent, legit: true, progStats: true},
		{Key: "k", Name: "no XDP filter, tcp_syncookies=2: the listener's own cookies sent", flood: flood{dport: 8022, sources: spFloodSources, scramble: true, replies: true},
			setup: attachKernelCookies, dropped: kernelCookiesSent, legit: true},
	}
}

func attachSynProxy(l *lab) (func(), error) {
	pol, err := policy.Parse("bench", []byte(synproxyBenchPolicy))
	if err != nil {
		return nil, err
	}
	var g *loader.Guard
	err = inNS(l.dut, func() error {
		g, _, err = loader.Attach(l.pinRoot, l.b, loader.ModeNative, pol) // sets tcp_syncookies=2, tcp_timestamps=2
		return err
	})
	if err != nil {
		return nil, err
	}
	return func() {
		g.Close()
		_ = inNS(l.dut, func() error { return loader.Detach(l.pinRoot, l.b) })
	}, nil
}

// attachKernelCookies: a trivial XDP_PASS (so the path is the same native
// veth one) and the listener answering every SYN with its own cookie.
func attachKernelCookies(l *lab) (func(), error) {
	if out, err := exec.Command("ip", "netns", "exec", l.dut, "sysctl", "-qw", "net.ipv4.tcp_syncookies=2").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sysctl: %v: %s", err, out)
	}
	// The listener answers only sources it has a route to: the flood's
	// (100.64.0.0/10) go back to the generator.
	if out, err := exec.Command("ip", "-n", l.dut, "route", "replace", "100.64.0.0/10", "via", "198.18.100.2").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("route: %v: %s", err, out)
	}
	undo, err := attachTrivial(l, 2)
	if err != nil {
		return nil, err
	}
	return func() {
		undo()
		_ = exec.Command("ip", "-n", l.dut, "route", "del", "100.64.0.0/10").Run()
	}, nil
}

func cookiesSent(l *lab) (uint64, error) {
	var n uint64
	err := inNS(l.dut, func() error {
		s, err := maps.Open(l.pinRoot+"/"+l.b, false)
		if err != nil {
			return err
		}
		defer s.Close()
		sp, err := s.SynProxy()
		n = sp.Counters[datapath.SynProxyCookiesSent]
		return err
	})
	return n, err
}

func kernelCookiesSent(l *lab) (uint64, error) { return tcpExt(l, "SyncookiesSent") }

// tcpExt reads one TcpExt counter of the dut namespace.
func tcpExt(l *lab, name string) (uint64, error) {
	out, err := exec.Command("ip", "netns", "exec", l.dut, "cat", "/proc/net/netstat").Output()
	if err != nil {
		return 0, err
	}
	lines := strings.Split(string(out), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(keys) == 0 || keys[0] != "TcpExt:" {
			continue
		}
		for j := range keys {
			if keys[j] == name && j < len(vals) {
				return strconv.ParseUint(vals[j], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("TcpExt %s not found", name)
}

func synproxyOnly(o options) (results, error) {
	rounds, d := o.Rounds, o.Flood
	if rounds == 0 {
		rounds = 3
	}
	if d == 0 {
		d = 2e9
	}
	l, err := newLab()
	if err != nil {
		return results{}, err
	}
	defer l.destroy()
	sent0, err1 := tcpExt(l, "SyncookiesSent")
	over0, err2 := tcpExt(l, "ListenOverflows")
	res, err := wholePath(l, synproxyScenarios(), d, rounds, o.Lock, o.Log)
	if err != nil {
		return results{}, err
	}
	fmt.Printf("SYN proxy (%d rounds of %v, rounds interleaved; the machine is shared):\n", rounds, d)
	for _, r := range res {
		p99 := "-"
		if r.LegitTried > 0 {
			p99 = r.P99.String()
		}
		fmt.Printf("  (%s) %-88s %.3f Mpps (rounds %v) of %.2f Mpps offered; legit %d/%d, p50 %v p99 %s\n",
			r.Key, r.Name, r.Mpps, fmtRounds(r.RoundMpps), r.Offered/1e6, r.LegitOK, r.LegitTried, r.P50, p99)
	}
	if len(res) == 3 && res[0].Mpps > 0 && res[2].Mpps > 0 {
		fmt.Printf("  cookies answered / closed-port drops: %.2fx (target >= 0.5x)\n", res[1].Mpps/res[0].Mpps)
		fmt.Printf("  cookies answered / the kernel's own cookies: %.2fx (target >= 3x)\n", res[1].Mpps/res[2].Mpps)
	}
	if err := errorsJoin(err1, err2); err == nil {
		sent1, _ := tcpExt(l, "SyncookiesSent")
		over1, _ := tcpExt(l, "ListenOverflows")
		fmt.Printf("  listener over the whole run (k sends its own): TcpExtSyncookiesSent +%d, TcpExtListenOverflows +%d\n", sent1-sent0, over1-over0)
	}
	return results{}, nil
}

func fmtRounds(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf("%.3f", x))
	}
	return strings.Join(s, " ")
}

func errorsJoin(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
