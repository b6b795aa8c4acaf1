package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

type machine struct {
	CPU, Kernel, Clocksource, Go string
	Cores                        int
}

func describeMachine() machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource"); err == nil {
		m.Clocksource = strings.TrimSpace(string(b))
	}
	return m
}

const (
	beginMarker = "<!-- bench:begin (written by `make bench`; edit outside the markers) -->"
	endMarker   = "<!-- bench:end -->"
)

// target is one of issue 5's targets, checked against this run.
type target struct {
	What   string
	Got    string
	Passed bool
}

func (r *results) wire(key string) wireResult {
	for _, w := range r.Wire {
		if w.Key == key {
			return w
		}
	}
	return wireResult{}
}

func (r *results) cost(name string) costRow {
	for _, c := range r.Cost {
		if c.Name == name {
			return c
		}
	}
	return costRow{}
}

func (r *results) targets() []target {
	a, b, c, d, e := r.wire("a"), r.wire("b"), r.wire("c"), r.wire("d"), r.wire("e")
	ratio := func(x, y float64) float64 {
		if y == 0 {
			return 0
		}
		return x / y
	}
	t := []target{
		{"xdpguard drop rate ≥ 0.9× the XDP_DROP floor", fmt.Sprintf("%.2f×", ratio(b.Mpps, a.Mpps)), ratio(b.Mpps, a.Mpps) >= 0.9},
		{"xdpguard drop rate ≥ 3× nftables", fmt.Sprintf("%.1f×", ratio(b.Mpps, c.Mpps)), ratio(b.Mpps, c.Mpps) >= 3},
		{"SYN to a closed port ≤ 1.5× a trivial program (BPF_PROG_RUN)", fmt.Sprintf("%.2f×", r.cost("SYN to a closed port").Ratio), r.cost("SYN to a closed port").Ratio <= 1.5},
		{"non-SYN packet ≤ 1.2× a trivial program", fmt.Sprintf("%.2f×", r.cost("non-SYN (ACK) pass").Ratio), r.cost("non-SYN (ACK) pass").Ratio <= 1.2},
		{"random-source flood at an allowed port ≥ 0.5× the closed-port drop rate", fmt.Sprintf("%.2f×", ratio(d.Mpps, b.Mpps)), ratio(d.Mpps, b.Mpps) >= 0.5},
		{"1M sources no more than 20% below 1k sources", fmt.Sprintf("%.2f×", ratio(e.Mpps, d.Mpps)), ratio(e.Mpps, d.Mpps) >= 0.8},
	}
	for _, w := range []wireResult{b, d, e} {
		rate := ratio(float64(w.LegitOK), float64(w.LegitTried))
		t = append(t, target{fmt.Sprintf("legitimate client ≥ 99%% during (%s)", w.Key), fmt.Sprintf("%.1f%% of %d", 100*rate, w.LegitTried), rate >= 0.99})
	}
	t = append(t,
		target{"swap of 65,536 ports + 10,000 CIDRs < 100 ms", fmt.Sprintf("%.0f ms", r.Control.SwapMs), r.Control.SwapMs < 100},
		target{"daemon RSS < 40 MiB", fmt.Sprintf("%.1f MiB", r.Control.DaemonRSSMiB), r.Control.DaemonRSSMiB < 40},
	)
	return t
}

func (r *results) markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Run %s on %s, %d cores, kernel %s, clocksource %s, %s. ", r.Finished.Format(time.RFC3339), m.CPU, m.Cores, m.Kernel, m.Clocksource, m.Go)
	fmt.Fprintf(&b, "Method: BPF_PROG_RUN %d runs per sample; %d rounds, interleaved, medians; %s live-frames floods.\n\n", r.Method.Repeat, r.Method.Rounds, r.Method.Flood)
	b.WriteString("### Targets\n\n| target | this run | met |\n|---|---|---|\n")
	for _, t := range r.targets() {
		ok := "yes"
		if !t.Passed {
			ok = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.What, t.Got, ok)
	}
	b.WriteString("\n### 1. Program cost (BPF_PROG_RUN, thread pinned to CPU 1)\n\n| path | ns/packet | compared with | ratio |\n|---|---|---|---|\n")
	for _, c := range r.Cost {
		ratio := ""
		if c.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f×", c.Ratio)
		}
		fmt.Fprintf(&b, "| %s | %.1f | %s | %s |\n", c.Name, c.NsPkt, c.Floor, ratio)
	}
	b.WriteString("\n### 2. Whole path on veth (live-frames SYN flood, generator pinned to CPU 0)\n\n")
	b.WriteString("| | configuration | dropped (Mpps) | offered (Mpps) | CPU ns per drop (both cores) | legitimate connects | connect p50 | p99 |\n|---|---|---|---|---|---|---|---|\n")
	for _, w := range r.Wire {
		legit, p50, p99 := "n/a", "", ""
		if w.LegitTried > 0 {
			legit = fmt.Sprintf("%d/%d", w.LegitOK, w.LegitTried)
			p50, p99 = w.P50.Round(time.Microsecond).String(), w.P99.Round(time.Microsecond).String()
		}
		fmt.Fprintf(&b, "| (%s) | %s | %.2f | %.2f | %.0f | %s | %s | %s |\n", w.Key, w.Name, w.Mpps, w.Offered/1e6, w.CPUNsPkt, legit, p50, p99)
	}
	c := r.Control
	b.WriteString("\n### 3. Control plane\n\n| figure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| policy: %d ports listed one by one + %d denied CIDRs (%d KiB of YAML): parse and validate | %.0f ms |\n", c.Ports, c.CIDRs, c.PolicyKiB, c.ParseMs)
	fmt.Fprintf(&b, "| load and atomically switch it in (`Guard.Apply`: compile, verify, fill maps, `link.Update`) | %.0f ms |\n", c.SwapMs)
	fmt.Fprintf(&b, "| Go allocations of that switch | %.1f MiB |\n", c.AllocMiB)
	fmt.Fprintf(&b, "| harness RSS after the switches | %.1f MiB |\n", c.HarnessRSSMiB)
	fmt.Fprintf(&b, "| `xdpguard run` RSS at rest | %.1f MiB |\n", c.DaemonRSSMiB)
	fmt.Fprintf(&b, "| `/metrics` scrape with all 65,536 ports counted (%d KiB served) | %.1f ms |\n", c.ScrapeBytes/1024, c.ScrapeMs)
	b.WriteString("\n![drop rate: XDP floor, xdpguard, nftables](benchmarks.png)\n")
	return b.String()
}

// writeReport replaces what lies between the markers of path (creating the
// file with them if needed), keeping the hand-written rest.
func writeReport(path string, r results) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		s += "\n" + beginMarker + "\n" + endMarker + "\n"
		i, j = strings.Index(s, beginMarker), strings.Index(s, endMarker)
	}
	s = s[:i+len(beginMarker)] + "\n" + r.markdown() + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
