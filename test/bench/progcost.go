package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// benchPolicy is the policy of every measurement: the ports of the lab's
// services open, per-source and per-port SYN limits.
const benchPolicy = `tcp:
  allow: [22, 80, 443, 8022]
ratelimit:
  syn: {rate: 100, burst: 200, max_sources: 65536}
  syn_total: {rate: 10000, burst: 10000}
`

// costRow is one path's cost in BPF_PROG_RUN: the median over rounds.
type costRow struct {
	Name  string
	NsPkt float64
	Floor string // the trivial program it is compared with
	Ratio float64
}

func trivialProgram(action int32) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP, AttachType: ebpf.AttachXDP, License: "GPL", // as SEC("xdp") programs: tail calls need it
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, action), asm.Return()},
	})
}

// programCost measures each path with BPF_PROG_RUN on a pinned thread,
// rounds interleaved, next to trivial XDP_PASS and XDP_DROP programs.
func programCost(repeat, rounds int) ([]costRow, error) {
	pol, err := policy.Parse("bench", []byte(benchPolicy))
	if err != nil {
		return nil, err
	}
	// Rates nobody reaches, so a repeated SYN from one source keeps passing.
	pass, err := policy.Parse("bench", []byte("tcp:\n  allow: [22, 80, 443, 8022]\nratelimit:\n  syn: {rate: 10000000, burst: 1000000000}\n  syn_total: {rate: 10000000, burst: 1000000000}\n"))
	if err != nil {
		return nil, err
	}
	d, err := datapath.LoadDetached(pol)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	dp, err := datapath.LoadDetached(pass)
	if err != nil {
		return nil, err
	}
	defer dp.Close()
	tPass, err := trivialProgram(2)
	if err != nil {
		return nil, err
	}
	defer tPass.Close()
	tDrop, err := trivialProgram(1)
	if err != nil {
		return nil, err
	}
	defer tDrop.Close()

	// A new source on every run: the generator's mutate_then_call rewrites
	// the source from a counter over 1M addresses, then tail-calls the
	// program measured; its own cost is measured into a trivial drop.
	mutNew, err := mutator(1<<20, d.Program)
	if err != nil {
		return nil, err
	}
	defer mutNew.Close()
	mutFloor, err := mutator(1<<20, tDrop)
	if err != nil {
		return nil, err
	}
	defer mutFloor.Close()

	syn := func(dport uint16) testpkt.Frame { return testpkt.NewSYN("100.64.0.1", dutIP, dport) }
	ack := syn(22)
	ack.Flags = testpkt.ACK
	v6 := testpkt.NewSYN("2001:db8::1", "2001:db8:1::1", 8080)
	v6.Ext = []testpkt.Ext{{Type: 0}, {Type: 60}, {Type: 43}}
	vlan := syn(8080)
	vlan.VLANs = []uint16{testpkt.EtherQinQ, testpkt.EtherQ}
	// The trace hook's cost (bpf/trace.h): the same program with a trace
	// running for a source none of these frames has, and the program of
	// the commit before the hook (prevObject), loaded with its defaults:
	// every port closed, no limits, which the ACK and closed-port rows do
	// not read.
	dt, err := datapath.LoadDetached(pol)
	if err != nil {
		return nil, err
	}
	defer dt.Close()
	other := datapath.TraceConfig{UntilNs: ^uint64(0), Kinds: datapath.TraceAll, IntervalNs: 1, LimitNs: 1}
	other.SetSource(netip.MustParsePrefix("203.0.113.0/24"))
	if err := dt.Trace.Put(uint32(0), &other); err != nil {
		return nil, err
	}
	prev, err := prevProgram()
	if err != nil {
		return nil, fmt.Errorf("the program before the trace hook: %w", err)
	}
	defer prev.Close()
	type path struct {
		name, floor string
		prog        *ebpf.Program
		frame       []byte
	}
	paths := []path{
		{"trivial XDP_PASS", "", tPass, syn(8080).Bytes()},
		{"trivial XDP_DROP", "", tDrop, syn(8080).Bytes()},
		{"non-SYN (ACK) pass", "trivial XDP_PASS", d.Program, ack.Bytes()},
		{"non-SYN (ACK) pass, before the trace hook (" + prevCommit + ")", "trivial XDP_PASS", prev.Programs["xdpguard"], ack.Bytes()},
		{"non-SYN (ACK) pass, a trace running for other sources", "trivial XDP_PASS", dt.Program, ack.Bytes()},
		{"SYN to a closed port", "trivial XDP_DROP", d.Program, syn(8080).Bytes()},
		{"SYN to a closed port, before the trace hook (" + prevCommit + ")", "trivial XDP_DROP", prev.Programs["xdpguard"], syn(8080).Bytes()},
		{"SYN to a closed port, a trace running for other sources", "trivial XDP_DROP", dt.Program, syn(8080).Bytes()},
		{"SYN to an open port, known source", "trivial XDP_PASS", dp.Program, syn(22).Bytes()},
		{"SYN from a new source (limiter insert + evict)", "mutate + trivial XDP_DROP", mutNew.prog, syn(22).Bytes()},
		{"IPv6 + 3 extension headers, closed port", "trivial XDP_DROP", d.Program, v6.Bytes()},
		{"QinQ (2 VLAN tags), closed port", "trivial XDP_DROP", d.Program, vlan.Bytes()},
		{"mutate + trivial XDP_DROP", "", mutFloor.prog, syn(22).Bytes()},
	}
	samples := make([][]float64, len(paths))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := pinCPU(1 % runtime.NumCPU()); err != nil {
		return nil, err
	}
	for r := 0; r < rounds; r++ {
		for i, p := range paths {
			_, per, err := p.prog.Benchmark(p.frame, repeat, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			samples[i] = append(samples[i], float64(per)/float64(time.Nanosecond))
		}
	}
	byName := map[string]float64{}
	var out []costRow
	for i, p := range paths {
		byName[p.name] = median(samples[i])
		out = append(out, costRow{Name: p.name, NsPkt: byName[p.name], Floor: p.floor})
	}
	for i := range out {
		if f := out[i].Floor; f != "" && byName[f] > 0 {
			out[i].Ratio = out[i].NsPkt / byName[f]
		}
	}
	return out, nil
}

// prevCommit is the last commit whose program has no trace hook.
const prevCommit = "aad2799"

// prevProgram loads the program committed at prevCommit (read with git from
// the repository the bench runs in) with private maps and its defaults.
func prevProgram() (*ebpf.Collection, error) {
	obj, err := exec.Command("git", "show", prevCommit+":pkg/datapath/xdpguard_bpfel.o").Output()
	if err != nil {
		return nil, fmt.Errorf("git show %s: %w", prevCommit, err)
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		return nil, err
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	return ebpf.NewCollection(spec)
}

type mutatorProg struct {
	objs genObjects
	prog *ebpf.Program
}

func (m *mutatorProg) Close() { m.objs.Close() }

// mutator loads mutate_then_call for srcCount sources, calling target.
func mutator(srcCount uint32, target *ebpf.Program) (*mutatorProg, error) {
	m := &mutatorProg{}
	if err := loadGenFor(srcCount, &m.objs); err != nil {
		return nil, err
	}
	if err := m.objs.Target.Put(uint32(0), target); err != nil {
		m.Close()
		return nil, err
	}
	m.prog = m.objs.MutateThenCall
	return m, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// loadGenFor loads the benchmark helpers rotating over count sources from
// 100.64.0.0 (0: the frame's source stays).
func loadGenFor(count uint32, objs *genObjects) error {
	spec, err := loadGen()
	if err != nil {
		return err
	}
	if err := spec.Variables["src_base"].Set(uint32(100<<24 | 64<<16)); err != nil {
		return err
	}
	if err := spec.Variables["src_count"].Set(count); err != nil {
		return err
	}
	return spec.LoadAndAssign(objs, nil)
}
