package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/history"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// rolledBack is a switch that failed on an interface after others had
// switched: they were put back on the policy in force.
type rolledBack struct{ err error }

func (e *rolledBack) Error() string {
	return e.err.Error() + " (the interfaces already switched were put back)"
}
func (e *rolledBack) Unwrap() error { return e.err }

// openHistory opens --audit-log; nil without one.
func (d *daemon) openHistory() error {
	if d.cfg.AuditLog == "" {
		return nil
	}
	l, err := history.Open(d.cfg.AuditLog, history.Options{MaxBytes: d.cfg.AuditLogMaxBytes, Retention: d.cfg.AuditLogRetention})
	if err != nil {
		return fmt.Errorf("--audit-log: %w", err)
	}
	d.history = l
	return nil
}

// record appends r to the audit log. A record that cannot be written is
// logged with what it held: the change itself has happened.
func (d *daemon) record(r history.Record) {
	if d.history == nil {
		return
	}
	if r.Kind == history.KindStart || r.Kind == history.KindSwitch {
		r.Interfaces, r.Policy = d.cfg.Ifaces, d.cfg.PolicyPath
	}
	if err := d.history.Append(r); err != nil {
		if d.historyErrors != nil {
			d.historyErrors.Inc()
		}
		d.log.Error("audit log: a change was not recorded", "err", err, "kind", r.Kind, "trigger", r.Trigger, "result", r.Result, "after", r.After)
	}
}

// recordSwitch records a switch from old to the policy in force now
// (changed), or a refused one (err, with the candidate cand if it could
// be built); nothing when nothing changed. now is when the switch was
// decided: the diff's timed rules are judged then.
func (d *daemon) recordSwitch(trigger string, old, cand *policy.Policy, changed bool, err error, now time.Time) {
	// Time is left to Append, which stamps it under the log's lock: the
	// file's order is the records' time order, across processes.
	r := history.Record{Kind: history.KindSwitch, Trigger: trigger, Before: digest(old), After: digest(d.current)}
	switch {
	case err != nil:
		r.Result, r.Error = history.ResultRefused, err.Error()
		var rb *rolledBack
		if errors.As(err, &rb) {
			r.Result = history.ResultRolledBack
		}
		// A failure the daemon repeats by itself (a timed switch is
		// retried at once, a listening sync at each rescan) is one record
		// until something else happens; an operator's retry is recorded.
		if trigger == history.TriggerTimer || trigger == history.TriggerListening {
			key := trigger + "\x00" + r.Before + "\x00" + r.Error
			if key == d.lastFailure {
				return
			}
			d.lastFailure = key
		}
	case !changed:
		return
	default:
		r.Result = history.ResultApplied
		cand = d.current
		d.lastFailure = ""
	}
	if cand != nil {
		c := policy.Diff(old, cand, now)
		r.Change, r.Summary = &c, c.Summary()
	}
	d.record(r)
}

// pinnedDigest is the digest of the generation pinned on the first
// interface before this daemon attaches ("" if none): what a start
// switches from.
func pinnedDigest(pinRoot, iface string) string {
	set, err := maps.Open(datapath.PinDir(pinRoot, iface), false)
	if err != nil {
		return ""
	}
	defer set.Close()
	m, err := set.Meta()
	if err != nil || m.PolicyDigest == [32]byte{} {
		return ""
	}
	return fmt.Sprintf("%x", m.PolicyDigest[:6])
}

// maxExamples is how many sources a batch record names.
const maxExamples = 5

// recordFeed records a feed's batch of bans or lifts.
func (d *daemon) recordFeed(kind, origin string, prefixes []netip.Prefix) {
	if len(prefixes) == 0 {
		return
	}
	r := history.Record{Kind: kind, Trigger: history.TriggerCrowdSec, Origin: origin, Result: history.ResultApplied, Count: len(prefixes)}
	for _, p := range prefixes[:min(len(prefixes), maxExamples)] {
		r.Examples = append(r.Examples, p.String())
	}
	if len(prefixes) == 1 {
		r.Source = prefixes[0].String()
	}
	d.record(r)
}
