package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/pkg/loader"
)

// The blocklist section: a big netset named by sources.deny_lists, loaded
// by `xdpguard check` and the daemon (start, then a reload of the changed
// list), beside `ipset restore` and an nftables set of the same entries.

// Row names of the blocklist table.
const (
	blCheck  = "`xdpguard check`"
	blStart  = "daemon start→ready"
	blReload = "reload→switched"
	blIpset  = "`ipset restore` (hash:net)"
	blNft    = "`nft -f` (interval set)"
)

// reloadDebounce is how long the daemon waits after a change of a watched
// file before it reloads (pkg/daemon's debounce): subtracted from the
// reload times.
const reloadDebounce = 200 * time.Millisecond

// blRow is one step of the table, each round's figures in order; a nil
// memory figure was not measured.
type blRow struct {
	Name              string
	Entries           int
	Secs              []float64
	RSS, Peak, Kernel []float64 // MiB
}

// blMap is one of the program's deny maps after the reload.
type blMap struct {
	Name       string
	Type       string
	MaxEntries uint32
	MiB        float64
}

type blResult struct {
	Entries, IPv4, Changed int
	Rounds                 int
	FileMiB                float64
	Mix                    string
	Rows                   []blRow
	Maps                   []blMap // after the last reload
}

// blocklistPlan is the list's size and the rounds: 1M entries, 5 rounds;
// QUICK 100k, 1 round; the smoke run 20k.
func blocklistPlan(o options) (entries, rounds int) {
	entries, rounds = 1_000_000, 5
	switch {
	case o.Smoke:
		entries, rounds = 20_000, 1
	case o.Quick:
		entries, rounds = 100_000, 1
	}
	if o.Rounds > 0 {
		rounds = o.Rounds
	}
	return entries, rounds
}

func (r *blResult) row(name string) *blRow {
	for i := range r.Rows {
		if r.Rows[i].Name == name {
			return &r.Rows[i]
		}
	}
	return nil
}

// benchEnv is the environment for the programs measured: the daemon's own
// memory settings (no GOMEMLIMIT or GOGC of ours), and no SSH_CONNECTION
// (a random list may deny the client of the shell that started the bench,
// which check and run would refuse).
func benchEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return k == "SSH_CONNECTION" || k == "GOMEMLIMIT" || k == "GOGC"
	})
}

// writeAtomic writes data to path through a temporary file renamed over
// it, root-owned and mode 0644, as a feed updater would.
func writeAtomic(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil { // whatever the umask
		return err
	}
	return os.Rename(tmp, path)
}

// timeBin reports a command's peak RSS. (The rusage of a child of ours
// would not do: Go starts children with vfork, and the kernel counts the
// parent's memory, shared until exec, as the child's maximum.)
const timeBin = "/usr/bin/time"

// measured runs a command to its end: wall time in seconds, its peak RSS
// in MiB (GNU time's %M) and its output.
func measured(args ...string) (secs, peakMiB float64, out []byte, err error) {
	f, err := os.CreateTemp("", "xdpguard-bench-time")
	if err != nil {
		return 0, 0, nil, err
	}
	f.Close()
	defer os.Remove(f.Name())
	cmd := exec.Command(timeBin, append([]string{"-f", "%M", "-o", f.Name()}, args...)...)
	cmd.Env = benchEnv()
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	err = cmd.Run()
	secs = time.Since(start).Seconds()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			err = fmt.Errorf("%v (Debian package time: ./scripts/apt-deps.sh time)", err)
		}
		return 0, 0, buf.Bytes(), fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, buf.Bytes())
	}
	rep, err := os.ReadFile(f.Name())
	if err != nil {
		return 0, 0, nil, err
	}
	fields := strings.Fields(string(rep))
	kib := 0.0
	if len(fields) > 0 {
		kib, err = strconv.ParseFloat(fields[len(fields)-1], 64)
	}
	if len(fields) == 0 || err != nil {
		return 0, 0, nil, fmt.Errorf("%s: peak RSS unreadable: %q", timeBin, rep)
	}
	return secs, kib / 1024, buf.Bytes(), nil
}

func blocklist(l *lab, bin string, n, rounds int, logf func(string, ...any)) (blResult, error) {
	res := blResult{Rounds: rounds}
	set, err := genNetset(n, 1)
	if err != nil {
		return res, err
	}
	res.Entries, res.IPv4, res.Changed, res.Mix = set.entries(), len(set.v4), len(set.bumped), set.mix()
	dir, err := os.MkdirTemp("", "xdpguard-blocklist")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return res, err
	}
	list, pol := filepath.Join(dir, "list.netset"), filepath.Join(dir, "policy.yaml")
	ipsetFile, nftFile := filepath.Join(dir, "ipset.restore"), filepath.Join(dir, "set.nft")
	original, changed := set.text(false), set.text(true)
	res.FileMiB = float64(len(original)) / (1 << 20)
	for _, f := range []struct {
		path string
		data []byte
	}{
		{pol, []byte("tcp:\n  allow: [22]\nsources:\n  deny_lists: [list.netset]\n")},
		{list, original},
		{ipsetFile, set.ipsetRestore("xdpg_bench")},
		{nftFile, set.nftTable("xdpg_bench")},
	} {
		if err := writeAtomic(f.path, f.data); err != nil {
			return res, err
		}
	}
	// The anchors load into a namespace of their own: the host's ipset and
	// nftables never change.
	anchors := "xgb-l" + testutil.UniqueID()
	if err := testutil.NewNamespaces(anchors); err != nil {
		return res, err
	}
	defer testutil.DeleteNamespaces(anchors)

	rows := map[string]*blRow{}
	for _, name := range []string{blCheck, blStart, blReload, blIpset, blNft} {
		entries := res.Entries
		if name == blIpset || name == blNft {
			entries = res.IPv4
		}
		rows[name] = &blRow{Name: name, Entries: entries}
	}
	for r := 0; r < rounds; r++ {
		// check
		secs, peak, out, err := measured(bin, "check", "--policy", pol)
		if err != nil {
			return res, err
		}
		if want := fmt.Sprintf("%d denied", res.Entries); !bytes.Contains(out, []byte(want)) {
			return res, fmt.Errorf("xdpguard check: want %q in %s", want, out)
		}
		rows[blCheck].Secs = append(rows[blCheck].Secs, secs)
		rows[blCheck].Peak = append(rows[blCheck].Peak, peak)

		// the daemon
		if err := writeAtomic(list, original); err != nil {
			return res, err
		}
		d, err := daemonBlocklist(l, bin, pol, list, changed, res.Entries)
		if err != nil {
			return res, err
		}
		st, rl := rows[blStart], rows[blReload]
		st.Secs, st.RSS, st.Peak, st.Kernel = append(st.Secs, d.start), append(st.RSS, d.startRSS), append(st.Peak, d.startPeak), append(st.Kernel, d.startKernel)
		rl.Secs, rl.RSS, rl.Peak, rl.Kernel = append(rl.Secs, d.reload), append(rl.RSS, d.rss), append(rl.Peak, d.peak), append(rl.Kernel, d.kernel)
		res.Maps = d.maps

		// ipset
		secs, peak, _, err = measured("ip", "netns", "exec", anchors, "ipset", "restore", "-file", ipsetFile)
		if err != nil {
			return res, err
		}
		mem, err := ipsetMemory(anchors, "xdpg_bench", res.IPv4)
		if err != nil {
			return res, err
		}
		if err := run("ip", "netns", "exec", anchors, "ipset", "destroy", "xdpg_bench"); err != nil {
			return res, err
		}
		rows[blIpset].Secs, rows[blIpset].Peak, rows[blIpset].Kernel = append(rows[blIpset].Secs, secs), append(rows[blIpset].Peak, peak), append(rows[blIpset].Kernel, mem)

		// nftables
		secs, peak, _, err = measured("ip", "netns", "exec", anchors, "nft", "-f", nftFile)
		if err != nil {
			return res, err
		}
		if err := run("ip", "netns", "exec", anchors, "nft", "delete", "table", "ip", "xdpg_bench"); err != nil {
			return res, err
		}
		rows[blNft].Secs, rows[blNft].Peak = append(rows[blNft].Secs, secs), append(rows[blNft].Peak, peak)

		logf("blocklist round %d: check %.2f s, start %.2f s, reload %.2f s (RSS %.0f MiB, peak %.0f MiB, kernel %.1f MiB), ipset %.2f s, nft %.2f s",
			r+1, rows[blCheck].Secs[r], d.start, d.reload, d.rss, d.peak, d.kernel, rows[blIpset].Secs[r], rows[blNft].Secs[r])
	}
	for _, name := range []string{blCheck, blStart, blReload, blIpset, blNft} {
		res.Rows = append(res.Rows, *rows[name])
	}
	return res, res.complete()
}

// complete is an error unless every figure the section reports was
// measured in every round: a section that measured nothing fails.
func (r *blResult) complete() error {
	var errs []error
	if r.Entries == 0 || r.IPv4 == 0 || r.Rounds == 0 {
		errs = append(errs, fmt.Errorf("blocklist: no list (%d entries, %d rounds)", r.Entries, r.Rounds))
	}
	if len(r.Rows) != 5 {
		errs = append(errs, fmt.Errorf("blocklist: %d rows, want 5", len(r.Rows)))
	}
	for _, row := range r.Rows {
		figures := map[string][]float64{"time": row.Secs, "peak": row.Peak}
		if row.Name == blStart || row.Name == blReload {
			figures["RSS"], figures["kernel"] = row.RSS, row.Kernel
		}
		if row.Name == blIpset {
			figures["kernel"] = row.Kernel
		}
		for what, xs := range figures {
			if len(xs) != r.Rounds || slices.ContainsFunc(xs, func(x float64) bool { return !(x > 0) }) {
				errs = append(errs, fmt.Errorf("blocklist %s: %s %v, want %d positive figures", row.Name, what, xs, r.Rounds))
			}
		}
	}
	if len(r.Maps) != 3 {
		errs = append(errs, fmt.Errorf("blocklist: %d deny maps found, want 3", len(r.Maps)))
	}
	return errors.Join(errs...)
}

// ipsetMemory is the set's "Size in memory" in MiB, after checking it
// holds want entries.
func ipsetMemory(ns, set string, want int) (float64, error) {
	out, err := exec.Command("ip", "netns", "exec", ns, "ipset", "list", "-terse", set).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ipset list: %v: %s", err, out)
	}
	field := func(name string) int {
		m := regexp.MustCompile(`(?m)^` + name + `: (\d+)`).FindSubmatch(out)
		if m == nil {
			return -1
		}
		v, _ := strconv.Atoi(string(m[1]))
		return v
	}
	if got := field("Number of entries"); got != want {
		return 0, fmt.Errorf("ipset holds %d entries, want %d:\n%s", got, want, out)
	}
	return float64(field("Size in memory")) / (1 << 20), nil
}

type blDaemon struct {
	start, reload                    float64 // seconds
	startRSS, startPeak, startKernel float64 // MiB, a second after ready
	rss, peak, kernel                float64 // MiB, a second after the reload
	maps                             []blMap
}

// daemonBlocklist starts the daemon on the policy (whose list holds the
// original entries), waits for its ready file, then renames the changed
// list over the original and waits for the reload; it stops the daemon and
// detaches the filter whatever happens.
func daemonBlocklist(l *lab, bin, pol, list string, changed []byte, entries int) (d blDaemon, err error) {
	dir := filepath.Dir(pol)
	ready := filepath.Join(dir, "ready")
	_ = os.Remove(ready)
	logs := newLineLog()
	cmd := exec.Command("ip", "netns", "exec", l.dut, bin, "run", "--iface", l.b, "--policy", pol,
		"--metrics-addr", "", "--ready-file", ready)
	cmd.Env = benchEnv()
	cmd.Stdout, cmd.Stderr = logs, logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return d, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			if err == nil {
				err = fmt.Errorf("daemon did not stop on SIGTERM: %s", logs)
			}
		}
		if derr := run("ip", "netns", "exec", l.dut, bin, "detach", "--iface", l.b); derr != nil && err == nil {
			err = derr
		}
	}()
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case <-exited:
			return d, fmt.Errorf("daemon exited before it was ready: %s", logs)
		case <-time.After(2 * time.Millisecond):
		}
		if time.Since(start) > time.Minute {
			return d, fmt.Errorf("daemon not ready after a minute: %s", logs)
		}
	}
	d.start = time.Since(start).Seconds()
	b, err := os.ReadFile(ready)
	if err != nil {
		return d, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return d, fmt.Errorf("ready file: %q", b)
	}
	if _, err := logs.await("enforcing", exited, time.Minute); err != nil {
		return d, err
	}
	time.Sleep(time.Second)
	d.startRSS, d.startPeak = statusMiB(pid, "VmRSS"), statusMiB(pid, "VmHWM")
	if d.startKernel, _, err = denyMaps(l); err != nil {
		return d, err
	}

	// The reload: a feed updater's atomic save, seen by the file watch.
	tmp := filepath.Join(dir, ".list.netset.new")
	if err := os.WriteFile(tmp, changed, 0o644); err != nil {
		return d, err
	}
	renamed := time.Now()
	if err := os.Rename(tmp, list); err != nil {
		return d, err
	}
	line, err := logs.await("policy reloaded", exited, time.Minute)
	if err != nil {
		return d, err
	}
	if want := fmt.Sprintf("%d denied", entries); !strings.Contains(line.text, want) {
		return d, fmt.Errorf("reload: want %q in %q", want, line.text)
	}
	d.reload = (line.at.Sub(renamed) - reloadDebounce).Seconds()
	time.Sleep(time.Second)
	d.rss, d.peak = statusMiB(pid, "VmRSS"), statusMiB(pid, "VmHWM")
	d.kernel, d.maps, err = denyMaps(l)
	return d, err
}

// denyMaps are the deny maps of the program attached to the lab's vethB,
// with their memlock (what `bpftool map show` prints), and its total in
// MiB.
func denyMaps(l *lab) (float64, []blMap, error) {
	var id uint32
	if err := inNS(l.dut, func() error {
		var err error
		_, id, err = loader.AttachMode(l.bIdx)
		return err
	}); err != nil {
		return 0, nil, err
	}
	if id == 0 {
		return 0, nil, fmt.Errorf("no program attached to %s", l.b)
	}
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return 0, nil, err
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return 0, nil, err
	}
	ids, _ := info.MapIDs()
	var total float64
	var maps []blMap
	for _, mid := range ids {
		m, err := ebpf.NewMapFromID(mid)
		if err != nil {
			return 0, nil, err
		}
		mi, err := m.Info()
		m.Close()
		if err != nil {
			return 0, nil, err
		}
		// The kernel keeps 15 bytes of a name: xdpg_deny_blocks is
		// xdpg_deny_block there.
		name := mi.Name
		if name == "xdpg_deny_block" {
			name = "xdpg_deny_blocks"
		}
		if name != "xdpg_deny" && name != "xdpg_deny_blocks" && name != "xdpg_deny_hosts" {
			continue
		}
		mem, ok := mi.Memlock()
		if !ok {
			return 0, nil, fmt.Errorf("map %s: the kernel reports no memlock", name)
		}
		maps = append(maps, blMap{Name: name, Type: mi.Type.String(), MaxEntries: mi.MaxEntries, MiB: float64(mem) / (1 << 20)})
		total += float64(mem) / (1 << 20)
	}
	slices.SortFunc(maps, func(a, b blMap) int { return strings.Compare(a.Name, b.Name) })
	if len(maps) != 3 {
		return 0, nil, fmt.Errorf("program %d: deny maps %v, want xdpg_deny, xdpg_deny_blocks, xdpg_deny_hosts", id, maps)
	}
	return total, maps, nil
}

// statusMiB is a figure of /proc/PID/status given in kB (VmRSS, VmHWM),
// in MiB; 0 if unreadable.
func statusMiB(pid int, key string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			var kb float64
			fmt.Sscan(v, &kb)
			return kb / 1024
		}
	}
	return 0
}

// lineLog is a process's output, each line stamped with when it arrived.
type lineLog struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	lines   chan stampedLine
}

type stampedLine struct {
	at   time.Time
	text string
}

func newLineLog() *lineLog { return &lineLog{lines: make(chan stampedLine, 4096)} }

func (w *lineLog) Write(p []byte) (int, error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		select {
		case w.lines <- stampedLine{now, string(w.partial[:i])}:
		default: // a daemon logging this much has failed anyway
		}
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (w *lineLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

// await waits for a line containing want; a refused reload, the daemon
// exiting or the timeout is an error.
func (w *lineLog) await(want string, exited <-chan struct{}, timeout time.Duration) (stampedLine, error) {
	deadline := time.After(timeout)
	for {
		select {
		case line := <-w.lines:
			switch {
			case strings.Contains(line.text, want):
				return line, nil
			case strings.Contains(line.text, "policy reload refused"), strings.Contains(line.text, "policy unchanged"):
				return line, fmt.Errorf("waiting for %q: %s", want, line.text)
			}
		case <-exited:
			return stampedLine{}, fmt.Errorf("daemon exited waiting for %q: %s", want, w)
		case <-deadline:
			return stampedLine{}, fmt.Errorf("no %q after %s: %s", want, timeout, w)
		}
	}
}

// thousands writes n with commas: 1,000,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// seconds writes a time, in ms under a second; unit sets the scale (the
// median's, so a spread reads in the median's unit).
func seconds(s, unit float64) string {
	if unit < 1 {
		return fmt.Sprintf("%.0f ms", s*1000)
	}
	return fmt.Sprintf("%.2f s", s)
}

func (row blRow) median() float64 { return median(row.Secs) }

// spread is the rounds' extremes.
func (row blRow) spread() string {
	m := row.median()
	lo, hi := seconds(slices.Min(row.Secs), m), seconds(slices.Max(row.Secs), m)
	return strings.TrimSuffix(strings.TrimSuffix(lo, " s"), " ms") + "–" + hi
}

func mib(xs []float64) string {
	if xs == nil {
		return "—"
	}
	return fmt.Sprintf("%.1f MiB", median(xs))
}

func (r *blResult) targets() []target {
	st, rl := r.row(blStart), r.row(blReload)
	if st == nil || rl == nil {
		return nil
	}
	list := thousands(r.Entries) + "-entry deny list"
	timed := func(what string, row *blRow) target {
		m := row.median()
		return target{fmt.Sprintf("%s %s < 2 s", list, what), fmt.Sprintf("%s (rounds %s)", seconds(m, m), row.spread()), m < 2}
	}
	return []target{
		timed("loads (daemon start→ready)", st),
		timed("switches in (reload→switched, debounce excluded)", rl),
		{fmt.Sprintf("daemon RSS with a %s < 150 MiB, after the reload", list), mib(rl.RSS), median(rl.RSS) < 150},
		{fmt.Sprintf("daemon RSS with a %s < 150 MiB, at its peak (VmHWM)", list), mib(rl.Peak), median(rl.Peak) < 150},
	}
}

func (r *blResult) markdown() string {
	if len(r.Rows) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n### 4. Blocklist: a %s-entry netset in `sources.deny_lists`\n\n", thousands(r.Entries))
	rounds := fmt.Sprintf("%d rounds, medians", r.Rounds)
	if r.Rounds == 1 {
		rounds = "1 round"
	}
	fmt.Fprintf(&b, "A synthetic list sorted like FireHOL's and Spamhaus's (%.1f MiB; %s; none inside another); %s. ", r.FileMiB, r.Mix, rounds)
	fmt.Fprintf(&b, "The reload renames a copy with %d addresses changed over the list; the daemon's file watch waits %d ms for it to settle, subtracted here. ", r.Changed, reloadDebounce.Milliseconds())
	b.WriteString("RSS is VmRSS a second after the daemon logs `enforcing` (just after its ready file) or `policy reloaded`; peak is the daemon's VmHWM since it started, a command's maximum RSS (GNU time); kernel is the memlock of the program's deny maps (what `bpftool map show` prints), or ipset's size in memory. ")
	fmt.Fprintf(&b, "ipset and nftables load the %s IPv4 entries in a fresh network namespace.\n\n", thousands(r.IPv4))
	b.WriteString("| step | median | min–max | entries | entries/s | RSS after | peak | kernel |\n|---|---|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		m := row.median()
		rate := ""
		if m > 0 {
			rate = thousands(int(float64(row.Entries)/m/1000+0.5)*1000) + "/s"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", row.Name, seconds(m, m), row.spread(), thousands(row.Entries), rate, mib(row.RSS), mib(row.Peak), mib(row.Kernel))
	}
	if len(r.Maps) > 0 {
		b.WriteString("\nKernel memory after the reload, by map:")
		for i, m := range r.Maps {
			sep := ","
			if i == 0 {
				sep = ""
			}
			fmt.Fprintf(&b, "%s `%s` (%s, %s entries) %.1f MiB", sep, m.Name, m.Type, thousands(int(m.MaxEntries)), m.MiB)
		}
		b.WriteString(". nftables reports no memory figure for a set.\n")
	}
	return b.String()
}
