// Command bench is `make bench`: xdpguard's cost per packet in BPF_PROG_RUN
// next to trivial programs, its drop rate on veth under live-frames SYN
// floods next to the XDP floor and nftables, a legitimate client's luck
// during them, and the control plane's swap time and memory. It writes the
// figures into docs/benchmarks.md (between its markers) and a plot.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type options struct {
	Quick, Smoke bool
	Only         string // profiling: run only these floods (comma-separated keys), write nothing
	Flood        time.Duration
	Rounds       int
	Out, Plot    string
	Bin          string // xdpguard binary for the daemon figures ("" builds one)
	Log          func(string, ...any)
}

func main() {
	var o options
	flag.BoolVar(&o.Quick, "quick", false, "a short run (fewer rounds, shorter floods)")
	flag.BoolVar(&o.Smoke, "smoke", false, "tiny counts, to check the harness works (figures meaningless)")
	flag.StringVar(&o.Out, "out", "docs/benchmarks.md", "report to update (between the bench markers)")
	flag.StringVar(&o.Plot, "plot", "docs/benchmarks.png", "bar chart of the floor, xdpguard and nftables")
	flag.StringVar(&o.Bin, "bin", "", "xdpguard binary (default: build one)")
	flag.StringVar(&o.Only, "only", "", "for profiling or comparing builds: run only these veth floods (keys, e.g. r,b0; one round unless -rounds), print their rates and paired ratios to the first, write no report; or \"blocklist\": only the blocklist section, its targets and table printed, no report written; or \"cost\": only the program cost rows, printed")
	flag.DurationVar(&o.Flood, "flood", 0, "length of each flood (default: 3s, 1s with -quick)")
	flag.IntVar(&o.Rounds, "rounds", 0, "rounds (default: 7, 3 with -quick, 1 with -only; the blocklist section: 5, 1 with -quick)")
	flag.Parse()
	o.Log = func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	if _, err := runBench(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type results struct {
	Machine   machine
	Method    method
	Cost      []costRow
	Wire      []wireResult
	Control   cpResult
	Blocklist blResult
	Finished  time.Time
}

type method struct {
	Repeat, Rounds int
	Flood          time.Duration
}

func runBench(o options) (results, error) {
	if os.Geteuid() != 0 {
		return results{}, fmt.Errorf("needs root (BPF, network namespaces)")
	}
	if o.Only == "blocklist" {
		return blocklistOnly(o)
	}
	if o.Only == "cost" {
		return costOnly(o)
	}
	m := method{Repeat: 2_000_000, Rounds: 7, Flood: 3 * time.Second}
	switch {
	case o.Smoke:
		m = method{Repeat: 1000, Rounds: 1, Flood: 200 * time.Millisecond}
	case o.Quick:
		m = method{Repeat: 500_000, Rounds: 3, Flood: time.Second}
	}
	if o.Flood > 0 {
		m.Flood = o.Flood
	}
	if o.Only != "" {
		m.Rounds = 1
	}
	if o.Rounds > 0 {
		m.Rounds = o.Rounds
	}
	if o.Only != "" {
		return results{}, floodsOnly(o, m)
	}
	res := results{Machine: describeMachine(), Method: m}
	var err error
	o.Log("program cost (BPF_PROG_RUN, %d runs x %d rounds)", m.Repeat, m.Rounds)
	if res.Cost, err = programCost(m.Repeat, m.Rounds); err != nil {
		return res, err
	}
	l, err := newLab()
	if err != nil {
		return res, err
	}
	defer l.destroy()
	o.Log("whole path on veth (%s floods x %d rounds)", m.Flood, m.Rounds)
	if res.Wire, err = wholePath(l, scenarios(), m.Flood, m.Rounds, o.Log); err != nil {
		return res, err
	}
	bin, err := xdpguardBin(o, l)
	if err != nil {
		return res, err
	}
	o.Log("control plane")
	if res.Control, err = controlPlane(l, bin, m.Rounds, o.Log); err != nil {
		return res, err
	}
	entries, rounds := blocklistPlan(o)
	o.Log("blocklist (%d entries x %d rounds)", entries, rounds)
	if res.Blocklist, err = blocklist(l, bin, entries, rounds, o.Log); err != nil {
		return res, err
	}
	res.Finished = time.Now().UTC()
	if err := writeReport(o.Out, res); err != nil {
		return res, err
	}
	if err := writePlot(o.Plot, res.Wire); err != nil {
		return res, err
	}
	o.Log("wrote %s and %s", o.Out, o.Plot)
	return res, nil
}

// xdpguardBin is -bin, or an xdpguard built into the lab's directory.
func xdpguardBin(o options, l *lab) (string, error) {
	if o.Bin != "" {
		return o.Bin, nil
	}
	bin := filepath.Join(l.workDir, "xdpguard")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/xdpguard/xdpguard/cmd/xdpguard").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build xdpguard: %v: %s", err, out)
	}
	return bin, nil
}

// costOnly runs the program cost rows alone (-only cost) and prints them.
func costOnly(o options) (results, error) {
	repeat, rounds := 2_000_000, 7
	if o.Quick {
		repeat, rounds = 500_000, 3
	}
	if o.Rounds > 0 {
		rounds = o.Rounds
	}
	rows, err := programCost(repeat, rounds)
	if err != nil {
		return results{}, err
	}
	for _, c := range rows {
		fmt.Printf("%-70s %7.1f ns  %-30s %.2fx\n", c.Name, c.NsPkt, c.Floor, c.Ratio)
	}
	return results{Cost: rows}, nil
}

// blocklistOnly runs the blocklist section alone (-only blocklist) and
// prints its targets and table instead of writing the report.
func blocklistOnly(o options) (results, error) {
	res := results{Machine: describeMachine()}
	l, err := newLab()
	if err != nil {
		return res, err
	}
	defer l.destroy()
	bin, err := xdpguardBin(o, l)
	if err != nil {
		return res, err
	}
	entries, rounds := blocklistPlan(o)
	o.Log("blocklist (%d entries x %d rounds)", entries, rounds)
	if res.Blocklist, err = blocklist(l, bin, entries, rounds, o.Log); err != nil {
		return res, err
	}
	res.Finished = time.Now().UTC()
	fmt.Println(res.blocklistMarkdown())
	return res, nil
}

// floodsOnly runs some veth floods (for a profiler watching CPU 1, or to
// compare two builds) and prints each one's paired ratio to the first.
func floodsOnly(o options, m method) error {
	var scs []scenario
	for _, key := range strings.Split(o.Only, ",") {
		i := slices.IndexFunc(scenarios(), func(sc scenario) bool { return sc.Key == key })
		if i < 0 {
			return fmt.Errorf("-only: no flood %q", key)
		}
		scs = append(scs, scenarios()[i])
	}
	l, err := newLab()
	if err != nil {
		return err
	}
	defer l.destroy()
	res, err := wholePath(l, scs, m.Flood, m.Rounds, o.Log)
	if err != nil {
		return err
	}
	for _, w := range res[1:] {
		med, lo, hi := pairedRatio(w, res[0])
		o.Log("(%s) / (%s): %.3f× (rounds %.3f×–%.3f×)", w.Key, res[0].Key, med, lo, hi)
	}
	return nil
}
