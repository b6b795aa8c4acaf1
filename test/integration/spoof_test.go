package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bannedSources lists `xdpguard bans` in the server namespace.
func bannedSources(t *testing.T, l *Lab) map[string]bool {
	t.Helper()
	out := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "bans", "--output", "json")
	var bans []struct{ Source string }
	if err := json.Unmarshal([]byte(out), &bans); err != nil {
		t.Fatalf("bans: %v\n%s", err, out)
	}
	got := map[string]bool{}
	for _, b := range bans {
		got[b.Source] = true
	}
	return got
}

// dialFrom opens a TCP connection from src in the client namespace.
func dialFrom(t *testing.T, l *Lab, src, dst string, port int) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	l.InNS(l.Client, func() {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
		c, err = d.Dial("tcp", net.JoinHostPort(dst, fmt.Sprint(port)))
	})
	if err != nil {
		t.Fatalf("connect from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoes reports whether a line sent on an echo connection comes back.
func echoes(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("still here\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err == nil && line != "still here\n" {
		err = fmt.Errorf("echo %q", line)
	}
	return err
}

// A spoofer floods SYNs carrying a victim's addresses until the victim is
// banned. The ban stops new connections from the victim, and nothing else:
// the victim's established connections keep working, the replies to the
// server's own UDP queries and pings keep arriving, and neighbour
// discovery still resolves it (IPv4 and IPv6).
func TestSpoofedBanCannotCutAVictim(t *testing.T) {
	l, _ := startLab(t, "tcp:\n  allow: [8022, 8080]\nudp:\n  allow: [5353]\nratelimit:\n  syn:\n    rate: 5\n    burst: 5\n    ban: 60s\n")
	conn4 := dialFrom(t, l, l.CliV4, l.SrvV4, 8022)
	conn6 := dialFrom(t, l, l.CliV6, l.SrvV6, 8022)
	// The victim answers the server's queries (bound per address, so the
	// answer comes from the address asked).
	udpEcho(t, l, l.Client, net.JoinHostPort(l.CliV4, "53"))
	udpEcho(t, l, l.Client, net.JoinHostPort(l.CliV6, "53"))
	tx := l.RawSender()
	for i := 0; i < 100; i++ {
		for _, f := range [][]byte{l.synFrame(l.CliV4, l.SrvV4, 8080, uint16(20000+i)), l.synFrame(l.CliV6, l.SrvV6, 8080, uint16(20000+i))} {
			if err := tx.Send(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	v6Net := strings.TrimSuffix(l.CliV6, "::2") + "::/64"
	waitFor(t, "the victim banned", 10*time.Second, func() bool {
		b := bannedSources(t, l)
		return b[l.CliV4+"/32"] && b[v6Net]
	})

	for name, c := range map[string]net.Conn{"IPv4": conn4, "IPv6": conn6} {
		if err := echoes(c); err != nil {
			t.Errorf("the banned victim's established %s connection was cut: %v", name, err)
		}
	}
	for _, dst := range []string{net.JoinHostPort(l.CliV4, "53"), net.JoinHostPort(l.CliV6, "53")} {
		if !udpAsk(t, l, l.Server, dst) {
			t.Errorf("the reply of the banned victim %s to the server's own UDP query was dropped", dst)
		}
	}
	// Forget the victim's MAC, then reach it again: ARP, ND and the echo
	// replies must all pass.
	sh(t, "ip", "netns", "exec", l.Server, "ip", "neigh", "flush", "dev", l.SrvIf)
	for _, dst := range []string{l.CliV4, l.CliV6} {
		if out, err := execCombined("ip", "netns", "exec", l.Server, "ping", "-c", "1", "-W", "3", dst); err != nil {
			t.Errorf("the server cannot reach the banned victim %s (neighbour discovery or echo replies dropped): %v\n%s", dst, err, out)
		}
	}
	// What the ban is for: no new connection from the victim; others connect.
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "filtered"})
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8022: "open"})
}

// pythonEcho is a Python TCP echo server on port, for processes the tests
// start under another name or user.
func pythonEcho(port int) string {
	return fmt.Sprintf(`
import socket, threading
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", %d))
s.listen()
def serve(c):
    while True:
        b = c.recv(100)
        if not b:
            return
        c.sendall(b)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`, port)
}

// fakeSSHD runs, in the server namespace, an echo server on port whose
// process is named sshd, as OpenSSH's is: what the daemon looks for when it
// protects the peers of SSH sessions.
func fakeSSHD(t *testing.T, l *Lab, port int) {
	t.Helper()
	// Debian's interpreter itself (a PATH entry may be a shell shim).
	py, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		t.Fatalf("python3 (Debian package python3): %v", err)
	}
	bin := filepath.Join(t.TempDir(), "sshd") // the process's name is the name it is run by
	if err := os.Symlink(py, bin); err != nil {
		t.Fatal(err)
	}
	script := pythonEcho(port)
	cmd := exec.Command("ip", "netns", "exec", l.Server, bin, "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "the fake sshd listening", 10*time.Second, func() bool {
		out, _ := execCombined("ip", "netns", "exec", l.Server, "ss", "-Htln", fmt.Sprintf("sport = :%d", port))
		return strings.Contains(out, "LISTEN")
	})
}

// The sources a ban must never hit without the operator saying so: the
// peer of an SSH session, the default gateway, a resolver, link-local
// sources. Spoofed floods carrying them are rate-limited but never banned,
// `status` lists them, and an unprotected source is still banned.
func TestProtectedSourcesAreNeverBannedOverVeth(t *testing.T) {
	l := NewLab(t)
	l.Listen(8080)
	// `ip netns exec` puts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf.
	etc := filepath.Join("/etc/netns", l.Server)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver "+l.CliV6+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, "ip", "netns", "exec", l.Server, "ip", "route", "add", "default", "via", l.CliV4b)
	fakeSSHD(t, l, 2222)
	l.WritePolicy("tcp:\n  allow: [2222, 8080]\nratelimit:\n  syn:\n    rate: 5\n    burst: 5\n    ban: 60s\n")
	d := l.StartDaemon()
	session := dialFrom(t, l, l.CliV4, l.SrvV4, 2222)

	type status []struct {
		Protected []struct{ Source, Why string } `json:"protected_sources"`
	}
	v6Net := strings.TrimSuffix(l.CliV6, "::2") + "::/64"
	want := map[string]string{l.CliV4 + "/32": "ssh-session", l.CliV4b + "/32": "gateway", v6Net: "resolver"}
	var last string
	waitFor(t, "status listing the protected sources", 15*time.Second, func() bool {
		last = l.Status()
		var st status
		if json.Unmarshal([]byte(last), &st) != nil || len(st) != 1 {
			return false
		}
		got := map[string]string{}
		for _, p := range st[0].Protected {
			got[p.Source] = p.Why
		}
		for src, why := range want {
			if got[src] != why {
				return false
			}
		}
		return true
	})

	control := strings.Replace(l.CliV4, "198.18.", "198.19.", 1) // spoofed, unprotected
	tx := l.RawSender()
	for i := 0; i < 50; i++ {
		for _, f := range [][]byte{
			l.synFrame(l.CliV4, l.SrvV4, 8080, uint16(20000+i)),
			l.synFrame(l.CliV4b, l.SrvV4, 8080, uint16(20000+i)),
			l.synFrame(l.CliV6, l.SrvV6, 8080, uint16(20000+i)),
			l.synFrame("fe80::dead", l.SrvV6, 8080, uint16(20000+i)),
			l.synFrame("169.254.9.9", l.SrvV4, 8080, uint16(20000+i)),
			l.synFrame(control, l.SrvV4, 8080, uint16(20000+i)),
		} {
			if err := tx.Send(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "the unprotected source banned", 10*time.Second, func() bool { return bannedSources(t, l)[control+"/32"] })
	waitFor(t, "the refused bans counted", 10*time.Second, func() bool {
		return Metric(d.Scrape(), "xdpguard_bans_refused_total", `cause="protected"`) >= 5*45
	})
	if b := bannedSources(t, l); len(b) != 1 {
		t.Errorf("banned %v: only %s is unprotected", b, control)
	}
	if err := echoes(session); err != nil {
		t.Errorf("the SSH session: %v", err)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{2222: "open"})
	text := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "status")
	for _, w := range []string{"never banned", "ssh-session", "gateway", "resolver"} {
		if !strings.Contains(text, w) {
			t.Errorf("status lacks %q:\n%s", w, text)
		}
	}
	if Metric(d.Scrape(), "xdpguard_protected_sources") != 3 {
		t.Errorf("protected_sources gauge:\n%s", grep(d.Scrape(), "protected"))
	}
}
