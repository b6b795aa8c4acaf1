// Package integration runs the real daemon on a veth pair between network
// namespaces and sends real traffic through it. Needs root; under CI=true
// it fails instead of skipping.
package integration

import (
	"bufio"
	"bytes"
	"errors"

	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

var xdpguardBin string // built once by TestMain

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run() // every test skips (or fails under CI) on its own
		}
		dir, err := os.MkdirTemp("", "xdpguard-it")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		xdpguardBin = filepath.Join(dir, "xdpguard")
		// The CLI's bans record in a history of the run's own, never in
		// the host's /var/lib/xdpguard.
		os.Setenv("XDPGUARD_AUDIT_LOG", filepath.Join(dir, "cli-history.jsonl"))
		// -race: the daemon runs race-checked under real traffic and reloads;
		// the test hooks (crash points, a refused switch) are built in.
		out, err := exec.Command("go", "build", "-race", "-tags", "xdpguard_testhooks", "-o", xdpguardBin, "../../cmd/xdpguard").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build xdpguard: %v\n%s", err, out)
			return 1
		}
		// `ip netns exec` hides /sys/fs/bpf; the daemon then pins on the
		// host-shared bpffs, which an operator mounts once per boot.
		if err := testutil.SharedBPFFS(); err != nil {
			fmt.Fprintln(os.Stderr, "mount bpffs:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// Lab is two namespaces joined by a veth pair: the server side runs
// xdpguard on its veth; the client side has two IPv4 and two IPv6 sources.
type Lab struct {
	t              testing.TB
	Server, Client string // namespace names
	SrvIf, CliIf   string
	SrvMAC, CliMAC net.HardwareAddr
	SrvV4, SrvV6   string
	CliV4, CliV4b  string
	CliV6, CliV6b  string
	dir            string
	// Wrapper runs before the daemon's binary (e.g. setpriv to drop
	// capabilities).
	Wrapper []string
}

var labSeq struct {
	sync.Mutex
	n int
}

func sh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// NewLab builds the namespaces; everything is removed when the test ends,
// pass or fail.
func NewLab(t testing.TB) *Lab {
	t.Helper()
	testutil.RequirePrivileged(t)
	_, err := exec.LookPath("ip")
	testutil.Require(t, err, "iproute2 (ip)")
	labSeq.Lock()
	labSeq.n++
	n := labSeq.n
	labSeq.Unlock()
	id := testutil.UniqueID()
	l := &Lab{
		t: t, Server: "xgs" + id, Client: "xgc" + id, SrvIf: "xgs" + id, CliIf: "xgc" + id,
		SrvV4: fmt.Sprintf("198.18.%d.1", n), CliV4: fmt.Sprintf("198.18.%d.2", n), CliV4b: fmt.Sprintf("198.18.%d.3", n),
		SrvV6: fmt.Sprintf("2001:2:0:%x::1", n), CliV6: fmt.Sprintf("2001:2:0:%x::2", n), CliV6b: fmt.Sprintf("2001:2:0:%x::3", n),
		dir: t.TempDir(),
	}
	t.Cleanup(l.destroy)
	if err := testutil.NewNamespaces(l.Server, l.Client); err != nil {
		t.Fatal(err)
	}
	l.link(l.SrvIf, l.CliIf, l.SrvV4, l.CliV4, l.SrvV6, l.CliV6)
	sh(t, "ip", "netns", "exec", l.Client, "ip", "addr", "add", l.CliV4b+"/24", "dev", l.CliIf)
	sh(t, "ip", "netns", "exec", l.Client, "ip", "addr", "add", l.CliV6b+"/64", "dev", l.CliIf, "nodad")
	l.SrvMAC = l.mac(l.Server, l.SrvIf)
	l.CliMAC = l.mac(l.Client, l.CliIf)
	return l
}

// link joins the namespaces with a veth pair and addresses both ends.
func (l *Lab) link(srvIf, cliIf, srv4, cli4, srv6, cli6 string) {
	t := l.t
	if err := testutil.Veth(srvIf, l.Server, cliIf, l.Client); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{l.Server, "ip", "addr", "add", srv4 + "/24", "dev", srvIf},
		{l.Server, "ip", "addr", "add", srv6 + "/64", "dev", srvIf, "nodad"},
		{l.Client, "ip", "addr", "add", cli4 + "/24", "dev", cliIf},
		{l.Client, "ip", "addr", "add", cli6 + "/64", "dev", cliIf, "nodad"},
	} {
		sh(t, append([]string{"ip", "netns", "exec"}, c...)...)
	}
}

// AddLink adds a second veth pair, on 198.18.<n+100>.0/24, and returns the
// server-side interface and both IPv4 addresses.
func (l *Lab) AddLink() (srvIf, srv4, cli4 string) {
	srvIf, cliIf := l.SrvIf+"b", l.CliIf+"b"
	base := strings.TrimSuffix(l.SrvV4, ".1")
	base = strings.Replace(base, "198.18.", "198.19.", 1)
	srv4, cli4 = base+".1", base+".2"
	l.link(srvIf, cliIf, srv4, cli4, strings.Replace(l.SrvV6, "2001:2:0:", "2001:2:1:", 1), strings.Replace(l.CliV6, "2001:2:0:", "2001:2:1:", 1))
	return srvIf, srv4, cli4
}

func (l *Lab) mac(ns, iface string) net.HardwareAddr {
	_, hw, err := testutil.LinkOf(ns, iface)
	if err != nil {
		l.t.Fatal(err)
	}
	return hw
}

// destroy removes the daemon's pins and both namespaces.
func (l *Lab) destroy() {
	if xdpguardBin != "" {
		_ = exec.Command("ip", "netns", "exec", l.Server, xdpguardBin, "detach", "--all").Run()
	}
	_ = os.RemoveAll("/run/xdpguard/bpffs/xdpguard/netns-" + l.Server)
	testutil.DeleteNamespaces(l.Server, l.Client)
}

// InNS runs fn with the calling goroutine's thread in namespace ns. Sockets
// created inside stay in ns after fn returns.
func (l *Lab) InNS(ns string, fn func()) {
	if err := testutil.InNS(ns, func() error { fn(); return nil }); err != nil {
		l.t.Fatal(err)
	}
}

// Listen starts TCP echo servers in the server namespace on the ports.
func (l *Lab) Listen(ports ...int) {
	for _, p := range ports {
		l.ListenAddr(fmt.Sprintf("[::]:%d", p))
	}
}

// ListenAddr starts a TCP echo server in the server namespace on addr; it
// stops when the returned listener is closed or the test ends.
func (l *Lab) ListenAddr(addr string) net.Listener {
	var ln net.Listener
	var err error
	l.InNS(l.Server, func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln
}

// Connect dials from the client namespace, from source address src, and
// echoes a line through the connection. It returns "open", "refused" or
// "filtered" (no answer within the timeout).
func (l *Lab) Connect(src, dst string, port int) string {
	return l.ConnectTimeout(src, dst, port, 700*time.Millisecond)
}

// ConnectTimeout is Connect with another dial timeout: past a second, the
// client's kernel retransmits a SYN that got lost before the filter (a veth
// ring overflowing under a flood), as a real client does.
func (l *Lab) ConnectTimeout(src, dst string, port int, timeout time.Duration) string {
	var conn net.Conn
	var err error
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	l.InNS(l.Client, func() { conn, err = d.Dial("tcp", net.JoinHostPort(dst, strconv.Itoa(port))) })
	switch {
	case err == nil:
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			l.t.Fatalf("write: %v", err)
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || line != "ping\n" {
			l.t.Fatalf("echo through %s:%d: %q %v", dst, port, line, err)
		}
		return "open"
	case strings.Contains(err.Error(), "refused"):
		return "refused"
	case strings.Contains(err.Error(), "timeout"):
		return "filtered"
	}
	l.t.Fatalf("dial %s:%d: %v", dst, port, err)
	return ""
}

// Daemon is a running `xdpguard run` in the server namespace.
type Daemon struct {
	l       *Lab
	cmd     *exec.Cmd
	log     *syncBuffer
	Policy  string
	Metrics string
	done    chan struct{}
	since   int // WaitLog looks at output after this offset
}

// Mark makes the next WaitLog look only at output written from now on.
func (d *Daemon) Mark() { d.since = len(d.log.String()) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// AuditLog is the change history the lab's daemons write.
func (l *Lab) AuditLog() string { return filepath.Join(l.dir, "history.jsonl") }

// RuleUsage is the record of rule hits the lab's daemons keep.
func (l *Lab) RuleUsage() string { return filepath.Join(l.dir, "rule-usage.json") }

// WritePolicy writes the lab's policy file.
func (l *Lab) WritePolicy(doc string) string {
	return l.WritePolicyMode(doc, 0o600)
}

// WritePolicyMode writes the lab's policy file with the given permissions.
// The file appears (one rename) with its content and mode together: the
// daemon may read it as soon as it appears.
func (l *Lab) WritePolicyMode(doc string, mode os.FileMode) string {
	path := filepath.Join(l.dir, "policy.yaml")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o600); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil { // WriteFile's mode is under the umask
		l.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.t.Fatal(err)
	}
	return path
}

// StartDaemon runs the daemon and waits until it is attached and serving.
func (l *Lab) StartDaemon(extra ...string) *Daemon {
	l.t.Helper()
	return l.StartDaemonBinary(xdpguardBin, extra...)
}

// StartDaemonBinary is StartDaemon with another xdpguard binary.
func (l *Lab) StartDaemonBinary(bin string, extra ...string) *Daemon {
	l.t.Helper()
	ready := filepath.Join(l.dir, fmt.Sprintf("ready-%d", time.Now().UnixNano()))
	d := &Daemon{l: l, log: &syncBuffer{}, Policy: filepath.Join(l.dir, "policy.yaml"), Metrics: "127.0.0.1:9477", done: make(chan struct{})}
	args := append(append([]string{"netns", "exec", l.Server}, l.Wrapper...), bin, "run", "--policy", d.Policy,
		"--metrics-addr", d.Metrics, "--ready-file", ready)
	if !strings.Contains(strings.Join(extra, " "), "--iface") {
		args = append(args, "--iface", l.SrvIf)
	}
	// The change history in the lab's directory, not the host's
	// /var/lib/xdpguard (an older binary has no --audit-log).
	if bin == xdpguardBin && !strings.Contains(strings.Join(extra, " "), "--audit-log") {
		args = append(args, "--audit-log", l.AuditLog())
	}
	if bin == xdpguardBin && !strings.Contains(strings.Join(extra, " "), "--rule-usage") {
		args = append(args, "--rule-usage", l.RuleUsage())
	}
	args = append(args, extra...)
	d.cmd = exec.Command("ip", args...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	l.t.Cleanup(func() {
		d.Kill()
		if strings.Contains(d.log.String(), "DATA RACE") {
			l.t.Errorf("the race detector fired in the daemon:\n%s", d.log)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return d
		}
		select {
		case <-d.done:
			l.t.Fatalf("daemon exited before ready:\n%s", d.log)
		default:
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("daemon not ready after 20s:\n%s", d.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Signal sends sig to the daemon (ip netns exec execs it, so the PID is its).
func (d *Daemon) Signal(sig os.Signal) {
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.l.t.Fatal(err)
	}
}

// Kill ends the daemon with SIGKILL and waits for it.
func (d *Daemon) Kill() {
	_ = d.cmd.Process.Kill()
	<-d.done
}

// Stop ends the daemon with SIGTERM and waits for it.
func (d *Daemon) Stop() {
	d.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.l.t.Fatalf("daemon did not stop:\n%s", d.log)
	}
}

// WaitLog waits until the daemon's log matches re.
func (d *Daemon) WaitLog(re string) {
	d.l.t.Helper()
	d.WaitLogWithin(re, 10*time.Second)
}

// WaitLogWithin waits up to timeout until the daemon's log, from the last
// Mark, matches re, and returns the first match.
func (d *Daemon) WaitLogWithin(re string, timeout time.Duration) string {
	d.l.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		if m := rx.FindString(d.log.String()[d.since:]); m != "" {
			return m
		}
		if time.Now().After(deadline) {
			d.l.t.Fatalf("log never matched %q in %v:\n%s", re, timeout, d.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Settle waits until the traffic sent so far has been judged: it scrapes
// until count(scrape) reaches want, or stops moving for a second (frames
// lost before the filter never arrive), or 10 s pass. Frames are judged
// after they are sent, sometimes well after on a busy machine, so counters
// read as soon as a sender returns may miss some. Settle returns the scrape
// that showed the final counts and the moment it ended: every packet it
// counts was judged by then, so a bound that grows with time (rate * t +
// burst) measures t up to that moment, not up to the sender's return.
func (d *Daemon) Settle(want float64, count func(scrape string) float64) (string, time.Time) {
	d.l.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	var lastAt time.Time
	for {
		m := d.Scrape()
		at := time.Now()
		if count(m) >= want {
			return m, at
		}
		if last == "" || count(m) != count(last) {
			last, lastAt = m, at
		} else if at.Sub(lastAt) >= time.Second {
			return last, lastAt
		}
		if at.After(deadline) {
			return m, at
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Scrape fetches /metrics from inside the server namespace. The connection
// is made on the namespace's thread; http.Transport would dial elsewhere.
func (d *Daemon) Scrape() string {
	body, code, err := d.l.HTTPGet(d.l.Server, d.Metrics, "/metrics")
	if err != nil || code != 200 {
		d.l.t.Fatalf("scrape: %d %v", code, err)
	}
	return body
}

// HTTPGet fetches http://addr/path from inside namespace ns.
func (l *Lab) HTTPGet(ns, addr, path string) (string, int, error) {
	var conn net.Conn
	var err error
	l.InNS(ns, func() { conn, err = net.DialTimeout("tcp", addr, 5*time.Second) })
	if err != nil {
		return "", 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	if err := req.Write(conn); err != nil {
		return "", 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), resp.StatusCode, err
}

// Metric returns the value of the sample whose name and labels contain all
// of the given strings, e.g. Metric(`xdpguard_drops_total`, `reason="malformed"`).
func Metric(body string, parts ...string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name, ok := line[:i], true
		for _, p := range parts {
			ok = ok && strings.Contains(name, p)
		}
		if ok && (strings.HasPrefix(name, parts[0]+"{") || name == parts[0]) {
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			return v
		}
	}
	return -1
}

// Delta is how much a sample grew between two scrapes.
func Delta(before, after string, parts ...string) float64 {
	return Metric(after, parts...) - Metric(before, parts...)
}

// Status runs `xdpguard status --output json` in the server namespace.
// Status runs `xdpguard status --output json` in the server namespace; its
// exit status 3 (not enforcing, or nothing attached) is an answer, not a
// failure.
func (l *Lab) Status() string {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", l.Server, xdpguardBin, "status", "--output", "json").Output()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 3) {
		l.t.Fatalf("status: %v\n%s", err, out)
	}
	return string(out)
}

func execCombined(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func netIfindex(name string) (int, error) {
	i, err := net.InterfaceByName(name)
	if err != nil {
		return 0, err
	}
	return i.Index, nil
}
