package integration

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listenAs starts, in the server namespace, a TCP echo server on port owned
// by uid (a Python process run through setpriv), and waits until it listens.
func listenAs(t *testing.T, l *Lab, uid, port int) {
	t.Helper()
	py, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		t.Fatalf("python3 (Debian package python3): %v", err)
	}
	script := pythonEcho(port)
	cmd := exec.Command("ip", "netns", "exec", l.Server, "setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups", py, "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, fmt.Sprintf("uid %d listening on %d", uid, port), 10*time.Second, func() bool {
		out, _ := execCombined("ip", "netns", "exec", l.Server, "ss", "-Htlne", fmt.Sprintf("sport = :%d", port))
		return strings.Contains(out, fmt.Sprintf("uid:%d", uid)) || (uid == 0 && strings.Contains(out, "LISTEN"))
	})
}

// Under allow_listening only root's listeners open their port to the
// world, unless tcp.listening_users names another user: any local user
// could otherwise open a port by listening on it.
func TestAllowListeningCountsOnlyRootsListeners(t *testing.T) {
	l := NewLab(t)
	l.WritePolicy("tcp:\n  allow: [8022]\n  allow_listening: true\n")
	d := l.StartDaemon()
	listenAs(t, l, 65534, 7070) // nobody
	listenAs(t, l, 0, 7071)     // root, after nobody's: the scan that sees it saw 7070 too
	d.WaitLog(`listening ports changed.*7071`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7070: "filtered", 7071: "open"})
	if strings.Contains(d.log.String(), "7070") {
		t.Errorf("nobody's listener opened its port:\n%s", d.log)
	}
	d.Mark()
	l.WritePolicy("tcp:\n  allow: [8022]\n  allow_listening: true\n  listening_users: [65534]\n")
	d.WaitLog(`policy reloaded`)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7070: "open"})
}

// A listener toggled again and again switches at most one generation per
// interval (5 s), and the last state is applied once the churn stops.
func TestListenerChurnIsRateLimited(t *testing.T) {
	l := NewLab(t)
	l.WritePolicy("tcp:\n  allow: [8022]\n  allow_listening: true\n")
	d := l.StartDaemon()
	d.Mark()
	start := time.Now()
	var ln net.Listener
	toggles := 0
	for time.Since(start) < 4*time.Second {
		if ln == nil {
			ln = l.ListenAddr("[::]:7072")
		} else {
			ln.Close()
			ln = nil
		}
		toggles++
		time.Sleep(150 * time.Millisecond) // paces the churn
	}
	if ln == nil {
		ln = l.ListenAddr("[::]:7072")
	}
	elapsed := time.Since(start)
	// The last state (listening) is applied within an interval and a tick.
	waitFor(t, "7072 opened after the churn", 15*time.Second, func() bool { return l.Connect(l.CliV4, l.SrvV4, 7072) == "open" })
	switches := strings.Count(d.log.String()[d.since:], "listening ports changed")
	max := int(time.Since(start)/(5*time.Second)) + 2
	t.Logf("%d toggles in %v: %d switches (at most %d)", toggles, elapsed, switches, max)
	if switches > max {
		t.Errorf("%d toggles made %d switches, want at most %d\n%s", toggles, switches, max, d.log.String()[d.since:])
	}
}
