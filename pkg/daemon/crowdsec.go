package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/pkg/crowdsec"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/history"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// CrowdSecReportName is the bouncer's report in the runtime directory.
const CrowdSecReportName = "crowdsec.json"

// crowdSecFeed is the daemon's CrowdSec bouncer, one per crowdsec section
// in force; Run's loop starts and stops it.
type crowdSecFeed struct {
	cfg     policy.CrowdSec
	key     string
	bouncer *crowdsec.Bouncer
	cancel  context.CancelFunc
	done    chan struct{}
	// refused: decisions wider than a feed may ban; notStored: bans the
	// full table could not take.
	refused, notStored atomic.Uint64
}

// report is the feed's state, for status and metrics.
func (f *crowdSecFeed) report(now time.Time) crowdsec.Report {
	r := crowdsec.NewReport(f.cfg.URL, f.cfg.Interval, f.bouncer.Stats(), now)
	r.Refused, r.NotStored = f.refused.Load(), f.notStored.Load()
	return r
}

// crowdSecChange reads what the policy's crowdsec section asks for: the
// key (read now, so a bad key file refuses the reload before anything
// changes) and whether the bouncer must be replaced.
func (d *daemon) crowdSecChange(cs *policy.CrowdSec) (key string, change bool, err error) {
	running := d.feed.Load()
	if cs == nil {
		return "", running != nil, nil
	}
	if key, err = cs.APIKey(); err != nil {
		return "", false, err
	}
	return key, running == nil || running.cfg != *cs || running.key != key, nil
}

// setCrowdSec stops the bouncer running, if any, and starts the one cs
// asks for. With no crowdsec section, CrowdSec's bans are lifted: they
// came from a feed the operator turned off.
func (d *daemon) setCrowdSec(cs *policy.CrowdSec, key string) {
	if old := d.feed.Swap(nil); old != nil {
		old.cancel()
		<-old.done
	}
	if cs == nil {
		n := d.liftOrigin(datapath.BanCrowdSec)
		d.log.Info("crowdsec: bouncer stopped; its bans are lifted", "bans", n)
		if n > 0 {
			d.record(history.Record{Kind: history.KindUnban, Trigger: history.TriggerCrowdSec, Origin: datapath.BanCrowdSec.String(),
				Result: history.ResultApplied, Count: n, Reason: "the crowdsec section was removed"})
		}
		os.Remove(filepath.Join(d.cfg.RuntimeDir, CrowdSecReportName))
		return
	}
	f := &crowdSecFeed{cfg: *cs, key: key, done: make(chan struct{})}
	client := &crowdsec.Client{URL: cs.URL, APIKey: key}
	f.bouncer = crowdsec.NewBouncer(client, cs.Interval, func(added, deleted []crowdsec.Decision) error {
		return d.applyDecisions(f, added, deleted)
	}, d.log.With("feed", "crowdsec"))
	// Start from the bans an earlier bouncer left: the first pull lifts
	// those deleted meanwhile.
	held := d.originBans(datapath.BanCrowdSec)
	f.bouncer.Hold(held)
	var ctx context.Context
	ctx, f.cancel = context.WithCancel(d.ctx)
	go func() {
		defer close(f.done)
		f.bouncer.Run(ctx)
	}()
	d.feed.Store(f)
	d.log.Info("crowdsec: bouncer started", "url", cs.URL, "interval", cs.Interval, "bans_held", len(held))
	d.writeCrowdSecReport()
}

// stopCrowdSec stops the bouncer, leaving its bans (a daemon stopping
// keeps enforcing them; the next one resumes from them).
func (d *daemon) stopCrowdSec() {
	if f := d.feed.Swap(nil); f != nil {
		f.cancel()
		<-f.done
	}
}

// decisionPrefix is the prefix a decision bans: an Ip decision its
// address alone (an IPv6 address is not widened to its /64: CrowdSec
// decides per address), a Range its prefix.
func decisionPrefix(dec crowdsec.Decision) (netip.Prefix, error) {
	if dec.Scope == "Ip" {
		a, err := netip.ParseAddr(dec.Value)
		if err != nil {
			return netip.Prefix{}, err
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(dec.Value)
	return p.Masked(), err
}

// applyDecisions writes the bouncer's changes into every interface's ban
// table. A failure to write fails the whole call (the bouncer offers it
// all again; writes are idempotent); a decision refused for its width, or
// one the full table cannot hold, is counted and skipped.
func (d *daemon) applyDecisions(f *crowdSecFeed, added, deleted []crowdsec.Decision) error {
	banned, lifted, err := d.applyDecisionsLocked(f, added, deleted)
	// Recorded out of the lock (an fsync must not hold up a switch), and
	// what was written before a failure too.
	d.recordFeed(history.KindUnban, datapath.BanCrowdSec.String(), lifted)
	d.recordFeed(history.KindBan, datapath.BanCrowdSec.String(), banned)
	return err
}

// applyDecisionsLocked is applyDecisions under d.mu; banned and lifted are
// the prefixes the first interface's table took or lost.
func (d *daemon) applyDecisionsLocked(f *crowdSecFeed, added, deleted []crowdsec.Decision) (banned, lifted []netip.Prefix, err error) {
	type ban struct {
		p      netip.Prefix
		until  uint64
		reason string
	}
	now := datapath.MonotonicNow()
	var refused, notStored uint64
	var lifts []netip.Prefix
	for _, dec := range deleted {
		if p, err := decisionPrefix(dec); err == nil {
			if p, err = datapath.FeedBanPrefix(p); err == nil {
				lifts = append(lifts, p)
			}
		}
	}
	// Each decision is judged once: a refused one counts once, whatever
	// the number of interfaces.
	var bans []ban
	for _, dec := range added {
		p, err := decisionPrefix(dec)
		if err != nil {
			continue
		}
		if p, err = datapath.FeedBanPrefix(p); err != nil {
			refused++
			continue
		}
		reason := dec.Scenario
		if dec.Origin != "" && dec.Origin != "crowdsec" {
			reason = dec.Origin + " " + reason // cscli, CAPI, lists
		}
		bans = append(bans, ban{p, now + uint64(dec.Duration), reason})
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	unstored := make([]bool, len(bans))
	for gi, g := range d.guards {
		st, err := g.State()
		if err != nil {
			continue // the interface is gone; checkLinks says so
		}
		for _, p := range lifts {
			ok, err := st.Lift(p, datapath.BanCrowdSec)
			if err != nil {
				return banned, lifted, fmt.Errorf("%s: %w", g.Iface, err)
			}
			if ok && gi == 0 {
				lifted = append(lifted, p)
			}
		}
		for i, b := range bans {
			_, err = st.Ban(b.p, b.until, datapath.BanCrowdSec, b.reason)
			switch {
			case errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.E2BIG):
				unstored[i] = true
			case err != nil:
				return banned, lifted, fmt.Errorf("%s: %w", g.Iface, err)
			case gi == 0:
				banned = append(banned, b.p)
			}
		}
	}
	for _, u := range unstored {
		if u {
			notStored++
		}
	}
	if refused > 0 || notStored > 0 {
		d.log.Warn("crowdsec: decisions not enforced", "too_wide", refused, "table_full", notStored,
			"widest_allowed", fmt.Sprintf("/%d (IPv4), /%d (IPv6)", datapath.MinFeedBitsV4, datapath.MinFeedBitsV6))
		f.refused.Add(refused)
		f.notStored.Add(notStored)
	}
	return banned, lifted, nil
}

// originBans are the bans of origin in force, as decisions (the time left
// as their duration), from the first interface that can be read: every
// interface gets the same.
func (d *daemon) originBans(origin datapath.BanOrigin) []crowdsec.Decision {
	d.mu.RLock()
	defer d.mu.RUnlock()
	now := datapath.MonotonicNow()
	for _, g := range d.guards {
		st, err := g.State()
		if err != nil {
			continue
		}
		bans, _, err := st.Bans(0)
		if err != nil {
			d.log.Warn("reading the bans in force", "interface", g.Iface, "err", err)
			continue
		}
		var out []crowdsec.Decision
		for _, b := range bans {
			if !b.Holds(origin, now) {
				continue
			}
			dec := crowdsec.Decision{Scope: "Range", Value: b.Source.String(), Type: "ban", Duration: time.Duration(b.UntilOf[origin] - now)}
			if b.Source.IsSingleIP() {
				dec.Scope, dec.Value = "Ip", b.Source.Addr().String()
			}
			out = append(out, dec)
		}
		return out
	}
	return nil
}

// liftOrigin lifts every ban of origin on every interface and reports how
// many (per interface, the most).
func (d *daemon) liftOrigin(origin datapath.BanOrigin) int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	most := 0
	for _, g := range d.guards {
		st, err := g.State()
		if err != nil {
			continue
		}
		n, err := liftAll(st, origin)
		if err != nil {
			d.log.Warn("lifting bans", "interface", g.Iface, "origin", origin, "err", err)
		}
		most = max(most, n)
	}
	return most
}

func liftAll(st *maps.Set, origin datapath.BanOrigin) (int, error) {
	bans, _, err := st.Bans(0)
	if err != nil {
		return 0, err
	}
	n, now := 0, datapath.MonotonicNow()
	for _, b := range bans {
		if b.Holds(origin, now) {
			if ok, err := st.Lift(b.Source, origin); err != nil {
				return n, err
			} else if ok {
				n++
			}
		}
	}
	return n, nil
}

// writeCrowdSecReport renews the bouncer's report for `xdpguard status`.
func (d *daemon) writeCrowdSecReport() {
	f := d.feed.Load()
	if f == nil || d.cfg.RuntimeDir == "" {
		return
	}
	b, err := json.Marshal(f.report(time.Now()))
	if err == nil {
		if err = os.MkdirAll(d.cfg.RuntimeDir, 0o755); err == nil {
			err = writeFileAtomic(filepath.Join(d.cfg.RuntimeDir, CrowdSecReportName), b, 0o644)
		}
	}
	if err != nil && d.reportErr != err.Error() {
		d.log.Warn("crowdsec: writing the status report", "dir", d.cfg.RuntimeDir, "err", err)
		d.reportErr = err.Error()
	}
}

// crowdSecReport is the bouncer's state for the metrics; false when none
// runs.
func (d *daemon) crowdSecReport() (crowdsec.Report, bool) {
	f := d.feed.Load()
	if f == nil {
		return crowdsec.Report{}, false
	}
	return f.report(time.Now()), true
}
