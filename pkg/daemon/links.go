package daemon

import (
	"errors"

	"github.com/vishvananda/netlink"

	"github.com/xdpguard/xdpguard/pkg/loader"
)

// checkLinks looks, every second, for a managed interface that was deleted
// and created again (a re-created veth, a driver reload): the kernel
// detached the filter with the old device, so it is attached again with
// the policy in force, its pinned counters carrying on. (A netlink
// subscription would be quicker but can end on its own; a poll cannot.)
func (d *daemon) checkLinks() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, g := range d.guards {
		l, err := netlink.LinkByName(g.Iface)
		var notFound netlink.LinkNotFoundError
		switch {
		case errors.As(err, &notFound):
			if !d.missing[g.Iface] {
				d.log.Warn("interface deleted; the filter goes back on when it returns", "interface", g.Iface)
				d.missing[g.Iface] = true
			}
			continue
		case err != nil:
			d.log.Warn("checking interface", "interface", g.Iface, "err", err)
			continue
		case l.Attrs().Index == g.Ifindex:
			continue
		}
		g.Close()
		ng, _, err := loader.Attach(d.pinRoot, g.Iface, d.cfg.Mode, d.current)
		if err != nil {
			d.log.Error("interface re-created, but the filter could not be attached", "interface", g.Iface, "err", err)
			continue
		}
		delete(d.missing, g.Iface)
		d.guards[i] = ng
		mode, progID, _ := loader.AttachMode(ng.Ifindex)
		d.log.Info("interface re-created: filter attached again", "interface", ng.Iface, "ifindex", ng.Ifindex, "mode", mode, "program_id", progID)
	}
}
