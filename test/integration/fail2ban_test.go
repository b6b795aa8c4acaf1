package integration

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// fail2ban is a fail2ban of Debian's package run for one test: its own
// configuration directory (the action xdpguard ships, a jail on a log
// file the test writes), socket and in-memory database; stopped when the
// test ends.
type fail2ban struct {
	t       *testing.T
	conf    string
	sock    string
	logPath string // what the jail watches
	cmd     *exec.Cmd
	out     *syncBuffer
}

// startFail2ban runs fail2ban with jail "xdpg" watching a log for "Failed
// login from <HOST>", banning after 3 lines, through the xdpguard action
// with xdpguard run by xdpguardCmd.
func startFail2ban(t *testing.T, xdpguardCmd string) *fail2ban {
	t.Helper()
	_, err := exec.LookPath("fail2ban-client")
	testutil.Require(t, err, "fail2ban (Debian's package)")
	dir := t.TempDir()
	f := &fail2ban{t: t, conf: filepath.Join(dir, "conf"), sock: filepath.Join(dir, "f2b.sock"), logPath: filepath.Join(dir, "auth.log"), out: &syncBuffer{}}
	action, err := os.ReadFile("../../deploy/fail2ban/action.d/xdpguard.conf")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"fail2ban.conf": fmt.Sprintf("[Definition]\nloglevel = INFO\nlogtarget = STDOUT\nsocket = %s\npidfile = %s\ndbfile = :memory:\n",
			f.sock, filepath.Join(dir, "f2b.pid")),
		"filter.d/xdpg-test.conf": "[Definition]\nfailregex = ^Failed login from <HOST>$\ndatepattern = {NONE}\n",
		"action.d/xdpguard.conf":  string(action),
		"jail.conf": fmt.Sprintf("[xdpg]\nenabled = true\nfilter = xdpg-test\nlogpath = %s\nbackend = polling\nmaxretry = 3\nfindtime = 600\nbantime = 600\naction = xdpguard[xdpguard=%q]\n",
			f.logPath, xdpguardCmd),
	}
	for name, content := range files {
		path := filepath.Join(f.conf, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(f.logPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// -f: the server in the foreground, in this process's child.
	f.cmd = exec.Command("fail2ban-client", "-c", f.conf, "-s", f.sock, "-x", "-f", "start")
	f.cmd.Stdout, f.cmd.Stderr = f.out, f.out
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = f.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_, _ = f.client("stop")
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = f.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("fail2ban's output:\n%s", f.out)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if out, err := f.client("status", "xdpg"); err == nil && strings.Contains(out, "Currently banned") {
			return f
		}
		select {
		case <-done:
			t.Fatalf("fail2ban exited:\n%s", f.out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("fail2ban's jail not up after 60s:\n%s", f.out)
		}
	}
}

// client runs fail2ban-client against this server.
func (f *fail2ban) client(args ...string) (string, error) {
	out, err := exec.Command("fail2ban-client", append([]string{"-c", f.conf, "-s", f.sock}, args...)...).CombinedOutput()
	return string(out), err
}

// fail appends n failed-login lines from src to the jail's log.
func (f *fail2ban) fail(src string, n int) {
	f.t.Helper()
	lf, err := os.OpenFile(f.logPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	defer lf.Close()
	for i := 0; i < n; i++ {
		fmt.Fprintf(lf, "Failed login from %s\n", src)
	}
}

// fail2ban with the action xdpguard ships, over veth: a source whose
// failed logins fill the jail is dropped in XDP (an IPv6 address with its
// /64, as the data path keys sources: rotating the low bits does not
// escape), shown with origin fail2ban and the jail's name;
// `fail2ban-client set JAIL unbanip` lets it through again; fail2ban's
// unban never lifts an operator's ban of the same address.
func TestFail2banActionOverVeth(t *testing.T) {
	l, _ := startLab(t, labPolicy)
	f := startFail2ban(t, "ip netns exec "+l.Server+" "+xdpguardBin)

	f.fail(l.CliV4, 3)
	f.fail(l.CliV6, 3)
	f.fail(l.CliV4b, 1) // below maxretry
	v6net := netip.PrefixFrom(netip.MustParseAddr(l.CliV6), 64).Masked().String()
	isBanned := func(src string) func() bool {
		return func() bool { return banList(t, l)[src].Origin == "fail2ban" }
	}
	waitFor(t, "fail2ban's bans in XDP", 60*time.Second, func() bool { return isBanned(l.CliV4+"/32")() && isBanned(v6net)() })
	if b := banList(t, l)[l.CliV4+"/32"]; b.Reason != "f2b xdpg" {
		t.Errorf("reason %q, want the jail's name", b.Reason)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "filtered"})
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{8022: "filtered"})
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8022: "open"})
	expectPorts(t, l, l.CliV6b, l.SrvV6, map[int]string{8022: "filtered"}) // CliV6's /64

	if out, err := f.client("set", "xdpg", "unbanip", l.CliV4); err != nil {
		t.Fatalf("unbanip: %v\n%s", err, out)
	}
	waitFor(t, "fail2ban's unban in XDP", 30*time.Second, func() bool { return !isBanned(l.CliV4 + "/32")() })
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "open"})

	// The operator bans the IPv6 address itself, for longer: fail2ban's
	// unban lifts its /64 (the unban ran: the /64 is gone from the list)
	// and leaves the operator's ban in force.
	xdpguardIn(t, l, "ban", l.CliV6, "--for", "2h", "--reason", "operator")
	if out, err := f.client("set", "xdpg", "unbanip", l.CliV6); err != nil {
		t.Fatalf("unbanip: %v\n%s", err, out)
	}
	waitFor(t, "fail2ban's unban of the /64 in XDP", 30*time.Second, func() bool { _, ok := banList(t, l)[v6net]; return !ok })
	if b := banList(t, l)[l.CliV6+"/128"]; b.Origin != "cli" || b.Reason != "operator" {
		t.Errorf("after fail2ban's unban, the operator's ban is %+v", b)
	}
	expectPorts(t, l, l.CliV6b, l.SrvV6, map[int]string{8022: "open"})
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{8022: "filtered"})
}
