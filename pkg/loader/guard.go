package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Guard is xdpguard on one interface: the pinned link and maps, and the
// program of the generation in force.
type Guard struct {
	Iface   string
	Ifindex int
	Dir     string // pin directory
	// Placement is where the filter runs (mode, hook) and why.
	Placement Placement

	mu      sync.Mutex
	gen     *datapath.Generation // in force
	lnk     attachment
	lockDir *os.File
	closed  bool
}

// Attach puts xdpguard with policy pol on iface, or adopts the filter already
// pinned for it (a restart or upgrade), switching it to pol. adopted reports
// which. On error nothing new is left attached or pinned.
func Attach(pinRoot, iface string, mode Mode, pol *policy.Policy) (_ *Guard, adopted bool, err error) {
	if pol == nil {
		return nil, false, errors.New("attach: no policy")
	}
	if _, err := ParseMode(string(mode)); err != nil {
		return nil, false, err
	}
	if err := CheckInterfaceName(iface); err != nil {
		return nil, false, err
	}
	nl, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, false, fmt.Errorf("interface %q: %w", iface, err)
	}
	g := &Guard{Iface: iface, Ifindex: nl.Attrs().Index, Dir: datapath.PinDir(pinRoot, iface)}
	_, statErr := os.Stat(g.Dir)
	created := errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(g.Dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("pin directory: %w", err)
	}
	if err := checkPinDir(g.Dir); err != nil {
		return nil, false, fmt.Errorf("%s: %w", iface, err)
	}
	if g.lockDir, err = lockDir(g.Dir); err != nil {
		return nil, false, fmt.Errorf("%s: %w", iface, err)
	}
	defer func() {
		if err != nil {
			g.Close()
			// A first attach that fails leaves nothing behind: the maps
			// it pinned would outlive it with no filter to serve.
			if created {
				_ = removePinDir(g.Dir)
				_ = os.Remove(pinRoot)
			}
		}
	}()
	if err := checkSchema(g.Dir); err != nil {
		return nil, false, err
	}
	// A pinned link decides the hook (a restart never moves the filter);
	// otherwise the mode and the device do.
	old, adopt := g.adoptLink()
	if adopt {
		g.Placement = placementOf(old, nl)
	} else if d, derr := readDispatcher(g.Ifindex); derr == nil {
		// Another tool's programs run through libxdp's dispatcher: join.
		if err := bondSlave(nl); err != nil {
			d.close()
			return nil, false, err
		}
		p, ok := placeInDispatcher(nl, mode, d)
		d.close()
		if !ok {
			g.Placement, err = place(nl, mode, pol.SynProxy != nil)
		} else {
			g.Placement = p
		}
		if err != nil {
			return nil, false, err
		}
	} else if !errors.Is(derr, errNotDispatcher) {
		return nil, false, fmt.Errorf("%s: %w", iface, derr)
	} else if g.Placement, err = place(nl, mode, pol.SynProxy != nil); err != nil {
		return nil, false, err
	}
	gen, err := g.load(pol)
	if err != nil {
		if adopt {
			old.Close()
		}
		return nil, false, err
	}
	defer func() {
		if err != nil && gen != nil {
			gen.Discard()
		}
	}()
	if adopt {
		if err := old.Update(gen.Program); err != nil {
			old.Close()
			return nil, false, fmt.Errorf("%s: switch the pinned filter to the new program: %w", iface, err)
		}
		g.lnk, adopted = old, true
	} else if g.lnk, err = attachPlaced(gen.Program, g.Ifindex, g.Placement, g.Dir); err != nil {
		next, ok := autoFallback(mode, g.Placement, err, pol.SynProxy != nil)
		if !ok {
			return nil, false, fmt.Errorf("%s: %w", iface, err)
		}
		gen.Discard()
		g.Placement = next
		gen = nil // discarded: the deferred Discard must not see it again
		if gen, err = g.load(pol); err != nil {
			return nil, false, err
		}
		if g.lnk, err = attachPlaced(gen.Program, g.Ifindex, g.Placement, g.Dir); err != nil {
			return nil, false, fmt.Errorf("%s: %w", iface, err)
		}
	}
	defer func() {
		// A slot just taken in libxdp's dispatcher is pinned there: give
		// it back, so the others run as before.
		if _, ok := g.lnk.(*dispatcherSlot); ok && err != nil && !adopted {
			if own, oerr := ownMap(g.Dir); oerr == nil {
				_ = leaveDispatcher(g.Ifindex, own)
			}
		}
	}()
	if err := gen.Commit(g.Dir, pol); err != nil {
		return nil, false, err
	}
	// Pinning the new link is the last step: until then, an error closes
	// the link and so detaches it, leaving nothing behind.
	if !adopted {
		if err := g.lnk.Pin(filepath.Join(g.Dir, datapath.LinkPin)); err != nil {
			return nil, false, fmt.Errorf("%s: pin link: %w", iface, err)
		}
	}
	g.gen = gen
	return g, adopted, nil
}

// load compiles pol against the guard's pins; a refusal for want of a
// capability names it.
func (g *Guard) load(pol *policy.Policy) (*datapath.Generation, error) {
	// Refused before the namespace's TCP settings are touched: the SYN
	// proxy answers with XDP_TX, which a tc hook cannot.
	if g.Placement.Hook == datapath.HookTC && pol.SynProxy != nil {
		return nil, fmt.Errorf("%s runs in tc mode, and syn_proxy needs XDP (the SYN proxy answers with XDP_TX): "+
			"remove syn_proxy, or `xdpguard detach` the interface and run with --mode auto or native (a restart keeps the pinned hook)", g.Iface)
	}
	// syn_proxy needs tcp_syncookies=2 (and, for the options,
	// tcp_timestamps=2) in this namespace: set before the load reads them.
	if _, err := datapath.PrepareSynProxyHost(pol); err != nil {
		return nil, err
	}
	opts := datapath.Options{Dir: g.Dir, Iface: g.Iface, Hook: g.Placement.Hook}
	if g.Placement.Dispatcher {
		// A component is loaded against a dispatcher: one of its own will
		// do, as any dispatcher's slots take it. All its slots enabled,
		// or the verifier cuts the stubs as dead code.
		target, err := datapath.LoadDispatcher(datapath.DispatcherConfig{NumProgsEnabled: datapath.DispatcherSlots}, false)
		if err != nil {
			return nil, err
		}
		defer target.Close()
		opts.Extend = target
	}
	gen, err := datapath.Load(pol, opts)
	if errors.Is(err, os.ErrPermission) && g.Placement.Dispatcher && CheckCapabilities() == nil {
		return nil, fmt.Errorf("%s runs libxdp's dispatcher, and joining it needs an freplace program, which this kernel refuses "+
			"(lockdown or a BPF LSM; libxdp itself falls back to a single program here): unload the other XDP programs "+
			"(xdp-loader unload --all %s), then start xdpguard: %w", g.Iface, g.Iface, err)
	}
	if errors.Is(err, os.ErrPermission) {
		if cerr := CheckCapabilities(); cerr != nil {
			return nil, cerr
		}
	}
	return gen, err
}

// Prepared is a policy compiled for a guard, verified and ready to switch
// in: the slow part of a policy change, done while the daemon serves.
type Prepared struct {
	g   *Guard
	gen *datapath.Generation
	pol *policy.Policy
}

// Prepare compiles and loads pol for the guard; nothing changes on the
// interface until Switch. Discard what is not switched.
func (g *Guard) Prepare(pol *policy.Policy) (*Prepared, error) {
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		return nil, errors.New("guard is closed")
	}
	gen, err := g.load(pol)
	if err != nil {
		return nil, err
	}
	crashPoint("loaded")
	return &Prepared{g: g, gen: gen, pol: pol}, nil
}

// Switch puts the prepared policy in force in one step (BPF_LINK_UPDATE):
// each packet is judged by the old generation or the new one. On error the
// previous generation stays in force, untouched.
func (p *Prepared) Switch() error {
	g := p.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		p.gen.Discard()
		return errors.New("guard is closed")
	}
	if err := failSwitch(g.Iface); err != nil {
		p.gen.Discard()
		return err
	}
	if err := g.lnk.Update(p.gen.Program); err != nil {
		p.gen.Discard()
		return fmt.Errorf("%s: switch program: %w", g.Iface, err)
	}
	crashPoint("switched")
	old := g.gen
	g.gen = p.gen
	if err := p.gen.Commit(g.Dir, p.pol); err != nil {
		return err // the new policy is in force; only its bookkeeping failed
	}
	crashPoint("committed")
	return old.Close()
}

// Discard abandons a prepared policy.
func (p *Prepared) Discard() { p.gen.Discard() }

// Apply is Prepare then Switch.
func (g *Guard) Apply(pol *policy.Policy) error {
	p, err := g.Prepare(pol)
	if err != nil {
		return err
	}
	return p.Switch()
}

// State returns the guard's state maps, valid until the next Switch or
// Close.
func (g *Guard) State() (*maps.Set, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, errors.New("guard is closed")
	}
	return maps.Of(g.gen.Maps), nil
}

// ProgramID is the ID of the program the link runs now.
func (g *Guard) ProgramID() (ebpf.ProgramID, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, errors.New("guard is closed")
	}
	info, err := g.lnk.Info()
	if err != nil {
		return 0, err
	}
	return info.Program, nil
}

// Close releases the daemon's handles. The pinned filter keeps enforcing.
// Safe to call more than once.
func (g *Guard) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	var errs []error
	if g.lnk != nil {
		errs = append(errs, g.lnk.Close())
	}
	if g.gen != nil {
		errs = append(errs, g.gen.Close())
	}
	if g.lockDir != nil {
		errs = append(errs, g.lockDir.Close())
	}
	return errors.Join(errs...)
}

// adoptLink opens the pinned link if it still drives our interface. A link
// whose interface is gone (ifindex 0 or another index) is unpinned.
func (g *Guard) adoptLink() (attachment, bool) {
	if f, ok := adoptClsact(g.Ifindex); ok {
		return f, true
	}
	path := filepath.Join(g.Dir, datapath.LinkPin)
	l, err := link.LoadPinnedLink(path, nil)
	var info *link.Info
	if err == nil {
		info, _ = l.Info()
	}
	// A slot in libxdp's dispatcher is found by the program using this
	// interface's pinned maps, whatever the pinned link (if any) says.
	if info == nil || info.Type == link.TracingType {
		if own, oerr := ownMap(g.Dir); oerr == nil && runsDispatcher(g.Ifindex) {
			nl, nerr := netlink.LinkByIndex(g.Ifindex)
			if s, ok := adoptDispatcherSlot(g.Ifindex, own, nerr == nil && xdpHookFor(nl) == datapath.HookXDPFrags); ok {
				if l != nil {
					l.Close()
				}
				s.pin = path
				return s, true
			}
		}
	}
	if err != nil {
		return nil, false
	}
	if info != nil {
		if xdp := info.XDP(); xdp != nil && int(xdp.Ifindex) == g.Ifindex {
			return l, true
		}
		if tcx := info.TCX(); tcx != nil && int(tcx.Ifindex) == g.Ifindex {
			return l, true
		}
	}
	_ = l.Unpin()
	l.Close()
	return nil, false
}
