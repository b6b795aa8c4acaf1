package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/crypto/bcrypt"

	"github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/pkg/history"
)

const labPolicy = `tcp:
  allow: [8022, 8080, 9000-9002]
`

// Listening ports: 8022 and 8080 are allowed, 7777 listens but the policy
// closes it, 9000 is allowed with nothing listening.
func startLab(t *testing.T, policy string) (*Lab, *Daemon) {
	l := NewLab(t)
	l.Listen(8022, 8080, 7777)
	l.WritePolicy(policy)
	return l, l.StartDaemon()
}

func expectPorts(t *testing.T, l *Lab, src, dst string, want map[int]string) {
	t.Helper()
	for port, w := range want {
		if got := l.Connect(src, dst, port); got != w {
			t.Errorf("%s -> %s:%d: %s, want %s", src, dst, port, got, w)
		}
	}
}

func TestConnectionsIPv4AndIPv6(t *testing.T) {
	l, d := startLab(t, labPolicy)
	want := map[int]string{8022: "open", 8080: "open", 7777: "filtered", 9000: "refused"}
	expectPorts(t, l, l.CliV4, l.SrvV4, want)
	expectPorts(t, l, l.CliV6, l.SrvV6, want)

	m := d.Scrape()
	if v := Metric(m, "xdpguard_drops_total", `reason="port_not_allowed"`); v < 2 {
		t.Errorf("port_not_allowed drops = %v, want >= 2 (one SYN per family at least)", v)
	}
	if v := Metric(m, "xdpguard_port_drops_total", `port="7777"`, `reason="port_not_allowed"`); v < 2 {
		t.Errorf("port 7777 drops = %v", v)
	}
	if v := Metric(m, "xdpguard_passed_total", `reason="not_syn"`); v < 1 {
		t.Errorf("not_syn passes = %v: established traffic not counted", v)
	}
	if v := Metric(m, "xdpguard_attached", `mode="tc"`); v != 1 {
		t.Errorf("attached{mode=tc} (auto on veth) = %v", v)
	}

	var st []struct {
		Interface string
		Enforcing bool
		Mode      string
		Dropped   uint64
	}
	if err := json.Unmarshal([]byte(l.Status()), &st); err != nil || len(st) != 1 {
		t.Fatalf("status: %v %s", err, l.Status())
	}
	if !st[0].Enforcing || st[0].Interface != l.SrvIf || st[0].Dropped < 2 {
		t.Errorf("status %+v", st[0])
	}
}

func TestReloadOnSIGHUPAndFileChange(t *testing.T) {
	l, d := startLab(t, labPolicy)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered", 8080: "open"})

	// SIGHUP: 7777 opens, 8080 closes. Writing the file also starts the
	// watcher's 200 ms debounce; the SIGHUP nearly always comes first, but
	// a daemon held off the CPU past the debounce may take the file change
	// first and find the policy unchanged at the SIGHUP. Either way the
	// SIGHUP read the file, and one of the two switched to it.
	d.Mark()
	l.WritePolicy("tcp:\n  allow: [8022, 7777]\n")
	d.Signal(syscall.SIGHUP)
	d.WaitLog(`policy (reloaded|unchanged).*trigger=SIGHUP`)
	d.WaitLog(`policy reloaded.*trigger=(SIGHUP|"file changed")`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "open", 8080: "filtered", 8022: "open"})

	// A bad policy is refused; the last good one stays.
	d.Mark()
	l.WritePolicy("tcp:\n  allow: [8022, 8080-70]\n")
	d.Signal(syscall.SIGHUP)
	d.WaitLog(`policy reload refused.*policy.yaml:2:\d+: tcp.allow\[1\]: range`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "open", 8080: "filtered"})
	m := d.Scrape()
	if Metric(m, "xdpguard_policy_reloads_total", `result="failure"`) < 1 || Metric(m, "xdpguard_policy_last_reload_success") != 0 {
		t.Errorf("reload metrics after a refused reload:\n%s", grep(m, "reload"))
	}
	if s := l.Status(); !strings.Contains(s, "policy file: ") || !strings.Contains(s, "is reversed") {
		t.Errorf("status does not show the refused file's error:\n%s", s)
	}

	// Saving the file is enough: no signal.
	d.Mark()
	l.WritePolicy(labPolicy)
	d.WaitLog(`policy reloaded.*trigger="file changed"`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered", 8080: "open"})
	if g := Metric(d.Scrape(), "xdpguard_policy_generation"); g != 3 {
		t.Errorf("generation %v after two good reloads, want 3", g)
	}
}

// The filter outlives the daemon: SIGKILL leaves it enforcing, and a new
// daemon adopts the pins with the counters intact.
func TestSurvivesKillAndRestartAdopts(t *testing.T) {
	l, d := startLab(t, labPolicy)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered"})
	before := Metric(d.Scrape(), "xdpguard_drops_total", `reason="port_not_allowed"`)
	d.Kill()

	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered", 8080: "open"})
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{7777: "filtered", 8080: "open"})

	d2 := l.StartDaemon()
	expectAdopted(t, d2, before, 2) // two probes of 7777 while no daemon ran
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered", 8080: "open"})

	// A clean stop also leaves the filter; detach removes it.
	d2.Stop()
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered"})
	out := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "detach", "--iface", l.SrvIf)
	if !strings.Contains(out, "detached "+l.SrvIf) {
		t.Fatalf("detach: %s", out)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "open"})
	if s := l.Status(); strings.TrimSpace(s) != "[]" {
		t.Errorf("status after detach: %s", s)
	}
}

// expectAdopted checks that d took over the pinned filter of a daemon that
// went before it: it adopted, the policy generation went from 1 to 2, and
// the port_not_allowed drops counted before (plus at least newDrops since)
// are still there.
func expectAdopted(t *testing.T, d *Daemon, dropsBefore, newDrops float64) {
	t.Helper()
	d.WaitLog(`attached.*adopted=true`)
	m := d.Scrape()
	if after := Metric(m, "xdpguard_drops_total", `reason="port_not_allowed"`); after < dropsBefore+newDrops {
		t.Errorf("port_not_allowed drops %v now, %v before (+%v expected since): counters lost or not counted", after, dropsBefore, newDrops)
	}
	if g := Metric(m, "xdpguard_policy_generation"); g != 2 {
		t.Errorf("policy generation %v after the takeover, want 2", g)
	}
}

func TestSecondDaemonRefusedAndDetachRefusedWhileRunning(t *testing.T) {
	l, _ := startLab(t, labPolicy)
	out, err := runIn(l, "run", "--iface", l.SrvIf, "--policy", l.dir+"/policy.yaml", "--metrics-addr", "")
	if err == nil || !strings.Contains(out, "another xdpguard process manages this interface") {
		t.Errorf("second daemon: %v\n%s", err, out)
	}
	out, err = runIn(l, "detach", "--iface", l.SrvIf)
	if err == nil || !strings.Contains(out, "stop it first") {
		t.Errorf("detach under a running daemon: %v\n%s", err, out)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered", 8080: "open"})
}

func TestBadStartLeavesNothing(t *testing.T) {
	l := NewLab(t)
	l.Listen(7777)
	l.WritePolicy("tcp:\n  allow: []\n")
	out, err := runIn(l, "run", "--iface", l.SrvIf, "--policy", l.dir+"/policy.yaml")
	if err == nil || !strings.Contains(out, "tcp.allow: empty allow-list") {
		t.Fatalf("empty policy accepted: %v\n%s", err, out)
	}
	l.WritePolicy(labPolicy)
	out, err = runIn(l, "run", "--iface", l.SrvIf+",nosuchif0", "--policy", l.dir+"/policy.yaml")
	if err == nil || !strings.Contains(out, `interface "nosuchif0"`) {
		t.Fatalf("missing interface: %v\n%s", err, out)
	}
	// The interface that did attach was rolled back.
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "open"})

	// A metrics address already in use fails the start before any attach.
	var busy net.Listener
	l.InNS(l.Server, func() { busy, err = net.Listen("tcp", "127.0.0.1:9477") })
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	out, err = runIn(l, "run", "--iface", l.SrvIf, "--policy", l.dir+"/policy.yaml")
	if err == nil || !strings.Contains(out, "--metrics-addr") {
		t.Fatalf("busy metrics port: %v\n%s", err, out)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "open"})
	if s := l.Status(); strings.TrimSpace(s) != "[]" {
		t.Errorf("status after failed start: %s", s)
	}
}

func runIn(l *Lab, args ...string) (string, error) {
	cmdArgs := append([]string{"netns", "exec", l.Server, xdpguardBin}, args...)
	out, err := execCombined("ip", cmdArgs...)
	return out, err
}

func grep(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// Several interfaces, generic mode: each is filtered and labelled, and a
// reload switches them all.
func TestTwoInterfacesGenericMode(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022, 8080, 7777)
	srv2, srv4b, cli4b := l.AddLink()
	l.WritePolicy(labPolicy)
	d := l.StartDaemon("--mode", "generic", "--iface", l.SrvIf+","+srv2)
	for _, p := range [][2]string{{l.CliV4, l.SrvV4}, {cli4b, srv4b}} {
		expectPorts(t, l, p[0], p[1], map[int]string{7777: "filtered", 8080: "open"})
	}
	m := d.Scrape()
	for _, iface := range []string{l.SrvIf, srv2} {
		if v := Metric(m, "xdpguard_attached", `interface="`+iface+`"`, `mode="generic"`); v != 1 {
			t.Errorf("%s: attached{mode=generic} = %v", iface, v)
		}
		if v := Metric(m, "xdpguard_drops_total", `interface="`+iface+`"`, `reason="port_not_allowed"`); v < 1 {
			t.Errorf("%s: no port_not_allowed drops counted", iface)
		}
	}
	d.Mark()
	l.WritePolicy("tcp:\n  allow: [7777]\n")
	d.Signal(syscall.SIGHUP)
	d.WaitLog(`policy reloaded`)
	for _, p := range [][2]string{{l.CliV4, l.SrvV4}, {cli4b, srv4b}} {
		expectPorts(t, l, p[0], p[1], map[int]string{7777: "open", 8080: "filtered"})
	}
}

// A reload that fails on one of two interfaces is refused as a whole: the
// interface already switched is put back on the previous policy, so both
// keep enforcing the same one. The failure is injected on the second
// interface (XDPGUARD_TEST_FAIL_SWITCH); the first one's generation shows
// it was switched and switched back.
func TestReloadFailingOnOneInterfaceRollsBack(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022, 8080, 7777)
	srv2, srv4b, cli4b := l.AddLink()
	l.WritePolicy(labPolicy)
	t.Setenv("XDPGUARD_TEST_FAIL_SWITCH", srv2) // the daemon inherits it
	d := l.StartDaemon("--mode", "generic", "--iface", l.SrvIf+","+srv2)
	t.Setenv("XDPGUARD_TEST_FAIL_SWITCH", "")
	paths := [][2]string{{l.CliV4, l.SrvV4}, {cli4b, srv4b}}
	for _, p := range paths {
		expectPorts(t, l, p[0], p[1], map[int]string{7777: "filtered", 8080: "open"})
	}
	d.Mark()
	l.WritePolicy("tcp:\n  allow: [8022, 7777]\n") // the file change is the one trigger
	d.WaitLog(`policy reload refused.*XDPGUARD_TEST_FAIL_SWITCH`)
	for _, p := range paths {
		expectPorts(t, l, p[0], p[1], map[int]string{7777: "filtered", 8080: "open"})
	}
	m := d.Scrape()
	if g := Metric(m, "xdpguard_policy_generation", `interface="`+l.SrvIf+`"`); g != 3 {
		t.Errorf("%s: generation %v, want 3 (switched, then rolled back)", l.SrvIf, g)
	}
	if g := Metric(m, "xdpguard_policy_generation", `interface="`+srv2+`"`); g != 1 {
		t.Errorf("%s: generation %v, want 1 (never switched)", srv2, g)
	}
	if v := Metric(m, "xdpguard_policy_last_reload_success"); v != 0 {
		t.Errorf("last_reload_success %v after a refused reload", v)
	}
	// The history says it was rolled back, and from what to what.
	recs, _, err := history.Read(l.AuditLog(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[len(recs)-1]; r.Result != history.ResultRolledBack || r.Before != r.After || !strings.Contains(r.Error, "XDPGUARD_TEST_FAIL_SWITCH") ||
		r.Change == nil || len(r.Change.Ports) == 0 {
		t.Errorf("the last record is not the rollback: %+v", r)
	}
}

// Changing max_sources gives the new generation a fresh table of the new
// size, which replaces the pinned one; a restart adopts it.
func TestReloadResizesSourceTable(t *testing.T) {
	withTable := func(n int) string {
		return fmt.Sprintf("tcp:\n  allow: [8022, 8080]\nratelimit:\n  syn:\n    rate: 10\n    burst: 10\n    max_sources: %d\n", n)
	}
	l, d := startLab(t, withTable(1024))
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "open"})
	if c := Metric(d.Scrape(), "xdpguard_ratelimit_sources_capacity"); c != 1024 {
		t.Fatalf("capacity %v, want 1024", c)
	}
	d.Mark()
	l.WritePolicy(withTable(4096))
	d.Signal(syscall.SIGHUP)
	d.WaitLog(`policy reloaded`)
	m := d.Scrape()
	if c := Metric(m, "xdpguard_ratelimit_sources_capacity"); c != 4096 {
		t.Fatalf("capacity after reload %v, want 4096", c)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "open", 7777: "filtered"})
	// (Scrapes share one collection a second: wait for a fresh one.)
	var n float64
	waitFor(t, "the fresh table's count", 10*time.Second, func() bool { n = Metric(d.Scrape(), "xdpguard_ratelimit_sources"); return n >= 1 })
	if n != 1 {
		t.Errorf("fresh table holds %v sources after one new connection, want 1", n)
	}

	d.Stop()
	d2 := l.StartDaemon()
	d2.WaitLog(`attached.*adopted=true`)
	if c := Metric(d2.Scrape(), "xdpguard_ratelimit_sources_capacity"); c != 4096 {
		t.Errorf("capacity after restart %v, want the pinned 4096", c)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "open", 7777: "filtered"})
}

// sources.deny cuts a source off entirely; sources.trust exempts it from the
// SYN limits; a reload moves a source from one list to the other at once.
func TestSourceListsOverVeth(t *testing.T) {
	const rate, burst = 1, 2
	limits := fmt.Sprintf("ratelimit:\n  syn:\n    rate: %d\n    burst: %d\n", rate, burst)
	l := NewLab(t)
	l.Listen(8022, 8080, 7777)
	l.WritePolicy(labPolicy + limits + "sources:\n  deny: [" + l.CliV4b + "]\n")
	d := l.StartDaemon()
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8080: "filtered"})
	firstBefore := time.Now()
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "open"})
	firstAfter := time.Now()
	if v := Metric(d.Scrape(), "xdpguard_drops_total", `reason="source_denied"`); v < 1 {
		t.Errorf("source_denied drops = %v", v)
	}

	d.Mark()
	l.WritePolicy(labPolicy + limits + "sources:\n  trust: [" + l.CliV4b + "]\n")
	d.Signal(syscall.SIGHUP)
	d.WaitLog(`policy reloaded`)
	for i := 0; i < 5; i++ {
		if got := l.Connect(l.CliV4b, l.SrvV4, 8080); got != "open" {
			t.Fatalf("trusted connect %d: %s", i, got)
		}
	}
	// The untrusted source used one SYN of its burst of 2 above, and earns
	// one more each second since (GCRA: the bucket refills at the rate, up
	// to the burst). It connects until a SYN is refused: that takes at
	// least the tokens it had at its first try here (1 if that came within
	// a second of the SYN above, as it does unless this machine is slow)
	// and at most the burst plus what the whole time earned (rate*t+burst,
	// less the SYN above). A tick of the coarse clock blurs each edge.
	const tick = 5 * time.Millisecond
	var results []string
	var firstTry, lastOpen time.Time
	for len(results) < 10 && !slices.Contains(results, "filtered") {
		start := time.Now()
		results = append(results, l.Connect(l.CliV4, l.SrvV4, 8022))
		if len(results) == 1 {
			firstTry = start
		}
		if results[len(results)-1] == "open" {
			lastOpen = time.Now()
		}
	}
	earned := func(d time.Duration) int { return int(rate * d.Seconds()) }
	lo := min(burst, burst-1+earned(firstTry.Sub(firstAfter)-tick))
	hi := burst - 1 + earned(lastOpen.Sub(firstBefore)+tick)
	t.Logf("untrusted source, first try %v after its first SYN: %v (%d to %d open)", firstTry.Sub(firstAfter).Round(time.Millisecond), results, lo, max(lo, hi))
	if opens := len(results) - 1; results[opens] != "filtered" || slices.ContainsFunc(results[:opens], func(r string) bool { return r != "open" }) || opens < lo || opens > hi {
		t.Errorf("untrusted source over its limit, first try %v after its first SYN: %v, want %d to %d open, then filtered",
			firstTry.Sub(firstAfter).Round(time.Millisecond), results, lo, max(lo, hi))
	}
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{7777: "filtered"}) // port rules still apply
}

// A port opened to some sources only: they connect, others are filtered.
func TestScopedRuleOverVeth(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022, 7777)
	l.WritePolicy(fmt.Sprintf("tcp:\n  allow:\n    - 8022\n    - port: 7777\n      from: [%s, \"%s\"]\n", l.CliV4b, l.CliV6b))
	l.StartDaemon()
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{7777: "open", 8022: "open"})
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered", 8022: "open"})
	expectPorts(t, l, l.CliV6b, l.SrvV6, map[int]string{7777: "open"})
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{7777: "filtered"})
}

// udpEcho serves UDP echo on addr in namespace ns until the test ends.
func udpEcho(t *testing.T, l *Lab, ns, addr string) {
	var pc net.PacketConn
	var err error
	l.InNS(ns, func() { pc, err = net.ListenPacket("udp", addr) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

// udpAsk sends a datagram from ns to dst and reports whether the echo came
// back. Its socket takes an ephemeral source port, as a resolver's does.
func udpAsk(t *testing.T, l *Lab, ns, dst string) bool {
	var c net.Conn
	var err error
	l.InNS(ns, func() { c, err = net.Dial("udp", dst) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("query")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	return err == nil && string(buf[:n]) == "query"
}

// udp.allow opens listed ports; others are dropped, but replies to the
// host's own queries (to its ephemeral ports) still arrive.
func TestUDPOverVeth(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022)
	l.WritePolicy("tcp:\n  allow: [8022]\nudp:\n  allow: [5353]\n")
	d := l.StartDaemon()
	udpEcho(t, l, l.Server, "[::]:5353")
	udpEcho(t, l, l.Server, "[::]:1161")
	// A resolver on the other side, bound to one address per family so it
	// answers from the address that was asked.
	udpEcho(t, l, l.Client, net.JoinHostPort(l.CliV4, "53"))
	udpEcho(t, l, l.Client, net.JoinHostPort(l.CliV6, "53"))

	for _, srv := range []string{l.SrvV4, l.SrvV6} {
		if !udpAsk(t, l, l.Client, net.JoinHostPort(srv, "5353")) {
			t.Errorf("allowed UDP port 5353 on %s: no answer", srv)
		}
		if udpAsk(t, l, l.Client, net.JoinHostPort(srv, "1161")) {
			t.Errorf("UDP port 1161 on %s answered: not filtered", srv)
		}
	}
	for _, resolver := range []string{l.CliV4, l.CliV6} {
		if !udpAsk(t, l, l.Server, net.JoinHostPort(resolver, "53")) {
			t.Errorf("DNS-style reply from %s did not reach the filtered host", resolver)
		}
	}
	m := d.Scrape()
	if Metric(m, "xdpguard_drops_total", `reason="udp_port_not_allowed"`) < 2 || Metric(m, "xdpguard_passed_total", `reason="udp_reply"`) < 2 ||
		Metric(m, "xdpguard_port_drops_total", `port="1161"`, `reason="udp_port_not_allowed"`) < 2 {
		t.Errorf("UDP metrics:\n%s", grep(m, "udp"))
	}
}

// A policy tried in monitor mode drops nothing but counts what it would
// drop; switching it to enforce applies it.
func TestMonitorThenEnforce(t *testing.T) {
	l, d := startLab(t, "mode: monitor\n"+labPolicy)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "open", 8080: "open"})
	m := d.Scrape()
	if Metric(m, "xdpguard_monitor_mode") != 1 || Metric(m, "xdpguard_monitored_drops_total", `reason="port_not_allowed"`) < 1 ||
		Metric(m, "xdpguard_drops_total", `reason="port_not_allowed"`) != 0 {
		t.Errorf("monitor metrics:\n%s", grep(m, "monitor")+"\n"+grep(m, "drops_total"))
	}
	if s := l.Status(); !strings.Contains(s, `"monitor": true`) {
		t.Errorf("status does not show monitor mode:\n%s", s)
	}
	d.Mark()
	l.WritePolicy(labPolicy)
	d.WaitLog(`policy reloaded`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered", 8080: "open"})
	if Metric(d.Scrape(), "xdpguard_monitor_mode") != 0 {
		t.Error("monitor_mode still 1 after switching to enforce")
	}
}

// allow_listening opens ports as services start listening and closes them
// when they stop; loopback-only listeners and deny_ports open nothing.
func TestAllowListeningFollowsSockets(t *testing.T) {
	l := NewLab(t)
	l.WritePolicy("tcp:\n  allow: [8022]\n  allow_listening: true\n  deny_ports: [6666]\n")
	l.Listen(8022)
	d := l.StartDaemon()
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered"})

	d.Mark()
	var lns []net.Listener
	for _, addr := range []string{"[::]:7777", "[::]:6666", "127.0.0.1:6000"} {
		lns = append(lns, l.ListenAddr(addr))
	}
	d.WaitLog(`listening ports changed`)
	// 6000 listens on loopback only: XDP lets the SYN through only if the
	// port was opened, and the stack then refuses it; filtered means closed.
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "open", 6666: "filtered", 6000: "filtered"})
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{7777: "open"})

	d.Mark()
	lns[0].Close()
	d.WaitLog(`listening ports changed`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered", 8022: "open"})

	// The history holds both listening syncs, with the port each moved.
	recs, _, err := history.Read(l.AuditLog(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var syncs []string
	for _, r := range recs {
		if r.Trigger == history.TriggerListening && r.Result == history.ResultApplied && r.Change != nil {
			for _, c := range r.Change.Ports {
				syncs = append(syncs, c.String())
			}
		}
	}
	if want := []string{"tcp 7777 opened to all", "tcp 7777 closed to all"}; !slices.Equal(syncs, want) {
		t.Errorf("listening syncs in the history: %q, want %q", syncs, want)
	}
}

// Started from an SSH session, run refuses a policy that would refuse that
// session, unless --force.
func TestLockOutProtection(t *testing.T) {
	l := NewLab(t)
	l.WritePolicy(labPolicy) // 22 is not allowed
	cmd := exec.Command("ip", "netns", "exec", l.Server, xdpguardBin, "run", "--iface", l.SrvIf, "--policy", l.dir+"/policy.yaml", "--metrics-addr", "")
	cmd.Env = append(os.Environ(), "SSH_CONNECTION="+l.CliV4+" 50000 "+l.SrvV4+" 22")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "would refuse new connections to port 22 from "+l.CliV4) {
		t.Fatalf("lock-out not refused: %v\n%s", err, out)
	}
	if s := l.Status(); strings.TrimSpace(s) != "[]" {
		t.Errorf("refused start left state: %s", s)
	}
	t.Setenv("SSH_CONNECTION", l.CliV4+" 50000 "+l.SrvV4+" 22")
	forced := l.StartDaemon("--force") // the lab's daemon inherits the environment
	forced.Stop()

	// Started from a session on an allowed port, the daemon refuses a
	// reload that would close it, and keeps the policy in force.
	t.Setenv("SSH_CONNECTION", l.CliV4+" 50000 "+l.SrvV4+" 8022")
	l.Listen(8022)
	l.WritePolicy("tcp:\n  allow: [8022]\n")
	d := l.StartDaemon()
	d.Mark()
	l.WritePolicy("tcp:\n  allow: [8080]\n")
	d.Signal(syscall.SIGHUP)
	d.WaitLog(`policy reload refused.*would refuse new connections to port 8022`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "open"})
}

// A temporary rule opens its port until it expires; the daemon withdraws
// it on time by itself.
func TestTemporaryRuleExpires(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022, 7777)
	rule := func(until time.Time) string {
		return fmt.Sprintf("tcp:\n  allow:\n    - 8022\n    - port: 7777\n      name: test-team\n      from: [%s]\n      expires: %s\n",
			l.CliV4, until.UTC().Format(time.RFC3339))
	}
	// Far from its expiry, the rule opens the port to its source only.
	l.WritePolicy(rule(time.Now().Add(time.Hour)))
	d := l.StartDaemon()
	d.WaitLog(`timed rules.*rule test-team: tcp 7777 from \[` + regexp.QuoteMeta(l.CliV4) + `/32\]: ACTIVE`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "open"})
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{7777: "filtered"})

	// Then it is set to expire in a few seconds. The reload must come
	// before the expiry (a file whose expiry is past is refused), and a
	// daemon started under a loaded machine may take seconds: the window
	// doubles until the reload lands well inside it.
	var until time.Time
	for window := 3 * time.Second; ; window *= 2 {
		if window > time.Minute {
			t.Fatalf("no reload came within %v of writing the file:\n%s", window/2, d.log)
		}
		until = time.Now().Add(window).Truncate(time.Second) // RFC 3339 in the file: whole seconds
		d.Mark()
		l.WritePolicy(rule(until))
		d.WaitLogWithin(`policy (reloaded|unchanged|reload refused).*trigger="file changed"`, window+10*time.Second)
		if time.Now().Add(time.Second).Before(until) {
			break
		}
	}
	expired := `timed rules changed.*rule test-team: tcp 7777 from \[` + regexp.QuoteMeta(l.CliV4) + `/32\]: inactive \(expired ` +
		regexp.QuoteMeta(until.UTC().Format(time.RFC3339))
	d.WaitLogWithin(expired, time.Until(until)+10*time.Second)
	if early := until.Sub(time.Now()); early > 0 {
		t.Errorf("the rule was withdrawn %v before it expired", early)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered", 8022: "open"})
}

var (
	documentedMetric = regexp.MustCompile("(?m)^\\| `(xdpguard_[a-z_]+)` \\|\\s*([a-z, ]*?)\\s*\\| (.*)\\|$")
	servedMetric     = regexp.MustCompile(`(?m)^# TYPE (xdpguard_[a-z_]+) `)
	reasonLabel      = regexp.MustCompile(`^(xdpguard_(?:drops|passed)_total)\{.*reason="([a-z_]+)"`)
)

// docs/metrics.md lists exactly the metrics /metrics serves, with their
// labels, and the reason values of drops_total and passed_total.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{} // name -> row
	for _, m := range documentedMetric.FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = m[2] + "|" + m[3]
	}
	// With a CrowdSec bouncer (its LAPI absent), whose series exist only
	// with one, and a syn_proxy: auto port engaged by a burst (the
	// engaged gauge exists only while a port proxies).
	l := NewLab(t)
	l.Listen(8022, 8080, 7777, 8443)
	key := filepath.Join(l.dir, "crowdsec.key")
	if err := os.WriteFile(key, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.WritePolicy("tcp:\n  allow: [8022, 8080, 9000-9002, {port: 8443, syn_proxy: auto}]\nsynproxy:\n  auto_above: 20\n  auto_hold: 10m\n" +
		"crowdsec:\n  url: http://127.0.0.1:1/\n  api_key_file: " + key + "\n")
	d := l.StartDaemon("--runtime-dir", l.dir)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered"}) // per-port series appear with drops
	tx := l.RawSender()
	var body string
	for deadline := time.Now().Add(30 * time.Second); ; {
		for i := 0; i < 200; i++ {
			if err := tx.Send(l.synFrame(fmt.Sprintf("198.19.0.%d", 1+i%200), l.SrvV4, 8443, uint16(30000+i))); err != nil {
				t.Fatal(err)
			}
		}
		if body = d.Scrape(); strings.Contains(body, "xdpguard_synproxy_engaged{") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	served := map[string]bool{}
	for _, m := range servedMetric.FindAllStringSubmatch(body, -1) {
		served[m[1]] = true
		if _, ok := documented[m[1]]; !ok {
			t.Errorf("%s is served but not in docs/metrics.md", m[1])
		}
	}
	for name, row := range documented {
		if !served[name] {
			t.Errorf("%s is in docs/metrics.md but not served", name)
		}
		// Every label a served sample carries is documented.
		for _, line := range strings.Split(body, "\n") {
			if !strings.HasPrefix(line, name+"{") {
				continue
			}
			for _, kv := range strings.Split(line[len(name)+1:strings.IndexByte(line, '}')], ",") {
				label := kv[:strings.IndexByte(kv, '=')]
				if !strings.Contains(strings.SplitN(row, "|", 2)[0], label) {
					t.Errorf("%s carries label %q, not documented", name, label)
				}
			}
		}
	}
	for _, line := range strings.Split(body, "\n") {
		if m := reasonLabel.FindStringSubmatch(line); m != nil && !strings.Contains(documented[m[1]], "`"+m[2]+"`") {
			t.Errorf("%s reason %q is not documented", m[1], m[2])
		}
	}
	if len(documented) < 15 {
		t.Fatalf("only %d metrics parsed from docs/metrics.md: the table format changed?", len(documented))
	}
}

// An interface already running someone else's XDP program is reported,
// not clobbered: run fails with a clear message and the program stays.
func TestForeignXDPProgramNotClobbered(t *testing.T) {
	l := NewLab(t)
	l.WritePolicy(labPolicy)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}, // XDP_PASS
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	l.InNS(l.Server, func() {
		link, lerr := netlink.LinkByName(l.SrvIf)
		if lerr == nil {
			lerr = netlink.LinkSetXdpFdWithFlags(link, prog.FD(), nl.XDP_FLAGS_SKB_MODE) // a netlink attach, as `ip link set xdp` does
		}
		err = lerr
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := runIn(l, "run", "--iface", l.SrvIf, "--policy", l.dir+"/policy.yaml", "--metrics-addr", "")
	if err == nil || !strings.Contains(out, "another XDP program is attached") {
		t.Fatalf("run over a foreign program: %v\n%s", err, out)
	}
	var attached bool
	l.InNS(l.Server, func() {
		link, lerr := netlink.LinkByName(l.SrvIf)
		attached = lerr == nil && link.Attrs().Xdp != nil && link.Attrs().Xdp.Attached
	})
	if !attached {
		t.Error("the foreign program was removed")
	}
	if s := l.Status(); strings.TrimSpace(s) != "[]" {
		t.Errorf("failed start left pins: %s", s)
	}
}

// Per-rule counters over real connections: a named rule counts its SYNs, a
// rule in monitor mode lets outsiders in and counts them, closed ports count
// under tcp/closed; a reload keeps a rule's counts while its name stays and
// removes the rules it drops, in /metrics and in `status`.
func TestRuleCountersOverVeth(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022, 7777)
	l.WritePolicy(fmt.Sprintf("tcp:\n  allow:\n    - {port: 8022, name: ssh}\n    - {port: 7777, from: [%s], mode: monitor, name: trial}\n", l.CliV4b))
	d := l.StartDaemon()
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "open", 7777: "open", 9999: "filtered"})
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{7777: "open"})
	m := d.Scrape()
	rule := func(m, name, verdict string) float64 {
		return Metric(m, "xdpguard_rule_packets_total", `rule="`+name+`"`, `verdict="`+verdict+`"`)
	}
	if rule(m, "ssh", "passed") != 1 || rule(m, "trial", "passed") != 1 || rule(m, "trial", "monitored") != 1 ||
		rule(m, "tcp/closed", "dropped") < 1 || rule(m, "trial", "dropped") != 0 {
		t.Errorf("rule counters:\n%s", grep(m, "rule_packets"))
	}
	if s := l.Status(); !strings.Contains(s, `"name": "trial"`) || !strings.Contains(s, `"monitored": 1`) {
		t.Errorf("status does not show the rules:\n%s", s)
	}

	d.Mark()
	l.WritePolicy("tcp:\n  allow:\n    - {port: 8022, name: ssh}\n    - {port: 7777, name: web}\n")
	d.WaitLog(`policy reloaded`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "open", 7777: "open"})
	m = d.Scrape()
	if rule(m, "ssh", "passed") != 2 || rule(m, "web", "passed") != 1 || rule(m, "trial", "passed") != -1 {
		t.Errorf("rule counters after the reload (ssh 2, web 1, trial gone):\n%s", grep(m, "rule_packets"))
	}
}

// Bad input while running: the policy file deleted, replaced by a writable
// or broken one, and a burst of SIGHUPs. Each refused reload keeps the last
// good policy; the file's next good version is picked up.
func TestBadInputWhileRunning(t *testing.T) {
	l, d := startLab(t, labPolicy)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "open", 7777: "filtered"})

	d.Mark()
	if err := os.Remove(d.Policy); err != nil {
		t.Fatal(err)
	}
	d.WaitLog(`policy reload refused.*no such file`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "open", 7777: "filtered"})

	d.Mark()
	// Written world-writable at once: chmod after the file appears would
	// race the daemon reading it.
	l.WritePolicyMode("tcp:\n  allow: [8022, 7777]\n", 0o666)
	d.Signal(syscall.SIGHUP)
	d.WaitLog(`policy reload refused.*lets others write it`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "open", 7777: "filtered"})

	// A burst of SIGHUPs with a good file: the daemon survives, reloads
	// one at a time, and ends on the file's policy.
	if err := os.Chmod(d.Policy, 0o644); err != nil {
		t.Fatal(err)
	}
	d.Mark()
	for i := 0; i < 50; i++ {
		d.Signal(syscall.SIGHUP)
	}
	d.WaitLog(`policy reloaded`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "filtered", 7777: "open"})
	if s := l.Status(); !strings.Contains(s, `"policy_file_in_force": true`) {
		t.Errorf("status after the burst:\n%s", s)
	}
	// It survived the burst (the filter works without it: ask it). A crash
	// in a queued reload would have shown during the 700 ms the filtered
	// probe above waited.
	select {
	case <-d.done:
		t.Fatalf("the daemon exited after the burst of SIGHUPs:\n%s", d.log)
	default:
	}
	if g := Metric(d.Scrape(), "xdpguard_policy_generation"); g != 2 {
		t.Errorf("generation %v after the burst, want 2 (one switch, the rest unchanged)", g)
	}
}

// An interface deleted and created again gets the filter back by itself,
// with the policy in force; meanwhile the attached metric says 0.
func TestInterfaceRecreatedGetsFilterBack(t *testing.T) {
	l, d := startLab(t, labPolicy)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered"})
	d.Mark()
	sh(t, "ip", "-n", l.Server, "link", "del", l.SrvIf)
	d.WaitLog(`interface deleted`)
	if m := d.Scrape(); Metric(m, "xdpguard_attached", `mode="none"`) != 0 {
		t.Errorf("attached while the interface is gone:\n%s", grep(m, "attached"))
	}
	if body, code, err := l.HTTPGet(l.Server, d.Metrics, "/readyz"); err != nil || code != 503 || !strings.Contains(body, l.SrvIf+": interface gone") {
		t.Errorf("/readyz while the interface is gone: %d %q %v", code, body, err)
	}
	l.link(l.SrvIf, l.CliIf, l.SrvV4, l.CliV4, l.SrvV6, l.CliV6)
	d.WaitLog(`filter attached again`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "open", 7777: "filtered"})
	if m := d.Scrape(); Metric(m, "xdpguard_attached", `mode="tc"`) != 1 {
		t.Errorf("not attached after the interface came back:\n%s", grep(m, "attached"))
	}
	if body, code, err := l.HTTPGet(l.Server, d.Metrics, "/readyz"); err != nil || code != 200 || body != "ok\n" {
		t.Errorf("/readyz after the interface came back: %d %q %v", code, body, err)
	}
}

// SIGKILL at each stage of a reload leaves one whole policy in force (the
// old one before the switch, the new one after), and a restarted daemon
// adopts the filter and puts the file's policy in force.
func TestCrashAtEachReloadStage(t *testing.T) {
	policyA := map[int]string{8080: "open", 7777: "filtered"}
	policyB := map[int]string{8080: "filtered", 7777: "open"}
	for stage, want := range map[string]map[int]string{"loaded": policyA, "switched": policyB, "committed": policyB} {
		t.Run(stage, func(t *testing.T) {
			l := NewLab(t)
			l.Listen(8022, 8080, 7777)
			l.WritePolicy(labPolicy)
			t.Setenv("XDPGUARD_TEST_CRASH_AT", stage) // the daemon inherits it
			d := l.StartDaemon()
			t.Setenv("XDPGUARD_TEST_CRASH_AT", "")
			expectPorts(t, l, l.CliV4, l.SrvV4, policyA)
			l.WritePolicy("tcp:\n  allow: [8022, 7777]\n")
			select {
			case <-d.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("daemon not killed at %s:\n%s", stage, d.log)
			}
			expectPorts(t, l, l.CliV4, l.SrvV4, want)
			l.StartDaemon()
			expectPorts(t, l, l.CliV4, l.SrvV4, policyB)
			if s := l.Status(); !strings.Contains(s, `"policy_file_in_force": true`) {
				t.Errorf("after the restart:\n%s", s)
			}
		})
	}
}

// The daemon needs only CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (the
// verifier refuses the program's pointer comparisons without PERFMON):
// with every other capability dropped from its bounding set it attaches,
// reloads, serves metrics and logs events. Without PERFMON it refuses to
// start with a message naming the capabilities, and leaves nothing behind.
func TestLeastPrivilege(t *testing.T) {
	_, err := exec.LookPath("setpriv")
	testutil.Require(t, err, "setpriv (util-linux)")
	l := NewLab(t)
	l.Listen(8022, 8080, 7777)
	l.WritePolicy(labPolicy)
	l.Wrapper = []string{"setpriv", "--bounding-set=-all,+bpf,+net_admin,+perfmon", "--inh-caps=-all", "--ambient-caps=-all", "--"}
	d := l.StartDaemon("--events", filepath.Join(l.dir, "drops.jsonl"))
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "open", 7777: "filtered"})
	d.Mark()
	l.WritePolicy("tcp:\n  allow: [8022, 7777]\n")
	d.WaitLog(`policy reloaded`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8080: "filtered", 7777: "open"})
	if m := d.Scrape(); Metric(m, "xdpguard_attached", `mode="tc"`) != 1 || Metric(m, "xdpguard_scrape_errors_total") != 0 {
		t.Errorf("metrics under reduced capabilities:\n%s", grep(m, "attached")+grep(m, "scrape_errors"))
	}
	d.Stop()
	sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "detach", "--all")

	cmd := exec.Command("ip", "netns", "exec", l.Server, "setpriv", "--bounding-set=-all,+bpf,+net_admin", "--inh-caps=-all", "--ambient-caps=-all", "--",
		xdpguardBin, "run", "--iface", l.SrvIf, "--policy", filepath.Join(l.dir, "policy.yaml"), "--metrics-addr", "")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "CAP_PERFMON") {
		t.Errorf("start without CAP_PERFMON: %v\n%s", err, out)
	}
	if s := l.Status(); strings.TrimSpace(s) != "[]" {
		t.Errorf("a refused start left state: %s", s)
	}
}

// /metrics beyond loopback: refused without protection; with a basic-auth
// web config and no TLS, refused unless --metrics-insecure (credentials in
// clear), then served to the right credentials only. (TLS:
// TestReadyzForTheKubeletWithTLSAndBasicAuth.)
func TestMetricsBeyondLoopback(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022)
	l.WritePolicy(labPolicy)
	addr := net.JoinHostPort(l.SrvV4, "8080") // a port the policy opens
	cmd := exec.Command("ip", "netns", "exec", l.Server, xdpguardBin, "run", "--iface", l.SrvIf, "--policy", filepath.Join(l.dir, "policy.yaml"), "--metrics-addr", addr)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "reachable from other hosts") {
		t.Fatalf("unprotected non-loopback metrics: %v\n%s", err, out)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(l.dir, "web.yml")
	if err := os.WriteFile(webConfig, []byte("basic_auth_users:\n  prom: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command("ip", "netns", "exec", l.Server, xdpguardBin, "run", "--iface", l.SrvIf, "--policy", filepath.Join(l.dir, "policy.yaml"), "--metrics-addr", addr, "--metrics-web-config", webConfig)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "credentials in clear") {
		t.Fatalf("basic auth over plain HTTP: %v\n%s", err, out)
	}
	l.StartDaemon("--metrics-addr", addr, "--metrics-web-config", webConfig, "--metrics-insecure")
	get := func(user, pass string) int {
		var conn net.Conn
		l.InNS(l.Client, func() { conn, err = net.DialTimeout("tcp", addr, 5*time.Second) })
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		if err := req.Write(conn); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("", ""); code != 401 {
		t.Errorf("no credentials: HTTP %d, want 401", code)
	}
	if code := get("prom", "wrong"); code != 401 {
		t.Errorf("wrong password: HTTP %d, want 401", code)
	}
	if code := get("prom", "s3cret"); code != 200 {
		t.Errorf("right credentials: HTTP %d, want 200", code)
	}
}
