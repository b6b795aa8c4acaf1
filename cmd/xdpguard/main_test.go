package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("tcp:\n  allow: [22, 9000-9002]\n"), 0o600)
	os.WriteFile(bad, []byte("tcp:\n  allow: [22, 9002-9000]\n"), 0o600)

	out, err := execute(t, "check", "--policy", good)
	if err != nil || !strings.Contains(out, "ok (digest") || !strings.Contains(out, "tcp allow [22,9000-9002]") {
		t.Fatalf("good policy: %v\n%s", err, out)
	}
	_, err = execute(t, "check", "--policy", bad)
	if err == nil || !strings.Contains(err.Error(), bad+":2:15: tcp.allow[1]: range \"9002-9000\" is reversed") {
		t.Fatalf("bad policy: %v", err)
	}
	if _, err := execute(t, "check"); err == nil || !strings.Contains(err.Error(), `"policy" not set`) {
		t.Fatalf("no --policy: %v", err)
	}
}

func TestExamplesAreValid(t *testing.T) {
	examples, _ := filepath.Glob("../../examples/*.yaml")
	if len(examples) < 2 {
		t.Fatalf("examples: %v", examples)
	}
	for _, e := range examples {
		if out, err := execute(t, "check", "--policy", e); err != nil {
			t.Errorf("%s: %v\n%s", e, err, out)
		}
	}
}

func TestFlagValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--policy", "p.yaml"}, `"iface" not set`},
		{[]string{"run", "--iface", "x", "--policy", "p.yaml", "--mode", "turbo"}, `--mode: mode "turbo"`},
		{[]string{"run", "--iface", "x,x", "--policy", "p.yaml"}, `listed twice`},
		{[]string{"run", "--iface", "x", "--policy", "p.yaml", "--metrics-addr", "nonsense"}, `--metrics-addr`},
		{[]string{"run", "--iface", "..", "--policy", "p.yaml"}, `--iface: ".." is not an interface name`},
		{[]string{"run", "--iface", "eth0/../x", "--policy", "p.yaml"}, `contains '/'`},
		{[]string{"detach"}, "give --iface or --all"},
		{[]string{"detach", "--all", "--iface", "x"}, "give --iface or --all"},
		{[]string{"status", "--output", "yaml"}, "want text or json"},
		{[]string{"explain", "--proto", "tcp", "--dport", "22"}, `"src" not set`},
		{[]string{"explain", "--src", "10.0.0.300", "--proto", "tcp", "--dport", "22"}, `--src "10.0.0.300": not an IP address`},
		{[]string{"explain", "--src", "10.0.0.3", "--proto", "sctp"}, `--proto "sctp": tcp, udp or icmp`},
		{[]string{"explain", "--src", "10.0.0.3", "--proto", "tcp"}, `--dport: tcp needs a destination port`},
		{[]string{"explain", "--src", "10.0.0.3", "--dst", "2001:db8::1", "--proto", "icmp"}, "not of one address family"},
		{[]string{"explain", "--src", "10.0.0.3", "--proto", "udp", "--dport", "53", "--flags", "syn"}, "--flags: only for --proto tcp"},
		{[]string{"explain", "--src", "10.0.0.3", "--proto", "tcp", "--dport", "22", "--flags", "syn,push"}, `unknown TCP flag "push"`},
		{[]string{"explain", "--src", "10.0.0.3", "--proto", "tcp", "--dport", "22", "--icmp-type", "8"}, "--icmp-type: only for --proto icmp"},
		{[]string{"explain", "--src", "10.0.0.3", "--proto", "tcp", "--dport", "22", "--vlan", "4095"}, "a VLAN ID is 0 to 4094"},
		{[]string{"explain", "--src", "10.0.0.3", "--proto", "tcp", "--dport", "22", "--iface", "../x"}, "--iface"},
		{[]string{"explain", "--src", "10.0.0.3", "--proto", "tcp", "--dport", "22", "--output", "yaml"}, "want text or json"},
	} {
		_, err := execute(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	out, err := execute(t, "--help")
	for _, cmd := range []string{"run", "check", "status", "bans", "unban", "detach", "version"} {
		if err != nil || !strings.Contains(out, cmd) {
			t.Fatalf("help lacks %s: %v\n%s", cmd, err, out)
		}
	}
	out, err = execute(t, "check", "--help")
	if err != nil || !strings.Contains(out, "syn_total:") {
		t.Fatalf("check --help does not document the format:\n%s", out)
	}
	out, err = execute(t, "version")
	if err != nil || !strings.HasPrefix(out, "xdpguard ") || !strings.Contains(out, fmt.Sprintf("pin schema %d", datapath.SchemaVersion)) {
		t.Fatalf("version: %v %s", err, out)
	}
}

// The README's command table is what the commands define: every command and
// flag, with its default (regenerate with `xdpguard gen-docs --readme
// README.md`).
func TestREADMECommandTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, tableBegin), strings.Index(s, tableEnd)
	if i < 0 || j < i {
		t.Fatal("README.md lacks the command table markers")
	}
	if got, want := strings.TrimSpace(s[i+len(tableBegin):j]), strings.TrimSpace(commandTable(newRootCmd())); got != want {
		t.Errorf("README.md's command table is stale: run `go run ./cmd/xdpguard gen-docs --readme README.md`\ngot:\n%s\nwant:\n%s", got, want)
	}
}
