package loader

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Detached is a loaded program with private maps, attached nowhere: for
// BPF_PROG_RUN tests and benchmarks of the exact program `run` attaches.
type Detached struct {
	Program *ebpf.Program
	StateMaps
	objs  *xdpguardObjects
	extra []*ebpf.Map // closed with it
}

// LoadDetached loads the program for pol with fresh, unpinned maps.
func LoadDetached(pol *policy.Policy) (*Detached, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	return loadDetached(pol, loadOptions{})
}

// loadDetached is LoadDetached with opts (a test build of the program).
func loadDetached(pol *policy.Policy, opts loadOptions) (*Detached, error) {
	gen, err := loadGeneration(pol, opts)
	if err != nil {
		return nil, err
	}
	o := gen.objs
	return &Detached{Program: o.Xdpguard, objs: o, StateMaps: StateMaps{
		Stats: o.XdpgStats, PortDrops: o.XdpgPortDrops, SrcBuckets: o.XdpgSrcBuckets, Generation: o.XdpgGeneration, Bans: o.XdpgBans,
		RuleStats: o.XdpgRuleStats, RuleNames: o.XdpgRuleNames,
		Health: o.XdpgHealth, Events: o.XdpgEvents, EventBudget: o.XdpgEventConfig,
		Protected: o.XdpgProtected,
	}}, nil
}

// Close releases the program and maps. Safe to call more than once.
func (d *Detached) Close() error {
	if d.objs == nil {
		return nil
	}
	err := d.objs.Close()
	for _, m := range d.extra {
		m.Close()
	}
	d.objs, d.extra = nil, nil
	return err
}

// PortBuckets is the per-port aggregate limiter state, for tests.
func (d *Detached) PortBuckets() *ebpf.Map { return d.objs.XdpgPortBuckets }
