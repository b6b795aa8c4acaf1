package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

type cpResult struct {
	Ports, CIDRs  int
	PolicyKiB     int
	ParseMs       float64 // read and validate the YAML
	SwapMs        float64 // compile, load, fill maps, switch: Guard.Apply
	AllocMiB      float64 // Go allocations of one Apply
	HarnessRSSMiB float64 // this process after the swaps
	DaemonRSSMiB  float64 // `xdpguard run` at rest
	ScrapeMs      float64 // GET /metrics with all 65,536 ports counted
	ScrapeBytes   int
}

// bigPolicy lists every TCP port one by one (under one shared rule name)
// and denies 10,000 distinct /24s.
func bigPolicy() string {
	var b strings.Builder
	b.WriteString("tcp:\n  allow:\n")
	for p := 1; p <= 65535; p++ {
		fmt.Fprintf(&b, "    - {port: %d, name: bulk}\n", p)
	}
	b.WriteString("ratelimit:\n  syn: {rate: 100, burst: 200}\nsources:\n  deny:\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&b, "    - 10.%d.%d.0/24\n", i/256, i%256)
	}
	return b.String()
}

func rssMiB(pid int) float64 { return statusMiB(pid, "VmRSS") }

func controlPlane(l *lab, bin string, rounds int, logf func(string, ...any)) (cpResult, error) {
	var res cpResult
	text := bigPolicy()
	res.PolicyKiB = len(text) / 1024
	var parse []float64
	var big *policy.Policy
	for r := 0; r < rounds; r++ {
		start := time.Now()
		p, err := policy.Parse("big.yaml", []byte(text))
		if err != nil {
			return res, err
		}
		parse = append(parse, float64(time.Since(start))/1e6)
		big = p
	}
	res.ParseMs = median(parse)
	res.Ports, res.CIDRs = 65535, len(big.Deny)
	small, err := policy.Parse("bench", []byte(benchPolicy))
	if err != nil {
		return res, err
	}
	var g *loader.Guard
	if err := inNS(l.dut, func() error {
		g, _, err = loader.Attach(l.pinRoot, l.b, loader.ModeNative, small)
		return err
	}); err != nil {
		return res, err
	}
	detach := func() {
		g.Close()
		_ = inNS(l.dut, func() error { return loader.Detach(l.pinRoot, l.b) })
	}
	var swaps, allocs []float64
	for r := 0; r < rounds; r++ {
		var ms0, ms1 runtime.MemStats
		// The previous round's garbage is collected before, not during,
		// the swap measured.
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		start := time.Now()
		if err := g.Apply(big); err != nil {
			detach()
			return res, err
		}
		swaps = append(swaps, float64(time.Since(start))/1e6)
		logf("swap %d: %.0f ms", r+1, swaps[r])
		runtime.ReadMemStats(&ms1)
		allocs = append(allocs, float64(ms1.TotalAlloc-ms0.TotalAlloc)/(1<<20))
		if err := g.Apply(small); err != nil {
			detach()
			return res, err
		}
	}
	detach()
	res.SwapMs, res.AllocMiB = median(swaps), median(allocs)
	res.HarnessRSSMiB = rssMiB(os.Getpid())
	return res, daemonFigures(l, bin, &res)
}

// daemonFigures starts the real daemon: its RSS at rest, and the scrape
// time with every port's drop counters set.
func daemonFigures(l *lab, bin string, res *cpResult) error {
	pol := filepath.Join(l.workDir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(benchPolicy), 0o644); err != nil {
		return err
	}
	ready := filepath.Join(l.workDir, "ready")
	cmd := exec.Command("ip", "netns", "exec", l.dut, bin, "run", "--iface", l.b, "--policy", pol,
		"--metrics-addr", "127.0.0.1:9477", "--ready-file", ready)
	var log strings.Builder
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		_ = run("ip", "netns", "exec", l.dut, bin, "detach", "--iface", l.b)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon not ready after 20s: %s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // at rest
	res.DaemonRSSMiB = rssMiB(cmd.Process.Pid)

	// Every port gets drops, so the scrape reads and ranks a full table.
	m, err := ebpf.LoadPinnedMap(filepath.Join("/run/xdpguard/bpffs/xdpguard", "netns-"+l.dut, l.b, "xdpg_port_drops"), nil)
	if err != nil {
		return err
	}
	defer m.Close()
	cpus := ebpf.MustPossibleCPU()
	keys := make([]uint32, 65536)
	vals := make([]datapath.PortCounters, 65536*cpus)
	for i := range keys {
		keys[i] = uint32(i)
		vals[i*cpus].NotAllowed = uint64(i + 1)
	}
	if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
		return err
	}
	var times []float64
	for i := 0; i < 5; i++ {
		start := time.Now()
		n, err := httpGet(l.dut, "127.0.0.1:9477", "/metrics")
		if err != nil {
			return err
		}
		times = append(times, float64(time.Since(start))/1e6)
		res.ScrapeBytes = n
	}
	res.ScrapeMs = median(times)
	return nil
}

func httpGet(ns, addr, path string) (int, error) {
	var conn net.Conn
	err := inNS(ns, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr)
	buf := make([]byte, 64<<10)
	total := 0
	for {
		n, err := conn.Read(buf)
		total += n
		if err != nil {
			return total, nil
		}
	}
}
