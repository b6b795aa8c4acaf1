package deploy

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/pkg/audit"
	"github.com/xdpguard/xdpguard/pkg/history"
	"github.com/xdpguard/xdpguard/pkg/loader"
)

// unitFile is a unit's settings, each key's values in order (a key given
// twice, such as ReadWritePaths=, keeps both).
type unitFile map[string][]string

func readUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not a setting", path, line)
		}
		u[k] = append(u[k], v)
	}
	return u
}

func (u unitFile) last(k string) string {
	if v := u[k]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// words is a space-separated list setting, all its lines together.
func (u unitFile) words(k string) []string {
	var out []string
	for _, v := range u[k] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

// readEnvFile reads an EnvironmentFile= (KEY=VALUE lines, values maybe
// quoted).
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not KEY=VALUE", path, line)
		}
		env[k] = strings.Trim(v, `"'`)
	}
	return env
}

var envRef = regexp.MustCompile(`\$\{(\w+)\}`)

// expand is systemd's expansion of a command line: "$VAR" as a word of its
// own becomes the value's words, "${VAR}" the value as one word (or part
// of one).
func expand(cmd string, env map[string]string) []string {
	var out []string
	for _, w := range strings.Fields(cmd) {
		if name, ok := strings.CutPrefix(w, "$"); ok && !strings.HasPrefix(name, "{") {
			out = append(out, strings.Fields(env[name])...)
			continue
		}
		out = append(out, envRef.ReplaceAllStringFunc(w, func(m string) string { return env[m[2:len(m)-1]] }))
	}
	return out
}

// flagValue is the value of --name in args (--name=V or --name V), and
// whether it was given.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// Under ProtectSystem=strict the whole file system is read-only but for the
// unit's LogsDirectory, StateDirectory, RuntimeDirectory, CacheDirectory,
// ReadWritePaths and private /tmp. Every path the shipped command line
// (the unit's ExecStart with the shipped /etc/default/xdpguard, and the
// --events paths that file suggests) writes must be one of them: the events
// file and its directory (rotation makes files beside it), the pin root,
// a ready file. Otherwise the daemon fails at start, and Restart=on-failure
// makes that a loop. test/systemd checks the same under a booted systemd.
func TestUnitWritablePaths(t *testing.T) {
	u := readUnit(t, "systemd/xdpguard.service")
	if got := u.last("ProtectSystem"); got != "strict" {
		t.Fatalf("ProtectSystem=%s, want strict", got)
	}
	var writable []string
	for key, base := range map[string]string{"LogsDirectory": "/var/log", "StateDirectory": "/var/lib", "RuntimeDirectory": "/run", "CacheDirectory": "/var/cache"} {
		for _, d := range u.words(key) {
			writable = append(writable, filepath.Join(base, d))
		}
	}
	tunables := u.last("ProtectKernelTunables") == "yes"
	for _, p := range u.words("ReadWritePaths") {
		p = strings.TrimLeft(p, "-+")
		// ProtectKernelTunables makes /sys read-only, naming /sys/fs/bpf
		// itself: ReadWritePaths=/sys/fs/bpf leaves it read-only (systemd
		// 252 and 257, seen by test/systemd); a directory below it is
		// writable, and must exist before the daemon's sandbox is made.
		if tunables && under(p, "/sys") && !strings.HasPrefix(p, loader.DefaultBPFFS+"/") {
			t.Errorf("ReadWritePaths=%s stays read-only under ProtectKernelTunables=yes", p)
			continue
		}
		if tunables && under(p, "/sys") && !slicesContainFunc(u["ExecStartPre"], func(c string) bool {
			return strings.HasPrefix(c, "+") && strings.Contains(c, "mkdir") && strings.HasSuffix(c, " "+p)
		}) {
			t.Errorf("ReadWritePaths=%s: no ExecStartPre=+...mkdir creates it before the sandbox is set up", p)
		}
		writable = append(writable, p)
	}
	if u.last("PrivateTmp") == "yes" {
		writable = append(writable, "/tmp", "/var/tmp")
	}

	defaults, err := os.ReadFile("debian/default")
	if err != nil {
		t.Fatal(err)
	}
	env := readEnvFile(t, "debian/default")
	env["XDPGUARD_IFACES"] = "eth0" // the one setting an operator must make
	args := expand(u.last("ExecStart"), env)
	writes := map[string]string{} // path -> why
	events, _ := flagValue(args, "events")
	if events == "" {
		t.Errorf("the shipped command line writes no drop events (%s)", strings.Join(args, " "))
	}
	suggested := []string{events, env["XDPGUARD_EVENTS"]}
	for _, m := range regexp.MustCompile(`--events[= ](\S+)`).FindAllStringSubmatch(string(defaults), -1) {
		suggested = append(suggested, m[1])
	}
	for _, e := range suggested {
		if e != "" && e != "-" {
			writes[e] = "the events file (--events)"
			writes[filepath.Dir(e)] = "the events file's directory (rotation)"
		}
	}
	bpffs, ok := flagValue(args, "bpffs")
	if !ok {
		bpffs = loader.DefaultBPFFS
	}
	writes[filepath.Join(bpffs, "xdpguard")] = "the pin root"
	// The change history and its rotations, beside it.
	auditLog, ok := flagValue(args, "audit-log")
	if !ok {
		auditLog = history.DefaultPath
	}
	if auditLog != "" {
		writes[auditLog] = "the change history (--audit-log)"
		writes[filepath.Dir(auditLog)] = "the change history's directory (rotation, its lock file)"
	}
	// The record of rule hits, replaced by a rename.
	usage, ok := flagValue(args, "rule-usage")
	if !ok {
		usage = audit.DefaultUsagePath
	}
	if usage != "" {
		writes[usage] = "the record of rule hits (--rule-usage)"
		writes[filepath.Dir(usage)] = "its directory (written by a rename)"
	}
	if f, ok := flagValue(args, "ready-file"); ok {
		writes[f] = "--ready-file"
	}
	// The daemon's runtime state (--runtime-dir; under the unit
	// $RUNTIME_DIRECTORY, /run/<RuntimeDirectory>, else /run/xdpguard).
	if d, ok := flagValue(args, "runtime-dir"); ok {
		writes[d] = "--runtime-dir"
	} else {
		writes["/run/xdpguard"] = "the runtime directory (--runtime-dir's default)"
	}
	for p, why := range writes {
		if !slicesContainFunc(writable, func(w string) bool { return under(p, w) }) {
			t.Errorf("%s, %s, is read-only under ProtectSystem=strict (writable: %v)", why, p, writable)
		}
	}
}

func slicesContainFunc(s []string, f func(string) bool) bool {
	for _, v := range s {
		if f(v) {
			return true
		}
	}
	return false
}

// The shipped unit under a real systemd: test/systemd/run.sh boots a Debian
// cloud kernel under qemu with a Debian root filesystem whose PID 1 is
// systemd, installs the package, starts the unit with the shipped defaults
// (drop events on) and checks it stays active, writes its events, reloads,
// survives an upgrade, keeps the filter when stopped and drops it on purge.
// About 70 s with its root filesystem cached (/var/cache/xdpguard-systemd),
// 2-3 minutes the first time (debootstrap).
func TestUnitUnderSystemd(t *testing.T) {
	testutil.RequirePrivileged(t)
	for _, tool := range []string{"qemu-system-x86_64", "cpio", "apt-cache", "apt-get", "dpkg-deb", "make"} {
		_, err := exec.LookPath(tool)
		testutil.Require(t, err, tool+" (make deps installs what the guest needs)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if d, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(ctx, d.Add(-10*time.Second))
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, "../test/systemd/run.sh")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("test/systemd/run.sh: %v after %v\n%s", err, time.Since(start).Round(time.Second), out)
	}
	t.Logf("%s", out[max(0, len(out)-2000):])
}
