package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tcxIngress lists the programs on the server veth's tcx ingress, first
// first.
func tcxIngress(t *testing.T, l *Lab) []ebpf.ProgramID {
	t.Helper()
	var ids []ebpf.ProgramID
	l.InNS(l.Server, func() {
		nl, err := netlink.LinkByName(l.SrvIf)
		if err != nil {
			t.Fatal(err)
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: nl.Attrs().Index, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range res.Programs {
			ids = append(ids, p.ID)
		}
	})
	return ids
}

type tcStatus struct {
	Interface string
	Enforcing bool
	Mode      string
	ModeWhy   string `json:"mode_why"`
	ProgramID uint32 `json:"program_id"`
}

func statusOf(t *testing.T, l *Lab) tcStatus {
	t.Helper()
	var st []tcStatus
	if err := json.Unmarshal([]byte(l.Status()), &st); err != nil || len(st) != 1 {
		t.Fatalf("status: %v %s", err, l.Status())
	}
	return st[0]
}

// On a veth, auto attaches the tc build with tcx, first on ingress, in
// front of a program already there (which keeps running after it: a pass
// is TCX_NEXT), and no XDP program: status says so and why. It filters
// like the XDP build, switches policies atomically on the same link, is
// adopted by a restarted daemon, and detach leaves the other program.
func TestTCModeOnVeth(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022, 8080, 7777)
	l.WritePolicy(labPolicy)

	// Someone else's tc program, counting its runs (BPF stats).
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatal(err)
	}
	defer stats.Close()
	other, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}, // TCX_NEXT
	})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var otherLink link.Link
	l.InNS(l.Server, func() {
		nl, lerr := netlink.LinkByName(l.SrvIf)
		if lerr == nil {
			otherLink, lerr = link.AttachTCX(link.TCXOptions{Program: other, Interface: nl.Attrs().Index, Attach: ebpf.AttachTCXIngress})
		}
		err = lerr
	})
	if err != nil {
		t.Fatal(err)
	}
	defer otherLink.Close()
	otherInfo, _ := other.Info()
	otherID, _ := otherInfo.ID()

	d := l.StartDaemon()
	st := statusOf(t, l)
	if st.Mode != "tc" || !st.Enforcing || !strings.Contains(st.ModeWhy, "virtual device (veth)") {
		t.Errorf("status on a veth: %+v, want mode tc, enforcing, and why", st)
	}
	if ids := tcxIngress(t, l); len(ids) != 2 || uint32(ids[0]) != st.ProgramID || ids[1] != otherID {
		t.Errorf("tcx ingress %v, want xdpguard's %d first, then %d", ids, st.ProgramID, otherID)
	}
	l.InNS(l.Server, func() {
		if nl, err := netlink.LinkByName(l.SrvIf); err != nil || (nl.Attrs().Xdp != nil && nl.Attrs().Xdp.Attached) {
			t.Errorf("an XDP program is attached in tc mode (%v)", err)
		}
	})
	before := runCount(t, other)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "open", 7777: "filtered", 9000: "refused"})
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{8080: "open", 7777: "filtered"})
	m := d.Scrape()
	if v := Metric(m, "xdpguard_port_drops_total", `port="7777"`, `reason="port_not_allowed"`); v < 2 {
		t.Errorf("port 7777 drops = %v", v)
	}
	if v := Metric(m, "xdpguard_passed_total", `reason="not_syn"`); v < 1 {
		t.Errorf("not_syn passes = %v", v)
	}
	if after := runCount(t, other); after <= before {
		t.Errorf("the program behind xdpguard ran %d times, then %d: passes do not reach it", before, after)
	}

	// A reload switches the program on the same link.
	d.Mark()
	l.WritePolicy("tcp:\n  allow: [8022, 7777]\n")
	d.Signal(syscall.SIGHUP)
	d.WaitLog(`policy reloaded`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "open", 8080: "filtered"})
	st2 := statusOf(t, l)
	if ids := tcxIngress(t, l); st2.ProgramID == st.ProgramID || len(ids) != 2 || uint32(ids[0]) != st2.ProgramID {
		t.Errorf("after the reload: program %d (was %d), tcx %v", st2.ProgramID, st.ProgramID, ids)
	}

	// A restarted daemon adopts the pinned tcx link.
	d.Stop()
	if ids := tcxIngress(t, l); len(ids) != 2 {
		t.Errorf("the filter did not outlive the daemon: tcx %v", ids)
	}
	d = l.StartDaemon("--mode", "auto")
	d.WaitLog(`attached.*adopted=true.*mode=tc`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "open", 8080: "filtered"})
	d.Stop()

	sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "detach", "--iface", l.SrvIf)
	if ids := tcxIngress(t, l); len(ids) != 1 || ids[0] != otherID {
		t.Errorf("after detach: tcx %v, want only %d", ids, otherID)
	}
}

func runCount(t *testing.T, p *ebpf.Program) uint64 {
	t.Helper()
	s, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s.RunCount
}

// --mode tc over a foreign XDP program is refused, as in XDP mode: the
// XDP program would run before xdpguard's tc hook.
func TestTCModeRefusesForeignXDP(t *testing.T) {
	l := NewLab(t)
	l.WritePolicy(labPolicy)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	var xl link.Link
	l.InNS(l.Server, func() {
		nl, lerr := netlink.LinkByName(l.SrvIf)
		if lerr == nil {
			xl, lerr = link.AttachXDP(link.XDPOptions{Program: prog, Interface: nl.Attrs().Index, Flags: link.XDPGenericMode})
		}
		err = lerr
	})
	if err != nil {
		t.Fatal(err)
	}
	defer xl.Close()
	out, err := runIn(l, "run", "--mode", "tc", "--iface", l.SrvIf, "--policy", l.dir+"/policy.yaml", "--metrics-addr", "")
	if err == nil || !strings.Contains(out, "another XDP program is attached") || !strings.Contains(out, "before xdpguard's tc hook") {
		t.Fatalf("tc over a foreign XDP program: %v\n%s", err, out)
	}
	if ids := tcxIngress(t, l); len(ids) != 0 {
		t.Errorf("a refused start left tcx programs %v", ids)
	}
}

// Jumbo frames: with both veth ends at MTU 9000, bulk TCP carries
// 9000-byte segments through the tc build (skb->len) and the native XDP
// build (loaded with frags: veth refuses a program without them at this
// MTU), and a closed port stays closed. No segment is judged malformed.
func TestJumboFrames(t *testing.T) {
	for _, mode := range []string{"tc", "native"} {
		t.Run(mode, func(t *testing.T) {
			l := NewLab(t)
			sh(t, "ip", "netns", "exec", l.Server, "ip", "link", "set", l.SrvIf, "mtu", "9000")
			sh(t, "ip", "netns", "exec", l.Client, "ip", "link", "set", l.CliIf, "mtu", "9000")
			ln := l.ListenAddr("[::]:8022")
			_ = ln
			l.Listen(7777)
			l.WritePolicy(labPolicy)
			d := l.StartDaemon("--mode", mode)
			if st := statusOf(t, l); st.Mode != mode || !st.Enforcing {
				t.Fatalf("status %+v", st)
			}
			// 4 MB echoed back: the segments both ways are jumbo.
			var conn net.Conn
			var err error
			l.InNS(l.Client, func() { conn, err = net.DialTimeout("tcp", net.JoinHostPort(l.SrvV4, "8022"), 2*time.Second) })
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
			payload := bytes.Repeat([]byte("jumbo frames "), 4<<20/13)
			go func() { _, _ = conn.Write(payload) }()
			got := make([]byte, len(payload))
			if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("echo of %d bytes at MTU 9000: %v", len(payload), err)
			}
			expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered"})
			m := d.Scrape()
			if v := Metric(m, "xdpguard_drops_total", `reason="malformed"`); v != 0 {
				t.Errorf("%v jumbo segments judged malformed", v)
			}
			// 4 MB in at most 64 KB per skb (GSO, GRO: how many depends on
			// the machine's load) is at least 64 segments in: some of
			// them must have been judged (the metrics are up to a second
			// old).
			if v := Metric(m, "xdpguard_passed_total", `reason="not_syn"`); v < 10 {
				t.Errorf("not_syn passes = %v: the transfer was not judged", v)
			}
		})
	}
}

// clsactProgram is the program of the bpf filter on the server veth's
// clsact ingress, or 0.
func clsactProgram(t *testing.T, l *Lab) uint32 {
	t.Helper()
	var id uint32
	l.InNS(l.Server, func() {
		nl, err := netlink.LinkByName(l.SrvIf)
		if err != nil {
			t.Fatal(err)
		}
		fs, err := netlink.FilterList(nl, netlink.HANDLE_MIN_INGRESS)
		if err != nil {
			return // no clsact qdisc
		}
		for _, f := range fs {
			if b, ok := f.(*netlink.BpfFilter); ok {
				id = uint32(b.Id)
			}
		}
	})
	return id
}

// The tc mode of kernels without tcx (before 6.6), forced here: a clsact
// direct-action filter, its program pinned instead of a link. The same
// filtering, status, atomic switch (one filter replace), adoption and
// detach as with tcx.
func TestTCModeClsact(t *testing.T) {
	t.Setenv("XDPGUARD_TEST_CLSACT", "1") // the daemon (a test-hooks build) inherits it
	l := NewLab(t)
	l.Listen(8022, 8080, 7777)
	l.WritePolicy(labPolicy)
	d := l.StartDaemon("--mode", "tc")
	st := statusOf(t, l)
	if st.Mode != "tc" || !st.Enforcing || st.ProgramID == 0 || clsactProgram(t, l) != st.ProgramID {
		t.Fatalf("status %+v, clsact filter program %d", st, clsactProgram(t, l))
	}
	if ids := tcxIngress(t, l); len(ids) != 0 {
		t.Errorf("tcx programs %v in clsact mode", ids)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "open", 7777: "filtered"})
	if v := Metric(d.Scrape(), "xdpguard_port_drops_total", `port="7777"`, `reason="port_not_allowed"`); v < 1 {
		t.Errorf("port 7777 drops = %v", v)
	}

	d.Mark()
	l.WritePolicy("tcp:\n  allow: [8022, 7777]\n")
	d.Signal(syscall.SIGHUP)
	d.WaitLog(`policy reloaded`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "open", 8080: "filtered"})
	st2 := statusOf(t, l)
	if st2.ProgramID == st.ProgramID || !st2.Enforcing || clsactProgram(t, l) != st2.ProgramID {
		t.Errorf("after the reload: status %+v (was program %d), filter program %d", st2, st.ProgramID, clsactProgram(t, l))
	}

	d.Stop()
	d = l.StartDaemon()
	d.WaitLog(`attached.*adopted=true.*mode=tc`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "open", 8080: "filtered"})
	d.Stop()
	sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "detach", "--iface", l.SrvIf)
	if id := clsactProgram(t, l); id != 0 {
		t.Errorf("detach left the clsact filter (program %d)", id)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "open"})
}
