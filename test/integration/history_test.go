package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/pkg/history"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// The change history of a daemon's run: a reload, a refused policy, a
// timed switch and a ban through the CLI (another process, appending to
// the same log) are all there, in order, after the daemon is SIGKILLed
// with a record torn mid-write and started again; the torn line is
// skipped and reported, and the restart is recorded from the generation
// it adopted; a detach is recorded too.
func TestHistoryOfARunSurvivesKill(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022, 7777)
	l.WritePolicy("tcp:\n  allow: [8022]\n")
	d := l.StartDaemon()

	// A reload that opens 9000 (the SIGHUP or the file change, whichever
	// the daemon takes first, switches; the other finds it unchanged).
	d.Mark()
	l.WritePolicy("tcp:\n  allow: [8022, 9000]\n")
	d.Signal(syscall.SIGHUP)
	d.WaitLog(`policy reloaded.*trigger=(SIGHUP|"file changed")`)

	// A refused policy.
	d.Mark()
	l.WritePolicy("tcp:\n  allow: [8022, 8080-70]\n")
	d.Signal(syscall.SIGHUP)
	d.WaitLog(`policy reload refused`)

	// A timed switch: 7777 opens until a time a few seconds away (the
	// window doubles until the reload lands before it), then closes on
	// the daemon's timer.
	var until time.Time
	for window := 3 * time.Second; ; window *= 2 {
		if window > time.Minute {
			t.Fatalf("no reload came within %v of writing the file:\n%s", window/2, d.log)
		}
		until = time.Now().Add(window).Truncate(time.Second)
		d.Mark()
		l.WritePolicy(fmt.Sprintf("tcp:\n  allow:\n    - 8022\n    - port: 7777\n      expires: %s\n", until.UTC().Format(time.RFC3339)))
		d.WaitLogWithin(`policy (reloaded|unchanged|reload refused).*trigger="file changed"`, window+10*time.Second)
		if time.Now().Add(time.Second).Before(until) {
			break
		}
	}
	d.WaitLogWithin(`timed rules changed`, time.Until(until)+10*time.Second)

	// A ban by the CLI, run through sudo by alice.
	ban := exec.Command("ip", "netns", "exec", l.Server, xdpguardBin, "ban", l.CliV4b, "--for", "1h", "--reason", "history test", "--audit-log", l.AuditLog())
	ban.Env = append(os.Environ(), "SUDO_USER=alice")
	if out, err := ban.CombinedOutput(); err != nil {
		t.Fatalf("ban: %v\n%s", err, out)
	}

	// Bans from processes at once (fail2ban fires several actions), while
	// the daemon reloads: each is one whole record.
	var wg sync.WaitGroup
	const parallel = 6
	for i := range parallel {
		wg.Go(func() {
			if out, err := execCombined("ip", "netns", "exec", l.Server, xdpguardBin, "ban", fmt.Sprintf("192.0.2.%d", i+1), "--for", "1h",
				"--origin", "fail2ban", "--audit-log", l.AuditLog()); err != nil {
				t.Errorf("ban: %v\n%s", err, out)
			}
		})
	}
	d.Signal(syscall.SIGHUP)
	wg.Wait()

	// SIGKILL, leaving a record cut short as a crash mid-write would.
	d.Kill()
	f, err := os.OpenFile(l.AuditLog(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","kind":"switch","trigger":"sig`)
	f.Close()
	l.WritePolicy("tcp:\n  allow: [8022]\n") // an expired rule is refused at start
	d = l.StartDaemon()
	d.Kill() // its start is recorded before it is ready
	xdpguardIn(t, l, "detach", "--iface", l.SrvIf, "--audit-log", l.AuditLog())

	out := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "history", "--output", "json", "--audit-log", l.AuditLog())
	var rep struct {
		Records []history.Record
		Skipped []history.Skipped
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Skipped) != 1 || !rep.Skipped[0].Torn {
		t.Errorf("skipped %+v, want the one torn line", rep.Skipped)
	}
	var lines []string
	for i, r := range rep.Records {
		lines = append(lines, fmt.Sprintf("%s %s %s %s %s→%s %s %s", r.Kind, r.Trigger, r.User, r.Result, r.Before, r.After, r.Source, r.Summary))
		if i > 0 && r.Time.Before(rep.Records[i-1].Time) {
			t.Errorf("record %d is older than the one before it", i)
		}
	}
	all := strings.Join(lines, "\n")

	fail2ban := 0
	for _, r := range rep.Records {
		if r.Kind == history.KindBan && r.Origin == "fail2ban" && strings.HasPrefix(r.Source, "192.0.2.") && r.Result == history.ResultApplied {
			fail2ban++
		}
	}
	if fail2ban != parallel {
		t.Errorf("%d of the %d bans made at once are in the history:\n%s", fail2ban, parallel, all)
	}

	// Every change, in order: each step is found after the one before.
	steps := []struct {
		what string
		ok   func(r history.Record) bool
	}{
		{"the start", func(r history.Record) bool {
			return r.Kind == history.KindStart && r.Before == "" && r.After != "" && slices.Equal(r.Interfaces, []string{l.SrvIf})
		}},
		{"the reload opening 9000", func(r history.Record) bool {
			return r.Kind == history.KindSwitch && (r.Trigger == history.TriggerSIGHUP || r.Trigger == history.TriggerFile) &&
				r.Result == history.ResultApplied && r.Before != r.After && r.Change != nil &&
				len(r.Change.Ports) == 1 && r.Change.Ports[0].String() == "tcp 9000 opened to all"
		}},
		{"the refused policy", func(r history.Record) bool {
			return r.Kind == history.KindSwitch && r.Result == history.ResultRefused && r.Before == r.After &&
				strings.Contains(r.Error, "policy.yaml:2:") && strings.Contains(r.Error, "reversed")
		}},
		{"the switch to the timed rule", func(r history.Record) bool {
			return r.Kind == history.KindSwitch && r.Trigger == history.TriggerFile && r.Result == history.ResultApplied &&
				r.Change != nil && slices.ContainsFunc(r.Change.Ports, func(c policy.PortChange) bool { return c.String() == "tcp 7777 opened to all" })
		}},
		{"the timed rule's end", func(r history.Record) bool {
			return r.Kind == history.KindSwitch && r.Trigger == history.TriggerTimer && r.Result == history.ResultApplied &&
				r.Change != nil && len(r.Change.Ports) == 1 && r.Change.Ports[0].String() == "tcp 7777 closed to all"
		}},
		{"the CLI's ban", func(r history.Record) bool {
			return r.Kind == history.KindBan && r.Trigger == history.TriggerCLI && r.User == "alice" && r.Origin == "cli" &&
				r.Source == l.CliV4b+"/32" && r.Reason == "history test" && r.Until != nil && r.PID != 0
		}},
		{"the restart, from the generation it adopted", func(r history.Record) bool {
			return r.Kind == history.KindStart && r.Before != ""
		}},
		{"the detach", func(r history.Record) bool {
			return r.Kind == history.KindDetach && r.Trigger == history.TriggerCLI && r.Result == history.ResultApplied &&
				slices.Equal(r.Interfaces, []string{l.SrvIf}) && r.Before == rep.Records[len(rep.Records)-2].After
		}},
	}
	i := 0
	var lastAfter string
	for _, s := range steps {
		for ; i < len(rep.Records) && !s.ok(rep.Records[i]); i++ {
			if r := rep.Records[i]; r.Kind == history.KindSwitch && r.Result == history.ResultApplied {
				lastAfter = r.After
			}
		}
		if i == len(rep.Records) {
			t.Fatalf("no record of %s in order:\n%s", s.what, all)
		}
		if s.what == "the restart, from the generation it adopted" && rep.Records[i].Before != lastAfter {
			t.Errorf("the restart switched from %s, want %s (the last switch's)", rep.Records[i].Before, lastAfter)
		}
		if r := rep.Records[i]; r.Kind == history.KindSwitch && r.Result == history.ResultApplied {
			lastAfter = r.After
		}
		i++
	}

	// The text form says the same, with the refusal's why and the diff.
	text := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "history", "--audit-log", l.AuditLog())
	for _, want := range []string{"refused", "why: ", "tcp 7777 closed to all", "ban  cli  by alice  applied  " + l.CliV4b + "/32", "skipped "} {
		if !strings.Contains(text, want) {
			t.Errorf("history does not show %q:\n%s", want, text)
		}
	}
	if s := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "history", "--since", "1ns", "--output", "json", "--audit-log", l.AuditLog()); strings.Contains(s, `"kind": "ban"`) {
		t.Errorf("--since 1ns shows the ban")
	}
}
