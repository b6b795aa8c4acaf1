package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// banList is `xdpguard bans --output json` in the server namespace, by
// source.
func banList(t *testing.T, l *Lab) map[string]struct{ Origin, Reason string } {
	t.Helper()
	out := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "bans", "--output", "json")
	var bans []struct{ Source, Origin, Reason string }
	if err := json.Unmarshal([]byte(out), &bans); err != nil {
		t.Fatalf("bans: %v\n%s", err, out)
	}
	got := map[string]struct{ Origin, Reason string }{}
	for _, b := range bans {
		got[b.Source] = struct{ Origin, Reason string }{b.Origin, b.Reason}
	}
	return got
}

// xdpguardIn runs xdpguard in the server namespace; it fails the test if
// the command does.
func xdpguardIn(t *testing.T, l *Lab, args ...string) string {
	t.Helper()
	return sh(t, append([]string{"ip", "netns", "exec", l.Server, xdpguardBin}, args...)...)
}

// `xdpguard ban` and `unban` over veth, under a policy with no limits: an
// IPv4 and an IPv6 address (exactly that address: its /64 neighbour still
// connects), a prefix that ends on its own in the data path; bans act at
// once, keep established connections, show in `bans` and the metrics, and
// survive a daemon restart; link-local sources are refused.
func TestManualBansOverVeth(t *testing.T) {
	l, d := startLab(t, labPolicy)
	conn := dialFrom(t, l, l.CliV4, l.SrvV4, 8022)

	xdpguardIn(t, l, "ban", l.CliV4, "--for", "1h", "--reason", "brute force")
	xdpguardIn(t, l, "ban", l.CliV6, "--for", "1h")
	// No wait: a ban is in force as soon as the command returns.
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "filtered"})
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{8022: "filtered"})
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8022: "open"})
	expectPorts(t, l, l.CliV6b, l.SrvV6, map[int]string{8022: "open"})
	if err := echoes(conn); err != nil {
		t.Errorf("the banned source's established connection was cut: %v", err)
	}
	if out, _ := execCombined("ip", "netns", "exec", l.Client, "ping", "-c", "1", "-W", "1", "-I", l.CliV6, l.SrvV6); !strings.Contains(out, " 0 received") {
		t.Errorf("a banned source's ping: want it unanswered:\n%s", out)
	}

	bans := banList(t, l)
	if b := bans[l.CliV4+"/32"]; b.Origin != "cli" || b.Reason != "brute force" {
		t.Errorf("bans: %s is %+v, want origin cli, reason \"brute force\" (all: %v)", l.CliV4, b, bans)
	}
	if _, ok := bans[l.CliV6+"/128"]; !ok || len(bans) != 2 {
		t.Errorf("bans: %v, want %s/32 and %s/128", bans, l.CliV4, l.CliV6)
	}
	if m := d.Scrape(); Metric(m, "xdpguard_banned_sources", `origin="cli"`) != 2 {
		t.Errorf("xdpguard_banned_sources{origin=\"cli\"}:\n%s", grep(m, "banned_sources"))
	}

	// A prefix for 3 s: nothing lifts it but its end, in the data path.
	prefix := strings.TrimSuffix(l.CliV4b, ".3") + ".0/24"
	xdpguardIn(t, l, "ban", prefix, "--for", "3s")
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8022: "filtered"})
	waitFor(t, "the prefix ban to end", 20*time.Second, func() bool { return l.Connect(l.CliV4b, l.SrvV4, 8022) == "open" })

	// Pinned: a restart (and the reload at its start) keeps them.
	d.Stop()
	d = l.StartDaemon()
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "filtered"})
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{8022: "filtered"})

	for _, src := range []string{l.CliV4, l.CliV6} {
		if out := xdpguardIn(t, l, "unban", src); !strings.Contains(out, "unbanned") {
			t.Errorf("unban %s: %s", src, out)
		}
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "open"})
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{8022: "open"})
	if b := banList(t, l); len(b) != 0 {
		t.Errorf("bans after unban: %v", b)
	}

	for _, bad := range []string{"fe80::1", "169.254.0.0/16", "198.51.100.1/24", "not-an-address"} {
		if out, err := execCombined("ip", "netns", "exec", l.Server, xdpguardBin, "ban", bad); err == nil {
			t.Errorf("ban %s was accepted:\n%s", bad, out)
		}
	}
	if out, err := execCombined("ip", "netns", "exec", l.Server, xdpguardBin, "unban", l.CliV4); err == nil || !strings.Contains(out, "not banned") {
		t.Errorf("unban of a source not banned: %v\n%s", err, out)
	}
}
