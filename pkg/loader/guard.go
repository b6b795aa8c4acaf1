package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Mode selects how XDP is attached.
type Mode string

// Attach modes. Auto tries native (driver) XDP and falls back to generic.
const (
	ModeAuto    Mode = "auto"
	ModeNative  Mode = "native"
	ModeGeneric Mode = "generic"
)

// ParseMode validates a --mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeNative, ModeGeneric:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want auto, native or generic", s)
}

// Names of pins inside an interface's directory.
const (
	linkPin       = "link"
	denyMap       = "xdpg_deny"
	trustMap      = "xdpg_trust"
	srcBucketsPin = "xdpg_src_buckets"
	generationPin = "xdpg_generation"
)

// Guard is xdpguard on one interface: the pinned link and maps, and the
// program of the generation in force.
type Guard struct {
	Iface   string
	Ifindex int
	Dir     string // pin directory

	mu      sync.Mutex
	objs    *xdpguardObjects
	lnk     link.Link
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
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, false, fmt.Errorf("remove memlock limit: %w", err)
	}
	g := &Guard{Iface: iface, Ifindex: nl.Attrs().Index, Dir: filepath.Join(pinRoot, iface)}
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

	gen, err := g.load(pol)
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if err != nil {
			gen.Close()
		}
	}()

	if old, ok := g.adoptLink(); ok {
		if err := old.Update(gen.objs.Xdpguard); err != nil {
			old.Close()
			return nil, false, fmt.Errorf("%s: switch the pinned filter to the new program: %w", iface, err)
		}
		g.lnk, adopted = old, true
	} else {
		if g.lnk, err = attachXDP(gen.objs.Xdpguard, g.Ifindex, mode); err != nil {
			return nil, false, fmt.Errorf("%s: %w", iface, err)
		}
	}
	if err := gen.commit(g.Dir, pol); err != nil {
		return nil, false, err
	}
	// Pinning the new link is the last step: until then, an error closes
	// the link and so detaches it, leaving nothing behind.
	if !adopted {
		if err := g.lnk.Pin(filepath.Join(g.Dir, linkPin)); err != nil {
			return nil, false, fmt.Errorf("%s: pin link: %w", iface, err)
		}
	}
	g.objs = gen.objs
	return g, adopted, nil
}

// Apply switches the interface to policy pol in one step. On error the
// previous generation stays in force, untouched.
func (g *Guard) Apply(pol *policy.Policy) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errors.New("guard is closed")
	}
	if os.Getenv("XDPGUARD_TEST_FAIL_SWITCH") == g.Iface {
		// Fault injection for the tests: a switch that fails on this
		// interface, to prove the daemon rolls the others back.
		return fmt.Errorf("%s: switch refused (XDPGUARD_TEST_FAIL_SWITCH)", g.Iface)
	}
	gen, err := g.load(pol)
	if err != nil {
		return err
	}
	crashPoint("loaded")
	if err := g.lnk.Update(gen.objs.Xdpguard); err != nil {
		gen.Close()
		return fmt.Errorf("%s: switch program: %w", g.Iface, err)
	}
	crashPoint("switched")
	old := g.objs
	g.objs = gen.objs
	if err := gen.commit(g.Dir, pol); err != nil {
		return err // the new policy is in force; only its bookkeeping failed
	}
	crashPoint("committed")
	return old.Close()
}

// crashPoint kills the process at a stage of a policy switch when
// XDPGUARD_TEST_CRASH_AT names it: the crash tests prove that a daemon
// killed at any stage leaves one whole policy in force.
func crashPoint(stage string) {
	if os.Getenv("XDPGUARD_TEST_CRASH_AT") == stage {
		_ = unix.Kill(os.Getpid(), unix.SIGKILL)
		select {} // SIGKILL is not delivered synchronously everywhere
	}
}

// State returns the guard's state maps, valid until the next Apply or Close.
func (g *Guard) State() (StateMaps, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return StateMaps{}, errors.New("guard is closed")
	}
	return StateMaps{
		Stats: g.objs.XdpgStats, PortDrops: g.objs.XdpgPortDrops,
		SrcBuckets: g.objs.XdpgSrcBuckets, Generation: g.objs.XdpgGeneration, Bans: g.objs.XdpgBans,
		RuleStats: g.objs.XdpgRuleStats, RuleNames: g.objs.XdpgRuleNames,
		Health: g.objs.XdpgHealth, Events: g.objs.XdpgEvents, EventBudget: g.objs.XdpgEventConfig,
		Protected: g.objs.XdpgProtected,
	}, nil
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
	if g.objs != nil {
		errs = append(errs, g.objs.Close())
	}
	if g.lockDir != nil {
		errs = append(errs, g.lockDir.Close())
	}
	return errors.Join(errs...)
}

// generation is a loaded, not yet active program with its maps.
type generation struct {
	objs *xdpguardObjects
	// carried are pinned maps this generation replaces with maps of a new
	// layout (see carriedPin): pinned in their place at commit.
	carried []carriedPin
	rules   *ruleSlotTable
}

// Close abandons a generation that was not switched in.
func (gen *generation) Close() error {
	if gen.rules != nil {
		gen.rules.release()
	}
	closeCarried(gen.carried)
	gen.carried = nil
	return gen.objs.Close()
}

// loadOptions are what loadGeneration loads against.
type loadOptions struct {
	// spec is the program; nil is the embedded one (tests load the
	// test-clock build).
	spec *ebpf.CollectionSpec
	// dir holds the pinned state maps (created and pinned if missing);
	// empty makes every map private to the program.
	dir, iface string
	// extra replaces more maps (tests: the test clock).
	extra map[string]*ebpf.Map
}

// load builds a generation of pol against the pinned state maps.
func (g *Guard) load(pol *policy.Policy) (*generation, error) {
	return loadGeneration(pol, loadOptions{dir: g.Dir, iface: g.Iface})
}

// loadGeneration loads pol's program. With opts.dir set, state maps are the
// ones pinned there (created and pinned if missing); with it empty every map
// is private to the program (tests and benchmarks).
func loadGeneration(pol *policy.Policy, opts loadOptions) (*generation, error) {
	dir, iface := opts.dir, opts.iface
	// Compile only rules that apply now (callers normally pass At's result
	// already; At is idempotent).
	pol = pol.At(time.Now())
	spec := opts.spec
	if spec == nil {
		var err error
		if spec, err = loadXdpguard(); err != nil {
			return nil, fmt.Errorf("parse embedded BPF object: %w", err)
		}
	}
	precise, err := limiterClock(pol)
	if err != nil {
		return nil, err
	}
	scoped := pol.ScopedTable()
	var udpOpen []policy.PortRange
	replies := policy.PortRange{First: 1, Last: 0} // empty
	if u := pol.UDP; u != nil {
		udpOpen = u.Allow
		if u.RepliesAuto {
			if replies, err = EphemeralPorts(); err != nil {
				return nil, err
			}
		} else if u.Replies.First != 0 {
			replies = u.Replies
		}
	}
	src, port, icmp := pol.SYN.GCRA(), pol.SYNTotal.GCRA(), pol.ICMPEcho.GCRA()
	for name, v := range map[string]any{
		xdpguardVarAllowPorts:      portBitmap(pol.AllowTCP),
		xdpguardVarScopedPorts:     portBitmap(scoped.Ports[0]),
		xdpguardVarUdpScopedPorts:  portBitmap(scoped.Ports[1]),
		xdpguardVarHasUdp:          flag(pol.UDP != nil),
		xdpguardVarUdpAllowPorts:   portBitmap(udpOpen),
		xdpguardVarUdpReplyFirst:   replies.First,
		xdpguardVarUdpReplyLast:    replies.Last,
		xdpguardVarHasScoped:       flag(len(scoped.Prefixes) > 0),
		xdpguardVarSrcIntervalNs:   src.IntervalNs,
		xdpguardVarSrcLimitNs:      src.LimitNs,
		xdpguardVarPortIntervalNs:  port.IntervalNs,
		xdpguardVarPortLimitNs:     port.LimitNs,
		xdpguardVarBanNs:           banNs(pol),
		xdpguardVarMonitor:         flag(pol.Monitor),
		xdpguardVarIcmpIntervalNs:  icmp.IntervalNs,
		xdpguardVarIcmpLimitNs:     icmp.LimitNs,
		xdpguardVarHasRuleMonitor:  flag(len(scoped.Monitor[0])+len(scoped.Monitor[1]) > 0),
		xdpguardVarGeneration:      nextGeneration(dir),
		xdpguardVarMonitorPorts:    portBitmap(rulePorts(scoped.Monitor[0])),
		xdpguardVarUdpMonitorPorts: portBitmap(rulePorts(scoped.Monitor[1])),
		xdpguardVarPreciseClock:    flag(precise),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}

	for name, v := range map[string]any{xdpguardVarHasDeny: flag(len(pol.Deny) > 0), xdpguardVarHasTrust: flag(len(pol.Trust) > 0)} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	deny, err := sourceTrie(spec.Maps[denyMap], pol.Deny)
	if err != nil {
		return nil, fmt.Errorf("sources.deny: %w", err)
	}
	defer deny.Close()
	trust, err := sourceTrie(spec.Maps[trustMap], pol.Trust)
	if err != nil {
		return nil, fmt.Errorf("sources.trust: %w", err)
	}
	defer trust.Close() // the program holds its own reference
	scopedSrc, groupPorts, err := scopedMaps(spec.Maps[xdpguardMapXdpgScopedSrc], spec.Maps[xdpguardMapXdpgGroupPorts], scoped)
	if err != nil {
		return nil, fmt.Errorf("source-scoped rules: %w", err)
	}
	defer scopedSrc.Close()
	defer groupPorts.Close()

	spec.Maps[xdpguardMapXdpgGroupRule].MaxEntries = uint32(max(groupRuleEntries(scoped), 1))
	gen := &generation{objs: new(xdpguardObjects)}
	spec.Maps[srcBucketsPin].MaxEntries = pol.MaxSources
	if dir == "" {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	} else if gen.carried, err = changedPins(spec, dir); err != nil {
		return nil, err
	}
	// Rule counter slots are assigned before the load: the port -> rule
	// table they fill is part of the program's .rodata.
	names, stats, err := openRuleMaps(spec, dir)
	if err != nil {
		closeCarried(gen.carried)
		return nil, incompatiblePins(err, dir, iface)
	}
	defer names.Close() // the program holds its own references
	defer stats.Close()
	rules, err := assignRuleSlots(names, stats, pol.RuleNames())
	if err != nil {
		return nil, fmt.Errorf("rule counters: %w", err)
	}
	if err := spec.Variables[xdpguardVarPortRules].Set(rules.portRules(pol.OpenRules(), scoped.Monitor)); err != nil {
		rules.release()
		closeCarried(gen.carried)
		return nil, fmt.Errorf("set %s: %w", xdpguardVarPortRules, err)
	}
	replace := map[string]*ebpf.Map{
		denyMap: deny, trustMap: trust,
		xdpguardMapXdpgScopedSrc: scopedSrc, xdpguardMapXdpgGroupPorts: groupPorts,
		xdpguardMapXdpgRuleNames: names, xdpguardMapXdpgRuleStats: stats,
	}
	for name, m := range opts.extra {
		replace[name] = m
	}
	err = spec.LoadAndAssign(gen.objs, &ebpf.CollectionOptions{
		Maps:            ebpf.MapOptions{PinPath: dir},
		MapReplacements: replace,
	})
	if err != nil {
		rules.release()
		closeCarried(gen.carried)
	}
	err = incompatiblePins(err, dir, iface)
	if errors.Is(err, os.ErrPermission) {
		// Without CAP_PERFMON the verifier refuses (EACCES) what it
		// accepts with it: name what is missing rather than the log.
		if cerr := CheckCapabilities(); cerr != nil {
			return nil, cerr
		}
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return nil, fmt.Errorf("the kernel's verifier rejected the program: %+v", ve)
	}
	if err != nil {
		return nil, fmt.Errorf("load BPF objects: %w", err)
	}
	rules.names, rules.stats = gen.objs.XdpgRuleNames, gen.objs.XdpgRuleStats
	gen.rules = rules
	maps := gen.objs.byName()
	for _, c := range gen.carried {
		if err := carryOver(c.old, maps[c.name]); err != nil {
			gen.Close()
			return nil, fmt.Errorf("carry %s over to its new layout: %w", c.name, err)
		}
	}
	if err := rules.fillGroupRules(gen.objs.XdpgGroupRule, scoped); err != nil {
		gen.Close()
		return nil, fmt.Errorf("rule counters: %w", err)
	}
	return gen, nil
}

// openRuleMaps opens the rule counter maps pinned in dir, creating (and
// pinning) them when missing; with dir empty, private ones.
func openRuleMaps(spec *ebpf.CollectionSpec, dir string) (names, stats *ebpf.Map, err error) {
	opts := ebpf.MapOptions{PinPath: dir}
	if names, err = ebpf.NewMapWithOptions(spec.Maps[xdpguardMapXdpgRuleNames], opts); err != nil {
		return nil, nil, fmt.Errorf("rule names: %w", err)
	}
	if stats, err = ebpf.NewMapWithOptions(spec.Maps[xdpguardMapXdpgRuleStats], opts); err != nil {
		names.Close()
		return nil, nil, fmt.Errorf("rule counters: %w", err)
	}
	return names, stats, nil
}

// incompatiblePins says what to do when pins of another layout are in the
// way; other errors pass through.
func incompatiblePins(err error, dir, iface string) error {
	if errors.Is(err, ebpf.ErrMapIncompatible) && dir != "" {
		return fmt.Errorf("pins in %s are incompatible with this xdpguard (%w); "+
			"remove them with `xdpguard detach --iface %s` and start again", dir, err, iface)
	}
	return err
}

// commit records the generation now in force and pins the maps it carried
// over to a new layout in place of the old ones.
func (gen *generation) commit(dir string, pol *policy.Policy) error {
	maps := gen.objs.byName()
	for _, c := range gen.carried {
		path := filepath.Join(dir, c.name)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("replace the %s pin: %w", c.name, err)
		}
		if err := maps[c.name].Pin(path); err != nil {
			return fmt.Errorf("pin %s: %w", c.name, err)
		}
	}
	closeCarried(gen.carried)
	gen.carried = nil
	var meta Meta
	key := uint32(0)
	if err := gen.objs.XdpgGeneration.Lookup(key, &meta); err != nil {
		return fmt.Errorf("read generation: %w", err)
	}
	meta.SchemaVersion = SchemaVersion
	meta.Generation++
	meta.LoadedUnixNs = uint64(time.Now().UnixNano())
	meta.PolicyDigest = pol.Digest()
	src := pol.SYN.GCRA()
	meta.SrcIntervalNs, meta.SrcLimitNs = src.IntervalNs, src.LimitNs
	meta.PolicyPath = [256]int8{}
	for i := 0; i < len(pol.Path) && i < len(meta.PolicyPath)-1; i++ {
		meta.PolicyPath[i] = int8(pol.Path[i])
	}
	meta.Flags = 0
	if pol.Monitor {
		meta.Flags |= MetaMonitor
	}
	if err := gen.objs.XdpgGeneration.Put(key, &meta); err != nil {
		return fmt.Errorf("write generation: %w", err)
	}
	if err := gen.rules.retire(); err != nil {
		return fmt.Errorf("free the counters of removed rules: %w", err)
	}
	return nil
}

// adoptLink opens the pinned link if it still drives our interface. A link
// whose interface is gone (ifindex 0 or another index) is unpinned.
func (g *Guard) adoptLink() (link.Link, bool) {
	path := filepath.Join(g.Dir, linkPin)
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return nil, false
	}
	if info, err := l.Info(); err == nil {
		if xdp := info.XDP(); xdp != nil && int(xdp.Ifindex) == g.Ifindex {
			return l, true
		}
	}
	_ = l.Unpin()
	l.Close()
	return nil, false
}

// ErrForeignProgram: the interface runs an XDP program xdpguard did not
// attach.
var ErrForeignProgram = errors.New("another XDP program is attached")

// RemoveForeignXDP detaches the XDP program attached to iface through
// netlink (as `ip link set dev IFACE xdp ...` does) and returns its ID. A
// program held by another process's bpf_link cannot be removed this way:
// its owner must close it.
func RemoveForeignXDP(iface string) (uint32, error) {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return 0, err
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return 0, nil
	}
	flags := map[uint32]int{nl.XDP_ATTACHED_DRV: nl.XDP_FLAGS_DRV_MODE, nl.XDP_ATTACHED_SKB: nl.XDP_FLAGS_SKB_MODE, nl.XDP_ATTACHED_HW: unix.XDP_FLAGS_HW_MODE}[x.AttachMode]
	if err := netlink.LinkSetXdpFdWithFlags(l, -1, flags); err != nil {
		return x.ProgId, fmt.Errorf("%s: remove XDP program %d: %w (attached by a bpf_link? its owner must close it)", iface, x.ProgId, err)
	}
	return x.ProgId, nil
}

func attachXDP(prog *ebpf.Program, ifindex int, mode Mode) (link.Link, error) {
	opts := link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode}
	if mode == ModeGeneric {
		opts.Flags = link.XDPGenericMode
	}
	l, err := link.AttachXDP(opts)
	if err != nil && mode == ModeAuto {
		opts.Flags = link.XDPGenericMode
		l, err = link.AttachXDP(opts)
	}
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("%w (see `ip link show`); xdpguard will not replace it unless run with --replace-foreign: %v", ErrForeignProgram, err)
	}
	if err != nil {
		return nil, fmt.Errorf("attach XDP (%s): %w", mode, err)
	}
	return l, nil
}

// lockDir takes an exclusive, non-blocking lock on dir, so two daemons never
// manage one interface. The lock lives as long as the returned file.
func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errors.New("another xdpguard process manages this interface")
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// checkSchema refuses pins written by an xdpguard with another map schema.
func checkSchema(dir string) error {
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, generationPin), nil)
	if err != nil {
		return nil // nothing pinned yet
	}
	defer m.Close()
	var meta Meta
	if err := m.Lookup(uint32(0), &meta); err != nil {
		return fmt.Errorf("read pinned generation in %s: %w", dir, err)
	}
	if meta.SchemaVersion != 0 && (meta.SchemaVersion < MinSchemaVersion || meta.SchemaVersion > SchemaVersion) {
		return fmt.Errorf("pins in %s have schema version %d, this xdpguard uses %d (and adopts %d to %[3]d); "+
			"remove them with `xdpguard detach` and start again", dir, meta.SchemaVersion, SchemaVersion, MinSchemaVersion)
	}
	return nil
}

// banNs is the ban length the data path enforces: none while monitoring,
// since a monitored policy must not drop anything, bans included.
func banNs(pol *policy.Policy) uint64 {
	if pol.Monitor {
		return 0
	}
	return uint64(pol.Ban)
}

// nextGeneration is the number commit will give the generation being
// loaded: one more than the pinned record's (1 for a first attach, 0 for a
// program with no pins).
func nextGeneration(dir string) uint32 {
	if dir == "" {
		return 0
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, generationPin), nil)
	if err != nil {
		return 1
	}
	defer m.Close()
	meta, err := ReadMeta(m)
	if err != nil {
		return 1
	}
	return uint32(meta.Generation + 1)
}

// byName lists the program's maps by their C names, from the generated
// struct's tags: the one list of maps.
func (o *xdpguardObjects) byName() map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	v := reflect.ValueOf(&o.xdpguardMaps).Elem()
	for i := range v.NumField() {
		if m, ok := v.Field(i).Interface().(*ebpf.Map); ok {
			out[v.Type().Field(i).Tag.Get("ebpf")] = m
		}
	}
	return out
}

// limiterClock reports whether pol's limiters need the precise clock: a
// bucket whose tolerance is under one tick of the coarse clock plus one
// interval would pass only `burst` events per tick on it, whatever its rate.
func limiterClock(pol *policy.Policy) (bool, error) {
	var res unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_MONOTONIC_COARSE, &res); err != nil {
		return false, fmt.Errorf("read the coarse clock's resolution: %w", err)
	}
	return NeedsPreciseClock(pol, uint64(res.Nano())), nil
}

// NeedsPreciseClock is limiterClock for a coarse clock ticking every tick ns.
func NeedsPreciseClock(pol *policy.Policy, tick uint64) bool {
	for _, g := range []policy.GCRA{pol.SYN.GCRA(), pol.SYNTotal.GCRA(), pol.ICMPEcho.GCRA()} {
		if g.IntervalNs != 0 && g.LimitNs < tick+g.IntervalNs {
			return true
		}
	}
	return false
}
