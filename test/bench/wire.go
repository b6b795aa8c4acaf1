package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/events"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// scenario is one whole-path configuration: what runs on vethB and what
// the generator sends.
type scenario struct {
	Key, Name string
	flood     flood
	setup     func(l *lab) (teardown func(), err error)
	dropped   func(l *lab) (uint64, error)
	legit     bool // measure a legitimate client during it
	// progStats: also measure the XDP program's own time per run (the
	// kernel's bpf_stats, which add two clock reads a run), to tell the
	// program's cost from the rest of the path's.
	progStats bool
}

// flood is what the generator sends: SYNs (or ACKs) to dport, from
// sources rotating over count addresses from base (host order; 0: the
// frame's 100.64.0.1), IPv4, IPv6 or behind two VLAN tags.
type flood struct {
	dport    uint16
	sources  uint32
	base     uint32
	scramble bool
	ack      bool
	kind     frameKind
	// answered: the filter answers this flood in place (the SYN proxy),
	// so the generator rewrites each frame from this template (set by
	// newGenerator when proxied is).
	proxied  bool
	answered []byte
	// replies: the host answers this flood (the SYN proxy, or the
	// listener's own cookies), so the generator's veth receives a reply
	// per frame: its NAPI then runs on the generator's CPU, where a NIC
	// would take the replies off the filter's CPU.
	replies bool
}

type frameKind int

const (
	plainV4 frameKind = iota
	v6Ext             // IPv6 with 3 extension headers
	qinq              // two VLAN tags
)

// saturatedBelow: a flood saturates the filter's CPU when it processes
// fewer frames than this share of those offered; a row that does not is
// marked and left out of every ratio.
const saturatedBelow = 0.95

// wireResult is a scenario's medians over rounds.
type wireResult struct {
	Key, Name  string
	Offered    float64   // frames/s the generator pushed
	Processed  float64   // frames/s vethB's XDP program ran on
	Mpps       float64   // drops per second, in millions
	RoundMpps  []float64 // Mpps of each round, in order
	RoundNs    []float64 // ns of the filter's CPU per processed frame, each round
	NsPkt      float64   // median of RoundNs
	CPUShare   float64   // the filter thread's share of its CPU during the flood
	Saturated  bool      // processed < saturatedBelow x offered in most rounds
	LegitTried int
	LegitOK    int
	P50, P99   time.Duration
}

func attachTrivial(l *lab, action int32) (func(), error) {
	p, err := trivialProgram(action)
	if err != nil {
		return nil, err
	}
	return attachToB(l, p, p)
}

// attachToB attaches prog in native mode to vethB; the undo detaches it and
// closes owner (what holds prog). On error owner is closed at once.
func attachToB(l *lab, prog *ebpf.Program, owner io.Closer) (func(), error) {
	var lk link.Link
	err := inNS(l.dut, func() error {
		var err error
		lk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: l.bIdx, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		owner.Close()
		return nil, err
	}
	return func() { lk.Close(); owner.Close() }, nil
}

func attachXdpguard(l *lab) (func(), error) {
	return xdpguardWith("minimal", benchPolicy, nil, false)(l)
}

// policies caches the policies the floods attach (a million-entry list
// takes a second to parse), by name.
var policies = map[string]*policy.Policy{}

// xdpguardWith attaches xdpguard under the policy text (its deny list,
// if any, written beside it as list.netset) and, with events, as `xdpguard
// run --events` does: the events budget set (the daemon's defaults: 100
// per second, burst 200) and a reader writing the ring's events to a file.
func xdpguardWith(name, text string, list func() []byte, withEvents bool) func(l *lab) (func(), error) {
	return func(l *lab) (func(), error) {
		pol := policies[name]
		if pol == nil {
			dir := filepath.Join(l.workDir, "policy-"+name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			if list != nil {
				if err := writeAtomic(filepath.Join(dir, "list.netset"), list()); err != nil {
					return nil, err
				}
			}
			path := filepath.Join(dir, "policy.yaml")
			if err := writeAtomic(path, []byte(text)); err != nil {
				return nil, err
			}
			var err error
			if pol, err = policy.Load(path); err != nil {
				return nil, err
			}
			policies[name] = pol
		}
		var g *loader.Guard
		err := inNS(l.dut, func() error {
			var err error
			g, _, err = loader.Attach(l.pinRoot, l.b, loader.ModeNative, pol)
			return err
		})
		if err != nil {
			return nil, err
		}
		detach := func() {
			g.Close()
			_ = inNS(l.dut, func() error { return loader.Detach(l.pinRoot, l.b) })
		}
		if !withEvents {
			return detach, nil
		}
		stopEvents, err := streamEvents(l, g)
		if err != nil {
			detach()
			return nil, err
		}
		return func() { stopEvents(); detach() }, nil
	}
}

func streamEvents(l *lab, g *loader.Guard) (func(), error) {
	st, err := g.State()
	if err != nil {
		return nil, err
	}
	if err := st.SetEventBudget(100, 200); err != nil {
		return nil, err
	}
	w, err := events.OpenWriter(filepath.Join(l.workDir, "events.jsonl"))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = events.Stream(ctx, l.b, st, w, func() {}, func(error) {})
	}()
	return func() {
		_ = st.SetEventBudget(0, 0)
		cancel()
		<-done
		w.Close()
	}, nil
}

// attachXDPFilter loads xdp-tools' xdp-filter on vethB (native mode, TCP
// only, the default allow policy) and denies dport: the anchor of a
// mature XDP port filter. Its pins live in the mount namespace of the one
// `ip netns exec`, so the program is detached through netlink afterwards.
func attachXDPFilter(dport uint16) func(l *lab) (func(), error) {
	return func(l *lab) (func(), error) {
		script := fmt.Sprintf("mount -t bpf bpf /sys/fs/bpf && xdp-filter load -m native -f tcp %s && xdp-filter port -m dst %d", l.b, dport)
		if out, err := exec.Command("ip", "netns", "exec", l.dut, "sh", "-c", script).CombinedOutput(); err != nil {
			_ = run("ip", "-n", l.dut, "link", "set", "dev", l.b, "xdp", "off")
			return nil, fmt.Errorf("xdp-filter (Debian package xdp-tools): %v: %s", err, out)
		}
		return func() { _ = run("ip", "-n", l.dut, "link", "set", "dev", l.b, "xdp", "off") }, nil
	}
}

// attachReadThenDrop attaches gen.c's read_then_drop to vethB.
func attachReadThenDrop(l *lab) (func(), error) {
	objs := new(genObjects)
	if err := loadGenObjects(objs, nil); err != nil {
		return nil, err
	}
	return attachToB(l, objs.ReadThenDrop, objs)
}

// nftRuleset is benchPolicy in nftables: a netdev ingress chain on vethB
// with the allowed-port set and per-source and per-port meters, the form
// in ../shared/notes/perf.md.
func nftRuleset(dev string) string {
	return fmt.Sprintf(`table netdev xgbench {
  set src { type ipv4_addr; size 65536; flags dynamic,timeout; timeout 60s; }
  set port { type inet_service; size 65536; flags dynamic,timeout; timeout 60s; }
  chain in {
    type filter hook ingress device "%s" priority -500; policy accept;
    ip protocol tcp tcp flags & (syn|ack) == syn tcp dport != { 22, 80, 443, 8022 } counter drop
    ip protocol tcp tcp flags & (syn|ack) == syn update @src { ip saddr limit rate over 100/second burst 200 packets } counter drop
    ip protocol tcp tcp flags & (syn|ack) == syn update @port { tcp dport limit rate over 10000/second burst 10000 packets } counter drop
  }
}
`, dev)
}

func attachNft(l *lab) (func(), error) {
	undo, err := attachTrivial(l, 2) // XDP_PASS: keeps vethB's NAPI, as in production with any XDP
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", l.dut, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(nftRuleset(l.b))
	if out, err := cmd.CombinedOutput(); err != nil {
		undo()
		return nil, fmt.Errorf("nft: %v: %s", err, out)
	}
	return func() { _ = run("ip", "netns", "exec", l.dut, "nft", "delete", "table", "netdev", "xgbench"); undo() }, nil
}

// xdpDrops reads vethB's XDP drop counter (ethtool -S).
func xdpDrops(l *lab) (uint64, error) { return ethtoolSum(l.dut, l.b, "_xdp_drops") }

// xdpProcessed is how many frames vethB's XDP program has run on.
// attachedProgram is the XDP program on vethB and its stats now (nil if
// none can be read).
func attachedProgram(l *lab) (*ebpf.Program, *ebpf.ProgramStats) {
	var prog *ebpf.Program
	_ = inNS(l.dut, func() error {
		_, id, err := loader.AttachMode(l.bIdx)
		if err != nil || id == 0 {
			return err
		}
		prog, err = ebpf.NewProgramFromID(ebpf.ProgramID(id))
		return err
	})
	if prog == nil {
		return nil, nil
	}
	st, err := prog.Stats()
	if err != nil {
		prog.Close()
		return nil, nil
	}
	return prog, st
}

func xdpProcessed(l *lab) (uint64, error) { return ethtoolSum(l.dut, l.b, "_xdp_packets") }

// ethtoolSum sums dev's `ethtool -S` counters named ...suffix.
func ethtoolSum(ns, dev, suffix string) (uint64, error) {
	out, err := exec.Command("ip", "netns", "exec", ns, "ethtool", "-S", dev).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ethtool: %v: %s", err, out)
	}
	var total uint64
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && strings.HasSuffix(k, suffix) {
			var n uint64
			fmt.Sscan(strings.TrimSpace(v), &n)
			total += n
		}
	}
	return total, nil
}

// nftDrops sums the packets of the chain's counters.
func nftDrops(l *lab) (uint64, error) {
	out, err := exec.Command("ip", "netns", "exec", l.dut, "nft", "-j", "list", "table", "netdev", "xgbench").Output()
	if err != nil {
		return 0, fmt.Errorf("nft list: %w", err)
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Expr []map[string]json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, err
	}
	var total uint64
	for _, o := range doc.Nftables {
		if o.Rule == nil {
			continue
		}
		for _, e := range o.Rule.Expr {
			if c, ok := e["counter"]; ok {
				var ctr struct{ Packets uint64 }
				_ = json.Unmarshal(c, &ctr)
				total += ctr.Packets
			}
		}
	}
	return total, nil
}

// The policies of the floods: minimal is benchPolicy; the security group
// adds what a real host's policy has (a deny list of 10,000 /24s and a
// /9, bans, a port open to one network, drop events); the scale rows add a
// synthetic blocklist of n entries to the minimal policy.
const (
	sgDeniedNet = "10.128.0.0/9"
	sgExtra     = `  - port: 3307
    from: [172.16.0.0/12]
`
)

func sgPolicy() string {
	var b strings.Builder
	b.WriteString("tcp:\n  allow:\n  - 22\n  - 80\n  - 443\n  - 8022\n" + sgExtra)
	b.WriteString("ratelimit:\n  syn: {rate: 100, burst: 200, max_sources: 65536, ban: 60s}\n  syn_total: {rate: 10000, burst: 10000}\n")
	b.WriteString("sources:\n  deny:\n  - " + sgDeniedNet + "\n")
	for i := range 10000 {
		fmt.Fprintf(&b, "  - 20.%d.%d.0/24\n", i/256, i%256)
	}
	return b.String()
}

func scalePolicy(n int) (string, func() []byte) {
	return benchPolicy + "sources:\n  deny_lists: [list.netset]\n", func() []byte {
		set, err := genNetset(n, 1)
		if err != nil {
			panic(err)
		}
		return set.text(false)
	}
}

// The floods. Closed is the minimal closed-port flood, 65,536 sources in
// 100.64.0.0/16 (in no deny list); ack the same as ACKs (to an address
// vethB's stack drops unanswered, so passing costs both filters the same).
var (
	closed   = flood{dport: 8080, sources: 65536}
	ackFlood = flood{dport: 8080, sources: 65536, ack: true}
	// Half from the security group's denied 10.128.0.0/9, half from the
	// rest of 10.0.0.0/8, in a scrambled order: every frame a new /24.
	halfDenied = flood{dport: 8080, sources: 1 << 24, base: 10 << 24, scramble: true}
)

func scenarios(scale [3]int) []scenario {
	sg := xdpguardWith("sg", sgPolicy(), nil, true)
	sgQuiet := xdpguardWith("sg", sgPolicy(), nil, false)
	withList := func(n int) func(l *lab) (func(), error) {
		text, list := scalePolicy(n)
		return xdpguardWith(fmt.Sprintf("deny-%d", n), text, list, false)
	}
	return []scenario{
		{Key: "a", Name: "trivial XDP_DROP (the floor)", flood: closed,
			setup: func(l *lab) (func(), error) { return attachTrivial(l, 1) }, dropped: xdpDrops},
		{Key: "r", Name: "trivial drop after reading the TCP header (the floor for any filter)", flood: closed,
			setup: attachReadThenDrop, dropped: xdpDrops},
		{Key: "f", Name: "xdp-filter (xdp-tools) dropping the closed port", flood: closed,
			setup: attachXDPFilter(closed.dport), dropped: xdpDrops},
		// (a) has no legitimate client (the floor would drop it), so the
		// floors are compared with xdpguard under the same load: (b0), run
		// in the same round. (b) is the flood with the client.
		{Key: "b0", Name: "xdpguard, SYN flood to a closed port, minimal policy: no legitimate client", flood: closed, setup: attachXdpguard, dropped: xdpDrops},
		{Key: "b", Name: "xdpguard, the same with a legitimate client", flood: closed, setup: attachXdpguard, dropped: xdpDrops, legit: true},
		{Key: "c", Name: "XDP_PASS + nftables netdev ingress (same policy), with the client", flood: closed, setup: attachNft, dropped: nftDrops, legit: true},
		{Key: "rp", Name: "ACK flood through the reading floor (r), which passes it", flood: ackFlood, setup: attachReadThenDrop, dropped: xdpDrops},
		{Key: "p", Name: "xdpguard, ACK flood (non-SYN pass), minimal policy", flood: ackFlood, setup: attachXdpguard, dropped: xdpDrops},
		{Key: "s", Name: "xdpguard, security-group policy, SYN flood to a closed port", flood: closed, setup: sg, dropped: xdpDrops},
		{Key: "sq", Name: "the same without drop events (where the cost of (s) goes)", flood: closed, setup: sgQuiet, dropped: xdpDrops},
		{Key: "sp", Name: "xdpguard, security-group policy, ACK flood (non-SYN pass)", flood: ackFlood, setup: sg, dropped: xdpDrops},
		{Key: "sr", Name: "xdpguard, security-group policy, 16M sources, half denied, to a closed port", flood: halfDenied, setup: sg, dropped: xdpDrops},
		{Key: "d", Name: "xdpguard, random-source flood at an allowed port, 1k sources, with the client", flood: flood{dport: 80, sources: 1000}, setup: attachXdpguard, dropped: xdpDrops, legit: true},
		{Key: "e", Name: "xdpguard, the same with 1M sources", flood: flood{dport: 80, sources: 1 << 20}, setup: attachXdpguard, dropped: xdpDrops, legit: true},
		{Key: "k1", Name: "xdpguard, minimal policy + a " + thousands(scale[0]) + "-entry deny list (none of the flood's sources), closed port", flood: closed, setup: withList(scale[0]), dropped: xdpDrops},
		{Key: "k100", Name: "the same, " + thousands(scale[1]) + " entries", flood: closed, setup: withList(scale[1]), dropped: xdpDrops},
		{Key: "k1m", Name: "the same, " + thousands(scale[2]) + " entries", flood: closed, setup: withList(scale[2]), dropped: xdpDrops},
		{Key: "v6", Name: "xdpguard, IPv6 + 3 extension headers, closed port", flood: flood{dport: 8080, kind: v6Ext}, setup: attachXdpguard, dropped: xdpDrops},
		{Key: "q", Name: "xdpguard, QinQ (2 VLAN tags), closed port", flood: flood{dport: 8080, sources: 65536, kind: qinq}, setup: attachXdpguard, dropped: xdpDrops},
	}
}

// generator pushes frames into vethA with live frames; it runs on CPU 0.
type generator struct {
	objs       genObjects
	frame      []byte
	pass, idle link.Link
}

// frameOf is the template frame of f, from vethA to vethB.
func frameOf(l *lab, f flood) []byte {
	var fr testpkt.Frame
	switch f.kind {
	case v6Ext:
		fr = testpkt.NewSYN("2001:db8::1", "2001:db8:1::1", f.dport)
		fr.Ext = []testpkt.Ext{{Type: 0}, {Type: 60}, {Type: 43}}
	default:
		dst := dutIP
		if f.ack {
			dst = "198.18.100.9" // no such host: vethB's stack drops it unanswered
		}
		fr = testpkt.NewSYN("100.64.0.1", dst, f.dport)
		if f.kind == qinq {
			fr.VLANs = []uint16{testpkt.EtherQinQ, testpkt.EtherQ}
		}
	}
	if f.ack {
		fr.Flags = testpkt.ACK
	}
	copy(fr.DstMAC[:], l.bMAC)
	copy(fr.SrcMAC[:], l.aMAC)
	return fr.Bytes()
}

func newGenerator(l *lab, f flood) (*generator, error) {
	g := &generator{frame: frameOf(l, f)}
	if f.proxied {
		f.answered = g.frame
	}
	if err := loadGenWith(f, &g.objs); err != nil {
		return nil, err
	}
	// Attached somewhere (an idle veth that carries nothing), the
	// generator's program stays in the kernel's XDP dispatcher: a
	// BPF_PROG_RUN of it then no longer adds and removes it there, each
	// time waiting for an RCU grace period (tens of ms on a loaded
	// machine, most of the generator's time).
	err := inNS(l.gen, func() error {
		var err error
		g.pass, err = link.AttachXDP(link.XDPOptions{Program: g.objs.Pass, Interface: l.aIdx, Flags: link.XDPDriverMode})
		if err != nil {
			return err
		}
		g.idle, err = link.AttachXDP(link.XDPOptions{Program: g.objs.Generate, Interface: l.eIdx, Flags: link.XDPDriverMode})
		if err != nil {
			g.pass.Close()
		}
		return err
	})
	if err != nil {
		g.objs.Close()
		return nil, err
	}
	return g, nil
}

func (g *generator) Close() { g.idle.Close(); g.pass.Close(); g.objs.Close() }

type xdpMd struct{ Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32 }

// push sends frames for d and reports how many.
func (g *generator) push(l *lab, d time.Duration) (uint64, error) {
	sent, _, err := g.pushTimed(l, d)
	return sent, err
}

// pushTimed is push, also reporting the generator thread's CPU time (ns).
func (g *generator) pushTimed(l *lab, d time.Duration) (sent, cpuNs uint64, err error) {
	err = inNS(l.gen, func() error {
		if err := pinCPU(0); err != nil {
			return err
		}
		// The generator's thread is favoured like the filter's (see
		// favourNAPI) for the flood, and given back after.
		tid := unix.Gettid()
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, favouredNice); err != nil {
			return err
		}
		defer unix.Setpriority(unix.PRIO_PROCESS, tid, 0)
		// Each call sets up and tears down a page pool and switches the
		// XDP dispatcher (waits that leave the thread asleep): a call
		// pushes a million frames, not 65,536.
		const chunk = 1 << 20
		self := fmt.Sprintf("/proc/self/task/%d", tid)
		cpu0 := taskRuntime(self)
		defer func() { cpuNs = taskRuntime(self) - cpu0 }()
		start := time.Now()
		for time.Since(start) < d {
			_, err := g.objs.Generate.Run(&ebpf.RunOptions{
				Data: g.frame, Repeat: chunk, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, BatchSize: genBatch,
				Context: xdpMd{DataEnd: uint32(len(g.frame)), IngressIfindex: uint32(l.aIdx)},
			})
			if err != nil {
				return fmt.Errorf("live frames: %w", err)
			}
			sent += chunk
		}
		return nil
	})
	return sent, cpuNs, err
}

// genBatch is the live-frames batch (the kernel's maximum).
const genBatch = 256

// legitClient connects to dut:8022 from the cli namespace until stop.
func legitClient(l *lab, stop <-chan struct{}) (tried, ok int, lat []time.Duration) {
	_ = inNS(l.cli, func() error {
		// As favoured as the generator beside it on CPU 0: a client
		// starved by the bench's own generator would measure the bench.
		tid := unix.Gettid()
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, favouredNice); err != nil {
			return err
		}
		defer unix.Setpriority(unix.PRIO_PROCESS, tid, 0)
		for {
			select {
			case <-stop:
				return nil
			default:
			}
			start := time.Now()
			c, err := net.DialTimeout("tcp", net.JoinHostPort(dutIP, "8022"), time.Second)
			tried++
			if err == nil {
				ok++
				lat = append(lat, time.Since(start))
				c.Close()
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return
}

// primeClient connects once from the cli namespace, uncounted.
func primeClient(l *lab) {
	_ = inNS(l.cli, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(dutIP, "8022"), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// listen serves 8022 in the dut namespace (accept and close).
func listen(l *lab) (net.Listener, error) {
	var ln net.Listener
	err := inNS(l.dut, func() error {
		var err error
		ln, err = net.Listen("tcp", ":8022")
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln, nil
}

// sample is one flood of one round.
type sample struct {
	offered, processed, drops float64 // per second
	ns, share                 float64 // the filter thread's ns per processed frame; its share of the CPU
	progNs                    float64 // the program's own ns per run (progStats), or 0
	genShare                  float64 // the generator thread's share of its CPU
	tried, ok                 int
	lat                       []time.Duration
}

// runFlood sets sc up, floods it for d (after a warm-up of d/5, which
// also fills the limiter table) and tears it down.
func runFlood(l *lab, sc scenario, d time.Duration) (sample, error) {
	var s sample
	teardown, err := sc.setup(l)
	if err != nil {
		return s, fmt.Errorf("(%s) %s: %w", sc.Key, sc.Name, err)
	}
	defer teardown()
	napi, err := l.threadedNAPI()
	if err != nil {
		return s, err
	}
	gen, err := newGenerator(l, sc.flood)
	if err != nil {
		return s, err
	}
	defer gen.Close()
	if sc.flood.replies || sc.flood.proxied {
		if err := l.generatorNAPI(); err != nil {
			return s, err
		}
	}
	if sc.legit {
		primeClient(l) // resolve the neighbours before the flood, as on a live host
	}
	if _, err := gen.push(l, d/5); err != nil {
		return s, err
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	if sc.legit {
		wg.Add(1)
		go func() { defer wg.Done(); s.tried, s.ok, s.lat = legitClient(l, stop) }()
	}
	var prog *ebpf.Program
	var ps0 *ebpf.ProgramStats
	if sc.progStats {
		if stop, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME); err == nil {
			defer stop.Close()
			prog, ps0 = attachedProgram(l)
			if prog != nil {
				defer prog.Close()
			}
		}
	}
	before, err1 := sc.dropped(l)
	proc0, err2 := xdpProcessed(l)
	run0, t0 := threadRuntime(napi), time.Now()
	sent, genNs, err3 := gen.pushTimed(l, d)
	run1, elapsed := threadRuntime(napi), time.Since(t0)
	if prog != nil && ps0 != nil {
		if ps1, err := prog.Stats(); err == nil && ps1.RunCount > ps0.RunCount {
			s.progNs = float64(ps1.Runtime-ps0.Runtime) / float64(ps1.RunCount-ps0.RunCount)
		}
	}
	proc1, err4 := xdpProcessed(l)
	after, err5 := sc.dropped(l)
	close(stop)
	wg.Wait()
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return s, fmt.Errorf("(%s): %w", sc.Key, err)
	}
	secs := elapsed.Seconds()
	s.offered, s.processed, s.drops = float64(sent)/secs, float64(proc1-proc0)/secs, float64(after-before)/secs
	if proc1 > proc0 {
		s.ns = float64(run1-run0) / float64(proc1-proc0)
	}
	s.share = float64(run1-run0) / float64(elapsed.Nanoseconds())
	s.genShare = float64(genNs) / float64(elapsed.Nanoseconds())
	return s, nil
}

// wholePath runs the scenarios for d per round, rounds interleaved, each
// round holding the bench lock (lock; "" takes none).
func wholePath(l *lab, scs []scenario, d time.Duration, rounds int, lock string, logf func(string, ...any)) ([]wireResult, error) {
	ln, err := listen(l)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	undo, err := pinProcess(0)
	if err != nil {
		return nil, err
	}
	defer undo()
	restore := favourSession()
	defer restore()
	samples := make([][]sample, len(scs))
	for r := 0; r < rounds; r++ {
		unlock, err := benchLock(lock)
		if err != nil {
			return nil, err
		}
		// Each round starts one flood further on: a flood that leaves the
		// machine's caches or allocators in some state weighs on a
		// different successor each round, not always on the same one.
		for j := range scs {
			i := (j + r) % len(scs)
			sc := scs[i]
			s, err := runFlood(l, sc, d)
			if err != nil {
				unlock()
				return nil, err
			}
			samples[i] = append(samples[i], s)
			prog := ""
			if s.progNs > 0 {
				prog = fmt.Sprintf(" (the program's own: %.1f ns a run)", s.progNs)
			}
			logf("round %d (%s) offered %.2f, processed %.2f, dropped %.2f Mpps; %.1f ns/frame%s, filter CPU %.0f%%, generator CPU %.0f%%; legit %d/%d",
				r+1, sc.Key, s.offered/1e6, s.processed/1e6, s.drops/1e6, s.ns, prog, 100*s.share, 100*s.genShare, s.ok, s.tried)
		}
		unlock()
	}
	var out []wireResult
	for i, sc := range scs {
		out = append(out, summarize(sc, samples[i]))
	}
	return out, nil
}

func summarize(sc scenario, ss []sample) wireResult {
	res := wireResult{Key: sc.Key, Name: sc.Name}
	var offered, processed, share []float64
	var lat []time.Duration
	saturated := 0
	for _, s := range ss {
		offered, processed, share = append(offered, s.offered), append(processed, s.processed), append(share, s.share)
		res.RoundMpps = append(res.RoundMpps, s.drops/1e6)
		res.RoundNs = append(res.RoundNs, s.ns)
		if s.processed < saturatedBelow*s.offered {
			saturated++
		}
		res.LegitTried += s.tried
		res.LegitOK += s.ok
		lat = append(lat, s.lat...)
	}
	res.Offered, res.Processed, res.CPUShare = median(offered), median(processed), median(share)
	res.Mpps, res.NsPkt = median(res.RoundMpps), median(res.RoundNs)
	res.Saturated = 2*saturated > len(ss)
	if len(lat) > 0 {
		sort.Slice(lat, func(x, y int) bool { return lat[x] < lat[y] })
		res.P50 = lat[len(lat)/2]
		res.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return res
}

// threadedNAPI moves vethB's receive processing into its own kernel thread
// on CPU 1, away from the generator on CPU 0: the drop rate then measures
// what the filter's CPU can do, not the generator's. (NAPI exists only
// while an XDP program is attached, so this follows each setup.) It
// returns the threads' pids.
func (l *lab) threadedNAPI() ([]int, error) {
	if err := run("ip", "netns", "exec", l.dut, "sh", "-c", "echo 1 > /sys/class/net/"+l.b+"/threaded"); err != nil {
		return nil, err
	}
	out, err := exec.Command("pgrep", "-f", "napi/"+l.b+"-").Output()
	if err != nil {
		return nil, fmt.Errorf("no NAPI thread for %s: %w", l.b, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if err := run("taskset", "-pc", "1", f); err != nil {
			return nil, err
		}
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, pid, favouredNice); err != nil {
			return nil, err
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// generatorNAPI moves vethA's receive processing (the replies to a
// flood) into a kernel thread on the generator's CPU 0. (Its NAPI exists
// while the generator's XDP program is attached: this follows
// newGenerator.)
func (l *lab) generatorNAPI() error {
	if err := run("ip", "netns", "exec", l.gen, "sh", "-c", "echo 1 > /sys/class/net/"+l.a+"/threaded"); err != nil {
		return err
	}
	out, err := exec.Command("pgrep", "-f", "napi/"+l.a+"-").Output()
	if err != nil {
		return fmt.Errorf("no NAPI thread for %s: %w", l.a, err)
	}
	for _, f := range strings.Fields(string(out)) {
		if err := run("taskset", "-pc", "0", f); err != nil {
			return err
		}
		// As favoured as the generator beside it: the client's replies
		// come in here too.
		pid, err := strconv.Atoi(f)
		if err != nil {
			return err
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, pid, favouredNice); err != nil {
			return err
		}
	}
	return nil
}

// favouredNice is the nice value of the generator's and the filter's
// threads during a flood: the machine's other work (builds and tests of
// other engineers) still runs, but at a twentieth of their weight, so the
// filter's CPU is mostly the filter's and the flood can saturate it. (Not
// a real-time class: nothing else on the machine starves.)
const favouredNice = -20

// favourSession gives this process's autogroup (the scheduler's group for
// its session, when sched_autogroup is on) the weight of favouredNice, and
// returns the undo: with autogroups, a thread's nice value counts only
// within its own group, and each other session's build would otherwise
// take as much of the generator's CPU as the whole bench.
func favourSession() func() {
	const path = "/proc/self/autogroup"
	old, err := os.ReadFile(path)
	if err != nil {
		return func() {}
	}
	prev := "0"
	if f := strings.Fields(string(old)); len(f) == 3 && f[1] == "nice" {
		prev = f[2]
	}
	if os.WriteFile(path, []byte(strconv.Itoa(favouredNice)), 0) != nil {
		return func() {}
	}
	return func() { _ = os.WriteFile(path, []byte(prev), 0) }
}

// threadRuntime is the CPU time the threads have run, in ns (the
// scheduler's own account, /proc/<pid>/schedstat: other work on the same
// CPU does not count, unlike the CPU's busy time).
func threadRuntime(pids []int) uint64 {
	var total uint64
	for _, pid := range pids {
		total += taskRuntime(fmt.Sprintf("/proc/%d", pid))
	}
	return total
}

// taskRuntime is the CPU time of the task at dir (/proc/<pid>), in ns.
func taskRuntime(dir string) uint64 {
	b, err := os.ReadFile(dir + "/schedstat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseUint(f[0], 10, 64)
	return n
}

// benchLock takes the exclusive bench lock at path (flock), which the
// machine's engineers share, and returns its release.
func benchLock(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
