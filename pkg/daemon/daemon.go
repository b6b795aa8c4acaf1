// Package daemon is `xdpguard run`: attach to the interfaces, serve
// metrics, and switch policies on SIGHUP or when the policy file changes.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/xdpguard/xdpguard/pkg/listening"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/metrics"
	"github.com/xdpguard/xdpguard/pkg/policy"
	"github.com/xdpguard/xdpguard/pkg/protect"
)

// Config is what `xdpguard run` was asked to do.
type Config struct {
	Ifaces      []string
	PolicyPath  string
	MetricsAddr string // "" disables the metrics server
	// MetricsWebConfig is an exporter-toolkit web config (TLS, basic auth)
	// for /metrics; MetricsInsecure allows a non-loopback address without
	// one.
	MetricsWebConfig string
	MetricsInsecure  bool
	Mode             loader.Mode
	BPFFS            string
	TopPorts         int
	ReadyFile        string // written once attached and serving; for scripts and tests
	// SSHConnection is $SSH_CONNECTION of the shell that started us: a
	// policy refusing that session is not started unless Force.
	SSHConnection string
	Force         bool
	// ReplaceForeign removes an XDP program xdpguard did not attach,
	// instead of refusing to start.
	ReplaceForeign bool
	// EventsPath ("-" for stdout) receives sampled drop events as JSON
	// lines, at most EventsRate per second and interface (burst
	// EventsBurst); "" turns events off.
	EventsPath  string
	EventsRate  uint64
	EventsBurst uint64
	Logger      *slog.Logger
}

// Bounds of the events budget: enough to see an attack's shape, never
// enough to let a flood load the daemon or fill a disk quickly.
const (
	maxEventsRate  = 100_000
	maxEventsBurst = 1_000_000
)

// Validate checks the configuration without touching the kernel.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Ifaces) == 0 {
		errs = append(errs, errors.New("--iface: name at least one interface"))
	}
	seen := map[string]bool{}
	for _, i := range c.Ifaces {
		if err := loader.CheckInterfaceName(i); err != nil {
			errs = append(errs, fmt.Errorf("--iface: %w", err))
		} else if seen[i] {
			errs = append(errs, fmt.Errorf("--iface: %q is listed twice", i))
		}
		seen[i] = true
	}
	if c.PolicyPath == "" {
		errs = append(errs, errors.New("--policy: required"))
	}
	if _, err := loader.ParseMode(string(c.Mode)); err != nil {
		errs = append(errs, fmt.Errorf("--mode: %w", err))
	}
	if c.MetricsAddr != "" {
		if err := checkMetricsAddr(c.MetricsAddr, c.MetricsWebConfig, c.MetricsInsecure); err != nil {
			errs = append(errs, err)
		}
	}
	if c.EventsPath != "" && (c.EventsRate < 1 || c.EventsRate > maxEventsRate) {
		errs = append(errs, fmt.Errorf("--events-rate: %d is out of range [1, %d] events per second", c.EventsRate, maxEventsRate))
	}
	if c.EventsPath != "" && (c.EventsBurst < 1 || c.EventsBurst > maxEventsBurst) {
		errs = append(errs, fmt.Errorf("--events-burst: %d is out of range [1, %d]", c.EventsBurst, maxEventsBurst))
	}
	if c.TopPorts < 1 {
		errs = append(errs, errors.New("--metrics-top-ports: must be at least 1"))
	}
	if c.ReadyFile != "" {
		if fi, err := os.Stat(filepath.Dir(c.ReadyFile)); err != nil || !fi.IsDir() {
			errs = append(errs, fmt.Errorf("--ready-file: %s is not an existing directory", filepath.Dir(c.ReadyFile)))
		}
	}
	return errors.Join(errs...)
}

// daemon holds the guards of a running `xdpguard run`.
type daemon struct {
	cfg Config
	log *slog.Logger
	// mu guards what the HTTP handlers read (guards, current) against the
	// switch that replaces them: held for writing only while generations
	// switch (and at start, stop and re-attach), never while a policy is
	// parsed or compiled. Everything else of the daemon belongs to Run's
	// loop goroutine.
	mu      sync.RWMutex
	guards  []*loader.Guard
	base    *policy.Policy // as the file says
	current *policy.Policy // in force: base plus listening ports
	ports   []uint16       // listening ports, with allow_listening
	reloads *metrics.Reloads
	events  *metrics.Events
	pinRoot string
	missing map[string]bool // interfaces found deleted (logged once)
	// host is where protected sources are discovered; protected is what
	// the data path was last given (nil: not yet), protectErr the last
	// discovery problem logged.
	host       protect.Host
	protected  protect.Sources
	protectErr string
	// lastListening is when listening ports last switched a generation.
	lastListening time.Time
	// evaluated is the time the timed rules in force were evaluated at.
	evaluated time.Time
	collector *metrics.Collector // nil without --metrics-addr
}

// How often the daemon refreshes the protected sources (an SSH session
// just opened is protected from then on) and sweeps ended bans (which the
// data path deletes only when their source sends again).
const (
	protectEvery = 2 * time.Second
	sweepEvery   = 30 * time.Second
	// listeningEvery bounds the switches listener churn causes: a service
	// (or a user listening_users names) toggling a listener makes at most
	// one reload per interval; a change within it waits for its end.
	listeningEvery = 5 * time.Second
	// maxScrapes and scrapeTimeout bound what /metrics clients can make the
	// daemon do: more concurrent scrapes get 503, a slower one a timeout.
	maxScrapes    = 4
	scrapeTimeout = 10 * time.Second
)

// Run attaches, serves and reloads until ctx is done. The filter stays
// attached after Run returns: that is the point of pinning.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	// Catch SIGHUP first: its default action would kill a daemon that is
	// still attaching (a `systemctl reload` during start).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	base, err := policy.Load(cfg.PolicyPath)
	if err != nil {
		return err
	}
	d := &daemon{cfg: cfg, log: log, base: base, reloads: metrics.NewReloads(), events: metrics.NewEvents(), missing: map[string]bool{},
		host: protect.ThisHost(cfg.SSHConnection)}
	if base.AllowListening {
		if d.ports, err = listening.Ports(base.ListeningUIDs); err != nil {
			return err
		}
	}
	d.evaluated = time.Now()
	pol := d.inForce(base, d.evaluated)
	if !cfg.Force {
		if err := pol.LockOut(cfg.SSHConnection); err != nil {
			return err
		}
	}
	d.current = pol
	if err := loader.CheckKernel(); err != nil {
		return err
	}
	if err := loader.CheckCapabilities(); err != nil {
		return err
	}
	pinRoot, err := loader.ResolvePinRoot(cfg.BPFFS, true)
	if err != nil {
		return err
	}
	d.pinRoot = pinRoot

	// Everything that can fail is set up before the kernel is touched, so a
	// failed start leaves the interfaces as they were.
	watcher, err := watchPolicy(cfg.PolicyPath)
	if err != nil {
		return err
	}
	defer watcher.Close()
	var events *eventsLog
	if cfg.EventsPath != "" {
		if events, err = openEventsLog(cfg.EventsPath); err != nil {
			return err
		}
	}
	if cfg.MetricsAddr != "" {
		srv, err := d.serveMetrics()
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	// The metrics server may already scrape: the guard list changes under d.mu.
	d.mu.Lock()
	fresh, err := d.attachAll(pinRoot, pol)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	started := false
	defer func() {
		d.mu.Lock()
		d.close()
		if !started {
			// A start that fails after attaching leaves the host as it
			// was: no filter that no daemon would manage.
			d.detach(fresh)
		}
		d.mu.Unlock()
	}()
	// Events flow while we run, and stop with us: nobody would read them.
	if err := d.startEvents(ctx, events); err != nil {
		return err
	}
	defer d.stopEvents(events)
	d.refreshProtected()

	if cfg.ReadyFile != "" {
		if err := writeReadyFile(cfg.ReadyFile); err != nil {
			return fmt.Errorf("--ready-file: %w", err)
		}
	}
	started = true
	log.Info("enforcing", "interfaces", cfg.Ifaces, "policy", cfg.PolicyPath, "digest", digest(pol), "summary", pol.Summary(), "metrics", cfg.MetricsAddr)

	// Editors and config managers write in several steps (truncate, write,
	// rename); wait for the file to settle before reading it.
	var debounce <-chan time.Time
	// allow_listening follows sockets as services start and stop.
	rescan := time.NewTicker(time.Second)
	defer rescan.Stop()
	if rules := base.TimedRules(time.Now()); len(rules) > 0 {
		log.Info("timed rules", "rules", rules)
	}
	timed := d.nextChange()
	protectTick := time.NewTicker(protectEvery)
	defer protectTick.Stop()
	sweepTick := time.NewTicker(sweepEvery)
	defer sweepTick.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping; the filter stays attached (`xdpguard detach` removes it)")
			return nil
		case <-hup:
			events.reopen(log)
			d.Reload("SIGHUP")
			timed = d.nextChange()
		case ev := <-watcher.Events:
			if filepath.Clean(ev.Name) == filepath.Clean(cfg.PolicyPath) || filepath.Base(ev.Name) == "..data" {
				debounce = time.After(200 * time.Millisecond)
			}
		case err := <-watcher.Errors:
			log.Warn("watching the policy file", "err", err)
		case <-debounce:
			debounce = nil
			d.Reload("file changed")
			timed = d.nextChange()
		case <-rescan.C:
			d.rescanListening()
			d.checkLinks()
		case <-timed:
			d.retime()
			timed = d.nextChange()
		case <-protectTick.C:
			d.refreshProtected()
		case <-sweepTick.C:
			d.sweepBans()
		}
	}
}

// attachAll attaches every interface or none: interfaces newly attached in
// this call are detached again if a later one fails. It returns those it
// attached afresh (not adopted).
func (d *daemon) attachAll(pinRoot string, pol *policy.Policy) (fresh []string, err error) {
	for _, iface := range d.cfg.Ifaces {
		g, adopted, err := loader.Attach(pinRoot, iface, d.cfg.Mode, pol)
		if errors.Is(err, loader.ErrForeignProgram) && d.cfg.ReplaceForeign {
			id, rerr := loader.RemoveForeignXDP(iface)
			if rerr == nil {
				d.log.Warn("removed a foreign XDP program (--replace-foreign)", "interface", iface, "program_id", id)
				g, adopted, err = loader.Attach(pinRoot, iface, d.cfg.Mode, pol)
			} else {
				err = rerr
			}
		}
		if err != nil {
			d.close()
			d.detach(fresh)
			return nil, err
		}
		mode, progID, _ := loader.AttachMode(g.Ifindex)
		d.log.Info("attached", "interface", iface, "adopted", adopted, "mode", mode, "program_id", progID, "pins", g.Dir)
		if adopted && d.cfg.Mode != loader.ModeAuto && mode != string(d.cfg.Mode) {
			d.log.Warn("the adopted filter keeps its attach mode; to change it, stop, `xdpguard detach`, and start again",
				"interface", iface, "mode", mode, "asked", d.cfg.Mode)
		}
		if !adopted {
			fresh = append(fresh, iface)
		}
		d.guards = append(d.guards, g)
	}
	return fresh, nil
}

// detach removes the filter from interfaces this daemon attached afresh
// (their guards closed first, so the pin directory is unlocked).
func (d *daemon) detach(ifaces []string) {
	for _, f := range ifaces {
		if err := loader.Detach(d.pinRoot, f); err != nil {
			d.log.Error("undo attach", "interface", f, "err", err)
		}
	}
}

// writeReadyFile writes our PID to path as root may at a path an operator
// gave: into a new temporary file beside it (never through a symlink),
// then renamed over path, so a reader sees the whole file or none.
func writeReadyFile(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // gone after the rename
	if _, err := fmt.Fprintf(f, "%d\n", os.Getpid()); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// Reload reads the policy file and switches every interface to it. A bad
// file, or a switch failing on any interface, leaves the previous policy in
// force everywhere.
func (d *daemon) Reload(why string) error {
	changed, err := d.reload()
	d.reloads.Observe(err)
	switch {
	case err != nil:
		attrs := []any{"trigger", why, "err", err}
		var pe *policy.Error
		if errors.As(err, &pe) { // where the first problem is, for log searches and alerts
			attrs = append(attrs, "file", pe.File, "line", pe.Line, "field", pe.Field)
		}
		d.log.Error("policy reload refused; the previous policy stays in force", attrs...)
	case !changed:
		d.log.Info("policy unchanged", "trigger", why, "digest", digest(d.current))
	default:
		d.log.Info("policy reloaded", "trigger", why, "digest", digest(d.current), "summary", d.current.Summary())
	}
	return err
}

// reload switches to the file's policy; changed is false when its meaning
// equals the policy in force (the generation then stays as it is).
func (d *daemon) reload() (changed bool, err error) {
	base, err := policy.Load(d.cfg.PolicyPath)
	if err != nil {
		return false, err
	}
	if base.AllowListening && (!d.base.AllowListening || !slices.Equal(base.ListeningUIDs, d.base.ListeningUIDs)) {
		if d.ports, err = listening.Ports(base.ListeningUIDs); err != nil {
			return false, err
		}
	}
	now := time.Now()
	pol := d.inForce(base, now)
	// A daemon started from an SSH session guards that session on every
	// reload too, not only at start (a daemon under systemd has none).
	if !d.cfg.Force {
		if err := pol.LockOut(d.cfg.SSHConnection); err != nil {
			return false, err
		}
	}
	changed, err = d.switchTo(pol)
	if err == nil {
		d.base, d.evaluated = base, now
	}
	return changed, err
}

// inForce is the policy in force at now for the file's policy base: its
// timed rules that apply then, plus listening ports under allow_listening.
func (d *daemon) inForce(base *policy.Policy, now time.Time) *policy.Policy {
	return base.InForce(now, d.ports)
}

// retime switches when a timed rule starts or stops applying.
func (d *daemon) retime() {
	now := time.Now()
	changed, err := d.switchTo(d.inForce(d.base, now))
	switch {
	case err != nil:
		d.log.Error("timed rules changed but the switch failed; the previous policy stays", "err", err)
		return // evaluated stays: the timer fires again at once, retrying
	case changed:
		d.log.Info("timed rules changed", "rules", d.base.TimedRules(now), "summary", d.current.Summary())
	}
	d.evaluated = now
}

// nextChange fires when the next timed rule starts or stops after the time
// the policy in force was evaluated at (not after now: a rule that ended
// between the two would keep its port open with no timer set); nil if
// none.
func (d *daemon) nextChange() <-chan time.Time {
	next := d.base.NextChange(d.evaluated)
	if next.IsZero() {
		return nil
	}
	return time.After(time.Until(next) + 10*time.Millisecond)
}

// rescanListening follows the listening sockets under allow_listening.
func (d *daemon) rescanListening() {
	// d.base is written only by this goroutine (reloads run in Run's
	// loop too), so this check needs no lock: without allow_listening the
	// tick costs nothing and never blocks a scrape.
	if !d.base.AllowListening {
		return
	}
	ports, err := listening.Ports(d.base.ListeningUIDs)
	if err != nil {
		d.log.Warn("listing listening sockets", "err", err)
		return
	}
	if slices.Equal(ports, d.ports) {
		return
	}
	if time.Since(d.lastListening) < listeningEvery {
		return // seen again at a tick after the interval
	}
	old := d.ports
	d.ports = ports
	now := time.Now()
	changed, err := d.switchTo(d.inForce(d.base, now))
	switch {
	case err != nil:
		d.ports = old
		d.log.Error("listening ports changed but the switch failed; the previous policy stays", "err", err)
		return
	case changed:
		d.lastListening = now
		d.log.Info("listening ports changed", "listening", ports, "summary", d.current.Summary())
	}
	d.evaluated = now
}

// switchTo puts pol in force on every interface, or on none. The slow part,
// compiling and verifying a generation per interface, runs unlocked, while
// scrapes and /readyz are answered; only the switch itself holds d.mu.
func (d *daemon) switchTo(pol *policy.Policy) (changed bool, err error) {
	if pol.Digest() == d.current.Digest() {
		return false, nil
	}
	prepared := make([]*loader.Prepared, 0, len(d.guards))
	discard := func(ps []*loader.Prepared) {
		for _, p := range ps {
			p.Discard()
		}
	}
	for _, g := range d.guards {
		p, err := g.Prepare(pol)
		if err != nil {
			discard(prepared)
			return false, err
		}
		prepared = append(prepared, p)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, p := range prepared {
		if err := p.Switch(); err != nil {
			discard(prepared[i+1:])
			// Put the interfaces already switched back on the old policy.
			for _, done := range d.guards[:i] {
				if rerr := done.Apply(d.current); rerr != nil {
					d.log.Error("rollback failed", "interface", done.Iface, "err", rerr)
				}
			}
			return false, err
		}
	}
	d.current = pol
	if d.collector != nil {
		d.collector.Invalidate()
	}
	return true, nil
}

// refreshProtected gives the data path the sources it must never ban: the
// peers of SSH sessions, the default gateways, the resolvers. A discovery
// that fails in part keeps what it found (and says what failed, once).
func (d *daemon) refreshProtected() {
	found, err := d.host.Discover()
	if msg := fmt.Sprint(err); err != nil && msg != d.protectErr {
		d.log.Warn("finding the sources to protect from bans", "err", err)
		d.protectErr = msg
	} else if err == nil {
		d.protectErr = ""
	}
	if d.protected != nil && found.Equal(d.protected) {
		return
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, g := range d.guards {
		st, err := g.State()
		if err == nil {
			err = st.SetProtected(found)
		}
		if err != nil {
			d.log.Error("protecting sources from bans", "interface", g.Iface, "err", err)
			return // try again next time
		}
	}
	d.protected = found
	var list []string
	for a, why := range found {
		list = append(list, a.String()+" ("+why.String()+")")
	}
	slices.Sort(list)
	d.log.Info("never banned", "sources", list)
}

// sweepBans deletes ended bans, so spoofed sources that never return do
// not fill the ban table.
func (d *daemon) sweepBans() {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, g := range d.guards {
		st, err := g.State()
		if err != nil {
			continue
		}
		if _, err := st.SweepBans(); err != nil {
			d.log.Warn("sweeping ended bans", "interface", g.Iface, "err", err)
		}
	}
}

func (d *daemon) close() {
	for _, g := range d.guards {
		g.Close()
	}
	d.guards = nil
}

func (d *daemon) targets() []metrics.Target {
	var out []metrics.Target
	for _, g := range d.guards {
		st, err := g.State()
		if err != nil {
			continue
		}
		id, _ := g.ProgramID()
		mode, running, err := loader.Runs(g.Ifindex, uint32(id))
		if err != nil {
			mode = "none" // the interface is gone: nothing filters it
		}
		out = append(out, metrics.Target{Iface: g.Iface, Attached: running, Mode: mode, Maps: st})
	}
	return out
}

func (d *daemon) serveMetrics() (*http.Server, error) {
	d.collector = metrics.NewCollector(func(fn func([]metrics.Target)) {
		d.mu.RLock()
		defer d.mu.RUnlock()
		fn(d.targets())
	}, d.cfg.TopPorts)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		d.collector,
	)
	d.reloads.Register(reg)
	reg.MustRegister(d.events.Written, d.events.WriteErrors)
	ln, err := net.Listen("tcp", d.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	// A bounded number of scrapes at once, each bounded in time; the
	// collector itself serves one collection a second to all of them.
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, MaxRequestsInFlight: maxScrapes, Timeout: scrapeTimeout}))
	mux.HandleFunc("/readyz", d.serveReady)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	webConfig := d.cfg.MetricsWebConfig
	go func() {
		// exporter-toolkit serves TLS and basic auth from --metrics-web-config
		// (plain HTTP when it is empty).
		err := web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &webConfig}, d.log)
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server", "err", err)
		}
	}()
	return srv, nil
}

// serveReady answers 200 while a policy is loaded and every interface runs
// xdpguard's program, else 503 naming what is wrong: the readiness probe of
// the Kubernetes DaemonSet, and a check for load balancers and scripts.
func (d *daemon) serveReady(w http.ResponseWriter, _ *http.Request) {
	type iface struct {
		name    string
		index   int
		program uint32
	}
	var ifaces []iface
	d.mu.RLock()
	loaded := d.current != nil
	for _, g := range d.guards {
		id, _ := g.ProgramID() // 0 if unreadable: reported as not attached
		ifaces = append(ifaces, iface{g.Iface, g.Ifindex, uint32(id)})
	}
	d.mu.RUnlock()
	var problems []string
	if !loaded {
		problems = append(problems, "no policy loaded")
	}
	if len(ifaces) == 0 {
		problems = append(problems, "no interface attached")
	}
	for _, i := range ifaces {
		_, running, err := loader.Runs(i.index, i.program)
		switch {
		case err != nil:
			problems = append(problems, i.name+": interface gone")
		case !running:
			problems = append(problems, i.name+": xdpguard's program is not attached")
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(problems, "\n"))
		return
	}
	fmt.Fprintln(w, "ok")
}

// watchPolicy watches the policy's directory, not the file: an atomic save
// (write a temp file, rename it over) replaces the inode a file watch follows.
func watchPolicy(path string) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch policy: %w", err)
	}
	if err := w.Add(filepath.Dir(path)); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch policy directory: %w", err)
	}
	return w, nil
}

func digest(p *policy.Policy) string {
	d := p.Digest()
	return fmt.Sprintf("%x", d[:6])
}

// checkMetricsAddr refuses to expose the metrics beyond this host in plain
// HTTP by accident: a non-loopback address needs a web config (TLS or
// basic auth) or an explicit --metrics-insecure.
func checkMetricsAddr(addr, webConfig string, insecure bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	if webConfig != "" {
		if err := web.Validate(webConfig); err != nil {
			return fmt.Errorf("--metrics-web-config: %w", err)
		}
		return nil
	}
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" || insecure {
		return nil
	}
	return fmt.Errorf("--metrics-addr %s is reachable from other hosts: give --metrics-web-config FILE (TLS or basic auth, "+
		"the Prometheus exporter-toolkit format), or --metrics-insecure to serve plain HTTP anyway", addr)
}
