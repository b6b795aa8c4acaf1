package datapath_test

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

// trivial returns an XDP program that only returns action, the floor every
// path of xdpguard is compared with.
func trivial(b *testing.B, action int32) *ebpf.Program {
	testutil.RequirePrivileged(b)
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, action), asm.Return()},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

func bench(b *testing.B, p *ebpf.Program, frame []byte) {
	b.Helper()
	b.ResetTimer()
	ret, per, err := p.Benchmark(frame, b.N, nil)
	if err != nil {
		b.Fatal(err)
	}
	_ = ret
	b.ReportMetric(float64(per)/float64(time.Nanosecond), "ns/pkt")
}

// BenchmarkPaths measures BPF_PROG_RUN cost per path. Compare the ns/pkt of
// each path with the Trivial ones from the same run: ratios, not absolutes,
// carry across machines.
func BenchmarkPaths(b *testing.B) {
	syn := v4(8080).Bytes()
	b.Run("TrivialPass", func(b *testing.B) { bench(b, trivial(b, 2), syn) })
	b.Run("TrivialDrop", func(b *testing.B) { bench(b, trivial(b, 1), syn) })

	d := load(b, mustPolicy(b, basePolicy+"ratelimit:\n  syn:\n    rate: 10000000\n    burst: 1000000000\n  syn_total:\n    rate: 10000000\n    burst: 1000000000\n"))
	ack := v4(22)
	ack.Flags = testpkt.ACK
	v6ext := with(v6(8080), func(f *testpkt.Frame) { f.Ext = exts(0, 60, 43) })
	vlan := with(v4(8080), func(f *testpkt.Frame) { f.VLANs = []uint16{testpkt.EtherQinQ, testpkt.EtherQ} })
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"NonSYNPass", ack.Bytes()},
		{"SYNClosedPort", syn},
		{"SYNOpenPortKnownSource", v4(22).Bytes()},
		{"IPv6ExtHeadersClosed", v6ext.Bytes()},
		{"QinQClosed", vlan.Bytes()},
	} {
		b.Run(c.name, func(b *testing.B) { bench(b, d.Program, c.frame) })
	}
}
