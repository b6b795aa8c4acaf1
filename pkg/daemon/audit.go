package daemon

import (
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
