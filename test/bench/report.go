package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
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

// paired is a ratio of two floods taken round by round (each pair shares
// the VM's state of the moment): its median, quartiles and extremes, or
// why there is none.
type paired struct {
	Med, Q1, Q3, Lo, Hi float64
	N                   int
	Why                 string // not "": no ratio (a flood did not saturate)
}

func (p paired) String(format string) string {
	if p.Why != "" {
		return "n/a: " + p.Why
	}
	return fmt.Sprintf(format+" (middle half "+format+"–"+format+", all %d rounds "+format+"–"+format+")", p.Med, p.Q1, p.Q3, p.N, p.Lo, p.Hi)
}

func pairedOf(rs []float64) paired {
	if len(rs) == 0 {
		return paired{Why: "no rounds"}
	}
	s := append([]float64(nil), rs...)
	sort.Float64s(s)
	q := func(f float64) float64 { return s[int(f*float64(len(s)-1)+0.5)] }
	return paired{Med: median(s), Q1: q(0.25), Q3: q(0.75), Lo: s[0], Hi: s[len(s)-1], N: len(s)}
}

// pairedCost is x's capacity against y's, round by round: y's ns of the
// filter's CPU per frame over x's (at saturation, the ratio of the rates
// the filter's CPU sustains, but immune to the CPU time other work on the
// machine takes from it). Above 1, x is the cheaper. A flood that did not
// saturate its filter has no capacity to compare.
func pairedCost(x, y wireResult) paired {
	for _, w := range []wireResult{x, y} {
		if !w.Saturated {
			return paired{Why: fmt.Sprintf("(%s) not saturated", w.Key)}
		}
	}
	var rs []float64
	for i := range min(len(x.RoundNs), len(y.RoundNs)) {
		if x.RoundNs[i] > 0 {
			rs = append(rs, y.RoundNs[i]/x.RoundNs[i])
		}
	}
	return pairedOf(rs)
}

// pairedRatio is the median over rounds of x's drop rate over y's in the
// same round, with the extreme rounds.
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

// spreadOf is a row's rounds as "lo–hi" (format for each).
func spreadOf(xs []float64, format string) string {
	if len(xs) == 0 {
		return ""
	}
	return fmt.Sprintf(format+"–"+format, slices.Min(xs), slices.Max(xs))
}

func (r *results) targets() []target {
	w := r.wire
	cost := func(what, x, y string, atLeast float64) target {
		p := pairedCost(w(x), w(y))
		return target{fmt.Sprintf("%s ((%s) against (%s))", what, x, y), p.String("%.2f×"), p.Why == "" && p.Med >= atLeast}
	}
	atMost := func(what, x, y string, limit float64) target {
		p := pairedCost(w(y), w(x)) // x's cost over y's
		return target{fmt.Sprintf("%s ((%s) against (%s))", what, x, y), p.String("%.2f×"), p.Why == "" && p.Med <= limit}
	}
	extra := func(name string) float64 { c := r.cost(name); return c.NsPkt - r.cost(c.Floor).NsPkt }
	t := []target{
		cost("closed-port drop rate ≥ 0.9× the read-then-drop floor", "b0", "r", 0.9),
		cost("closed-port drop rate ≥ 1.0× xdp-filter", "b0", "f", 1.0),
		cost("closed-port drop rate ≥ 4× nftables, both with the client", "b", "c", 4),
		atMost("non-SYN pass cost ≤ 1.1× the floor's pass", "p", "rp", 1.1),
		cost("random-source flood at an allowed port ≥ 0.6× the closed-port rate", "d", "b", 0.6),
		cost("1M sources no more than 20% below 1k sources", "e", "d", 0.8),
		cost("security group: closed-port drop rate ≥ 0.9× the minimal policy's", "s", "b0", 0.9),
		cost("security group: non-SYN pass rate ≥ 0.9× the minimal policy's", "sp", "p", 0.9),
		cost("security group: half-denied random-source flood ≥ 0.8× the minimal closed-port rate", "sr", "b0", 0.8),
		atMost("deny list of "+thousands(r.Method.Scale[1])+" entries: per-frame cost within 15% of "+thousands(r.Method.Scale[0]), "k100", "k1", 1.15),
		atMost("deny list of "+thousands(r.Method.Scale[2])+" entries: per-frame cost within 15% of "+thousands(r.Method.Scale[0]), "k1m", "k1", 1.15),
		{"SYN to a closed port: extra ns over a trivial program (BPF_PROG_RUN), ≤ 10 ns", fmt.Sprintf("%+.1f ns", extra("SYN to a closed port")), extra("SYN to a closed port") <= 10},
		{"non-SYN packet: extra ns over a trivial program, ≤ 5 ns", fmt.Sprintf("%+.1f ns", extra("non-SYN (ACK) pass")), extra("non-SYN (ACK) pass") <= 5},
	}
	for _, key := range []string{"b", "d", "e"} {
		x := w(key)
		rate := 0.0
		if x.LegitTried > 0 {
			rate = float64(x.LegitOK) / float64(x.LegitTried)
		}
		t = append(t, target{fmt.Sprintf("legitimate client ≥ 99%% during (%s)", key), fmt.Sprintf("%.1f%% of %d", 100*rate, x.LegitTried), rate >= 0.99})
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
	b.WriteString("\n### 1. Program cost (BPF_PROG_RUN, thread pinned to CPU 1)\n\n")
	b.WriteString("The kernel's timer includes a fixed cost per run (the trivial programs' figure), which flatters every ratio: the extra ns over the trivial program is the program's own cost.\n\n")
	b.WriteString("| path | ns/packet | compared with | extra ns | ratio |\n|---|---|---|---|---|\n")
	for _, c := range r.Cost {
		ratio, extra := "", ""
		if c.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f×", c.Ratio)
			extra = fmt.Sprintf("%+.1f", c.NsPkt-r.cost(c.Floor).NsPkt)
		}
		fmt.Fprintf(&b, "| %s | %.1f | %s | %s | %s |\n", c.Name, c.NsPkt, c.Floor, extra, ratio)
	}
	b.WriteString("\n### 2. Whole path on veth (live-frames floods, generator on CPU 0, vethB's NAPI thread on CPU 1)\n\n")
	fmt.Fprintf(&b, "Offered: frames the generator sent per second; processed: frames vethB's XDP program ran on (`ethtool -S`); a flood saturates when it processes fewer than %.0f%% of those offered (otherwise it is marked and left out of every ratio). ns/frame: the NAPI thread's own CPU time (`/proc/<pid>/schedstat`) per processed frame, median and extreme rounds; CPU: the thread's share of CPU 1 (the rest went to other work on the shared machine).\n\n", 100*saturatedBelow)
	b.WriteString("| | configuration | offered (Mpps) | processed (Mpps) | dropped (Mpps) | saturated | ns/frame (filter's CPU) | rounds | CPU | legitimate connects | p50 | p99 |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, w := range r.Wire {
		legit, p50, p99 := "n/a", "", ""
		if w.LegitTried > 0 {
			legit = fmt.Sprintf("%d/%d", w.LegitOK, w.LegitTried)
			p50, p99 = w.P50.Round(time.Microsecond).String(), w.P99.Round(time.Microsecond).String()
		}
		sat := "yes"
		if !w.Saturated {
			sat = "**no**"
		}
		fmt.Fprintf(&b, "| (%s) | %s | %.2f | %.2f | %.2f | %s | %.1f | %s | %.0f%% | %s | %s | %s |\n", w.Key, w.Name, w.Offered/1e6, w.Processed/1e6, w.Mpps, sat, w.NsPkt, spreadOf(w.RoundNs, "%.1f"), 100*w.CPUShare, legit, p50, p99)
	}
	pc := func(x, y string) string { return pairedCost(r.wire(x), r.wire(y)).String("%.3f×") }
	fmt.Fprintf(&b, "\nPer-frame capacity paired by round (y's ns/frame over x's, so above 1 x is the cheaper): reading the header costs the floor (r) against (a) %s; xdpguard against that floor (b0) against (r) %s; against xdp-filter (b0) against (f) %s; the legitimate client's cost (b) against (b0) %s; IPv6 (v6) against (b0) %s; QinQ (q) against (b0) %s.\n",
		pc("r", "a"), pc("b0", "r"), pc("b0", "f"), pc("b", "b0"), pc("v6", "b0"), pc("q", "b0"))
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
