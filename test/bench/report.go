package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
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

// pairedRatio is the median over rounds of x's drop rate over y's in the
// same round. Rounds run the scenarios back to back, so a pair shares the
// VM's state of the moment (its spread from round to round is as large as
// the gaps measured); lo and hi are the extreme rounds.
func pairedRatio(x, y wireResult) (med, lo, hi float64) {
	var rs []float64
	for i := range min(len(x.RoundMpps), len(y.RoundMpps)) {
		if y.RoundMpps[i] > 0 {
			rs = append(rs, x.RoundMpps[i]/y.RoundMpps[i])
		}
	}
	if len(rs) == 0 {
		return 0, 0, 0
	}
	return median(rs), slices.Min(rs), slices.Max(rs)
}

func (r *results) targets() []target {
	a, b0, b, c, d, e := r.wire("a"), r.wire("b0"), r.wire("b"), r.wire("c"), r.wire("d"), r.wire("e")
	row := func(what string, x, y wireResult, atLeast float64, format string) target {
		med, lo, hi := pairedRatio(x, y)
		return target{what, fmt.Sprintf(format+" (rounds "+format+"–"+format+")", med, lo, hi), med >= atLeast}
	}
	t := []target{
		row("xdpguard drop rate ≥ 0.9× the XDP_DROP floor ((b0) / (a))", b0, a, 0.9, "%.2f×"),
		row("xdpguard drop rate ≥ 3× nftables ((b) / (c))", b, c, 3, "%.1f×"),
		{"SYN to a closed port ≤ 1.5× a trivial program (BPF_PROG_RUN)", fmt.Sprintf("%.2f×", r.cost("SYN to a closed port").Ratio), r.cost("SYN to a closed port").Ratio <= 1.5},
		{"non-SYN packet ≤ 1.2× a trivial program", fmt.Sprintf("%.2f×", r.cost("non-SYN (ACK) pass").Ratio), r.cost("non-SYN (ACK) pass").Ratio <= 1.2},
		row("random-source flood at an allowed port ≥ 0.5× the closed-port drop rate ((d) / (b))", d, b, 0.5, "%.2f×"),
		row("1M sources no more than 20% below 1k sources ((e) / (d))", e, d, 0.8, "%.2f×"),
	}
	for _, w := range []wireResult{b, d, e} {
		rate := 0.0
		if w.LegitTried > 0 {
			rate = float64(w.LegitOK) / float64(w.LegitTried)
		}
		t = append(t, target{fmt.Sprintf("legitimate client ≥ 99%% during (%s)", w.Key), fmt.Sprintf("%.1f%% of %d", 100*rate, w.LegitTried), rate >= 0.99})
	}
	t = append(t,
		target{"swap of 65,536 ports + 10,000 CIDRs < 100 ms", fmt.Sprintf("%.0f ms", r.Control.SwapMs), r.Control.SwapMs < 100},
		target{"daemon RSS < 40 MiB", fmt.Sprintf("%.1f MiB", r.Control.DaemonRSSMiB), r.Control.DaemonRSSMiB < 40},
	)
	return append(t, r.Blocklist.targets()...)
}

func targetTable(b *strings.Builder, ts []target) {
	b.WriteString("| target | this run | met |\n|---|---|---|\n")
	for _, t := range ts {
		ok := "yes"
		if !t.Passed {
			ok = "**no**"
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", t.What, t.Got, ok)
	}
}

// blocklistMarkdown is what -only blocklist prints: the machine, the
// section's targets and its table.
func (r *results) blocklistMarkdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Run %s on %s, %d cores, kernel %s, %s.\n\n", r.Finished.Format(time.RFC3339), m.CPU, m.Cores, m.Kernel, m.Go)
	targetTable(&b, r.Blocklist.targets())
	b.WriteString(r.Blocklist.markdown())
	return b.String()
}

func (r *results) markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Run %s on %s, %d cores, kernel %s, clocksource %s, %s. ", r.Finished.Format(time.RFC3339), m.CPU, m.Cores, m.Kernel, m.Clocksource, m.Go)
	fmt.Fprintf(&b, "Method: BPF_PROG_RUN %d runs per sample; %d rounds, interleaved, medians (ratios: the median of each round's ratio); %s live-frames floods.\n\n", r.Method.Repeat, r.Method.Rounds, r.Method.Flood)
	b.WriteString("### Targets\n\n")
	targetTable(&b, r.targets())
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
	paired := func(x, y string) string {
		med, lo, hi := pairedRatio(r.wire(x), r.wire(y))
		return fmt.Sprintf("%.2f× (rounds %.2f×–%.2f×)", med, lo, hi)
	}
	fmt.Fprintf(&b, "\nPaired by round: reading the header costs the floor (r) / (a) = %s; xdpguard against that floor (b0) / (r) = %s; the legitimate client costs xdpguard (b) / (b0) = %s.\n",
		paired("r", "a"), paired("b0", "r"), paired("b", "b0"))
	c := r.Control
	b.WriteString("\n### 3. Control plane\n\n| figure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| policy: %d ports listed one by one + %d denied CIDRs (%d KiB of YAML): parse and validate | %.0f ms |\n", c.Ports, c.CIDRs, c.PolicyKiB, c.ParseMs)
	fmt.Fprintf(&b, "| load and atomically switch it in (`Guard.Apply`: compile, verify, fill maps, `link.Update`) | %.0f ms |\n", c.SwapMs)
	fmt.Fprintf(&b, "| Go allocations of that switch | %.1f MiB |\n", c.AllocMiB)
	fmt.Fprintf(&b, "| harness RSS after the switches | %.1f MiB |\n", c.HarnessRSSMiB)
	fmt.Fprintf(&b, "| `xdpguard run` RSS at rest | %.1f MiB |\n", c.DaemonRSSMiB)
	fmt.Fprintf(&b, "| `/metrics` scrape with all 65,536 ports counted (%d KiB served) | %.1f ms |\n", c.ScrapeBytes/1024, c.ScrapeMs)
	b.WriteString(r.Blocklist.markdown())
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
