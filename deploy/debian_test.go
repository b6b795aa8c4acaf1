package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// run runs a command and fails the test with its output when it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func packageStatus(name string) string {
	out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", name).Output()
	return string(out)
}

// make deb builds a package that installs on this machine with dpkg: the
// binary, the hardened unit (systemd-analyze verify on the installed
// files), the default policy and /etc/default/xdpguard as conffiles that an
// upgrade keeps, man pages and completions; the shipped policy passes
// `xdpguard check`; removing and purging leave nothing behind.
func TestDebianPackage(t *testing.T) {
	testutil.RequirePrivileged(t)
	for _, tool := range []string{"dpkg", "dpkg-query", "systemd-analyze", "make"} {
		_, err := exec.LookPath(tool)
		testutil.Require(t, err, tool)
	}
	if s := packageStatus("xdpguard"); s != "" && s != "not-installed" && s != "config-files" {
		t.Fatalf("an xdpguard package is installed on this machine (%s); the test would replace it", s)
	}
	run(t, "make", "-C", "..", "deb")
	debs, _ := filepath.Glob("../dist/xdpguard_*_amd64.deb")
	if len(debs) != 1 {
		t.Fatalf("make deb made %v", debs)
	}
	t.Cleanup(func() { _ = exec.Command("dpkg", "--purge", "xdpguard").Run() })
	run(t, "dpkg", "-i", debs[0])

	for _, f := range []string{
		"/usr/bin/xdpguard", "/usr/lib/systemd/system/xdpguard.service",
		"/etc/xdpguard/policy.yaml", "/etc/default/xdpguard",
		"/usr/share/bash-completion/completions/xdpguard", "/usr/share/zsh/vendor-completions/_xdpguard",
		"/usr/share/fish/vendor_completions.d/xdpguard.fish",
		"/usr/share/man/man1/xdpguard.1.gz", "/usr/share/man/man1/xdpguard-run.1.gz",
		"/usr/share/doc/xdpguard/copyright", "/usr/share/doc/xdpguard/deploy.md",
		"/usr/share/doc/xdpguard/integrations.md", "/etc/fail2ban/action.d/xdpguard.conf",
	} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	conffiles := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "xdpguard")
	for _, f := range []string{"/etc/xdpguard/policy.yaml", "/etc/default/xdpguard", "/etc/fail2ban/action.d/xdpguard.conf"} {
		if !strings.Contains(conffiles, f+" ") {
			t.Errorf("%s is not a conffile: %q", f, conffiles)
		}
	}
	if out := run(t, "/usr/bin/xdpguard", "version"); !strings.Contains(out, "xdpguard") {
		t.Errorf("version: %s", out)
	}
	if out := run(t, "/usr/bin/xdpguard", "check", "--policy", "/etc/xdpguard/policy.yaml"); !strings.Contains(out, "22") {
		t.Errorf("check of the shipped policy: %s", out)
	}
	if man := run(t, "sh", "-c", "zcat /usr/share/man/man1/xdpguard-run.1.gz"); !strings.Contains(man, ".TH \"XDPGUARD\" \"1\"") || !strings.Contains(man, "--policy") {
		t.Errorf("xdpguard-run(1) is not a man page of run:\n%.300s", man)
	}
	if out, err := exec.Command("systemd-analyze", "verify", "/usr/lib/systemd/system/xdpguard.service").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("systemd-analyze verify of the installed unit: %v\n%s", err, out)
	}
	unit := run(t, "cat", "/usr/lib/systemd/system/xdpguard.service")
	for _, want := range []string{`ExecReload=/bin/sh -c 'kill -HUP "$MAINPID"'`, "AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON", "ReadWritePaths=-/sys/fs/bpf/xdpguard", "LogsDirectory=xdpguard"} {
		if !strings.Contains(unit, want) {
			t.Errorf("installed unit lacks %q", want)
		}
	}

	// An operator's edit survives reinstalling (as an upgrade would).
	edited := "# edited by the operator\ntcp:\n  allow: [22, 443]\n"
	if err := os.WriteFile("/etc/xdpguard/policy.yaml", []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "dpkg", "-i", "--force-confold", debs[0])
	if b, _ := os.ReadFile("/etc/xdpguard/policy.yaml"); string(b) != edited {
		t.Errorf("reinstalling replaced the operator's policy:\n%s", b)
	}

	// Remove keeps the conffiles; purge removes everything.
	run(t, "dpkg", "--remove", "xdpguard")
	for _, f := range []string{"/usr/bin/xdpguard", "/usr/lib/systemd/system/xdpguard.service", "/usr/share/man/man1/xdpguard.1.gz"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left after dpkg --remove", f)
		}
	}
	if _, err := os.Stat("/etc/xdpguard/policy.yaml"); err != nil {
		t.Errorf("dpkg --remove took the conffile: %v", err)
	}
	run(t, "dpkg", "--purge", "xdpguard")
	for _, f := range []string{"/etc/xdpguard/policy.yaml", "/etc/default/xdpguard"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left after dpkg --purge", f)
		}
	}
	if s := packageStatus("xdpguard"); s != "" && s != "not-installed" {
		t.Errorf("package status after purge: %q", s)
	}
}
