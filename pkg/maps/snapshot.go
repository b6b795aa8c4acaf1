package maps

import (
	"fmt"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// SnapshotOptions say how much of the tables a Snapshot keeps: the ports
// with most drops (0: all), the sources most refused and the bans with most
// drops (0: none listed, the bans only counted).
type SnapshotOptions struct {
	TopPorts, TopSources, TopBans int
}

// Snapshot is what metrics, stats, status and top show of one interface's
// maps. A field that could not be read is nil, and Problems says why: an
// unread value is never shown as zero.
type Snapshot struct {
	Meta      *datapath.Meta
	Reasons   *Reasons
	Monitored *Reasons
	Ports     []PortDrops // most drops first, at most TopPorts
	Rules     []Rule
	Health    *[datapath.NumHealthCounters]uint64
	Sources   *SourceCount
	Limited   []Source // the sources most refused, with TopSources
	Bans      []Ban    // with TopBans
	// BansByOrigin counts the bans in force by who banned.
	BansByOrigin map[datapath.BanOrigin]int
	Protected    []Protected
	// SynProxy is nil when the pins have no SYN proxy maps (older schema).
	SynProxy *SynProxy
	Problems []string
}

// Snapshot reads the set's maps (see SnapshotOptions).
func (s *Set) Snapshot(o SnapshotOptions) *Snapshot {
	snap := &Snapshot{}
	fail := func(what string, err error) { snap.Problems = append(snap.Problems, fmt.Sprintf("%s: %v", what, err)) }
	if m, err := s.Meta(); err != nil {
		fail("generation", err)
	} else {
		snap.Meta = &m
	}
	if r, err := s.Reasons(); err != nil {
		fail("counters", err)
	} else {
		snap.Reasons = &r
	}
	if r, err := s.Monitored(); err != nil {
		fail("monitored counters", err)
	} else {
		snap.Monitored = &r
	}
	var err error
	if snap.Ports, err = s.PortDrops(o.TopPorts); err != nil {
		fail("port drops", err)
	}
	if snap.Rules, err = s.Rules(); err != nil {
		fail("rule counters", err)
	}
	if h, err := s.Health(); err != nil {
		fail("health counters", err)
	} else {
		snap.Health = &h
	}
	if s.XdpgSynproxyStats != nil {
		if sp, err := s.SynProxy(); err != nil {
			fail("syn proxy", err)
		} else {
			snap.SynProxy = &sp
		}
	}
	if snap.Meta != nil {
		if c, err := s.CountSources(*snap.Meta); err != nil {
			fail("source table", err)
		} else {
			snap.Sources = &c
		}
	}
	if o.TopSources > 0 {
		if snap.Limited, err = s.Sources(o.TopSources); err != nil {
			fail("limited sources", err)
		}
	}
	if bans, byOrigin, err := s.Bans(max(o.TopBans, 1)); err != nil {
		fail("bans", err)
	} else {
		snap.BansByOrigin = byOrigin
		if o.TopBans > 0 {
			snap.Bans = bans
		}
	}
	if snap.Protected, err = s.Protected(); err != nil {
		fail("protected sources", err)
	}
	return snap
}
