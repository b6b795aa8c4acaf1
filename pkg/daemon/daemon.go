// Package daemon is `xdpguard run`: attach to the interfaces, serve
// metrics, and switch policies on SIGHUP or when the policy file changes.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpguard/xdpguard/pkg/audit"
	"github.com/xdpguard/xdpguard/pkg/history"
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
	// RuntimeDir receives the CrowdSec bouncer's report for `xdpguard
	// status` (systemd's RuntimeDirectory); "" writes none.
	RuntimeDir string
	// AuditLog receives the change history (history.Record lines): every
	// generation switch, refused or rolled back switch, and the feeds'
	// bans; "" keeps none. Rotated at AuditLogMaxBytes, rotations kept
	// AuditLogRetention (zero: the history package's defaults).
	AuditLog          string
	AuditLogMaxBytes  int64
	AuditLogRetention time.Duration
	// UsagePath keeps each rule's last hit across restarts, for the
	// audit's unused_rule; "" keeps none.
	UsagePath string
	Logger    *slog.Logger
}

// Bounds of the events budget: enough to see an attack's shape, never
// enough to let a flood load the daemon or fill a disk quickly.
const (
	maxEventsRate  = 100_000
	maxEventsBurst = 1_000_000
	// minAuditLogBytes: a rotation per record would keep little history.
	minAuditLogBytes = 64 << 10
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
	if c.AuditLog != "" && c.AuditLogMaxBytes != 0 && c.AuditLogMaxBytes < minAuditLogBytes {
		errs = append(errs, fmt.Errorf("--audit-log-max-size: %d is under %d bytes", c.AuditLogMaxBytes, minAuditLogBytes))
	}
	if c.AuditLog != "" && c.AuditLogRetention != 0 && c.AuditLogRetention < time.Hour {
		errs = append(errs, fmt.Errorf("--audit-log-retention: %s is under an hour", c.AuditLogRetention))
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
	// ctx is Run's: the CrowdSec bouncer runs under it.
	ctx context.Context
	// feed is the CrowdSec bouncer in force (nil: none); Run's loop sets
	// it, the metrics read it. reportErr is the last report problem logged.
	feed      atomic.Pointer[crowdSecFeed]
	reportErr string
	// watcher watches the policy's directory and its list files'; lists
	// are the list files (absolute) whose change reloads.
	watcher *fsnotify.Watcher
	lists   map[string]bool
	// listDirs are the list files' directories watched.
	listDirs map[string]bool
	// audit is xdpguard_audit_findings; auditErr the last problem logged.
	audit    *metrics.Audit
	auditErr string
	// history is the audit log (nil: none); safe for the bouncer's
	// goroutine too.
	history       *history.Log
	historyErrors prometheus.Counter // xdpguard_history_write_errors_total
	// lastFailure is the last failed switch recorded (trigger, digest,
	// error), so a failure repeating in a loop is recorded once.
	lastFailure string
	// usage is the record of each rule's last hit (nil: none), kept by
	// runAudit; usageErr the last problem saving it, logged once.
	usage    *audit.UsageRecord
	usageErr string
}

// softMemoryLimit is the daemon's heap target (GOMEMLIMIT overrides it):
// a million-entry source list holds about 40 MiB, twice that mid-reload.
const softMemoryLimit = 120 << 20

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
	// A soft limit on the heap: a reload of big source lists holds the old
	// lists and the new ones at once, and without it the collector lets the
	// heap grow to twice that before it runs. Past the limit Go collects
	// harder (never with more than half the CPU), it does not fail.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(softMemoryLimit)
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
	d := &daemon{cfg: cfg, log: log, base: base, ctx: ctx, reloads: metrics.NewReloads(), events: metrics.NewEvents(), audit: metrics.NewAudit(), historyErrors: metrics.NewHistoryErrors(), missing: map[string]bool{},
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
	crowdSecKey, _, err := d.crowdSecChange(base.CrowdSec)
	if err != nil {
		return err
	}
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
	d.watcher = watcher
	d.watchLists(base.ListFiles())
	if err := d.openHistory(); err != nil {
		return err
	}
	if err := d.openUsage(); err != nil {
		return err
	}
	before := pinnedDigest(pinRoot, cfg.Ifaces[0])
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
	if base.CrowdSec != nil {
		d.setCrowdSec(base.CrowdSec, crowdSecKey)
	}
	defer d.stopCrowdSec() // before the guards close

	// Recorded before ready: a caller that sees the ready file (or a
	// kill just after) finds the start in the history.
	d.record(history.Record{Kind: history.KindStart, Trigger: history.TriggerStart, Result: history.ResultApplied,
		Before: before, After: digest(pol), Summary: pol.Summary()})
	if cfg.ReadyFile != "" {
		if err := writeReadyFile(cfg.ReadyFile); err != nil {
			return fmt.Errorf("--ready-file: %w", err)
		}
	}
	started = true
	releaseMemory(base)
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
	d.runAudit()
	auditTick := time.NewTicker(auditEvery)
	defer auditTick.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping; the filter stays attached (`xdpguard detach` removes it)")
			return nil
		case <-hup:
			events.reopen(log)
			debounce = nil // this reload reads the files a pending change waits for
			d.Reload("SIGHUP")
			timed = d.nextChange()
		case ev := <-watcher.Events:
			if d.watches(ev.Name) {
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
			d.writeCrowdSecReport()
		case <-sweepTick.C:
			d.sweepBans()
		case <-auditTick.C:
			d.runAudit()
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
		progID, _ := g.ProgramID()
		mode := string(g.Placement.Mode)
		d.log.Info("attached", "interface", iface, "adopted", adopted, "mode", mode, "why", g.Placement.Why, "program_id", progID, "pins", g.Dir)
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

// writeReadyFile writes our PID to path.
func writeReadyFile(path string) error {
	return writeFileAtomic(path, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644)
}

// writeFileAtomic writes data to path as root may at a path an operator
// gave: into a new temporary file beside it (never through a symlink),
// then renamed over path, so a reader sees the whole file or none.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // gone after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func (d *daemon) close() {
	for _, g := range d.guards {
		g.Close()
	}
	d.guards = nil
}
