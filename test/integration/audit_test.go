package integration

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
