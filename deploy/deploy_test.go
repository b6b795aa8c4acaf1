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
			perInterface := !strings.Contains(tg.Expr, "reload") && !strings.Contains(tg.Expr, "scrape_errors")
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
