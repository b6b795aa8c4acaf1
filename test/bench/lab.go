package main

import (
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// lab is three namespaces: gen (the traffic generator, which also routes
// the legitimate client), dut (the filter on vethB) and cli (a legitimate
// client). gen:vethA <-> dut:vethB carries both the flood and the client.
type lab struct {
	gen, dut, cli    string
	a, b, c, d       string // vethA (gen) <-> vethB (dut); vethC (cli) <-> vethD (gen)
	e, f             string // an idle pair in gen, where the generator's program is attached (see newGenerator)
	eIdx             int
	aIdx, bIdx       int
	aMAC, bMAC       net.HardwareAddr
	dutIP, cliIP     string
	pinRoot, workDir string
}

const (
	dutIP = "198.18.100.1"
	cliIP = "198.18.101.2"
)

func run(args ...string) error { return testutil.Run(args...) }

func newLab() (*lab, error) {
	id := testutil.UniqueID()
	l := &lab{gen: "xgb-g" + id, dut: "xgb-d" + id, cli: "xgb-c" + id,
		a: "xgba" + id, b: "xgbb" + id, c: "xgbc" + id, d: "xgbd" + id, e: "xgbe" + id, f: "xgbf" + id, dutIP: dutIP, cliIP: cliIP}
	if err := testutil.NewNamespaces(l.gen, l.dut, l.cli); err != nil {
		return nil, err
	}
	err := testutil.Veth(l.a, l.gen, l.b, l.dut)
	if err == nil {
		err = testutil.Veth(l.d, l.gen, l.c, l.cli)
	}
	if err == nil {
		err = testutil.Veth(l.e, l.gen, l.f, l.gen)
	}
	for _, s := range [][]string{
		{"ip", "-n", l.dut, "addr", "add", dutIP + "/24", "dev", l.b},
		{"ip", "-n", l.gen, "addr", "add", "198.18.100.2/24", "dev", l.a},
		{"ip", "-n", l.gen, "addr", "add", "198.18.101.1/24", "dev", l.d},
		{"ip", "-n", l.cli, "addr", "add", cliIP + "/24", "dev", l.c},
		{"ip", "netns", "exec", l.gen, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"ip", "-n", l.cli, "route", "add", "default", "via", "198.18.101.1"},
		{"ip", "-n", l.dut, "route", "add", "198.18.101.0/24", "via", "198.18.100.2"},
	} {
		if err == nil {
			err = run(s...)
		}
	}
	if err == nil {
		l.aIdx, l.aMAC, err = testutil.LinkOf(l.gen, l.a)
	}
	if err == nil {
		l.bIdx, l.bMAC, err = testutil.LinkOf(l.dut, l.b)
	}
	if err == nil {
		l.eIdx, _, err = testutil.LinkOf(l.gen, l.e)
	}
	if err == nil {
		l.workDir, err = os.MkdirTemp("", "xdpguard-bench")
	}
	if err == nil {
		err = testutil.SharedBPFFS() // the daemon's pins under `ip netns exec`
	}
	if err != nil {
		l.destroy()
		return nil, err
	}
	l.pinRoot = "/run/xdpguard/bpffs/xdpguard-bench-" + id
	return l, nil
}

func (l *lab) destroy() {
	testutil.DeleteNamespaces(l.gen, l.dut, l.cli)
	if l.pinRoot != "" {
		_ = os.RemoveAll(l.pinRoot)
	}
	if l.workDir != "" {
		_ = os.RemoveAll(l.workDir)
	}
}

// inNS runs fn on a thread in namespace ns.
func inNS(ns string, fn func() error) error { return testutil.InNS(ns, fn) }

// pinCPU pins the calling (locked) thread to cpu.
func pinCPU(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}

// pinProcess moves every thread of this process to cpu (threads started
// later inherit it from their creators) and returns the undo: during the
// floods the harness (legitimate client, listener, Go runtime) shares the
// generator's CPU and leaves the filter's CPU to the filter.
func pinProcess(cpu int) (func(), error) {
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	var one, all unix.CPUSet
	one.Set(cpu)
	for i := 0; i < runtime.NumCPU(); i++ {
		all.Set(i)
	}
	each := func(set *unix.CPUSet) {
		for _, t := range tids {
			if tid, err := strconv.Atoi(t.Name()); err == nil {
				_ = unix.SchedSetaffinity(tid, set) // a thread may have exited
			}
		}
	}
	each(&one)
	return func() {
		if tids, err = os.ReadDir("/proc/self/task"); err == nil {
			each(&all)
		}
	}, nil
}

// cpuBusy is the machine's busy time so far (all CPUs), in ns.
func cpuBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	var total, idle float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i < 7 { // user nice system idle iowait irq softirq (not steal)
			total += n
		}
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return (total - idle) * 1e7 // USER_HZ 100: a tick is 10 ms
}
