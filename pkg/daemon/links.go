package daemon

import (
	"context"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/pkg/loader"
)

// watchLinks follows the network namespace's interfaces, so that one of
// ours that is deleted and created again (a re-created veth, a driver
// reload) gets the filter back instead of staying open.
func (d *Daemon) watchLinks(ctx context.Context) (<-chan netlink.LinkUpdate, error) {
	ch := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { d.log.Warn("watching interfaces", "err", err) },
	})
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { close(done) })
	return ch, nil
}

// linkChanged re-attaches a managed interface that came back with a new
// index, with the policy in force; its pinned counters carry on.
func (d *Daemon) linkChanged(u netlink.LinkUpdate) {
	name := u.Attrs().Name
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, g := range d.guards {
		if g.Iface != name {
			continue
		}
		if u.Header.Type == unix.RTM_DELLINK {
			d.log.Warn("interface deleted; the filter goes back on when it returns", "interface", name)
			return
		}
		if g.Ifindex == int(u.Attrs().Index) {
			return // a change of state (up, down, address): still ours
		}
		g.Close()
		ng, _, err := loader.Attach(d.pinRoot, name, d.cfg.Mode, d.current)
		if err != nil {
			d.log.Error("interface re-created, but the filter could not be attached", "interface", name, "err", err)
			return
		}
		d.guards[i] = ng
		mode, progID, _ := loader.AttachMode(ng.Ifindex)
		d.log.Info("interface re-created: filter attached again", "interface", name, "ifindex", ng.Ifindex, "mode", mode, "program_id", progID)
		return
	}
}
