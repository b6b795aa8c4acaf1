package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/xdpguard/xdpguard/deploy"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

// Prometheus is a real Prometheus server in the lab's server namespace.
type Prometheus struct {
	l    *Lab
	Addr string
}

// StartPrometheus runs Debian's prometheus scraping the daemon every
// second, with xdpguard's alert rules loaded and evaluated every second.
func (l *Lab) StartPrometheus(d *Daemon) *Prometheus {
	bin, err := exec.LookPath("prometheus")
	testutil.Require(l.t, err, "prometheus (Debian package prometheus)")
	rules, err := filepath.Abs("../../deploy/prometheus/xdpguard-rules.yml")
	if err != nil {
		l.t.Fatal(err)
	}
	dir := filepath.Join(l.dir, "prometheus")
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: xdpguard
    static_configs: [{targets: [%q]}]
`, rules, d.Metrics)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		l.t.Fatal(err)
	}
	p := &Prometheus{l: l, Addr: "127.0.0.1:9090"}
	log := &syncBuffer{}
	cmd := exec.Command("ip", "netns", "exec", l.Server, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+p.Addr)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, code, err := l.HTTPGet(l.Server, p.Addr, "/-/ready"); err == nil && code == 200 {
			return p
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("prometheus not ready after 30s:\n%s", log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// API calls the HTTP API and decodes its data field into out.
func (p *Prometheus) API(path string, out any) {
	p.l.t.Helper()
	body, code, err := p.l.HTTPGet(p.l.Server, p.Addr, path)
	if err != nil || code != 200 {
		p.l.t.Fatalf("prometheus %s: %d %v\n%s", path, code, err, body)
	}
	var resp struct {
		Status string
		Data   json.RawMessage
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil || resp.Status != "success" {
		p.l.t.Fatalf("prometheus %s: %v\n%s", path, err, body)
	}
	if err := json.Unmarshal(resp.Data, out); err != nil {
		p.l.t.Fatalf("prometheus %s: %v", path, err)
	}
}

// Query evaluates expr at t and returns how many series it gives.
func (p *Prometheus) Query(expr string, at time.Time) int {
	var data struct{ Result []json.RawMessage }
	p.API("/api/v1/query?"+url.Values{"query": {expr}, "time": {fmt.Sprint(at.Unix())}}.Encode(), &data)
	return len(data.Result)
}

// The monitoring as shipped, against real components: a real Prometheus
// scrapes a real daemon through a scan and a flood; every dashboard query
// returns data, the alert rules load, and the flood alert's expression
// fires (Prometheus itself puts the alert in pending or firing).
func TestPrometheusDashboardAndAlerts(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022, 8080, 8443)
	// A CrowdSec bouncer whose LAPI is not there: its panel shows the
	// failing pulls (the feed's own test is TestCrowdSecBouncerOverVeth).
	key := filepath.Join(l.dir, "crowdsec.key")
	if err := os.WriteFile(key, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// 8443 is SYN-proxied once its SYN rate is over 50/s, and stays so
	// for 10 minutes: a burst at it engages the proxy for the panels.
	l.WritePolicy("tcp:\n  allow:\n    - {port: 8022, name: ssh}\n    - 8080\n    - {port: 8443, syn_proxy: auto}\n" +
		"synproxy:\n  auto_above: 50\n  auto_hold: 10m\nratelimit:\n  syn: {rate: 5, burst: 5, ban: 60s}\n" +
		"crowdsec:\n  url: http://127.0.0.1:1/\n  api_key_file: " + key + "\n  interval: 1s\n")
	d := l.StartDaemon("--events", filepath.Join(l.dir, "drops.jsonl"), "--runtime-dir", l.dir)
	prom := l.StartPrometheus(d)

	// Samples from before the attack, so rates over it have a start.
	deadline := time.Now().Add(10 * time.Second)
	for prom.Query("xdpguard_packets_total", time.Now()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("prometheus has no xdpguard sample after 10s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8022: "open"})
	tx := l.RawSender()
	for port := uint16(1); port <= 300; port++ { // a scan
		if err := tx.Send(l.synFrame(l.CliV4b, l.SrvV4, port, 40000)); err != nil {
			t.Fatal(err)
		}
	}
	// A flood from a few hundred sources, so some are limited and banned.
	// Scrapes time out while it saturates the two CPUs; the ones after it
	// see the whole increase, and rates over a minute include it. The
	// flood alert wants over 1,000 drops/s over a minute, so the flood is
	// sized by count (150,000 SYNs, nearly all refused: 2,500/s over the
	// minute), not by how fast this machine sends for 3 s.
	sent, elapsed := tx.FloodAtLeast(t, 150000, 3*time.Second, func(i int) []byte {
		return l.synFrame(fmt.Sprintf("198.18.%d.%d", i%8, 1+i%200), l.SrvV4, 8080, uint16(20000+i%40000))
	})
	// A burst at the proxied port, far over 50/s: auto engages.
	for i := 0; i < 2000; i++ {
		if err := tx.Send(l.synFrame(fmt.Sprintf("198.19.%d.%d", i%8, 1+i%200), l.SrvV4, 8443, uint16(20000+i))); err != nil {
			t.Fatal(err)
		}
	}
	floodEnd := time.Now()
	t.Logf("flood: %d SYNs in %v", sent, elapsed)
	floodExpr := alertExpr(t, "XdpguardSynFlood")
	pending := `ALERTS{alertname="XdpguardSynFlood", interface="` + l.SrvIf + `"}`

	// Wait for a few scrapes after the flood (the dashboard's rates over
	// 15 s want two samples), the last one successful, and for the rule
	// evaluations after them to put the alert in pending.
	type target struct {
		Health, LastError, ScrapeURL string
		LastScrape                   time.Time
	}
	var targets struct{ ActiveTargets []target }
	var now time.Time
	for deadline := time.Now().Add(40 * time.Second); ; {
		prom.API("/api/v1/targets", &targets)
		now = time.Now()
		scraped := len(targets.ActiveTargets) == 1 && targets.ActiveTargets[0].Health == "up" && targets.ActiveTargets[0].LastScrape.After(floodEnd.Add(2*time.Second))
		if scraped && prom.Query(pending, now) > 0 || now.After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(targets.ActiveTargets) != 1 || targets.ActiveTargets[0].Health != "up" {
		t.Fatalf("prometheus does not scrape the daemon: %+v", targets)
	}
	dash, err := deploy.LoadDashboard("../../deploy/grafana/xdpguard.json")
	if err != nil {
		t.Fatal(err)
	}
	for title, exprs := range dash.Queries() {
		for _, expr := range exprs {
			q := strings.NewReplacer(`$interface`, l.SrvIf, `$__rate_interval`, "15s").Replace(expr)
			if n := prom.Query(q, now); n == 0 {
				t.Errorf("dashboard panel %q: %s returns no data", title, q)
			}
		}
	}

	// The rules file loads in Prometheus, healthy.
	var rules struct {
		Groups []struct {
			Rules []struct{ Name, Health, LastError string }
		}
	}
	prom.API("/api/v1/rules", &rules)
	loaded := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			loaded++
			if r.Health != "ok" {
				t.Errorf("rule %s: %s %s", r.Name, r.Health, r.LastError)
			}
		}
	}
	if loaded < 6 {
		t.Errorf("%d rules loaded", loaded)
	}

	// The flood alert's own expression fires at the flood, and Prometheus
	// has the alert pending (its for: is a minute).
	if floodExpr == "" || prom.Query(floodExpr, now) == 0 {
		t.Errorf("the flood alert's expression does not fire at the flood: %q", floodExpr)
	}
	if prom.Query(pending, now) == 0 {
		t.Error("Prometheus did not put XdpguardSynFlood in pending or firing during the flood")
	}
	if prom.Query(`ALERTS{alertname="XdpguardFilterDetached"}`, time.Now()) != 0 {
		t.Error("XdpguardFilterDetached fires while the filter is attached")
	}
}

// alertExpr is the expression of the named alert in the shipped rules.
func alertExpr(t *testing.T, alert string) string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/prometheus/xdpguard-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	for _, r := range file.Groups[0].Rules {
		if r.Alert == alert {
			return r.Expr
		}
	}
	return ""
}
