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
	"time"
)

type options struct {
	Quick, Smoke bool
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
	flag.Parse()
	o.Log = func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	if err := runBench(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type results struct {
	Machine  machine
	Method   method
	Cost     []costRow
	Wire     []wireResult
	Control  cpResult
	Finished time.Time
}

type method struct {
	Repeat, Rounds int
	Flood          time.Duration
}

func runBench(o options) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (BPF, network namespaces)")
	}
	m := method{Repeat: 2_000_000, Rounds: 5, Flood: 3 * time.Second}
	switch {
	case o.Smoke:
		m = method{Repeat: 1000, Rounds: 1, Flood: 200 * time.Millisecond}
	case o.Quick:
		m = method{Repeat: 500_000, Rounds: 3, Flood: time.Second}
	}
	res := results{Machine: describeMachine(), Method: m}
	var err error
	o.Log("program cost (BPF_PROG_RUN, %d runs x %d rounds)", m.Repeat, m.Rounds)
	if res.Cost, err = programCost(m.Repeat, m.Rounds); err != nil {
		return err
	}
	l, err := newLab()
	if err != nil {
		return err
	}
	defer l.destroy()
	o.Log("whole path on veth (%s floods x %d rounds)", m.Flood, m.Rounds)
	if res.Wire, err = wholePath(l, m.Flood, m.Rounds, o.Log); err != nil {
		return err
	}
	bin := o.Bin
	if bin == "" {
		bin = filepath.Join(l.workDir, "xdpguard")
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/xdpguard/xdpguard/cmd/xdpguard").CombinedOutput(); err != nil {
			return fmt.Errorf("build xdpguard: %v: %s", err, out)
		}
	}
	o.Log("control plane")
	if res.Control, err = controlPlane(l, bin, m.Rounds); err != nil {
		return err
	}
	res.Finished = time.Now().UTC()
	if err := writeReport(o.Out, res); err != nil {
		return err
	}
	if err := writePlot(o.Plot, res.Wire); err != nil {
		return err
	}
	o.Log("wrote %s and %s", o.Out, o.Plot)
	return nil
}
