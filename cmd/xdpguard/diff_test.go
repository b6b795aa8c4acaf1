package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runDiff runs `xdpguard diff` as main does (the root command, with diff
// added when the root does not list it yet).
func runDiff(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	if c, _, err := root.Find([]string{"diff"}); err != nil || c == root {
		root.AddCommand(newDiffCmd())
	}
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"diff"}, args...))
	err := root.Execute()
	return out.String(), err
}

func TestDiffCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	old := write("old.yaml", "tcp:\n  allow: [22, 80, {port: 3306, from: [10.0.0.0/8]}]\nsources:\n  deny: [203.0.113.0/24]\n")
	changed := write("new.yaml", `tcp:
  allow:
    - 22
    - 8000-8100
    - port: 3306
      from: [10.0.0.0/8, "fd00::/8"]
    - port: 9090
      name: test-team
      expires: 2099-12-04T18:00:00Z
  allow_listening: true
ratelimit:
  syn: {rate: 100, burst: 200}
sources:
  deny: [203.0.113.0/24, 198.51.100.7]
`)
	same := write("same.yaml", "# the old one, otherwise\ntcp:\n  allow:\n    - port: 3306\n      from: [10.0.0.0/8]\n    - 80\n    - 22\nsources:\n  deny: [203.0.113.0/24]\n")

	out, err := runDiff(t, old, changed, "--at", "2099-12-01T00:00:00Z")
	if code, quiet := exitStatus(err); code != exitChanged || !quiet {
		t.Fatalf("changes: exit %d (%v)\n%s", code, err, out)
	}
	for _, line := range []string{
		old + " → " + changed + " at 2099-12-01T00:00:00Z: +102 ports, -1 port, reach changed for 1 prefix, 1 timed rule added, limits changed, tcp.allow_listening changed, 1 source denied more\n",
		"  tcp 80 closed to all\n",
		"  tcp 8000-8100 opened to all\n",
		"  tcp 9090 opened to all\n",
		"  fd00::/8 now reaches tcp 3306\n",
		"  timed rule added: test-team: tcp 9090 from all, until 2099-12-04T18:00:00Z (active)\n",
		"  ratelimit.syn: none → 100/s burst 200\n",
		"  tcp.allow_listening: false → true\n",
		"  sources.deny: +1 -0 entries (1 → 2); added 198.51.100.7/32\n",
		"note: allow_listening also opens the ports local sockets listen on",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("text output lacks %q:\n%s", line, out)
		}
	}
	// After the temporary rule expires, 9090 is not opened.
	out, _ = runDiff(t, old, changed, "--at", "2099-12-05T08:00:00+08:00")
	if strings.Contains(out, "tcp 9090 opened") || !strings.Contains(out, "(inactive)") {
		t.Errorf("--at after the expiry:\n%s", out)
	}

	out, err = runDiff(t, old, changed, "--output", "json", "--at", "2099-12-01T00:00:00Z")
	if code, _ := exitStatus(err); code != exitChanged {
		t.Fatalf("json: exit %d (%v)\n%s", code, err, out)
	}
	var r struct {
		Old, New, Summary string
		Changed           bool
		At                string
		Change            struct {
			Ports []struct {
				Proto       string
				First, Last int
				Change      string
			}
			Scoped []struct {
				Prefix string
				Opened []struct{ Proto string }
			}
			Deny struct{ Added, Removed int }
		}
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Old != old || r.New != changed || !r.Changed || r.At != "2099-12-01T00:00:00Z" || !strings.HasPrefix(r.Summary, "+102 ports") ||
		len(r.Change.Ports) != 3 || r.Change.Ports[1].First != 8000 || r.Change.Ports[1].Last != 8100 || r.Change.Ports[1].Change != "opened" ||
		len(r.Change.Scoped) != 1 || r.Change.Scoped[0].Prefix != "fd00::/8" || r.Change.Deny.Added != 1 {
		t.Errorf("json: %+v\n%s", r, out)
	}

	out, err = runDiff(t, old, same)
	if err != nil || !strings.Contains(out, ": no change\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("same meaning: %v\n%s", err, out)
	}
	out, err = runDiff(t, old, same, "-o", "json")
	if err != nil || !strings.Contains(out, `"changed": false`) || !strings.Contains(out, `"ports": []`) {
		t.Errorf("same meaning, json: %v\n%s", err, out)
	}
}

func TestDiffCommandErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("tcp:\n  allow: [22]\n"), 0o600)
	os.WriteFile(bad, []byte("tcp:\n  allow: [22, 9002-9000]\n"), 0o600)
	open := filepath.Join(dir, "writable.yaml")
	os.WriteFile(open, []byte("tcp:\n  allow: [22]\n"), 0o600)
	os.Chmod(open, 0o666)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{good, bad}, bad + ":2:15: tcp.allow[1]: range \"9002-9000\" is reversed"},
		{[]string{filepath.Join(dir, "missing.yaml"), good}, filepath.Join(dir, "missing.yaml")},
		{[]string{good, open}, open + ": mode 0666 lets others write it"},
		{[]string{good}, "want two policy files"},
		{[]string{good, good, good}, "want two policy files"},
		{[]string{good, good, "--at", "tomorrow"}, `--at: "tomorrow"`},
		{[]string{good, good, "--output", "yaml"}, "want text or json"},
	} {
		_, err := runDiff(t, tc.args...)
		if code, _ := exitStatus(err); code != 1 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: exit %d, %v; want 1 and %q", tc.args, code, err, tc.want)
		}
	}
	out, err := runDiff(t, "--help")
	if err != nil || !strings.Contains(out, "Exit status: 0 when nothing changes; 2 when something does; 1 when") ||
		!strings.Contains(out, "allow_listening is shown as a setting, not as ports") {
		t.Errorf("help: %v\n%s", err, out)
	}
}
