package main

import (
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Attach modes on veth (-only attachmodes): for each way of running the
// filter on vethB, the bulk TCP rate of one connection to an allowed port
// (a Go sender in the generator's namespace writing 256 KiB buffers, the
// receiver in the DUT counting bytes, as iperf3 does) and the drop rate of
// a live-frames SYN flood to a closed port. Rounds interleave the modes;
// the table gives medians and the spread.

// attachMode is one row: what runs on vethB.
type attachMode struct {
	Key, Name string
	// setup attaches; drops reads the flood's drops so far.
	setup func(l *lab) (teardown func(), drops func() (uint64, error), err error)
}

type attachResult struct {
	Key, Name       string
	Gbps, FloodMpps []float64 // per round
}

func attachModes() []attachMode {
	guard := func(mode string) func(l *lab) (func(), func() (uint64, error), error) {
		return func(l *lab) (func(), func() (uint64, error), error) { return attachGuardMode(l, mode) }
	}
	return []attachMode{
		{"none", "no filter (bulk only; GRO on for the flood)", func(l *lab) (func(), func() (uint64, error), error) {
			undo, err := groOn(l)
			return undo, nil, err
		}},
		{"xdp-pass", "trivial native XDP_PASS", trivialOn(false)},
		{"native", "xdpguard, native XDP", guard("native")},
		{"generic", "xdpguard, generic XDP", guard("generic")},
		{"tc-pass", "trivial tc pass (tcx)", trivialOn(true)},
		{"tc", "xdpguard, tc (tcx): auto's choice on veth", guard("auto")},
		{"nft", "nftables netdev ingress (same policy)", attachNftGRO},
	}
}

// trivialOn attaches a program that passes everything, native XDP or
// tcx: what any program in that mode costs established traffic.
func trivialOn(tc bool) func(l *lab) (func(), func() (uint64, error), error) {
	return func(l *lab) (func(), func() (uint64, error), error) {
		spec := &ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}}
		if tc {
			spec = &ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}}
		}
		prog, err := ebpf.NewProgram(spec)
		if err != nil {
			return nil, nil, err
		}
		var lk link.Link
		err = inNS(l.dut, func() error {
			var err error
			if tc {
				lk, err = link.AttachTCX(link.TCXOptions{Program: prog, Interface: l.bIdx, Attach: ebpf.AttachTCXIngress})
			} else {
				lk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: l.bIdx, Flags: link.XDPDriverMode})
			}
			return err
		})
		if err != nil {
			prog.Close()
			return nil, nil, err
		}
		return func() { lk.Close(); prog.Close() }, nil, nil
	}
}

// groOn turns GRO on for vethB: veth then receives on NAPI, which frames
// redirected into its peer need when no XDP program is attached.
func groOn(l *lab) (func(), error) {
	if err := run("ip", "netns", "exec", l.dut, "ethtool", "-K", l.b, "gro", "on"); err != nil {
		return nil, err
	}
	return func() { _ = run("ip", "netns", "exec", l.dut, "ethtool", "-K", l.b, "gro", "off") }, nil
}

func attachGuardMode(l *lab, mode string) (func(), func() (uint64, error), error) {
	pol, err := policy.Parse("bench", []byte(benchPolicy))
	if err != nil {
		return nil, nil, err
	}
	m, err := loader.ParseMode(mode)
	if err != nil {
		return nil, nil, err
	}
	gro, err := groOn(l)
	if err != nil {
		return nil, nil, err
	}
	var g *loader.Guard
	err = inNS(l.dut, func() error {
		g, _, err = loader.Attach(l.pinRoot, l.b, m, pol)
		return err
	})
	if err != nil {
		gro()
		return nil, nil, err
	}
	if mode == "auto" && g.Placement.Mode != "tc" {
		g.Close()
		gro()
		return nil, nil, fmt.Errorf("auto on veth chose %s, not tc", g.Placement.Mode)
	}
	drops := func() (uint64, error) {
		st, err := g.State()
		if err != nil {
			return 0, err
		}
		r, err := st.Reasons()
		return r[datapath.DropPortNotAllowed], err
	}
	return func() {
		g.Close()
		_ = inNS(l.dut, func() error { return loader.Detach(l.pinRoot, l.b) })
		gro()
	}, drops, nil
}

func attachNftGRO(l *lab) (func(), func() (uint64, error), error) {
	gro, err := groOn(l)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", l.dut, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(nftRuleset(l.b))
	if out, err := cmd.CombinedOutput(); err != nil {
		gro()
		return nil, nil, fmt.Errorf("nft: %v: %s", err, out)
	}
	return func() {
		_ = run("ip", "netns", "exec", l.dut, "nft", "delete", "table", "netdev", "xgbench")
		gro()
	}, func() (uint64, error) { return nftDrops(l) }, nil
}

// bulkTCP runs one TCP connection gen -> dut:8022 for d and returns Gbit/s
// as the receiver counted.
func bulkTCP(l *lab, d time.Duration) (float64, error) {
	var ln net.Listener
	err := inNS(l.dut, func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(l.dutIP, "8022"))
		return err
	})
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	var received atomic.Int64
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 1<<20)
		for {
			n, err := c.Read(buf)
			received.Add(int64(n))
			if err != nil {
				done <- nil
				return
			}
		}
	}()
	var conn net.Conn
	err = inNS(l.gen, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(l.dutIP, "8022"), 2*time.Second)
		return err
	})
	if err != nil {
		return 0, err
	}
	stop := make(chan struct{})
	go func() {
		buf := make([]byte, 256<<10)
		for {
			select {
			case <-stop:
				conn.Close()
				return
			default:
			}
			if _, err := conn.Write(buf); err != nil {
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // past slow start
	start, before := time.Now(), received.Load()
	time.Sleep(d)
	bytes, elapsed := received.Load()-before, time.Since(start)
	close(stop)
	<-done
	return float64(bytes) * 8 / elapsed.Seconds() / 1e9, nil
}

// floodRate pushes a SYN flood to a closed port for d and returns the
// drops per second (millions) the mode's own counter saw.
func floodRate(l *lab, drops func() (uint64, error), d time.Duration) (float64, error) {
	g, err := newGenerator(l, flood{dport: 8080, sources: 65536})
	if err != nil {
		return 0, err
	}
	defer g.Close()
	before, err := drops()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := g.push(l, d); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	after, err := drops()
	if err != nil {
		return 0, err
	}
	return float64(after-before) / elapsed.Seconds() / 1e6, nil
}

func attachModesOnly(o options, m method) error {
	l, err := newLab()
	if err != nil {
		return err
	}
	defer l.destroy()
	rounds := max(m.Rounds, 3)
	if o.Rounds > 0 {
		rounds = o.Rounds
	}
	var res []attachResult
	for _, am := range attachModes() {
		res = append(res, attachResult{Key: am.Key, Name: am.Name})
	}
	for r := 0; r < rounds; r++ {
		for i, am := range attachModes() {
			undo, drops, err := am.setup(l)
			if err != nil {
				return fmt.Errorf("%s: %w", am.Key, err)
			}
			gbps, err := bulkTCP(l, m.Flood)
			if err == nil && drops != nil {
				var mpps float64
				if mpps, err = floodRate(l, drops, m.Flood); err == nil {
					res[i].FloodMpps = append(res[i].FloodMpps, mpps)
				}
			}
			undo()
			if err != nil {
				return fmt.Errorf("%s: %w", am.Key, err)
			}
			res[i].Gbps = append(res[i].Gbps, gbps)
			o.Log("round %d %s: bulk %.2f Gbit/s, flood %v Mpps", r+1, am.Key, gbps, res[i].FloodMpps)
		}
	}
	fmt.Println(attachModesMarkdown(res, rounds, m.Flood))
	return nil
}

// spread is "median (min–max)".
func spread(xs []float64, format string) string {
	if len(xs) == 0 {
		return "—"
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	f := func(x float64) string { return fmt.Sprintf(format, x) }
	return fmt.Sprintf("%s (%s–%s)", f(median(s)), f(s[0]), f(s[len(s)-1]))
}

// pairedRatio is the median (and range) over rounds of xs[i]/base[i]:
// each pair shares the VM's state of the moment.
func pairedRatios(xs, base []float64) string {
	var rs []float64
	for i := range xs {
		if i < len(base) && base[i] > 0 {
			rs = append(rs, xs[i]/base[i])
		}
	}
	if len(rs) == 0 {
		return "—"
	}
	return spread(rs, "%.2f×")
}

func attachModesMarkdown(res []attachResult, rounds int, d time.Duration) string {
	var b strings.Builder
	var none, nft attachResult
	for _, r := range res {
		switch r.Key {
		case "none":
			none = r
		case "nft":
			nft = r
		}
	}
	fmt.Fprintf(&b, "| On vethB | bulk TCP, Gbit/s | vs no filter (paired) | closed-port SYN flood dropped, Mpps | vs nftables (paired) |\n|---|---|---|---|---|\n")
	for _, r := range res {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Name, spread(r.Gbps, "%.1f"), pairedRatios(r.Gbps, none.Gbps),
			spread(r.FloodMpps, "%.2f"), pairedRatios(r.FloodMpps, nft.FloodMpps))
	}
	fmt.Fprintf(&b, "\nMedians of %d interleaved rounds (min–max); a ratio is the median of the rounds' ratios; %s per measurement.", rounds, d)
	return b.String()
}
