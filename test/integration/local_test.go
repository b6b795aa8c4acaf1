package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// status says, by its exit status and by name, when something asked about
// is not enforcing; unban and detach name what they refuse.
func TestStatusExitStatusAndProblems(t *testing.T) {
	l, _ := startLab(t, labPolicy)
	if out, err := runIn(l, "status"); err != nil {
		t.Fatalf("status of an enforcing interface: %v\n%s", err, out)
	}
	out, err := runIn(l, "status", "--iface", l.SrvIf+",nosuchif0", "--output", "json")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("status naming an interface with no pins: %v, want exit status 3\n%s", err, out)
	}
	var st []struct {
		Interface  string
		Enforcing  bool
		Generation *uint64
		Problems   []string
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 2 {
		t.Fatalf("status json: %v\n%s", err, out)
	}
	if !st[0].Enforcing || len(st[0].Problems) != 0 || st[0].Generation == nil {
		t.Errorf("the enforcing interface: %+v", st[0])
	}
	if st[1].Enforcing || st[1].Generation != nil || len(st[1].Problems) == 0 || !strings.Contains(st[1].Problems[0], "no xdpguard pins") {
		t.Errorf("the interface with no pins: %+v (an unread generation must be null, not 0)", st[1])
	}
	if out, err := runIn(l, "unban", "192.0.2.1"); err == nil || !strings.Contains(out, "192.0.2.1/32 is not banned on "+l.SrvIf) {
		t.Errorf("unban of nothing banned: %v\n%s", err, out)
	}
	if out, err := runIn(l, "detach", "--iface", "nosuchif0"); err == nil || !strings.Contains(out, "nosuchif0: no xdpguard pins") {
		t.Errorf("detach of an interface with no pins: %v\n%s", err, out)
	}
}

// A reload compiles off the daemon's lock: /readyz (and /metrics) answer
// while a large policy is parsed, flattened and verified.
func TestReadyzAnswersDuringAReload(t *testing.T) {
	l, d := startLab(t, labPolicy)
	var from []string
	for i := 0; i < 40000; i++ {
		from = append(from, fmt.Sprintf(`"10.%d.%d.0/24"`, i>>8, i&0xff))
	}
	d.Mark()
	l.WritePolicy("tcp:\n  allow:\n    - 8022\n    - 8080\n    - port: 3306\n      from: [" + strings.Join(from, ", ") + "]\n")
	// SIGHUP reloads at once (the file watcher waits 200 ms for the file
	// to settle): every answer counted below came while the reload ran.
	d.Signal(syscall.SIGHUP)
	answered := 0
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(d.log.String()[d.since:], "policy reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("the large policy never loaded:\n%s", d.log.String()[d.since:])
		}
		if _, code, err := l.HTTPGet(l.Server, d.Metrics, "/readyz"); err == nil && code == 200 {
			answered++
		}
	}
	t.Logf("/readyz answered %d times during the reload", answered)
	if answered < 3 {
		t.Errorf("/readyz answered %d times while the reload ran: it waits for the reload", answered)
	}
}
