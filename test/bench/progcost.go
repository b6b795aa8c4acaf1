package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
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
func programCost(repeat, rounds, bigList int) ([]costRow, error) {
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
	// The security group (sgPolicy), with and without the daemon's events
	// budget, and the minimal policy with a bigList-entry deny list.
	dir, err := os.MkdirTemp("", "xdpguard-progcost")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	load := func(name, text string, list func() []byte, withEvents bool) (*datapath.Generation, error) {
		sub := filepath.Join(dir, name)
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return nil, err
		}
		if list != nil {
			if err := writeAtomic(filepath.Join(sub, "list.netset"), list()); err != nil {
				return nil, err
			}
		}
		if err := writeAtomic(filepath.Join(sub, "policy.yaml"), []byte(text)); err != nil {
			return nil, err
		}
		pol, err := policy.Load(filepath.Join(sub, "policy.yaml"))
		if err != nil {
			return nil, err
		}
		g, err := datapath.LoadDetached(pol)
		if err != nil {
			return nil, err
		}
		if withEvents {
			if err := maps.Of(g.Maps).SetEventBudget(100, 200); err != nil {
				g.Close()
				return nil, err
			}
		}
		return g, nil
	}
	sg, err := load("sg", sgPolicy(), nil, true)
	if err != nil {
		return nil, err
	}
	defer sg.Close()
	sgQuiet, err := load("sg-quiet", sgPolicy(), nil, false)
	if err != nil {
		return nil, err
	}
	defer sgQuiet.Close()
	text, list := scalePolicy(bigList)
	big, err := load("deny-1m", text, list, false)
	if err != nil {
		return nil, err
	}
	defer big.Close()

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
	denied := testpkt.NewSYN("10.200.0.1", dutIP, 8080) // in the security group's 10.128.0.0/9
	vlan := syn(8080)
	vlan.VLANs = []uint16{testpkt.EtherQinQ, testpkt.EtherQ}
	// The trace hook (bpf/trace.h) costs one load and one branch when no
	// trace runs (every row above); these rows are the same program with
	// a trace running for a source none of the frames has.
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
	type path struct {
		name, floor string
		prog        *ebpf.Program
		frame       []byte
	}
	paths := []path{
		{"trivial XDP_PASS", "", tPass, syn(8080).Bytes()},
		{"trivial XDP_DROP", "", tDrop, syn(8080).Bytes()},
		{"non-SYN (ACK) pass", "trivial XDP_PASS", d.Program, ack.Bytes()},
		{"SYN to a closed port", "trivial XDP_DROP", d.Program, syn(8080).Bytes()},
		{"SYN to an open port, known source", "trivial XDP_PASS", dp.Program, syn(22).Bytes()},
		{"SYN from a new source (limiter insert + evict)", "mutate + trivial XDP_DROP", mutNew.prog, syn(22).Bytes()},
		{"IPv6 + 3 extension headers, closed port", "trivial XDP_DROP", d.Program, v6.Bytes()},
		{"QinQ (2 VLAN tags), closed port", "trivial XDP_DROP", d.Program, vlan.Bytes()},
		{"non-SYN (ACK) pass, a trace running for other sources", "trivial XDP_PASS", dt.Program, ack.Bytes()},
		{"SYN to a closed port, a trace running for other sources", "trivial XDP_DROP", dt.Program, syn(8080).Bytes()},
		{"mutate + trivial XDP_DROP", "", mutFloor.prog, syn(22).Bytes()},
		{"security group: SYN to a closed port", "trivial XDP_DROP", sg.Program, syn(8080).Bytes()},
		{"security group without events: SYN to a closed port", "trivial XDP_DROP", sgQuiet.Program, syn(8080).Bytes()},
		{"security group: non-SYN (ACK) pass", "trivial XDP_PASS", sg.Program, ack.Bytes()},
		{"security group: SYN from a denied source", "trivial XDP_DROP", sg.Program, denied.Bytes()},
		{bigListRow(bigList), "trivial XDP_DROP", big.Program, syn(8080).Bytes()},
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
	return loadGenWith(flood{sources: count}, objs)
}

// loadGenWith loads the benchmark helpers for flood f: its sources from
// f.base (100.64.0.0 when 0), its IPv4 header where its frame has it.
func loadGenWith(f flood, objs *genObjects) error {
	spec, err := loadGen()
	if err != nil {
		return err
	}
	base := f.base
	if base == 0 {
		base = 100<<24 | 64<<16
	}
	count := f.sources
	if f.kind == v6Ext {
		count = 0 // not an IPv4 header to rewrite: one source
	}
	ipOff := uint32(14)
	if f.kind == qinq {
		ipOff = 22
	}
	vars := map[string]any{"src_base": base, "src_count": count, "ip_off": ipOff, "src_scramble": boolByte(f.scramble)}
	if f.answered != nil {
		var tmpl [128]uint8
		if len(f.answered) > len(tmpl)-1 {
			return fmt.Errorf("template frame of %d bytes, at most %d", len(f.answered), len(tmpl)-1)
		}
		copy(tmpl[:], f.answered)
		vars["tmpl"], vars["tmpl_len"] = tmpl, uint32(len(f.answered))
	}
	for name, v := range vars {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return spec.LoadAndAssign(objs, nil)
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func bigListRow(n int) string { return thousands(n) + "-entry deny list: SYN to a closed port" }
