package integration

import (
	"fmt"
	"net"
	"os"
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

// A start that fails, before or after attaching, leaves the host as it was:
// no XDP program, no pins (once a --ready-file in a missing directory, or
// any failure after the attach, left a filter no daemon managed).
func TestFailedStartLeavesTheHostAsItWas(t *testing.T) {
	l := NewLab(t)
	l.Listen(7777)
	l.WritePolicy(labPolicy)
	fifo := filepath.Join(l.dir, "events.fifo")
	sh(t, "mkfifo", fifo)
	readyDir := filepath.Join(l.dir, "ready-is-a-dir")
	sh(t, "mkdir", "-p", filepath.Join(readyDir, "x"))
	link := filepath.Join(l.dir, "events-link")
	sh(t, "ln", "-s", "/etc/passwd-should-never-be-written", link)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"ready file in a missing directory", []string{"--ready-file", "/nonexistent/dir/ready"}, "--ready-file: /nonexistent/dir is not an existing directory"},
		{"ready file is a directory (fails after the attach)", []string{"--ready-file", readyDir}, "--ready-file"},
		{"unknown log format", []string{"--log-format", "xml"}, `--log-format: want text or json, got "xml"`},
		{"events to a FIFO", []string{"--events", fifo}, "is not a regular file"},
		{"events through a symlink", []string{"--events", link}, "is a symlink"},
		{"bad interface name", []string{"--iface", "../" + l.SrvIf}, "--iface"},
	} {
		args := append([]string{"run", "--policy", l.dir + "/policy.yaml", "--metrics-addr", ""}, c.args...)
		if !strings.Contains(strings.Join(c.args, " "), "--iface") {
			args = append(args, "--iface", l.SrvIf)
		}
		out, err := runIn(l, args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s: %v, want an error naming %q\n%s", c.name, err, c.want, out)
		}
		if s := l.Status(); strings.TrimSpace(s) != "[]" {
			t.Errorf("%s: something was left pinned: %s", c.name, s)
		}
		expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "open"})
	}
	if _, err := os.Lstat("/etc/passwd-should-never-be-written"); err == nil {
		t.Error("the events log was written through a symlink")
	}
}
