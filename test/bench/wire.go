package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// scenario is one whole-path configuration: what runs on vethB and what
// the generator sends.
type scenario struct {
	Key, Name string
	dport     uint16
	sources   uint32
	setup     func(l *lab) (teardown func(), err error)
	dropped   func(l *lab) (uint64, error)
	legit     bool // measure a legitimate client during it
}

// wireResult is a scenario's medians over rounds.
type wireResult struct {
	Key, Name  string
	Offered    float64   // frames/s the generator pushed
	Mpps       float64   // drops per second, in millions
	RoundMpps  []float64 // Mpps of each round, in order: ratios pair rounds
	CPUNsPkt   float64   // busy CPU time (both cores) per dropped frame
	LegitTried int
	LegitOK    int
	P50, P99   time.Duration
}

func attachTrivial(l *lab, action int32) (func(), error) {
	p, err := trivialProgram(action)
	if err != nil {
		return nil, err
	}
	return attachToB(l, p, p)
}

// attachToB attaches prog in native mode to vethB; the undo detaches it and
// closes owner (what holds prog). On error owner is closed at once.
func attachToB(l *lab, prog *ebpf.Program, owner io.Closer) (func(), error) {
	var lk link.Link
	err := inNS(l.dut, func() error {
		var err error
		lk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: l.bIdx, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		owner.Close()
		return nil, err
	}
	return func() { lk.Close(); owner.Close() }, nil
}

func attachXdpguard(l *lab) (func(), error) {
	pol, err := policy.Parse("bench", []byte(benchPolicy))
	if err != nil {
		return nil, err
	}
	var g *loader.Guard
	err = inNS(l.dut, func() error {
		g, _, err = loader.Attach(l.pinRoot, l.b, loader.ModeNative, pol)
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

// attachReadThenDrop attaches gen.c's read_then_drop to vethB.
func attachReadThenDrop(l *lab) (func(), error) {
	objs := new(genObjects)
	if err := loadGenObjects(objs, nil); err != nil {
		return nil, err
	}
	return attachToB(l, objs.ReadThenDrop, objs)
}

// nftRuleset is benchPolicy in nftables: a netdev ingress chain on vethB
// with the allowed-port set and per-source and per-port meters, the form
// in ../shared/notes/perf.md.
func nftRuleset(dev string) string {
	return fmt.Sprintf(`table netdev xgbench {
  set src { type ipv4_addr; size 65536; flags dynamic,timeout; timeout 60s; }
  set port { type inet_service; size 65536; flags dynamic,timeout; timeout 60s; }
  chain in {
    type filter hook ingress device "%s" priority -500; policy accept;
    ip protocol tcp tcp flags & (syn|ack) == syn tcp dport != { 22, 80, 443, 8022 } counter drop
    ip protocol tcp tcp flags & (syn|ack) == syn update @src { ip saddr limit rate over 100/second burst 200 packets } counter drop
    ip protocol tcp tcp flags & (syn|ack) == syn update @port { tcp dport limit rate over 10000/second burst 10000 packets } counter drop
  }
}
`, dev)
}

func attachNft(l *lab) (func(), error) {
	undo, err := attachTrivial(l, 2) // XDP_PASS: keeps vethB's NAPI, as in production with any XDP
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", l.dut, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(nftRuleset(l.b))
	if out, err := cmd.CombinedOutput(); err != nil {
		undo()
		return nil, fmt.Errorf("nft: %v: %s", err, out)
	}
	return func() { _ = run("ip", "netns", "exec", l.dut, "nft", "delete", "table", "netdev", "xgbench"); undo() }, nil
}

// xdpDrops reads vethB's XDP drop counter (ethtool -S).
func xdpDrops(l *lab) (uint64, error) {
	out, err := exec.Command("ip", "netns", "exec", l.dut, "ethtool", "-S", l.b).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ethtool: %v: %s", err, out)
	}
	var total uint64
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && strings.HasSuffix(k, "_xdp_drops") {
			var n uint64
			fmt.Sscan(strings.TrimSpace(v), &n)
			total += n
		}
	}
	return total, nil
}

// nftDrops sums the packets of the chain's counters.
func nftDrops(l *lab) (uint64, error) {
	out, err := exec.Command("ip", "netns", "exec", l.dut, "nft", "-j", "list", "table", "netdev", "xgbench").Output()
	if err != nil {
		return 0, fmt.Errorf("nft list: %w", err)
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Expr []map[string]json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, err
	}
	var total uint64
	for _, o := range doc.Nftables {
		if o.Rule == nil {
			continue
		}
		for _, e := range o.Rule.Expr {
			if c, ok := e["counter"]; ok {
				var ctr struct{ Packets uint64 }
				_ = json.Unmarshal(c, &ctr)
				total += ctr.Packets
			}
		}
	}
	return total, nil
}

func scenarios() []scenario {
	return []scenario{
		{Key: "a", Name: "trivial XDP_DROP (the floor)", dport: 8080, sources: 65536,
			setup: func(l *lab) (func(), error) { return attachTrivial(l, 1) }, dropped: xdpDrops},
		{Key: "r", Name: "trivial drop after reading the TCP header (the floor for any filter)", dport: 8080, sources: 65536,
			setup: attachReadThenDrop, dropped: xdpDrops},
		// (a) has no legitimate client (the floor would drop it), so the
		// floor is compared with xdpguard under the same load: (b0), run
		// in the same round as (a). (b) is the flood with the client.
		{Key: "b0", Name: "xdpguard, the same flood as (a): no legitimate client", dport: 8080, sources: 65536, setup: attachXdpguard, dropped: xdpDrops},
		{Key: "b", Name: "xdpguard, SYN flood to a closed port", dport: 8080, sources: 65536, setup: attachXdpguard, dropped: xdpDrops, legit: true},
		{Key: "c", Name: "XDP_PASS + nftables netdev ingress (same policy)", dport: 8080, sources: 65536, setup: attachNft, dropped: nftDrops, legit: true},
		{Key: "d", Name: "xdpguard, random-source flood at an allowed port, 1k sources", dport: 80, sources: 1000, setup: attachXdpguard, dropped: xdpDrops, legit: true},
		{Key: "e", Name: "xdpguard, the same with 1M sources", dport: 80, sources: 1 << 20, setup: attachXdpguard, dropped: xdpDrops, legit: true},
	}
}

// generator pushes SYN frames into vethA with live frames; it runs on CPU 0.
type generator struct {
	objs  genObjects
	frame []byte
	pass  link.Link
}

func newGenerator(l *lab, dport uint16, sources uint32) (*generator, error) {
	g := &generator{}
	if err := loadGenFor(sources, &g.objs); err != nil {
		return nil, err
	}
	f := testpkt.NewSYN("100.64.0.1", dutIP, dport)
	copy(f.DstMAC[:], l.bMAC)
	copy(f.SrcMAC[:], l.aMAC)
	g.frame = f.Bytes()
	err := inNS(l.gen, func() error {
		var err error
		g.pass, err = link.AttachXDP(link.XDPOptions{Program: g.objs.Pass, Interface: l.aIdx, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		g.objs.Close()
		return nil, err
	}
	return g, nil
}

func (g *generator) Close() { g.pass.Close(); g.objs.Close() }

type xdpMd struct{ Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32 }

// push sends frames for d and reports how many.
func (g *generator) push(l *lab, d time.Duration) (uint64, error) {
	var sent uint64
	err := inNS(l.gen, func() error {
		if err := pinCPU(0); err != nil {
			return err
		}
		const chunk = 1 << 16
		start := time.Now()
		for time.Since(start) < d {
			_, err := g.objs.Generate.Run(&ebpf.RunOptions{
				Data: g.frame, Repeat: chunk, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, BatchSize: 64,
				Context: xdpMd{DataEnd: uint32(len(g.frame)), IngressIfindex: uint32(l.aIdx)},
			})
			if err != nil {
				return fmt.Errorf("live frames: %w", err)
			}
			sent += chunk
		}
		return nil
	})
	return sent, err
}

// legitClient connects to dut:8022 from the cli namespace until stop.
func legitClient(l *lab, stop <-chan struct{}) (tried, ok int, lat []time.Duration) {
	_ = inNS(l.cli, func() error {
		for {
			select {
			case <-stop:
				return nil
			default:
			}
			start := time.Now()
			c, err := net.DialTimeout("tcp", net.JoinHostPort(dutIP, "8022"), time.Second)
			tried++
			if err == nil {
				ok++
				lat = append(lat, time.Since(start))
				c.Close()
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return
}

// primeClient connects once from the cli namespace, uncounted.
func primeClient(l *lab) {
	_ = inNS(l.cli, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(dutIP, "8022"), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// listen serves 8022 in the dut namespace (accept and close).
func listen(l *lab) (net.Listener, error) {
	var ln net.Listener
	err := inNS(l.dut, func() error {
		var err error
		ln, err = net.Listen("tcp", ":8022")
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln, nil
}

// wholePath runs the scenarios for d per round, rounds interleaved.
func wholePath(l *lab, scs []scenario, d time.Duration, rounds int, logf func(string, ...any)) ([]wireResult, error) {
	ln, err := listen(l)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	undo, err := pinProcess(0)
	if err != nil {
		return nil, err
	}
	defer undo()
	type acc struct {
		mpps, cpu, offered []float64
		tried, ok          int
		lat                []time.Duration
	}
	accs := make([]acc, len(scs))
	for r := 0; r < rounds; r++ {
		for i, sc := range scs {
			teardown, err := sc.setup(l)
			if err != nil {
				return nil, fmt.Errorf("(%s) %s: %w", sc.Key, sc.Name, err)
			}
			if err := l.threadedNAPI(); err != nil {
				teardown()
				return nil, err
			}
			gen, err := newGenerator(l, sc.dport, sc.sources)
			if err != nil {
				teardown()
				return nil, err
			}
			if sc.legit {
				primeClient(l) // resolve the neighbours before the flood, as on a live host
			}
			if _, err := gen.push(l, d/5); err != nil { // warm up: fill the limiter table
				gen.Close()
				teardown()
				return nil, err
			}
			var wg sync.WaitGroup
			stop := make(chan struct{})
			var tried, ok int
			var lat []time.Duration
			if sc.legit {
				wg.Add(1)
				go func() { defer wg.Done(); tried, ok, lat = legitClient(l, stop) }()
			}
			before, err1 := sc.dropped(l)
			busy0, t0 := cpuBusy(), time.Now()
			sent, err2 := gen.push(l, d)
			elapsed, busy := time.Since(t0), cpuBusy()-busy0
			after, err3 := sc.dropped(l)
			close(stop)
			wg.Wait()
			gen.Close()
			teardown()
			if err := errors.Join(err1, err2, err3); err != nil {
				return nil, fmt.Errorf("(%s): %w", sc.Key, err)
			}
			drops := float64(after - before)
			a := &accs[i]
			a.mpps = append(a.mpps, drops/elapsed.Seconds()/1e6)
			a.offered = append(a.offered, float64(sent)/elapsed.Seconds())
			if drops > 0 {
				a.cpu = append(a.cpu, busy/drops)
			}
			a.tried += tried
			a.ok += ok
			a.lat = append(a.lat, lat...)
			logf("round %d (%s) %.2f Mpps dropped of %.2f Mpps offered; legit %d/%d", r+1, sc.Key, drops/elapsed.Seconds()/1e6, float64(sent)/elapsed.Seconds()/1e6, ok, tried)
		}
	}
	var out []wireResult
	for i, sc := range scs {
		a := accs[i]
		res := wireResult{Key: sc.Key, Name: sc.Name, Mpps: median(a.mpps), RoundMpps: a.mpps, Offered: median(a.offered), CPUNsPkt: median(a.cpu), LegitTried: a.tried, LegitOK: a.ok}
		if len(a.lat) > 0 {
			sort.Slice(a.lat, func(x, y int) bool { return a.lat[x] < a.lat[y] })
			res.P50 = a.lat[len(a.lat)/2]
			res.P99 = a.lat[min(len(a.lat)-1, len(a.lat)*99/100)]
		}
		out = append(out, res)
	}
	return out, nil
}

// threadedNAPI moves vethB's receive processing into its own kernel thread
// on CPU 1, away from the generator on CPU 0: the drop rate then measures
// what the filter's CPU can do, not the generator's. (NAPI exists only
// while an XDP program is attached, so this follows each setup.)
func (l *lab) threadedNAPI() error {
	if err := run("ip", "netns", "exec", l.dut, "sh", "-c", "echo 1 > /sys/class/net/"+l.b+"/threaded"); err != nil {
		return err
	}
	out, err := exec.Command("pgrep", "-f", "napi/"+l.b+"-").Output()
	if err != nil {
		return fmt.Errorf("no NAPI thread for %s: %w", l.b, err)
	}
	for _, pid := range strings.Fields(string(out)) {
		if err := run("taskset", "-pc", "1", pid); err != nil {
			return err
		}
	}
	return nil
}
