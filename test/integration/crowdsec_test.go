package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/crowdseclab"
	"github.com/xdpguard/xdpguard/pkg/history"
)

// crowdSecStatus is the crowdsec part of `xdpguard status --output json`
// (the server's interface), and its problems.
func crowdSecStatus(t *testing.T, l *Lab) (report map[string]any, problems []string) {
	t.Helper()
	out, _ := execCombined("ip", "netns", "exec", l.Server, xdpguardBin, "status", "--runtime-dir", l.dir, "--output", "json")
	var st []struct {
		CrowdSec map[string]any `json:"crowdsec"`
		Bans     map[string]int `json:"bans"`
		Problems []string       `json:"problems"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 {
		t.Fatalf("status: %v\n%s", err, out)
	}
	return st[0].CrowdSec, st[0].Problems
}

// The daemon as a bouncer of Debian's real CrowdSec LAPI, over veth: a
// decision added with cscli drops the source's SYNs within an interval
// or so, an address and a range, IPv4 and IPv6; deleting it lets them
// through; the bans held survive a LAPI restart (counted as errors
// meanwhile) and a daemon restart, during which a deletion is caught up
// at the next start; a range wider than a feed may ban is refused; and
// removing the crowdsec section lifts CrowdSec's bans.
func TestCrowdSecBouncerOverVeth(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022, 8080)
	lapi := crowdseclab.StartIn(t, l.Server)
	keyFile := filepath.Join(l.dir, "bouncer.key")
	if err := os.WriteFile(keyFile, []byte(lapi.AddBouncer(t, "xdpguard")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const interval = time.Second
	withCrowdSec := labPolicy + fmt.Sprintf("crowdsec:\n  url: %s\n  api_key_file: %s\n  interval: %s\n", lapi.URL, keyFile, interval)
	l.WritePolicy(withCrowdSec)
	d := l.StartDaemon("--runtime-dir", l.dir)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "open"})

	isBanned := func(src string) func() bool {
		return func() bool { return banList(t, l)[src].Origin == "crowdsec" }
	}
	lapi.Cscli(t, "decisions", "add", "--ip", l.CliV4, "--duration", "1m", "--reason", "xdpguard test")
	added := time.Now()
	waitFor(t, "CrowdSec's decision as a kernel ban", 30*time.Second, isBanned(l.CliV4+"/32"))
	// Logged, not asserted (timing belongs to benchmarks): at most an
	// interval plus a pull, and the time `bans` takes to run.
	t.Logf("decision enforced within %v of cscli returning (interval %v)", time.Since(added).Round(time.Millisecond), interval)
	v6Range := strings.TrimSuffix(l.CliV6, "::2") + "::/64"
	lapi.Cscli(t, "decisions", "add", "--range", v6Range, "--duration", "1h")
	waitFor(t, "CrowdSec's range as a kernel ban", 30*time.Second, isBanned(v6Range))
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "filtered"})
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{8022: "filtered"})
	expectPorts(t, l, l.CliV6b, l.SrvV6, map[int]string{8022: "filtered"})
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8022: "open"})
	if b := banList(t, l)[l.CliV4+"/32"]; !strings.Contains(b.Reason, "xdpguard test") {
		t.Errorf("the ban's reason %q does not carry the decision's", b.Reason)
	}
	m := d.Scrape()
	if Metric(m, "xdpguard_crowdsec_decisions") != 2 || Metric(m, "xdpguard_banned_sources", `origin="crowdsec"`) != 2 || Metric(m, "xdpguard_crowdsec_pulls_total") < 1 {
		t.Errorf("metrics:\n%s", grep(m, "crowdsec"))
	}
	if r, problems := crowdSecStatus(t, l); r == nil || r["decisions"] != 2.0 || r["url"] != lapi.URL || len(problems) != 0 {
		t.Errorf("status: crowdsec %v, problems %v", r, problems)
	}

	// A range wider than a feed may ban: refused, counted.
	lapi.Cscli(t, "decisions", "add", "--range", "16.0.0.0/4", "--duration", "1h")
	waitFor(t, "the /4 refused", 30*time.Second, func() bool {
		return Metric(d.Scrape(), "xdpguard_crowdsec_decisions_skipped_total", `why="too_wide"`) >= 1
	})
	if _, ok := banList(t, l)["16.0.0.0/4"]; ok {
		t.Error("a /4 from CrowdSec was banned")
	}

	// The LAPI goes away: the bans stay, the errors count, status says so.
	lapi.Stop(t)
	waitFor(t, "pulls failing", 30*time.Second, func() bool { return Metric(d.Scrape(), "xdpguard_crowdsec_failing") >= 1 })
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "filtered"})
	if m := d.Scrape(); Metric(m, "xdpguard_crowdsec_errors_total", `cause="unreachable"`) < 1 {
		t.Errorf("errors while the LAPI is down:\n%s", grep(m, "crowdsec_errors"))
	}
	waitFor(t, "status to report the failing pulls", 30*time.Second, func() bool {
		_, problems := crowdSecStatus(t, l)
		return strings.Contains(strings.Join(problems, "\n"), "failed pulls in a row")
	})
	lapi.Restart(t)
	waitFor(t, "pulls succeeding again", 60*time.Second, func() bool { return Metric(d.Scrape(), "xdpguard_crowdsec_failing") == 0 })

	// A key file every user can read refuses the reload; the bouncer stays.
	held := Metric(d.Scrape(), "xdpguard_crowdsec_decisions")
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	d.Mark()
	l.WritePolicy(withCrowdSec + "# touched\n")
	if out := d.WaitLogWithin("policy reload refused.*", 20*time.Second); !strings.Contains(out, "chmod o-r") {
		t.Errorf("refusal: %s", out)
	}
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := Metric(d.Scrape(), "xdpguard_crowdsec_decisions"); got != held || held < 2 {
		t.Errorf("decisions held %v, %v before the refused reload: the bouncer did not survive it", got, held)
	}

	lapi.Cscli(t, "decisions", "delete", "--ip", l.CliV4)
	waitFor(t, "the deleted decision's ban lifted", 30*time.Second, func() bool { return !isBanned(l.CliV4 + "/32")() })
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "open"})

	// Deleted while no daemon runs: the next one lifts it at its first pull.
	d.Stop()
	if !isBanned(v6Range)() {
		t.Fatal("the range ban did not outlive the daemon")
	}
	lapi.Cscli(t, "decisions", "delete", "--range", v6Range)
	d = l.StartDaemon("--runtime-dir", l.dir)
	waitFor(t, "the range deleted while the daemon was down lifted", 30*time.Second, func() bool { return !isBanned(v6Range)() })
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{8022: "open"})

	// The section removed: CrowdSec's bans go with it.
	lapi.Cscli(t, "decisions", "add", "--ip", l.CliV4b, "--duration", "1h")
	waitFor(t, "a new decision enforced", 30*time.Second, isBanned(l.CliV4b+"/32"))
	d.Mark()
	l.WritePolicy(labPolicy)
	d.WaitLog("crowdsec: bouncer stopped")
	if isBanned(l.CliV4b + "/32")() {
		t.Error("CrowdSec's ban outlived the crowdsec section")
	}
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8022: "open"})
	if r, _ := crowdSecStatus(t, l); r != nil {
		t.Errorf("status still reports a bouncer: %v", r)
	}

	// The change history holds the feed's bans and lifts, in order.
	recs, _, err := history.Read(l.AuditLog(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var feed []string
	for _, r := range recs {
		if r.Trigger == history.TriggerCrowdSec && r.Origin == "crowdsec" {
			feed = append(feed, r.Kind+" "+strings.Join(r.Examples, ",")+" "+r.Reason)
		}
	}
	// One record a change: the restarted bouncer re-records none of the
	// bans it holds.
	want := []string{"ban " + l.CliV4 + "/32 ", "ban " + v6Range + " ", "unban " + l.CliV4 + "/32 ", "unban " + v6Range + " ",
		"ban " + l.CliV4b + "/32 ", "unban  the crowdsec section was removed"}
	if !slices.Equal(feed, want) {
		t.Errorf("the feed's records:\n%q\nwant\n%q", feed, want)
	}
}
