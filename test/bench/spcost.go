package main

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// The SYN proxy's cost split (-only spcost), with BPF_PROG_RUN in a
// namespace whose loopback has a listener on 127.0.0.1:8022: programs of
// gen.c doing one more of the proxy's parts each (parse, the socket lookup,
// the kernel's socket-bound cookie) and the raw cookie of kernel 6.0
// (bpf_tcp_raw_gen_syncookie_ipv4, no socket), repeated on one frame; and
// xdpguard's whole proxy (syn_proxy: always) beside its closed-port drop.
func synproxyCostOnly(o options) (results, error) {
	ns := "xgspc-" + testutil.UniqueID()
	if err := testutil.NewNamespaces(ns); err != nil {
		return results{}, err
	}
	defer testutil.DeleteNamespaces(ns)
	err := inNS(ns, func() error {
		for name, v := range map[string]string{"ipv4/tcp_syncookies": "2", "ipv4/tcp_timestamps": "2"} {
			if err := os.WriteFile("/proc/sys/net/"+name, []byte(v), 0o644); err != nil {
				return err
			}
		}
		ln, err := net.Listen("tcp4", "127.0.0.1:8022")
		if err != nil {
			return err
		}
		defer ln.Close()
		return spCost(o)
	})
	return results{}, err
}

func spCost(o options) error {
	frame := func(dport uint16) []byte {
		f := testpkt.NewSYN("127.0.0.2", "127.0.0.1", dport)
		// As a Linux client's SYN: MSS, SACK, timestamps, window scale.
		f.TCPOptions = []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}
		return f.Bytes()
	}
	syn := frame(8022)
	var objs genObjects
	if err := loadGenWith(flood{sources: spFloodSources, base: 127<<24 | 1<<22, scramble: true}, &objs); err != nil {
		return fmt.Errorf("load gen.c: %+v", err)
	}
	defer objs.Close()
	repeat := 1_000_000
	if o.Quick {
		repeat = 200_000
	}
	fmt.Printf("SYN proxy cost split (BPF_PROG_RUN, %d runs each, ns per run; a run's harness costs a few ns):\n", repeat)
	var base time.Duration
	for i, p := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"parse only, then drop", objs.SpParseOnly},
		{"+ bpf_skc_lookup_tcp (the listener)", objs.SpLookup},
		{"+ bpf_tcp_gen_syncookie (the socket-bound cookie)", objs.SpLookupCookie},
		{"bpf_tcp_raw_gen_syncookie_ipv4 alone (kernel 6.0, no socket)", objs.SpRawCookie},
	} {
		ret, d, err := p.prog.Benchmark(syn, repeat, nil)
		if err != nil || ret != 1 {
			return fmt.Errorf("%s: verdict %d, %v", p.name, ret, err)
		}
		if i == 0 {
			base = d
		}
		fmt.Printf("  %-62s %6.1f ns  (+%.1f over parse only)\n", p.name, float64(d.Nanoseconds()), float64((d - base).Nanoseconds()))
	}
	pol, err := policy.Parse("bench", []byte(synproxyBenchPolicy))
	if err != nil {
		return err
	}
	if _, err := datapath.PrepareSynProxyHost(pol); err != nil {
		return err
	}
	gen, err := datapath.Load(pol, datapath.Options{})
	if err != nil {
		return fmt.Errorf("load xdpguard: %+v", err)
	}
	defer gen.Discard()
	// xdpguard's runs: behind gen.c's mutate_then_call, which gives each
	// run a new source and (the proxy answers in place) rewrites the frame
	// from its template first; its own cost is the parse-only row's, about.
	run := func(f []byte, want uint32) (float64, error) {
		var g genObjects
		if err := loadGenWith(flood{sources: spFloodSources, base: 127<<24 | 1<<22, scramble: true, answered: f}, &g); err != nil {
			return 0, err
		}
		defer g.Close()
		if err := g.Target.Put(uint32(0), gen.Program); err != nil {
			return 0, err
		}
		ret, d, err := g.MutateThenCall.Benchmark(f, repeat, nil)
		if err != nil || ret != want {
			return 0, fmt.Errorf("verdict %d (want %d), %v", ret, want, err)
		}
		return float64(d.Nanoseconds()), nil
	}
	closed, err := run(frame(3306), 1)
	if err != nil {
		return fmt.Errorf("closed port: %w", err)
	}
	proxied, err := run(syn, 3)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	fmt.Printf("  xdpguard: closed-port drop %.0f ns, the SYN proxy's answer (XDP_TX) %.0f ns: the proxy adds %.0f ns\n"+
		"  (the answer's runs also pay the harness's bpf_xdp_adjust_tail back to the SYN's length, tens of ns)\n",
		closed, proxied, proxied-closed)
	return nil
}
