package daemon

import (
	"fmt"
	"slices"
)

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
