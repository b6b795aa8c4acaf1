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
	Lock         string // the bench lock, held during each round and section ("" none)
	Log          func(string, ...any)
}

func main() {
	var o options
	flag.BoolVar(&o.Quick, "quick", false, "a short run (fewer rounds, shorter floods)")
	flag.BoolVar(&o.Smoke, "smoke", false, "tiny counts, to check the harness works (figures meaningless)")
	flag.StringVar(&o.Out, "out", "docs/benchmarks.md", "report to update (between the bench markers)")
	flag.StringVar(&o.Plot, "plot", "docs/benchmarks.png", "bar chart of the floor, xdpguard and nftables")
	flag.StringVar(&o.Bin, "bin", "", "xdpguard binary (default: build one)")
	flag.StringVar(&o.Only, "only", "", "for profiling or comparing builds: run only these veth floods (keys, e.g. r,b0; one round unless -rounds), print their rates and paired ratios to the first, write no report; or \"blocklist\": only the blocklist section, its targets and table printed, no report written; or \"cost\": only the BPF_PROG_RUN table; or \"synproxy\": the SYN proxy's rows (cookies vs closed-port drops vs the kernel's own cookies), printed; or \"spcost\": the SYN proxy's cost split by part (BPF_PROG_RUN), printed")
	flag.DurationVar(&o.Flood, "flood", 0, "length of each flood (default: 2s, 1s with -quick)")
	flag.IntVar(&o.Rounds, "rounds", 0, "rounds (default: 7, 3 with -quick, 1 with -only; the blocklist section: 5, 1 with -quick)")
	flag.StringVar(&o.Lock, "lock", "", "hold this flock(2) lock (e.g. /tmp/xdpguard-bench.lock, shared with the machine's other benches) during each round of floods and each other section, and release it between them; do not also run the bench under flock(1) with the same file")
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
	Scale          [3]int // deny-list sizes of the scale rows (k1, k100, k1m)
}

func runBench(o options) (results, error) {
	if os.Geteuid() != 0 {
		return results{}, fmt.Errorf("needs root (BPF, network namespaces)")
	}
	if o.Only == "blocklist" {
		return blocklistOnly(o)
	}
	if o.Only == "synproxy" {
		return synproxyOnly(o)
	}
	if o.Only == "spcost" {
		return synproxyCostOnly(o)
	}
	full := [3]int{1000, 100_000, 1_000_000}
	m := method{Repeat: 2_000_000, Rounds: 7, Flood: 2 * time.Second, Scale: full}
	switch {
	case o.Smoke:
		m = method{Repeat: 1000, Rounds: 1, Flood: 200 * time.Millisecond, Scale: [3]int{1000, 2000, 5000}}
	case o.Quick:
		m = method{Repeat: 500_000, Rounds: 3, Flood: time.Second, Scale: full}
	}
	if o.Flood > 0 {
		m.Flood = o.Flood
	}
	if o.Only != "" && o.Only != "cost" {
		m.Rounds = 1
	}
	if o.Rounds > 0 {
		m.Rounds = o.Rounds
	}
	if o.Only == "attachmodes" {
		return results{}, attachModesOnly(o, m)
	}
	if o.Only == "cost" {
		return results{}, costOnly(o, m)
	}
	if o.Only != "" {
		return results{}, floodsOnly(o, m)
	}
	res := results{Machine: describeMachine(), Method: m}
	o.Log("program cost (BPF_PROG_RUN, %d runs x %d rounds)", m.Repeat, m.Rounds)
	unlock, err := benchLock(o.Lock)
	if err != nil {
		return res, err
	}
	res.Cost, err = programCost(m.Repeat, m.Rounds, m.Scale[2])
	unlock()
	if err != nil {
		return res, err
	}
	l, err := newLab()
	if err != nil {
		return res, err
	}
	defer l.destroy()
	o.Log("whole path on veth (%s floods x %d rounds)", m.Flood, m.Rounds)
	if res.Wire, err = wholePath(l, scenarios(m.Scale), m.Flood, m.Rounds, o.Lock, o.Log); err != nil {
		return res, err
	}
	bin, err := xdpguardBin(o, l)
	if err != nil {
		return res, err
	}
	o.Log("control plane")
	if unlock, err = benchLock(o.Lock); err != nil {
		return res, err
	}
	res.Control, err = controlPlane(l, bin, m.Rounds, o.Log)
	unlock()
	if err != nil {
		return res, err
	}
	entries, rounds := blocklistPlan(o)
	o.Log("blocklist (%d entries x %d rounds)", entries, rounds)
	if unlock, err = benchLock(o.Lock); err != nil {
		return res, err
	}
	res.Blocklist, err = blocklist(l, bin, entries, rounds, o.Log)
	unlock()
	if err != nil {
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
	all := scenarios(m.Scale)
	for _, key := range strings.Split(o.Only, ",") {
		i := slices.IndexFunc(all, func(sc scenario) bool { return sc.Key == key })
		if i < 0 {
			return fmt.Errorf("-only: no flood %q", key)
		}
		scs = append(scs, all[i])
	}
	l, err := newLab()
	if err != nil {
		return err
	}
	defer l.destroy()
	res, err := wholePath(l, scs, m.Flood, m.Rounds, o.Lock, o.Log)
	if err != nil {
		return err
	}
	for _, w := range res {
		o.Log("(%s) offered %.2f, processed %.2f Mpps (saturated: %v); %.1f ns/frame (rounds %s)", w.Key, w.Offered/1e6, w.Processed/1e6, w.Saturated, w.NsPkt, spreadOf(w.RoundNs, "%.1f"))
	}
	for _, w := range res[1:] {
		p := pairedCost(w, res[0])
		o.Log("(%s) against (%s), per-frame capacity paired by round: %s", w.Key, res[0].Key, p.String("%.3f×"))
	}
	return nil
}

// costOnly measures the program cost table alone (-only cost) and prints
// each row with its extra ns over the trivial program.
func costOnly(o options, m method) error {
	unlock, err := benchLock(o.Lock)
	if err != nil {
		return err
	}
	rows, err := programCost(m.Repeat, m.Rounds, m.Scale[2])
	unlock()
	if err != nil {
		return err
	}
	byName := map[string]float64{}
	for _, c := range rows {
		byName[c.Name] = c.NsPkt
	}
	for _, c := range rows {
		if c.Floor != "" {
			fmt.Printf("%-55s %6.1f ns  %+6.1f ns over %s\n", c.Name, c.NsPkt, c.NsPkt-byName[c.Floor], c.Floor)
		} else {
			fmt.Printf("%-55s %6.1f ns\n", c.Name, c.NsPkt)
		}
	}
	return nil
}
