package datapath

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/pkg/datapath/internal/component"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Maps are every map of the program (the generated struct: the one list of
// them). The pinned ones (PinnedMaps) outlive a generation; the others
// (source tries, scoped-rule tables) are made for each.
type Maps = xdpguardMaps

// LinkPin is the name of the pinned XDP link in an interface's directory.
const LinkPin = "link"

// PinnedMaps names the maps the program pins by name in an interface's
// directory, from the generated spec.
func PinnedMaps() []string {
	spec, err := loadXdpguard()
	if err != nil {
		panic(fmt.Sprintf("the embedded BPF object does not parse: %v", err)) // built and tested with the binary
	}
	out := []string{TracePin} // a data section, pinned by Load (openTraceMap)
	for name, m := range spec.Maps {
		if m.Pinning == ebpf.PinByName {
			out = append(out, name)
		}
	}
	return out
}

// Generation is a loaded program of one policy with its maps: the state maps
// pinned in its directory (or private ones) and its own source lists.
type Generation struct {
	objs *xdpguardObjects
	// Program is the program of Hook; Maps every map it uses but Trace, the
	// trace entry (TracePin).
	Program *ebpf.Program
	Hook    Hook
	*Maps
	Trace *ebpf.Map
	// carried are pinned maps this generation replaces with maps of a new
	// layout (see carriedPin): pinned in their place at Commit.
	carried []carriedPin
	rules   *ruleSlotTable
	extra   []*ebpf.Map // closed with it (tests: the test clock)
}

// Options are what Load loads against.
type Options struct {
	// Dir holds the pinned state maps (created and pinned if missing);
	// empty makes every map private to the program (tests, benchmarks).
	Dir   string
	Iface string // for messages
	// Hook selects the program (XDP, XDP with frags, tc); the zero value
	// is XDP.
	Hook Hook
	// Extend, when set, loads the XDP program as a component of this
	// libxdp dispatcher (BPF_PROG_TYPE_EXT replacing a slot's stub), for
	// the loader to attach with freplace; Hook must be an XDP one.
	Extend *ebpf.Program
	// spec is the program; nil is the embedded one (tests load the
	// test-clock build). extra replaces more maps.
	spec  *ebpf.CollectionSpec
	extra map[string]*ebpf.Map
}

// Load compiles pol into a program and loads it, against the maps pinned in
// opts.Dir: the verifier runs here, off to the side of the program in force.
// Nothing is switched: the caller attaches Program, or switches a link to
// it, then calls Commit; or Discard.
func Load(pol *policy.Policy, opts Options) (*Generation, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	// The SYN proxy answers with XDP_TX: behind tc it would not answer, and
	// the SYNs it exempts from the per-source limit would reach the
	// listener unlimited.
	if opts.Hook == HookTC && pol.SynProxy != nil {
		return nil, errors.New("syn_proxy needs an XDP attach (the SYN proxy answers with XDP_TX, which a tc hook cannot): " +
			"run with --mode native (auto chooses it for a policy with syn_proxy), or remove syn_proxy")
	}
	// Compile only rules that apply now (callers normally pass At's result
	// already; At is idempotent).
	pol = pol.At(time.Now())
	spec := opts.spec
	if spec == nil {
		load := loadXdpguard
		if opts.Extend != nil && pol.SynProxy == nil {
			// A dispatcher slot: the build that never changes a frame's
			// length fits every libxdp dispatcher's stubs.
			load = component.Spec
		}
		var err error
		if spec, err = load(); err != nil {
			return nil, fmt.Errorf("parse embedded BPF object: %w", err)
		}
	}
	scoped := pol.ScopedTable()
	deny := splitDeny(pol.Deny)
	vars, err := rodata(pol, scoped, deny, opts.Dir)
	if err != nil {
		return nil, err
	}
	spVars, err := synproxyRodata(pol, opts.Iface)
	if err != nil {
		return nil, err
	}
	maps.Copy(vars, spVars)
	for name, v := range vars {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	lists, err := sourceMaps(spec, pol, scoped, deny)
	if err != nil {
		return nil, err
	}
	defer closeAll(lists) // the program holds its own references

	gen := &Generation{objs: new(xdpguardObjects)}
	spec.Maps[xdpguardMapXdpgSrcBuckets].MaxEntries = pol.MaxSources
	if opts.Dir == "" {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	} else if gen.carried, err = changedPins(spec, opts.Dir); err != nil {
		return nil, err
	}
	// Rule counter slots are assigned before the load: the port -> rule
	// table they fill is part of the program's .rodata.
	names, stats, err := openRuleMaps(spec, opts.Dir)
	if err != nil {
		closeCarried(gen.carried)
		return nil, incompatiblePins(err, opts.Dir, opts.Iface)
	}
	defer names.Close() // the program holds its own references
	defer stats.Close()
	rules, err := assignRuleSlots(names, stats, pol.RuleNames())
	if err != nil {
		closeCarried(gen.carried)
		return nil, fmt.Errorf("rule counters: %w", err)
	}
	if err := spec.Variables[xdpguardVarPortRules].Set(rules.portRules(pol.OpenRules(), scoped.Monitor)); err != nil {
		rules.release()
		closeCarried(gen.carried)
		return nil, fmt.Errorf("set %s: %w", xdpguardVarPortRules, err)
	}
	lists[xdpguardMapXdpgRuleNames], lists[xdpguardMapXdpgRuleStats] = names, stats
	trace, err := openTraceMap(spec, opts.Dir)
	if err != nil {
		rules.release()
		closeCarried(gen.carried)
		return nil, incompatiblePins(err, opts.Dir, opts.Iface)
	}
	lists[traceSection] = trace // closed with lists; the generation keeps a clone
	if gen.Trace, err = trace.Clone(); err != nil {
		rules.release()
		closeCarried(gen.carried)
		return nil, err
	}
	gen.extra = append(gen.extra, gen.Trace)
	for name, m := range opts.extra {
		lists[name] = m
	}
	target, loaded, err := hookTarget(spec, opts.Hook, opts.Extend, gen.objs)
	if err != nil {
		rules.release()
		closeCarried(gen.carried)
		return nil, err
	}
	err = spec.LoadAndAssign(target, &ebpf.CollectionOptions{
		Maps:            ebpf.MapOptions{PinPath: opts.Dir},
		MapReplacements: lists,
	})
	delete(lists, xdpguardMapXdpgRuleNames) // closed by the defers above
	delete(lists, xdpguardMapXdpgRuleStats)
	for name := range opts.extra {
		delete(lists, name) // the caller's
	}
	if err != nil {
		rules.release()
		closeCarried(gen.carried)
		gen.Trace.Close()
		return nil, loadError(err, opts)
	}
	gen.Program, gen.Maps, gen.Hook = loaded(), &gen.objs.xdpguardMaps, opts.Hook
	rules.names, rules.stats = gen.XdpgRuleNames, gen.XdpgRuleStats
	gen.rules = rules
	if err := rules.fillGroupRules(gen.XdpgGroupRule, scoped); err != nil {
		gen.Discard()
		return nil, fmt.Errorf("rule counters: %w", err)
	}
	maps := gen.byName()
	for _, c := range gen.carried {
		if err := carryOver(c.old, maps[c.name]); err != nil {
			gen.Discard()
			return nil, fmt.Errorf("carry %s over to its new layout: %w", c.name, err)
		}
	}
	return gen, nil
}

// rodata is the policy compiled into the program's .rodata: every
// `volatile const` of bpf/xdpguard.c but the port -> rule table (which
// needs the rule slots).
func rodata(pol *policy.Policy, scoped policy.ScopedTable, deny deniedSources, dir string) (map[string]any, error) {
	precise, err := limiterClock(pol)
	if err != nil {
		return nil, err
	}
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
	return map[string]any{
		xdpguardVarHasDeny:         flag(deny.hasV6()),
		xdpguardVarHasDenyBlocks:   flag(deny.hasV4()),
		xdpguardVarHasDenyHosts:    flag(len(deny.hosts) > 0),
		xdpguardVarHasTrust:        flag(len(pol.Trust) > 0),
		xdpguardVarHasScoped:       flag(len(scoped.Prefixes) > 0),
		xdpguardVarHasUdp:          flag(pol.UDP != nil),
		xdpguardVarMonitor:         flag(pol.Monitor),
		xdpguardVarHasRuleMonitor:  flag(len(scoped.Monitor[0])+len(scoped.Monitor[1]) > 0),
		xdpguardVarPreciseClock:    flag(precise),
		xdpguardVarUdpReplyFirst:   replies.First,
		xdpguardVarUdpReplyLast:    replies.Last,
		xdpguardVarGeneration:      nextGeneration(dir),
		xdpguardVarBanNs:           banNs(pol),
		xdpguardVarSrcIntervalNs:   src.IntervalNs,
		xdpguardVarSrcLimitNs:      src.LimitNs,
		xdpguardVarPortIntervalNs:  port.IntervalNs,
		xdpguardVarPortLimitNs:     port.LimitNs,
		xdpguardVarIcmpIntervalNs:  icmp.IntervalNs,
		xdpguardVarIcmpLimitNs:     icmp.LimitNs,
		xdpguardVarAllowPorts:      portBitmap(pol.AllowTCP),
		xdpguardVarScopedPorts:     portBitmap(scoped.Ports[0]),
		xdpguardVarUdpAllowPorts:   portBitmap(udpOpen),
		xdpguardVarUdpScopedPorts:  portBitmap(scoped.Ports[1]),
		xdpguardVarMonitorPorts:    portBitmap(rulePorts(scoped.Monitor[0])),
		xdpguardVarUdpMonitorPorts: portBitmap(rulePorts(scoped.Monitor[1])),
	}, nil
}

// sourceMaps builds the generation's own maps: the deny and trust tries and
// the scoped rules' trie, group bitmaps and (sized here, filled after the
// load) rule trie. They replace the spec's maps at the load.
func sourceMaps(spec *ebpf.CollectionSpec, pol *policy.Policy, scoped policy.ScopedTable, split deniedSources) (map[string]*ebpf.Map, error) {
	// The lists fill at once: each map has its own lock in the kernel, and
	// a million-entry list is most of a switch's time.
	builds := []struct {
		name, field string
		build       func() (*ebpf.Map, error)
	}{
		{xdpguardMapXdpgDeny, "sources.deny", func() (*ebpf.Map, error) { return sourceTrie(spec.Maps[xdpguardMapXdpgDeny], split.trie) }},
		{xdpguardMapXdpgDenyBlocks, "sources.deny", func() (*ebpf.Map, error) { return denyBlocks(spec.Maps[xdpguardMapXdpgDenyBlocks], split) }},
		{xdpguardMapXdpgDenyHosts, "sources.deny", func() (*ebpf.Map, error) { return denyHosts(spec.Maps[xdpguardMapXdpgDenyHosts], split.hosts) }},
		{xdpguardMapXdpgTrust, "sources.trust", func() (*ebpf.Map, error) { return sourceTrie(spec.Maps[xdpguardMapXdpgTrust], pol.Trust) }},
	}
	built := make([]*ebpf.Map, len(builds))
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, b := range builds {
		wg.Go(func() {
			if built[i], errs[i] = b.build(); errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", b.field, errs[i])
			}
		})
	}
	wg.Wait()
	out := map[string]*ebpf.Map{}
	for i, b := range builds {
		if built[i] != nil {
			out[b.name] = built[i]
		}
	}
	if err := errors.Join(errs...); err != nil {
		closeAll(out)
		return nil, err
	}
	scopedSrc, groupPorts, err := scopedMaps(spec.Maps[xdpguardMapXdpgScopedSrc], spec.Maps[xdpguardMapXdpgGroupPorts], scoped)
	if err != nil {
		closeAll(out)
		return nil, fmt.Errorf("source-scoped rules: %w", err)
	}
	out[xdpguardMapXdpgScopedSrc], out[xdpguardMapXdpgGroupPorts] = scopedSrc, groupPorts
	spec.Maps[xdpguardMapXdpgGroupRule].MaxEntries = uint32(max(groupRuleEntries(scoped), 1))
	return out, nil
}

func closeAll(ms map[string]*ebpf.Map) {
	for _, m := range ms {
		m.Close()
	}
}

// loadError names what a failed load needs: the capability the verifier
// wants, the verifier's log, or the pins in the way.
func loadError(err error, opts Options) error {
	err = incompatiblePins(err, opts.Dir, opts.Iface)
	if errors.Is(err, os.ErrPermission) {
		// Without CAP_PERFMON the verifier refuses (EACCES) what it
		// accepts with it: say what is missing rather than print the log.
		return fmt.Errorf("load BPF objects: %w (xdpguard needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)", err)
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("the kernel's verifier rejected the program: %+v", ve)
	}
	return fmt.Errorf("load BPF objects: %w", err)
}

// Close releases the generation's handles: its program and maps stay for
// as long as a link or a pin holds them. Safe to call more than once.
func (gen *Generation) Close() error {
	if gen.objs == nil {
		return nil
	}
	closeCarried(gen.carried)
	for _, m := range gen.extra {
		m.Close()
	}
	err := gen.objs.Close()
	gen.objs, gen.carried, gen.extra = nil, nil, nil
	return err
}

// Discard abandons a generation that was never switched in: the rule
// counter slots it named are freed, then its handles closed.
func (gen *Generation) Discard() error {
	if gen.rules != nil {
		gen.rules.release()
		gen.rules = nil
	}
	return gen.Close()
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

// traceSection is the data section of the trace entry (bpf/trace.h).
const traceSection = ".data." + TracePin

// TracePin is the pinned trace entry (struct xdpg_trace_config, one
// element): the program's global xdpg_trace, shared by every generation.
const TracePin = "xdpg_trace"

// MetaPin is the name of the pinned generation map (struct xdpg_meta).
const MetaPin = xdpguardMapXdpgGeneration

// StatsPin is the name of the pinned reason counters, which every program
// of an interface uses (its verdicts count there): what identifies an
// interface's xdpguard among a dispatcher's programs.
const StatsPin = xdpguardMapXdpgStats

// openTraceMap opens the trace entry pinned in dir, creating (and pinning)
// it when missing; with dir empty, a private one. It replaces the program's
// own data section at the load, which keeps the test of a running trace a
// load and a branch.
func openTraceMap(spec *ebpf.CollectionSpec, dir string) (*ebpf.Map, error) {
	ms := spec.Maps[traceSection].Copy()
	ms.Name, ms.Contents = TracePin, nil
	// What cilium/ebpf gives every data section, and checks a replacement
	// against.
	ms.Flags |= unix.BPF_F_MMAPABLE
	if dir != "" {
		ms.Pinning = ebpf.PinByName
	}
	m, err := ebpf.NewMapWithOptions(ms, ebpf.MapOptions{PinPath: dir})
	if err != nil {
		return nil, fmt.Errorf("the trace entry: %w", err)
	}
	return m, nil
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

// Commit records the generation, now in force, in the pinned xdpg_generation
// and pins the maps it carried over to a new layout in place of the old
// ones; the counter slots of rules it no longer has are freed.
func (gen *Generation) Commit(dir string, pol *policy.Policy) error {
	maps := gen.byName()
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
	if err := gen.XdpgGeneration.Lookup(key, &meta); err != nil {
		return fmt.Errorf("read generation: %w", err)
	}
	meta.SchemaVersion = SchemaVersion
	meta.Generation++
	meta.LoadedUnixNs = uint64(time.Now().UnixNano())
	meta.PolicyDigest = pol.Digest()
	src := pol.SYN.GCRA()
	meta.SrcIntervalNs, meta.SrcLimitNs = src.IntervalNs, src.LimitNs
	meta.SetPath(pol.Path)
	meta.Flags = 0
	if pol.Monitor {
		meta.Flags |= MetaMonitor
	}
	if err := gen.XdpgGeneration.Put(key, &meta); err != nil {
		return fmt.Errorf("write generation: %w", err)
	}
	if err := gen.rules.retire(); err != nil {
		return fmt.Errorf("free the counters of removed rules: %w", err)
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

// nextGeneration is the number Commit will give the generation being
// loaded: one more than the pinned record's (1 for a first attach, 0 for a
// program with no pins).
func nextGeneration(dir string) uint32 {
	if dir == "" {
		return 0
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, xdpguardMapXdpgGeneration), nil)
	if err != nil {
		return 1
	}
	defer m.Close()
	var meta Meta
	if err := m.Lookup(uint32(0), &meta); err != nil {
		return 1
	}
	return uint32(meta.Generation + 1)
}

// byName lists the generation's maps by their C names, from the generated
// struct's tags.
func (gen *Generation) byName() map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	v := reflect.ValueOf(gen.Maps).Elem()
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
	return needsPreciseClock(pol, uint64(res.Nano())), nil
}

// needsPreciseClock is limiterClock for a coarse clock ticking every tick ns.
func needsPreciseClock(pol *policy.Policy, tick uint64) bool {
	for _, g := range []policy.GCRA{pol.SYN.GCRA(), pol.SYNTotal.GCRA(), pol.ICMPEcho.GCRA()} {
		if g.IntervalNs != 0 && g.LimitNs < tick+g.IntervalNs {
			return true
		}
	}
	return false
}

// PinDir is the pin directory of interface iface under root. bpffs refuses
// names with a dot, which VLAN sub-interfaces have (eth0.100): a dot
// becomes a colon, which no interface name can hold.
func PinDir(root, iface string) string {
	return filepath.Join(root, strings.ReplaceAll(iface, ".", ":"))
}

// PinDirInterface is the interface whose pin directory is named name.
func PinDirInterface(name string) string { return strings.ReplaceAll(name, ":", ".") }
