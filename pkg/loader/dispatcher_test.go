package loader

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// XDP verdicts (enum xdp_action).
const (
	xdpActDrop = 1
	xdpActPass = 2
)

// dispatcherLab is a namespace with a veth pair for the dispatcher tests,
// removed with everything pinned for it when the test ends.
type dispatcherLab struct {
	t       *testing.T
	ns      string
	iface   string
	ifindex int
	pinRoot string
}

func newDispatcherLab(t *testing.T) *dispatcherLab {
	t.Helper()
	testutil.RequirePrivileged(t)
	id := testutil.UniqueID()
	l := &dispatcherLab{t: t, ns: "xgd-" + id, iface: "xgd" + id}
	if err := testutil.NewNamespaces(l.ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testutil.DeleteNamespaces(l.ns) })
	if err := testutil.Veth(l.iface, l.ns, l.iface+"p", l.ns); err != nil {
		t.Fatal(err)
	}
	idx, _, err := testutil.LinkOf(l.ns, l.iface)
	if err != nil {
		t.Fatal(err)
	}
	l.ifindex = idx
	// libxdp's pins, xdp-filter's and xdpguard's on a bpffs of the test's
	// own (LIBXDP_BPFFS): the host's dispatchers (on an interface of the
	// same index in another namespace) and its xdp-filter are never seen,
	// let alone cleaned up. Unmounting it releases what is pinned there.
	bpffs := t.TempDir()
	if err := unix.Mount("bpf", bpffs, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount a bpffs for the test: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(bpffs, unix.MNT_DETACH) })
	t.Setenv("LIBXDP_BPFFS", bpffs)
	l.pinRoot = filepath.Join(bpffs, "xgtest-"+id)
	// Registered last, so run first, while the interface is there: the
	// tools' own pins go with their programs.
	t.Cleanup(func() {
		_ = testutil.InNS(l.ns, func() error {
			_ = exec.Command("xdp-filter", "unload", "--all").Run()
			_ = exec.Command("xdp-loader", "unload", "--all", l.iface).Run()
			return nil
		})
	})
	return l
}

// in runs fn in the lab's namespace.
func (l *dispatcherLab) in(fn func() error) {
	l.t.Helper()
	if err := testutil.InNS(l.ns, fn); err != nil {
		l.t.Fatal(err)
	}
}

// tool runs one of xdp-tools' commands in the namespace (the child
// inherits the locked thread's namespace; the mount namespace, and so
// libxdp's pins, are the test's).
func (l *dispatcherLab) tool(args ...string) string {
	l.t.Helper()
	var out []byte
	l.in(func() error {
		var err error
		out, err = exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	})
	return string(out)
}

// order is the names of the dispatcher's programs, slot by slot.
func (l *dispatcherLab) order() []string {
	l.t.Helper()
	var names []string
	l.in(func() error {
		d, err := readDispatcher(l.ifindex)
		if err != nil {
			return err
		}
		defer d.close()
		for _, c := range d.comps {
			names = append(names, c.name)
		}
		return nil
	})
	return names
}

// run sends frame through the program attached to the interface (the
// dispatcher, with every component in its slot) and returns the verdict.
func (l *dispatcherLab) run(frame testpkt.Frame) uint32 {
	l.t.Helper()
	var ret uint32
	l.in(func() error {
		d, err := readDispatcher(l.ifindex)
		if err != nil {
			return err
		}
		defer d.close()
		ret, err = d.prog.Run(&ebpf.RunOptions{Data: frame.Bytes()})
		return err
	})
	return ret
}

// componentCounter sums slot value key of the map called mapName that the
// dispatcher's program called prog uses: how the test sees that another
// tool's program ran.
func (l *dispatcherLab) componentCounter(prog, mapName string, key uint32) uint64 {
	l.t.Helper()
	var n uint64
	l.in(func() error {
		d, err := readDispatcher(l.ifindex)
		if err != nil {
			return err
		}
		defer d.close()
		for _, c := range d.comps {
			if c.name != prog {
				continue
			}
			info, err := c.prog.Info()
			if err != nil {
				return err
			}
			ids, _ := info.MapIDs()
			for _, id := range ids {
				m, err := ebpf.NewMapFromID(id)
				if err != nil {
					return err
				}
				mi, _ := m.Info()
				if mi == nil || mi.Name != mapName {
					m.Close()
					continue
				}
				defer m.Close()
				return sumFirstWords(m, key, &n)
			}
			return fmt.Errorf("%s has no map %s", prog, mapName)
		}
		return fmt.Errorf("no program %s in the dispatcher", prog)
	})
	return n
}

// sumFirstWords adds the first u64 of m's value at key, over every CPU
// for a per-CPU map.
func sumFirstWords(m *ebpf.Map, key uint32, n *uint64) error {
	size := int(m.ValueSize())
	if m.Type() == ebpf.PerCPUArray || m.Type() == ebpf.PerCPUHash {
		var vals [][]byte
		if err := m.Lookup(key, &vals); err != nil {
			return err
		}
		for _, v := range vals {
			*n += leU64(v)
		}
		return nil
	}
	v := make([]byte, size)
	if err := m.Lookup(key, v); err != nil {
		return err
	}
	*n += leU64(v)
	return nil
}

func leU64(b []byte) (v uint64) {
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func dispatcherPolicy(t *testing.T, ports string) *policy.Policy {
	t.Helper()
	pol, err := policy.Parse("test.yaml", []byte("tcp:\n  allow: ["+ports+"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// counterObject is a plain XDP program that counts what it sees and passes
// it: the program xdp-loader loads beside the others. The kernel matrix
// builds it on the host (XDPGUARD_COUNTER_OBJ); elsewhere clang does here.
func counterObject(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("XDPGUARD_COUNTER_OBJ"); p != "" {
		return p
	}
	out := filepath.Join(t.TempDir(), "counter.o")
	cmd := exec.Command("clang-19", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c", "testdata/counter.c", "-o", out)
	b, err := cmd.CombinedOutput()
	testutil.Require(t, err, "build testdata/counter.c with clang-19: "+string(b))
	return out
}

// freplaceRefused skips when libxdp itself could not build a dispatcher
// here: this kernel refuses freplace programs (lockdown or a BPF LSM, as on
// the development host), which no program can work around. This is a skip
// by the kernel's capability, not by privilege: CI proves the dispatcher
// in the kernel matrix's guests, where XDPGUARD_KERNEL_MATRIX=1 makes it a
// failure instead.
func freplaceRefused(t *testing.T, err error) {
	t.Helper()
	if os.Getenv("XDPGUARD_KERNEL_MATRIX") != "" {
		t.Fatalf("libxdp's dispatcher is refused in the kernel matrix: %v", err)
	}
	t.Skipf("this kernel refuses freplace programs (%v): libxdp's dispatcher cannot work here; the kernel matrix (test/kernels) runs this test", err)
}

// TestJoinsLibxdpDispatcher: with Debian's xdp-tools on the same veth,
// xdp-filter and a program xdp-loader adds run in one libxdp dispatcher
// with xdpguard, xdpguard first; counters prove each ran, in order; a
// policy switch, a restart (adoption), another tool's unload and
// xdpguard's detach each leave the others working.
func TestJoinsLibxdpDispatcher(t *testing.T) {
	for _, tool := range []string{"xdp-filter", "xdp-loader"} {
		_, err := exec.LookPath(tool)
		testutil.Require(t, err, tool+" (Debian package xdp-tools)")
	}
	l := newDispatcherLab(t)
	// The peer down: nothing but the test's frames (no IPv6 DAD, no
	// router solicitations) reaches the counters.
	if err := testutil.Run("ip", "-n", l.ns, "link", "set", l.iface+"p", "down"); err != nil {
		t.Fatal(err)
	}
	counter := counterObject(t)
	syn := func(port uint16) testpkt.Frame { return testpkt.NewSYN("192.0.2.7", "198.51.100.1", port) }
	xdpfilt := func(action uint32) uint64 { return l.componentCounter("xdpfilt_alw_tcp", "xdp_stats_map", action) }

	// xdp-filter first: libxdp makes the dispatcher. Port 3307 is what it
	// denies.
	out := l.tool("xdp-filter", "load", "-v", "-m", "native", "-f", "tcp", l.iface) // -v: libxdp's reasons
	t.Logf("xdp-filter load: %s", lastLines(out, 3))
	l.tool("xdp-filter", "port", "-m", "dst", "3307")
	var derr error
	l.in(func() error {
		d, err := readDispatcher(l.ifindex)
		d.close()
		derr = err
		return nil
	})
	if errors.Is(derr, errNotDispatcher) && strings.Contains(out, "without dispatcher") && strings.Contains(out, "Operation not permitted") {
		// libxdp fell back to attaching its program alone: it could not
		// load an freplace program.
		freplaceRefused(t, fmt.Errorf("xdp-filter attached without a dispatcher: %w: %s", unix.EPERM, lastLines(out, 4)))
	}
	if got := l.order(); !slices.Equal(got, []string{"xdpfilt_alw_tcp"}) {
		t.Fatalf("xdp-filter's dispatcher runs %v", got)
	}

	var g *Guard
	l.in(func() error {
		var err error
		g, _, err = Attach(l.pinRoot, l.iface, ModeAuto, dispatcherPolicy(t, "80, 3307"))
		return err // libxdp built a dispatcher: this kernel takes freplace, so any error is xdpguard's
	})
	if !g.Placement.Dispatcher || g.Placement.Mode != ModeNative || !strings.Contains(g.Placement.Why, "libxdp's dispatcher") {
		t.Fatalf("placement %+v, want a slot of libxdp's native dispatcher", g.Placement)
	}
	if got := l.order(); !slices.Equal(got, []string{"xdpguard", "xdpfilt_alw_tcp"}) {
		t.Fatalf("after the join the dispatcher runs %v, want xdpguard first", got)
	}
	ours := func() (pass, drop uint64) {
		s, err := g.State()
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.Reasons()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range r {
			if datapath.Reason(i).Dropped() {
				drop += v
			} else {
				pass += v
			}
		}
		return pass, drop
	}

	// A closed port: xdpguard drops it and the chain ends there.
	p0, d0 := ours()
	f0 := xdpfilt(xdpActPass) + xdpfilt(xdpActDrop)
	if v := l.run(syn(3306)); v != xdpActDrop {
		t.Fatalf("SYN to closed 3306: verdict %d, want XDP_DROP", v)
	}
	if _, d := ours(); d != d0+1 {
		t.Fatalf("xdpguard's drops %d -> %d, want one more", d0, d)
	}
	if f := xdpfilt(xdpActPass) + xdpfilt(xdpActDrop); f != f0 {
		t.Fatalf("xdp-filter saw a frame xdpguard dropped (%d -> %d): it ran first", f0, f)
	}
	// Open in xdpguard, denied by xdp-filter: xdpguard passes, xdp-filter
	// drops.
	fd := xdpfilt(xdpActDrop)
	if v := l.run(syn(3307)); v != xdpActDrop {
		t.Fatalf("SYN to 3307 (xdp-filter's denied port): verdict %d, want XDP_DROP", v)
	}
	if p, _ := ours(); p != p0+1 {
		t.Fatalf("xdpguard's passes %d -> %d, want one more", p0, p)
	}
	if f := xdpfilt(xdpActDrop); f != fd+1 {
		t.Fatalf("xdp-filter's drops %d -> %d, want one more: it did not run after xdpguard", fd, f)
	}
	if v := l.run(syn(80)); v != xdpActPass {
		t.Fatalf("SYN to 80, open in both: verdict %d, want XDP_PASS", v)
	}

	// xdp-loader adds a third program: libxdp rebuilds the dispatcher with
	// xdpguard's component in its slot and priority.
	l.tool("xdp-loader", "load", "-m", "native", l.iface, counter)
	if got := l.order(); !slices.Equal(got, []string{"xdpguard", "xdpfilt_alw_tcp", "xdpg_counter"}) {
		t.Fatalf("after xdp-loader the dispatcher runs %v", got)
	}
	if st := l.tool("xdp-loader", "status", l.iface); !strings.Contains(st, "xdpguard") || !strings.Contains(st, "xdpg_counter") {
		t.Fatalf("xdp-loader status does not list both programs:\n%s", st)
	}
	counted := func() uint64 { return l.componentCounter("xdpg_counter", "xdpg_counted", 0) }
	id, _ := g.ProgramID()
	l.in(func() error {
		if _, running, err := Runs(l.ifindex, uint32(id)); err != nil || !running {
			return fmt.Errorf("Runs after xdp-loader's rebuild: %v, %v", running, err)
		}
		return nil
	})
	c0 := counted()
	l.run(syn(80))
	l.run(syn(3306))
	if c := counted(); c != c0+1 {
		t.Fatalf("the counter saw %d frames, want 1 (the one both others passed)", c-c0)
	}

	// A policy switch builds a new dispatcher; the others stay, in order.
	l.in(func() error { return g.Apply(dispatcherPolicy(t, "80, 3306, 3307")) })
	if got := l.order(); !slices.Equal(got, []string{"xdpguard", "xdpfilt_alw_tcp", "xdpg_counter"}) {
		t.Fatalf("after a policy switch the dispatcher runs %v", got)
	}
	if v := l.run(syn(3306)); v != xdpActPass {
		t.Fatalf("SYN to 3306, opened by the switch: verdict %d, want XDP_PASS", v)
	}
	if v := l.run(syn(3305)); v != xdpActDrop {
		t.Fatalf("SYN to closed 3305 after the switch: verdict %d, want XDP_DROP", v)
	}

	// xdp-filter leaves: xdpguard and the counter go on.
	l.tool("xdp-filter", "unload", l.iface)
	if got := l.order(); !slices.Equal(got, []string{"xdpguard", "xdpg_counter"}) {
		t.Fatalf("after xdp-filter unload the dispatcher runs %v", got)
	}
	if v := l.run(syn(3307)); v != xdpActPass {
		t.Fatalf("SYN to 3307 with xdp-filter gone: verdict %d, want XDP_PASS", v)
	}
	if v := l.run(syn(3305)); v != xdpActDrop {
		t.Fatalf("SYN to closed 3305 with xdp-filter gone: verdict %d, want XDP_DROP", v)
	}

	// A restart adopts the slot.
	g.Close()
	l.in(func() error {
		var adopted bool
		var err error
		g, adopted, err = Attach(l.pinRoot, l.iface, ModeAuto, dispatcherPolicy(t, "80, 3306, 3307"))
		if err == nil && (!adopted || !g.Placement.Dispatcher) {
			err = fmt.Errorf("restart: adopted %v, placement %+v; want the slot adopted", adopted, g.Placement)
		}
		return err
	})
	if v := l.run(syn(3305)); v != xdpActDrop {
		t.Fatalf("SYN to closed 3305 after the restart: verdict %d, want XDP_DROP", v)
	}
	g.Close()

	// A slot whose link pin is lost (a crash between the swap and the
	// pin) is still found by the interface's pinned maps: adopted, never
	// joined twice.
	if err := os.Remove(filepath.Join(l.pinRoot, l.iface, datapath.LinkPin)); err != nil {
		t.Fatal(err)
	}
	l.in(func() error {
		var adopted bool
		var err error
		g, adopted, err = Attach(l.pinRoot, l.iface, ModeAuto, dispatcherPolicy(t, "80, 3306, 3307"))
		if err == nil && !adopted {
			err = errors.New("a slot without its link pin was not adopted")
		}
		return err
	})
	if got := l.order(); !slices.Equal(got, []string{"xdpguard", "xdpg_counter"}) {
		t.Fatalf("after adopting a slot without its link pin the dispatcher runs %v", got)
	}
	g.Close()

	// xdpguard leaves: the counter runs alone and sees what xdpguard
	// dropped before.
	l.in(func() error { return Detach(l.pinRoot, l.iface) })
	if got := l.order(); !slices.Equal(got, []string{"xdpg_counter"}) {
		t.Fatalf("after xdpguard's detach the dispatcher runs %v", got)
	}
	c0 = counted()
	if v := l.run(syn(3305)); v != xdpActPass {
		t.Fatalf("SYN to 3305 with xdpguard gone: verdict %d, want XDP_PASS", v)
	}
	if c := counted(); c != c0+1 {
		t.Fatalf("the counter saw %d frames after xdpguard left, want 1", c-c0)
	}
	l.tool("xdp-loader", "unload", "--all", l.iface)
	l.in(func() error {
		if mode, _, err := AttachMode(l.ifindex); err != nil || mode != "none" {
			return fmt.Errorf("after unloading everything the interface runs %q (%v)", mode, err)
		}
		return nil
	})
}

// TestJoinRefusedLeavesDispatcher: a join that cannot happen (here the
// dispatcher runs in generic mode and native was asked for; on a kernel
// that refuses freplace, the component's load) leaves the dispatcher in
// place, untouched, and no pins behind.
func TestJoinRefusedLeavesDispatcher(t *testing.T) {
	l := newDispatcherLab(t)
	var before ebpf.ProgramID
	l.in(func() error {
		lock, err := lockLibxdp()
		if err != nil {
			return err
		}
		defer lock.Close()
		links, err := rebuild(l.ifindex, modeGeneric, nil, nil)
		if err != nil {
			return err
		}
		for _, k := range links {
			k.Close()
		}
		d, err := readDispatcher(l.ifindex)
		if err != nil {
			return fmt.Errorf("the dispatcher xdpguard built is not one libxdp's reader takes: %w", err)
		}
		before = d.id
		d.close()
		return nil
	})
	l.in(func() error {
		_, _, err := Attach(l.pinRoot, l.iface, ModeNative, dispatcherPolicy(t, "80"))
		if err == nil {
			return errors.New("native join of a generic dispatcher succeeded")
		}
		// The mode, or, where the kernel refuses freplace, that.
		if !strings.Contains(err.Error(), "runs in generic mode") && !strings.Contains(err.Error(), "this kernel refuses") {
			return fmt.Errorf("refused for another reason: %w", err)
		}
		t.Logf("refused: %v", err)
		nl, err := netlink.LinkByIndex(l.ifindex)
		if err != nil {
			return err
		}
		if x := nl.Attrs().Xdp; x == nil || ebpf.ProgramID(x.ProgId) != before {
			return fmt.Errorf("the interface runs %+v after the refusal, want dispatcher %d", x, before)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(l.pinRoot, l.iface)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused join left %s: %v", filepath.Join(l.pinRoot, l.iface), err)
	}
	dirs, _ := filepath.Glob(filepath.Join(libxdpDir(), "dispatch-*"))
	if len(dirs) != 1 || !strings.HasSuffix(dirs[0], fmt.Sprintf("-%d-%d", l.ifindex, before)) {
		t.Fatalf("dispatcher pins after the refusal: %v, want only dispatcher %d's", dirs, before)
	}
}
