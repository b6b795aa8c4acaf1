package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/xdpguard/xdpguard/pkg/audit"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/listening"
)

// auditEvery is how often the daemon judges its policy against the host's
// listening sockets (xdpguard_audit_findings): services come and go.
const auditEvery = time.Minute

// runAudit judges the policy file's policy against this namespace's
// listening sockets, as `xdpguard audit` does, for the metric; a problem
// reading the sockets is logged once and judged without them.
func (d *daemon) runAudit() {
	in := audit.Input{Policy: d.base, Now: time.Now()}
	if d.usage != nil {
		d.observeUsage(in.Now)
		in.Usage = d.usage.Usage()
	}
	socks, tcpWhole, udpWhole, err := listening.Sockets()
	if err != nil {
		if d.auditErr != err.Error() {
			d.log.Warn("audit: listing the listening sockets", "err", err)
			d.auditErr = err.Error()
		}
	} else {
		for _, s := range socks {
			proto := audit.TCP
			if s.Proto == "udp" {
				proto = audit.UDP
			}
			in.Listeners = append(in.Listeners, audit.Listener{Proto: proto, Port: s.Port, Addr: s.Addr, UID: s.UID})
		}
		in.ListedTCP, in.ListedUDP = tcpWhole, udpWhole
	}
	if r, err := datapath.EphemeralPorts(); err == nil {
		in.Ephemeral = r
	}
	d.audit.Observe(audit.Run(in))
}

// openUsage reads --rule-usage, the record of each rule's last hit kept
// across restarts; nil without one.
func (d *daemon) openUsage() error {
	if d.cfg.UsagePath == "" {
		return nil
	}
	u, err := audit.LoadUsage(d.cfg.UsagePath)
	if err != nil {
		return fmt.Errorf("--rule-usage: %w", err)
	}
	if fi, err := os.Stat(filepath.Dir(d.cfg.UsagePath)); err != nil || !fi.IsDir() {
		return fmt.Errorf("--rule-usage: %s is not an existing directory", filepath.Dir(d.cfg.UsagePath))
	}
	d.usage = u
	return nil
}

// observeUsage reads the per-rule counters of every interface, summed by
// rule name, into the usage record, and saves it when it changed. A
// counter that cannot be read leaves its rule's record as it was.
func (d *daemon) observeUsage(now time.Time) {
	counts := map[string]uint64{}
	d.mu.RLock()
	for _, g := range d.guards {
		st, err := g.State()
		if err != nil {
			continue
		}
		rules, err := st.Rules()
		if err != nil {
			continue
		}
		for _, r := range rules {
			counts[r.Name] += r.Passed + r.Dropped + r.Monitored
		}
	}
	d.mu.RUnlock()
	if !d.usage.Observe(audit.RuleNames(d.base), counts, now) {
		return
	}
	if err := d.usage.Save(d.cfg.UsagePath); err != nil {
		if d.usageErr != err.Error() {
			d.log.Warn("rule usage: saving the record of rule hits", "file", d.cfg.UsagePath, "err", err)
			d.usageErr = err.Error()
		}
		return
	}
	d.usageErr = ""
}
