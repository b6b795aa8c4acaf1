package daemon

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/xdpguard/xdpguard/pkg/history"
	"github.com/xdpguard/xdpguard/pkg/listening"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Reload reads the policy file and switches every interface to it. A bad
// file, or a switch failing on any interface, leaves the previous policy in
// force everywhere.
func (d *daemon) Reload(why string) error {
	old, now := d.current, time.Now()
	changed, cand, err := d.reload()
	trigger := history.TriggerFile
	if why == "SIGHUP" {
		trigger = history.TriggerSIGHUP
	}
	d.recordSwitch(trigger, old, cand, changed, err, now)
	releaseMemory(d.base)
	// The list files to watch: the new policy's, or, when it was refused,
	// the ones its file names (fixing a bad list line must reload).
	if err == nil {
		d.watchLists(d.base.ListFiles())
		d.runAudit()
	} else if files := policy.ListFilesOf(d.cfg.PolicyPath); files != nil {
		d.watchLists(files)
	}
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
// equals the policy in force (the generation then stays as it is). cand is
// the policy it switched to, or would have (nil: the file was refused
// before one could be built).
func (d *daemon) reload() (changed bool, cand *policy.Policy, err error) {
	base, err := policy.Load(d.cfg.PolicyPath)
	if err != nil {
		return false, nil, err
	}
	if base.AllowListening && (!d.base.AllowListening || !slices.Equal(base.ListeningUIDs, d.base.ListeningUIDs)) {
		if d.ports, err = listening.Ports(base.ListeningUIDs); err != nil {
			return false, nil, err
		}
	}
	now := time.Now()
	pol := d.inForce(base, now)
	// A daemon started from an SSH session guards that session on every
	// reload too, not only at start (a daemon under systemd has none).
	if !d.cfg.Force {
		if err := pol.LockOut(d.cfg.SSHConnection); err != nil {
			return false, pol, err
		}
	}
	// The feeds' settings are read (a key file) before anything changes.
	crowdSecKey, crowdSecChange, err := d.crowdSecChange(base.CrowdSec)
	if err != nil {
		return false, pol, err
	}
	changed, err = d.switchTo(pol)
	if err != nil {
		return false, pol, err
	}
	d.base, d.evaluated = base, now
	if crowdSecChange {
		d.setCrowdSec(base.CrowdSec, crowdSecKey)
	}
	return changed || crowdSecChange, pol, nil
}

// inForce is the policy in force at now for the file's policy base: its
// timed rules that apply then, plus listening ports under allow_listening.
func (d *daemon) inForce(base *policy.Policy, now time.Time) *policy.Policy {
	return base.InForce(now, d.ports)
}

// retime switches when a timed rule starts or stops applying.
func (d *daemon) retime() {
	now := time.Now()
	old, cand := d.current, d.inForce(d.base, now)
	changed, err := d.switchTo(cand)
	d.recordSwitch(history.TriggerTimer, old, cand, changed, err, now)
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
	before, cand := d.current, d.inForce(d.base, now)
	changed, err := d.switchTo(cand)
	d.recordSwitch(history.TriggerListening, before, cand, changed, err, now)
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
			if i == 0 {
				return false, err // nothing had switched
			}
			return false, &rolledBack{err}
		}
	}
	d.current = pol
	if d.collector != nil {
		d.collector.Invalidate()
	}
	return true, nil
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

// bigLists is the size of the source lists past which a load's garbage
// (the list files read, the parsed lists replaced) is worth handing back
// to the system at once rather than keeping for later allocations: a
// million-entry list leaves tens of MiB.
const bigLists = 100_000

// releaseMemory returns a load's garbage to the system when pol's lists
// are big: the daemon's resident memory is then what it holds.
func releaseMemory(pol *policy.Policy) {
	if pol != nil && len(pol.Deny)+len(pol.Trust) > bigLists {
		debug.FreeOSMemory()
	}
}

// watchLists makes files the list files whose change reloads, watching
// their directories (an atomic save replaces the file's inode).
func (d *daemon) watchLists(files []string) {
	d.lists = map[string]bool{}
	dirs := map[string]bool{}
	for _, f := range files {
		paths := []string{filepath.Clean(f)}
		// A list that is a symbolic link changes where its target does.
		if target, err := filepath.EvalSymlinks(f); err == nil && target != paths[0] {
			if abs, err := filepath.Abs(target); err == nil {
				paths = append(paths, abs)
			}
		}
		for _, p := range paths {
			d.lists[p] = true
			if d.watcher == nil || dirs[filepath.Dir(p)] {
				continue
			}
			dirs[filepath.Dir(p)] = true
			if err := d.watcher.Add(filepath.Dir(p)); err != nil {
				d.log.Warn("watching a list file's directory; SIGHUP reloads it", "file", p, "err", err)
			}
		}
	}
	// The directories of lists the policy no longer names are unwatched
	// (not the policy's own), so reloads do not pile up inotify watches.
	policyDir := filepath.Dir(d.cfg.PolicyPath)
	if abs, err := filepath.Abs(policyDir); err == nil {
		policyDir = abs
	}
	for dir := range d.listDirs {
		if !dirs[dir] && dir != policyDir && d.watcher != nil {
			_ = d.watcher.Remove(dir)
		}
	}
	d.listDirs = dirs
}

// watches: a change of name (an event of the watcher) is one to reload on.
// (Names are compared absolute: one directory added under two names is
// one inotify watch, reporting under either.)
func (d *daemon) watches(name string) bool {
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return filepath.Clean(p)
	}
	name = abs(name)
	return name == abs(d.cfg.PolicyPath) || d.lists[name] || filepath.Base(name) == "..data"
}

func digest(p *policy.Policy) string {
	d := p.Digest()
	return fmt.Sprintf("%x", d[:6])
}
