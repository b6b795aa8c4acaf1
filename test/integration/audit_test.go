package integration

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/pkg/audit"
)

// auditIn runs `xdpguard audit --output json` on policy in the server's
// namespace (its listening sockets) and returns the findings by
// kind+subject, and the exit error.
func auditIn(t *testing.T, l *Lab, policy string, extra ...string) (map[string]string, error) {
	t.Helper()
	path := filepath.Join(l.dir, "audit.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"netns", "exec", l.Server, xdpguardBin, "audit", "--policy", path, "--output", "json"}, extra...)
	out, err := execCombined("ip", args...)
	var r struct {
		Findings []struct{ Kind, Severity, Subject string }
	}
	if jerr := json.Unmarshal([]byte(strings.TrimSpace(strings.Split(out, "\nxdpguard:")[0])), &r); jerr != nil {
		t.Fatalf("audit: %v (%v)\n%s", jerr, err, out)
	}
	got := map[string]string{}
	for _, f := range r.Findings {
		got[f.Kind+" "+f.Subject] = f.Severity
	}
	return got, err
}

// `xdpguard audit` against the sockets of a real namespace: a planted
// zombie port and a world-open MySQL are found (and fail --fail-on high);
// the same services scoped to the clients' network give nothing.
func TestAuditFindsZombiesAndExposedDatabases(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022, 3306)
	var udp net.PacketConn
	l.InNS(l.Server, func() {
		var err error
		if udp, err = net.ListenPacket("udp", ":5353"); err != nil {
			t.Fatal(err)
		}
	})
	defer udp.Close()
	const rest = "ratelimit:\n  syn: {rate: 50, burst: 100}\nudp:\n  allow: []\n  replies: none\n"
	got, err := auditIn(t, l, "tcp:\n  allow: [8022, 3306, 9999]\n"+rest, "--fail-on", "high")
	if got["sensitive_port_open tcp/3306"] != "high" || got["zombie_port tcp/9999"] == "" || got["closed_listener udp/5353"] == "" {
		t.Errorf("findings %v: want a high sensitive_port_open for 3306, a zombie_port for 9999, a closed UDP listener on 5353", got)
	}
	for k := range got {
		if strings.Contains(k, "8022") {
			t.Errorf("8022 (listened on, not sensitive) got %q", k)
		}
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 4 {
		t.Errorf("--fail-on high with a high finding: %v, want exit status 4", err)
	}

	clients := strings.TrimSuffix(l.CliV4, ".2") + ".0/24"
	clean := "tcp:\n  allow:\n    - {port: 8022, from: [" + clients + "]}\n    - {port: 3306, from: [" + clients + "]}\n" +
		"ratelimit:\n  syn: {rate: 50, burst: 100}\nudp:\n  allow:\n    - {port: 5353, from: [" + clients + "]}\n  replies: none\n"
	got, err = auditIn(t, l, clean, "--fail-on", "low")
	if len(got) != 0 || err != nil {
		t.Errorf("a clean policy: findings %v, %v", got, err)
	}
}

// The daemon keeps each rule's last hit from its counters, across
// restarts: a rule real connections use has a last hit, one nobody uses
// has none; with the record aged 40 days (the test's stand-in for 40 days
// of observation), the unused rule, and only it, is an unused_rule finding
// of `xdpguard audit` and of the restarted daemon's metric.
func TestRuleUsageKeptAcrossRestarts(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022)
	doc := "tcp:\n  allow:\n    - {port: 8022, name: used}\n    - {port: 9000, name: idle}\nratelimit:\n  syn: {rate: 50, burst: 100}\n"
	l.WritePolicy(doc)
	d := l.StartDaemon()
	read := func() audit.UsageRecord {
		var u audit.UsageRecord
		b, err := os.ReadFile(l.RuleUsage())
		if err == nil {
			err = json.Unmarshal(b, &u)
		}
		if err != nil {
			t.Fatalf("the usage record: %v", err)
		}
		return u
	}
	if got := l.Connect(l.CliV4, l.SrvV4, 8022); got != "open" {
		t.Fatalf("8022: %s", got)
	}
	// A reload observes the counters (as the minute's audit does).
	var u audit.UsageRecord
	for deadline := time.Now().Add(10 * time.Second); ; {
		d.Signal(syscall.SIGHUP)
		time.Sleep(100 * time.Millisecond)
		if _, err := os.Stat(l.RuleUsage()); err == nil {
			if u = read(); u.Rules["used"] != nil && !u.Rules["used"].LastHit.IsZero() {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no last hit recorded for the rule a connection used: %+v\n%s", u, d.log)
		}
	}
	if u.Rules["idle"] == nil || !u.Rules["idle"].LastHit.IsZero() {
		t.Errorf("idle: %+v, want recorded with no hit", u.Rules["idle"])
	}
	d.Kill()

	// Aged 40 days: the record began, and both rules were first seen, then.
	aged := u
	shift := -40 * 24 * time.Hour
	aged.Since = u.Since.Add(shift)
	for _, r := range aged.Rules {
		r.FirstSeen = r.FirstSeen.Add(shift)
	}
	if err := aged.Save(l.RuleUsage()); err != nil {
		t.Fatal(err)
	}
	d = l.StartDaemon()
	// The daemon audits once serving: wait for it (10 s at most).
	unused := func(m string) float64 {
		return Metric(m, "xdpguard_audit_findings", `kind="unused_rule"`, `severity="low"`)
	}
	if m, _ := d.Settle(1, unused); unused(m) != 1 {
		t.Errorf("xdpguard_audit_findings{kind=unused_rule} = %v after the restart, want 1 (idle)", unused(m))
	}
	if kept := read(); !kept.Since.Equal(aged.Since) {
		t.Errorf("the restart began a new record (since %v, want %v)", kept.Since, aged.Since)
	}
	got, err := auditIn(t, l, doc, "--rule-usage", l.RuleUsage())
	if err != nil {
		t.Fatal(err)
	}
	if got["unused_rule idle"] != "low" || got["unused_rule used"] != "" {
		t.Errorf("findings %v: want unused_rule for idle only", got)
	}
	// Without the record, nothing is claimed.
	if got, _ := auditIn(t, l, doc, "--rule-usage", l.RuleUsage()+".none"); got["unused_rule idle"] != "" {
		t.Errorf("an unused rule claimed without a record: %v", got)
	}
}
