package deploy

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// The alert rules are valid and their unit tests pass.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	testutil.Require(t, err, "promtool (Debian package prometheus)")
	for _, args := range [][]string{{"check", "rules", "xdpguard-rules.yml"}, {"test", "rules", "xdpguard-rules.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

var metricName = regexp.MustCompile(`\bxdpguard_[a-z_]+`)

// The dashboard is importable as is: a data source variable and an
// interface variable, every panel on that data source, described, filtered
// by interface, and using only metrics docs/metrics.md lists.
func TestDashboard(t *testing.T) {
	d, err := LoadDashboard("grafana/xdpguard.json")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["interface"] != "query" || d.UID == "" {
		t.Fatalf("variables %v, uid %q: want a datasource and an interface variable", vars, d.UID)
	}
	docs, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	queries := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Description == "" || len(p.Targets) == 0 {
			t.Errorf("panel %q: needs the ${datasource} data source, a description and a query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				if !strings.Contains(string(docs), "`"+m+"`") {
					t.Errorf("panel %q uses %s, which docs/metrics.md does not list", p.Title, m)
				}
			}
			// The daemon's own series have no interface label.
			perInterface := !strings.Contains(tg.Expr, "reload") && !strings.Contains(tg.Expr, "scrape_errors") && !strings.Contains(tg.Expr, "crowdsec_")
			if perInterface && !strings.Contains(tg.Expr, `interface=~"$interface"`) {
				t.Errorf("panel %q: query %s ignores the interface variable", p.Title, tg.Expr)
			}
		}
	}
	if queries < 10 {
		t.Errorf("only %d queries", queries)
	}
}

// docs/observability.md describes every panel and every alert.
func TestObservabilityDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	d, err := LoadDashboard("grafana/xdpguard.json")
	if err != nil {
		t.Fatal(err)
	}
	for title := range d.Queries() {
		if !strings.Contains(string(doc), "| "+title+" |") {
			t.Errorf("panel %q is not described in docs/observability.md", title)
		}
	}
	rules, err := os.ReadFile("prometheus/xdpguard-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`alert: (\w+)`).FindAllStringSubmatch(string(rules), -1) {
		if !strings.Contains(string(doc), "`"+m[1]+"`") {
			t.Errorf("alert %s is not described in docs/observability.md", m[1])
		}
	}
}

// The systemd unit grants exactly the capabilities the daemon needs, keeps
// the pins writable under its hardening, and passes systemd-analyze verify.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("systemd/xdpguard.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON\n",
		"AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON\n",
		"ReadWritePaths=-/sys/fs/bpf/xdpguard\n", "ProtectKernelTunables=yes\n", "NoNewPrivileges=yes\n",
		"ExecReload=/bin/sh -c 'kill -HUP \"$MAINPID\"'\n", "ProtectSystem=strict\n",
		"LogsDirectory=xdpguard\n", "StateDirectory=xdpguard\n", "RuntimeDirectory=xdpguard\n", "MemoryMax=512M\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	if strings.Contains(string(unit), "\nPrivateBPF=yes") {
		t.Error("PrivateBPF would lose the pins when the unit stops")
	}
	analyze, err := exec.LookPath("systemd-analyze")
	testutil.Require(t, err, "systemd-analyze (Debian package systemd)")
	// verify wants the binaries the unit names: point it at a build.
	dir := t.TempDir()
	bin := dir + "/xdpguard"
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/xdpguard/xdpguard/cmd/xdpguard").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	copyPath := dir + "/xdpguard.service"
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(unit), "/usr/bin/xdpguard", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
