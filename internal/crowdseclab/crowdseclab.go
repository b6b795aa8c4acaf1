// Package crowdseclab runs a real CrowdSec Local API for tests: Debian's
// crowdsec binaries, downloaded and unpacked once into a cache (never
// installed: the package's postinst registers with CrowdSec's online API
// and fails without internet), started in LAPI-only mode with a config
// that has no online client, its sqlite database in the test's temporary
// directory, on a free loopback port; stopped and removed when the test
// ends, pass or fail.
package crowdseclab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// cacheDir keeps the downloaded package and its unpacked tree between runs
// (root's; another user's goes to their cache directory).
const cacheDir = "/var/cache/xdpguard-crowdsec"

const (
	readyTimeout = 60 * time.Second // a cold start on a loaded CI machine
	stopTimeout  = 15 * time.Second // SIGTERM, then SIGKILL
	cscliTimeout = 60 * time.Second
)

// LAPI is a running (or stopped) Local API.
type LAPI struct {
	URL string // "http://127.0.0.1:PORT/"

	bin   string // holds crowdsec and cscli
	netns string // the network namespace crowdsec and cscli run in; "" for ours
	dir   string // config, database, log
	cfg   string
	addr  string
	logf  string

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start runs a LAPI for the test, with a machine registered for cscli
// (`cscli decisions add` goes through the API as a machine). It skips the
// test, or fails it under CI=true, when the binaries cannot be had.
func Start(t testing.TB) *LAPI {
	t.Helper()
	return StartIn(t, "")
}

// StartIn is Start with crowdsec and cscli in the named network namespace
// (ip netns), its URL a loopback address there: for a daemon that runs
// in that namespace.
func StartIn(t testing.TB, netns string) *LAPI {
	t.Helper()
	bin, err := binaries()
	testutil.Require(t, err, "CrowdSec's binaries (apt-get download crowdsec)")
	l := &LAPI{bin: bin, netns: netns, dir: t.TempDir()}
	l.cfg = filepath.Join(l.dir, "config.yaml")
	l.logf = filepath.Join(l.dir, "crowdsec.log")
	t.Cleanup(func() {
		l.kill()
		if t.Failed() {
			t.Logf("crowdsec's log:\n%s", tail(l.logf, 4096))
		}
	})
	for attempt := 1; ; attempt++ {
		l.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(l.freePort(t)))
		l.URL = "http://" + l.addr + "/"
		if err := l.writeConfig(); err != nil {
			t.Fatal(err)
		}
		err := l.start()
		if err == nil {
			break
		}
		// Another test may take the free port before crowdsec binds it.
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
	}
	l.Cscli(t, "machines", "add", "--auto", "-f", filepath.Join(l.dir, "local_api_credentials.yaml"))
	return l
}

// AddBouncer registers a bouncer and returns its API key.
func (l *LAPI) AddBouncer(t testing.TB, name string) string {
	t.Helper()
	key := l.Cscli(t, "bouncers", "add", name, "-o", "raw")
	if key == "" {
		t.Fatalf("cscli bouncers add %s printed no key", name)
	}
	return key
}

// Cscli runs cscli with the LAPI's config and returns what it printed on
// stdout, trimmed; it fails the test with stderr if cscli fails.
func (l *LAPI) Cscli(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cscliTimeout)
	defer cancel()
	cmd := l.command(ctx, "cscli", append([]string{"-c", l.cfg}, args...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cscli %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// Stop ends the LAPI as a service manager would (SIGTERM; SIGKILL if it
// lingers) and waits for it; its database stays for Restart.
func (l *LAPI) Stop(t testing.TB) {
	t.Helper()
	if l.cmd == nil {
		return
	}
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.done:
	case <-time.After(stopTimeout):
		t.Logf("crowdsec ignored SIGTERM for %v; killing it", stopTimeout)
		l.kill()
	}
	l.cmd = nil
}

// Restart stops the LAPI if it runs and starts it again on the same
// address and database, waiting until it answers.
func (l *LAPI) Restart(t testing.TB) {
	t.Helper()
	l.Stop(t)
	if err := l.start(); err != nil {
		t.Fatal(err)
	}
}

// start starts crowdsec and waits until it answers; its error quotes the
// end of crowdsec's log.
func (l *LAPI) start() error {
	logf, err := os.OpenFile(l.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	offset, _ := logf.Seek(0, io.SeekEnd)
	// -no-cs: the Local API alone, no agent (no acquisition, parsers,
	// scenarios, hub); -no-capi: never the Central API, whatever the config.
	cmd := l.command(context.Background(), "crowdsec", "-c", l.cfg, "-no-cs", "-no-capi")
	cmd.Dir = l.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Dies with the test binary, should that be killed (a timeout panic
	// runs no cleanup).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting crowdsec: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	l.cmd, l.done = cmd, done

	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: l.dial}}
	deadline := time.Now().Add(readyTimeout)
	for {
		// Any HTTP answer means the API's routes are being served.
		resp, err := hc.Get(l.URL + "health")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-done:
			l.cmd = nil
			return fmt.Errorf("crowdsec exited before answering on %s (%v):\n%s", l.addr, cmd.ProcessState, since(l.logf, offset))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			l.kill()
			return fmt.Errorf("crowdsec did not answer on %s within %v (%v):\n%s", l.addr, readyTimeout, err, since(l.logf, offset))
		}
	}
}

// kill ends the process at once, if it runs.
func (l *LAPI) kill() {
	if l.cmd == nil {
		return
	}
	_ = l.cmd.Process.Kill()
	<-l.done
	l.cmd = nil
}

// writeConfig writes the least the LAPI needs: a database, a listen
// address, a profiles file; no online_client (so no Central API, no
// registration), every path inside the test's directory.
func (l *LAPI) writeConfig() error {
	q := func(parts ...string) string {
		return strconv.Quote(filepath.Join(append([]string{l.dir}, parts...)...) + "/")
	}
	f := func(parts ...string) string {
		return strconv.Quote(filepath.Join(append([]string{l.dir}, parts...)...))
	}
	for _, d := range []string{"data", "hub"} {
		if err := os.MkdirAll(filepath.Join(l.dir, d), 0o700); err != nil {
			return err
		}
	}
	config := `common:
  daemonize: false
  log_media: stdout
  log_level: info
config_paths:
  config_dir: ` + q() + `
  data_dir: ` + q("data") + `
  hub_dir: ` + q("hub") + `
  index_path: ` + f("hub", ".index.json") + `
  notification_dir: ` + q("notifications") + `
  plugin_dir: ` + q("plugins") + `
db_config:
  type: sqlite
  db_path: ` + f("data", "crowdsec.db") + `
  use_wal: true
api:
  client:
    credentials_path: ` + f("local_api_credentials.yaml") + `
  server:
    listen_uri: ` + l.addr + `
    profiles_path: ` + f("profiles.yaml") + `
prometheus:
  enabled: false
`
	profiles := `name: default_ip_remediation
filters:
  - Alert.Remediation == true && Alert.GetScope() == "Ip"
decisions:
  - type: ban
    duration: 4h
on_success: break
`
	if err := os.WriteFile(l.cfg, []byte(config), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(l.dir, "profiles.yaml"), []byte(profiles), 0o600)
}

// binaries returns the directory holding crowdsec and cscli, fetching
// Debian's package into the cache the first time (apt-get download, then
// dpkg-deb -x; apt-get update once if the download fails). Test packages
// running at once share the cache under a lock.
func binaries() (string, error) {
	if bin := filepath.Join(cacheDir, "root", "usr", "bin"); usable(bin) == nil {
		return bin, nil // root's cache serves other users too
	}
	dir := cacheDir
	if os.Geteuid() != 0 {
		c, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(c, "xdpguard-crowdsec")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close() // releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "root", "usr", "bin")
	if usable(bin) == nil {
		return bin, nil
	}
	if err := unpack(dir); err != nil {
		// A download cut short leaves a .deb dpkg-deb refuses: once more.
		removeDebs(dir)
		if err := unpack(dir); err != nil {
			return "", err
		}
	}
	return bin, usable(bin)
}

// unpack downloads the package unless it is there and unpacks it whole
// into dir/root.
func unpack(dir string) error {
	deb, err := download(dir)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, "root.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := testutil.Run("dpkg-deb", "-x", deb, tmp); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	root := filepath.Join(dir, "root")
	if err := os.RemoveAll(root); err != nil {
		return err
	}
	return os.Rename(tmp, root)
}

func download(dir string) (string, error) {
	if deb := findDeb(dir); deb != "" {
		return deb, nil
	}
	get := func() error {
		cmd := exec.Command("apt-get", "download", "crowdsec")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get download crowdsec: %v: %s", err, out)
		}
		return nil
	}
	if err := get(); err != nil {
		// No package list yet, or an old one naming a version the mirror
		// dropped.
		if uerr := testutil.Run("apt-get", "update"); uerr != nil {
			return "", errors.Join(err, uerr)
		}
		if err := get(); err != nil {
			return "", err
		}
	}
	if deb := findDeb(dir); deb != "" {
		return deb, nil
	}
	return "", fmt.Errorf("apt-get download crowdsec left no crowdsec_*.deb in %s", dir)
}

func findDeb(dir string) string {
	debs, _ := filepath.Glob(filepath.Join(dir, "crowdsec_*.deb"))
	if len(debs) == 0 {
		return ""
	}
	return debs[len(debs)-1]
}

func removeDebs(dir string) {
	debs, _ := filepath.Glob(filepath.Join(dir, "crowdsec_*.deb"))
	for _, d := range debs {
		_ = os.Remove(d)
	}
}

// usable runs both binaries; the package's one library dependency
// (libsqlite3) is installed if it is what they lack.
func usable(bin string) error {
	run := func() error {
		for _, args := range [][]string{{"crowdsec", "-version"}, {"cscli", "version"}} {
			out, err := exec.Command(filepath.Join(bin, args[0]), args[1:]...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		return nil
	}
	err := run()
	if err != nil && strings.Contains(err.Error(), "libsqlite3") {
		if ierr := testutil.Run("apt-get", "install", "-y", "--no-install-recommends", "libsqlite3-0"); ierr != nil {
			return errors.Join(err, ierr)
		}
		err = run()
	}
	return err
}

// command runs one of the binaries, in the LAPI's namespace (`ip netns
// exec` execs it: the process is the binary's, signals and all).
func (l *LAPI) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	bin := filepath.Join(l.bin, name)
	if l.netns == "" {
		return exec.CommandContext(ctx, bin, args...)
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.netns, bin}, args...)...)
}

// dial connects to addr from the LAPI's namespace.
func (l *LAPI) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if l.netns == "" {
		return d.DialContext(ctx, network, addr)
	}
	var c net.Conn
	err := testutil.InNS(l.netns, func() (err error) { c, err = d.DialContext(ctx, network, addr); return err })
	return c, err
}

// freePort is a loopback TCP port nothing listens on now, in the LAPI's
// namespace.
func (l *LAPI) freePort(t testing.TB) int {
	t.Helper()
	var ln net.Listener
	listen := func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }
	var err error
	if l.netns == "" {
		err = listen()
	} else {
		err = testutil.InNS(l.netns, listen)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// since is what a file got past offset, its last 4 KiB.
func since(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if offset > int64(len(b)) {
		offset = 0
	}
	b = b[offset:]
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// tail is the end of a file, for failure messages.
func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}
