package integration

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// synProxyLab is the lab the SYN proxy needs on veth, in the lab and not
// in the product: XDP_TX on a veth reaches the peer only if the peer runs
// an XDP program (a trivial XDP_PASS on the client's end), and the client's
// checksum offload is off (a partial checksum would reach the server's
// XDP as such). The daemon attaches natively.
func synProxyLab(t *testing.T, policy string) (*Lab, *Daemon) {
	t.Helper()
	l := NewLab(t)
	_, err := exec.LookPath("ethtool")
	testutil.Require(t, err, "ethtool")
	_, err = exec.LookPath("ss")
	testutil.Require(t, err, "ss (iproute2)")
	sh(t, "ip", "netns", "exec", l.Client, "ethtool", "-K", l.CliIf, "tx", "off")
	sh(t, "ip", "netns", "exec", l.Server, "ethtool", "-K", l.SrvIf, "tx", "off")
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	l.InNS(l.Client, func() {
		ln, lerr := netlink.LinkByName(l.CliIf)
		if lerr != nil {
			err = lerr
			return
		}
		var xl link.Link
		if xl, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ln.Attrs().Index, Flags: link.XDPDriverMode}); err == nil {
			t.Cleanup(func() { xl.Close() })
		}
	})
	if err != nil {
		t.Fatalf("XDP_PASS on the client's veth: %v", err)
	}
	l.WritePolicy(policy)
	return l, l.StartDaemon("--mode", "native")
}

// nstat reads the TcpExt counters of a namespace.
func nstat(t *testing.T, ns string) map[string]int64 {
	t.Helper()
	out := sh(t, "ip", "netns", "exec", ns, "cat", "/proc/net/netstat")
	m := map[string]int64{}
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j := 1; j < len(keys) && j < len(vals); j++ {
			n, _ := strconv.ParseInt(vals[j], 10, 64)
			m[strings.TrimSuffix(keys[0], ":")+keys[j]] = n
		}
	}
	return m
}

// bulkServer accepts on addr and, per connection, reads the client's n
// bytes, then sends them back: data both ways, enough to need window
// scaling. It stays open until the test ends so ss can see the socket.
func (l *Lab) bulkServer(addr string, hold <-chan struct{}) *serverInfo {
	ln := l.ListenAddrRaw(addr)
	info := &serverInfo{byPort: map[int]*unix.TCPInfo{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var n int64
				if _, err := fmt.Fscanf(c, "%d\n", &n); err != nil {
					return
				}
				buf, err := io.ReadAll(io.LimitReader(c, n))
				if err != nil || int64(len(buf)) != n {
					return
				}
				_, _ = c.Write(buf)
				info.record(c)
				<-hold
			}()
		}
	}()
	return info
}

// serverInfo holds the kernel's TCP_INFO of the server's sockets, by the
// client's port, taken once the data moved both ways.
type serverInfo struct {
	mu     sync.Mutex
	byPort map[int]*unix.TCPInfo
}

func (s *serverInfo) record(c net.Conn) {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return
	}
	var ti *unix.TCPInfo
	_ = raw.Control(func(fd uintptr) { ti, _ = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	s.mu.Lock()
	s.byPort[c.RemoteAddr().(*net.TCPAddr).Port] = ti
	s.mu.Unlock()
}

func (s *serverInfo) of(port int) *unix.TCPInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byPort[port]
}

// ListenAddrRaw is a listener in the server namespace, closed with the test.
func (l *Lab) ListenAddrRaw(addr string) net.Listener {
	var ln net.Listener
	var err error
	l.InNS(l.Server, func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { ln.Close() })
	return ln
}

// bulk sends n random bytes from src to dst:port and checks they come back.
func (l *Lab) bulk(src, dst string, port, n int) (net.Conn, error) {
	payload := make([]byte, n)
	_, _ = rand.Read(payload)
	var conn net.Conn
	var err error
	d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	l.InNS(l.Client, func() { conn, err = d.Dial("tcp", net.JoinHostPort(dst, strconv.Itoa(port))) })
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "%d\n", n); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := conn.Write(payload); err != nil {
		conn.Close()
		return nil, err
	}
	back := make([]byte, n)
	if _, err := io.ReadFull(conn, back); err != nil {
		conn.Close()
		return nil, fmt.Errorf("read back: %w", err)
	}
	if !bytes.Equal(back, payload) {
		conn.Close()
		return nil, fmt.Errorf("data came back changed")
	}
	return conn, nil
}

const synProxyPolicy = `tcp:
  allow:
    - 8022
    - {port: 8080, syn_proxy: always}
`

// Real clients (Go net, curl-free) connect through the SYN proxy, v4 and
// v6, and move a megabyte each way; the server's socket has the options
// the client offered (ss -ti: timestamps, SACK, window scale, MSS), the
// kernel validated the cookies (TcpExtSyncookiesRecv) it never sent
// (TcpExtSyncookiesSent stays 0: XDP answered every SYN).
func TestSynProxyRealClients(t *testing.T) {
	l, d := synProxyLab(t, synProxyPolicy)
	hold := make(chan struct{})
	defer close(hold)
	srv := l.bulkServer("[::]:8080", hold)
	// Scrape first: the scrape is a TCP connection on the namespace's
	// loopback, which the listener answers with its own cookie
	// (tcp_syncookies=2 holds for every listener of the namespace).
	m0 := d.Scrape()
	before := nstat(t, l.Server)
	for _, c := range []struct{ src, dst string }{{l.CliV4, l.SrvV4}, {l.CliV6, l.SrvV6}} {
		conn, err := l.bulk(c.src, c.dst, 8080, 1<<20)
		if err != nil {
			t.Fatalf("%s -> %s:8080 through the SYN proxy: %v\n%s", c.src, c.dst, err, d.log)
		}
		defer conn.Close()
		lport := conn.LocalAddr().(*net.TCPAddr).Port
		// ss -ti (this iproute2 prints no ts/sack flags; TCP_INFO below
		// has them all).
		out := sh(t, "ip", "netns", "exec", l.Server, "ss", "-tinH", "state", "established", fmt.Sprintf("( sport = :8080 and dport = :%d )", lport))
		t.Logf("server socket of %s: %s", c.src, strings.Join(strings.Fields(out), " "))
		for _, want := range []string{`wscale:\d+,\d+`, `\bmss:14[0-9][0-9]\b`} {
			if !regexp.MustCompile(want).MatchString(out) {
				t.Errorf("%s: ss -ti of the server's socket lacks %s: %s", c.src, want, out)
			}
		}
		// The client (Linux) offered timestamps, SACK and window scale:
		// the connection the listener made from the cookie has them.
		ti := srv.of(lport)
		if ti == nil {
			t.Fatalf("%s: no TCP_INFO of the server's socket", c.src)
		}
		const optTS, optSACK, optWscale = 1, 2, 4
		if ti.Options&(optTS|optSACK|optWscale) != optTS|optSACK|optWscale {
			t.Errorf("%s: server socket options %#x: want timestamps, SACK, window scale", c.src, ti.Options)
		}
		if ti.Snd_mss < 1400 || ti.Snd_mss > 1460 {
			t.Errorf("%s: server socket MSS %d", c.src, ti.Snd_mss)
		}
	}
	after := nstat(t, l.Server)
	if n := after["TcpExtSyncookiesRecv"] - before["TcpExtSyncookiesRecv"]; n < 2 {
		t.Errorf("TcpExtSyncookiesRecv +%d: the listener did not make the connections from cookies", n)
	}
	if n := after["TcpExtSyncookiesSent"] - before["TcpExtSyncookiesSent"]; n != 0 {
		t.Errorf("TcpExtSyncookiesSent +%d: the listener answered SYNs itself", n)
	}
	// The metrics are collected once a second: wait for these counts.
	m1, _ := d.Settle(2, func(m string) float64 { return Delta(m0, m, "xdpguard_synproxy_acks_total", `result="valid"`) })
	if n := Delta(m0, m1, "xdpguard_synproxy_cookies_sent_total"); n < 2 {
		t.Errorf("xdpguard_synproxy_cookies_sent_total +%v, want >= 2", n)
	}
	if n := Delta(m0, m1, "xdpguard_synproxy_acks_total", `result="valid"`); n < 2 {
		t.Errorf(`xdpguard_synproxy_acks_total{result="valid"} +%v, want >= 2`, n)
	}
	// status shows the proxy and the namespace settings it made.
	st := l.Status()
	if !regexp.MustCompile(`"cookies_sent": [1-9]`).MatchString(st) || !regexp.MustCompile(`"acks_valid": [1-9]`).MatchString(st) ||
		!strings.Contains(st, `"tcp_syncookies": 2`) || !strings.Contains(st, `"tcp_timestamps": 2`) {
		t.Errorf("status does not show the SYN proxy at work:\n%s", st)
	}
	// stats and top show it too (totals: the sample is the counters').
	if out := xdpguardIn(t, l, "stats", "--count", "1", "--interval", "100ms", "--output", "json"); !regexp.MustCompile(`"syn_proxy":\{"cookies_sent":\{"total":[1-9]`).MatchString(out) ||
		!regexp.MustCompile(`"acks_valid":\{"total":[1-9]`).MatchString(out) {
		t.Errorf("stats does not show the SYN proxy at work:\n%s", out)
	}
	if out := xdpguardIn(t, l, "top", "--count", "1", "--interval", "100ms"); !regexp.MustCompile(`syn proxy: [0-9.]+ cookies/s \([1-9]`).MatchString(out) {
		t.Errorf("top does not show the SYN proxy at work:\n%s", out)
	}
	// The port without syn_proxy is the listener's own.
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "refused"})
}

// A spoofed flood at the proxied port while real clients connect: the
// flood runs until the clients are done; every client connects and echoes,
// the listener never overflows, and the flood's SYN-ACKs are within the
// budget.
func TestSynProxySpoofedFloodWhileClientsConnect(t *testing.T) {
	l, d := synProxyLab(t, synProxyPolicy)
	hold := make(chan struct{})
	defer close(hold)
	l.bulkServer("[::]:8080", hold)
	m0 := d.Scrape()
	before := nstat(t, l.Server)
	stop := l.spoofedSYNFlood(t, 8080)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	var conns []net.Conn
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src, dst := l.CliV4, l.SrvV4
			if i%2 == 1 {
				src, dst = l.CliV6, l.SrvV6
			}
			c, err := l.bulk(src, dst, 8080, 64<<10)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, fmt.Sprintf("%s: %v", src, err))
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	sent, elapsed, full := stop()
	for _, c := range conns {
		c.Close()
	}
	after := nstat(t, l.Server)
	m1, _ := d.Settle(20, func(m string) float64 { return Delta(m0, m, "xdpguard_synproxy_acks_total", `result="valid"`) })
	cookies := Delta(m0, m1, "xdpguard_synproxy_cookies_sent_total")
	t.Logf("%d spoofed SYNs in %v (%d more refused by the full veth ring) while 20 clients connected: %v cookies sent, %d failures",
		sent, elapsed, full, cookies, len(failed))
	if len(failed) > 0 {
		t.Errorf("clients failed during the flood: %v", failed)
	}
	if n := after["TcpExtListenOverflows"] - before["TcpExtListenOverflows"]; n != 0 {
		t.Errorf("TcpExtListenOverflows +%d", n)
	}
	if n := after["TcpExtSyncookiesSent"] - before["TcpExtSyncookiesSent"]; n != 0 {
		t.Errorf("TcpExtSyncookiesSent +%d: flood SYNs reached the listener", n)
	}
	if cookies < 1000 {
		t.Errorf("%v cookies sent for %d spoofed SYNs", cookies, sent)
	}
}

// spoofedSYNFlood sends SYNs from spoofed sources (198.19.0.0/16, not
// routed back) to the server's port until stop is called, which returns
// how many it sent, for how long, and how many the veth refused (ENOBUFS:
// its ring to the native XDP program was full; that is the flood's rate
// on this machine, not an error).
func (l *Lab) spoofedSYNFlood(t *testing.T, port uint16) (stop func() (sent int, elapsed time.Duration, full int)) {
	tx := l.RawSender()
	done := make(chan struct{})
	res := make(chan [2]int, 1)
	started := make(chan struct{})
	begin := time.Now()
	go func() {
		sent, full := 0, 0
		for i := 0; ; i++ {
			select {
			case <-done:
				res <- [2]int{sent, full}
				return
			default:
			}
			src := fmt.Sprintf("198.19.%d.%d", i>>8&0xff, i&0xff)
			err := tx.Send(l.synFrame(src, l.SrvV4, port, uint16(20000+i%40000)))
			switch {
			case err == nil:
				sent++
				if sent == 1000 {
					close(started)
				}
			case errors.Is(err, unix.ENOBUFS):
				full++
				runtime.Gosched()
			default:
				t.Errorf("flood: %v", err)
				res <- [2]int{sent, full}
				return
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the flood did not start")
	}
	var once sync.Once
	var r [2]int
	end := func() { once.Do(func() { close(done); r = <-res }) }
	t.Cleanup(end)
	return func() (int, time.Duration, int) { end(); return r[0], time.Since(begin), r[1] }
}
