package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// Coexistence with libxdp (xdp-loader, xdp-filter, and every program that
// uses libxdp's multi-program attach), after xdp-tools'
// lib/libxdp/protocol.org: the interface runs a dispatcher that calls up to
// ten component programs in order of priority; each component is an
// freplace program pinned with its link under
// $LIBXDP_BPFFS/xdp/dispatch-IFINDEX-DISPATCHERID/progN-{prog,link}. A
// change builds a whole new dispatcher with the new set of components,
// attaches each to it (a component may be attached to two dispatchers at
// once), pins them, and swaps the dispatchers on the interface in one
// netlink request that names the one it replaces. All of it under an
// exclusive flock of $LIBXDP_BPFFS/xdp, which libxdp takes too.

// dispatcherPriority is xdpguard's run priority in a dispatcher: lower
// runs first, and libxdp's own defaults are 10 (xdp-filter) and 50
// (xdp-loader), so the filter judges every frame before the others see it.
const dispatcherPriority = 1

// xdpPass's bit in a chain-call bitmap: xdpguard hands on only what it
// passes; what it drops or answers (XDP_TX) ends the chain.
const xdpPass = 2

// libxdpDir is where libxdp pins dispatchers and takes its lock.
func libxdpDir() string {
	root := os.Getenv("LIBXDP_BPFFS")
	if root == "" {
		root = "/sys/fs/bpf"
	}
	return filepath.Join(root, "xdp")
}

// lockLibxdp takes libxdp's lock (creating its directory as libxdp does).
func lockLibxdp() (*os.File, error) {
	dir := libxdpDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("libxdp directory: %w", err)
	}
	if !isBPFFS(dir) {
		return nil, fmt.Errorf("%s is not on a bpffs: libxdp's dispatchers cannot be pinned there", dir)
	}
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("libxdp lock: %w", err)
	}
	// Bounded: a process that holds the lock must not freeze a policy
	// switch, and with it the daemon's status and metrics.
	deadline := time.Now().Add(libxdpLockWait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("libxdp lock %s (held by another process for %v?): %w", dir, libxdpLockWait, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// libxdpLockWait is how long a change waits for libxdp's lock: libxdp
// holds it for the few syscalls of a swap.
const libxdpLockWait = 5 * time.Second

// component is one program of a dispatcher.
type component struct {
	prog    *ebpf.Program
	id      ebpf.ProgramID
	name    string
	prio    uint32
	actions uint32 // chain-call bitmap, without the empty slot's bit
	flags   uint32 // BPF_F_XDP_HAS_FRAGS if it takes multi-buffer frames
	maps    []ebpf.MapID
}

// dispatcher is a libxdp dispatcher attached to an interface, read back
// from the kernel and its pins.
type dispatcher struct {
	ifindex int
	prog    *ebpf.Program
	id      ebpf.ProgramID
	mode    Mode // native or generic
	comps   []component
}

func (d *dispatcher) pinDir() string {
	return filepath.Join(libxdpDir(), fmt.Sprintf("dispatch-%d-%d", d.ifindex, d.id))
}

func (d *dispatcher) close() {
	if d == nil {
		return
	}
	for _, c := range d.comps {
		c.prog.Close()
	}
	d.prog.Close()
}

// slotUsing is the slot of the first component that uses map m (xdpguard's
// pinned xdpg_stats: a component of this interface's xdpguard), or -1.
func (d *dispatcher) slotUsing(m ebpf.MapID) int {
	for i, c := range d.comps {
		if slices.Contains(c.maps, m) {
			return i
		}
	}
	return -1
}

// withoutUsing is d's components but those using map m.
func (d *dispatcher) withoutUsing(m ebpf.MapID) []component {
	return slices.DeleteFunc(slices.Clone(d.comps), func(c component) bool { return slices.Contains(c.maps, m) })
}

// slotOf is the slot of program id in d, or -1.
func (d *dispatcher) slotOf(id ebpf.ProgramID) int {
	for i, c := range d.comps {
		if c.id == id {
			return i
		}
	}
	return -1
}

// order lists d's components as "name (priority N)", first first.
func (d *dispatcher) order() string {
	var s []string
	for _, c := range d.comps {
		s = append(s, fmt.Sprintf("%s (priority %d)", c.name, c.prio))
	}
	return strings.Join(s, ", ")
}

// errNotDispatcher: the interface runs no libxdp dispatcher.
var errNotDispatcher = errors.New("no libxdp dispatcher")

// readDispatcher reads the dispatcher attached to ifindex: errNotDispatcher
// when there is none (no XDP program, or one of another kind); an error
// naming why for a dispatcher xdpguard cannot take part in. The components
// are read from the pins: hold libxdp's lock when changing anything.
func readDispatcher(ifindex int) (*dispatcher, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil, err
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached || x.ProgId == 0 {
		return nil, errNotDispatcher
	}
	var mode Mode
	switch x.AttachMode {
	case nl.XDP_ATTACHED_DRV:
		mode = ModeNative
	case nl.XDP_ATTACHED_SKB:
		mode = modeGeneric
	default:
		return nil, errNotDispatcher
	}
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(x.ProgId))
	if err != nil {
		return nil, fmt.Errorf("XDP program %d: %w", x.ProgId, err)
	}
	d := &dispatcher{ifindex: ifindex, prog: prog, id: ebpf.ProgramID(x.ProgId), mode: mode}
	cfg, err := dispatcherConfig(prog)
	if err != nil {
		d.close()
		return nil, err
	}
	for i := range int(cfg.NumProgsEnabled) {
		path := filepath.Join(d.pinDir(), fmt.Sprintf("prog%d-prog", i))
		p, err := ebpf.LoadPinnedProgram(path, nil)
		if err != nil {
			d.close()
			return nil, fmt.Errorf("libxdp dispatcher %d on ifindex %d: component %d: %w", d.id, ifindex, i, err)
		}
		c := component{prog: p, prio: cfg.RunPrios[i], flags: cfg.ProgramFlags[i] & unix.BPF_F_XDP_HAS_FRAGS,
			actions: cfg.ChainCallActions[i] &^ (1 << datapath.DispatcherRetval)}
		if info, err := p.Info(); err == nil {
			c.id, _ = info.ID()
			c.name = info.Name
			c.maps, _ = info.MapIDs()
		}
		d.comps = append(d.comps, c)
	}
	return d, nil
}

// dispatcherConfig reads prog's dispatcher configuration the way libxdp
// recognises a dispatcher: its name, a single read-only map of one value
// starting with the magic byte and version.
func dispatcherConfig(prog *ebpf.Program) (datapath.DispatcherConfig, error) {
	var cfg datapath.DispatcherConfig
	info, err := prog.Info()
	if err != nil {
		return cfg, err
	}
	ids, _ := info.MapIDs()
	if info.Name != datapath.DispatcherName || len(ids) != 1 {
		return cfg, errNotDispatcher
	}
	m, err := ebpf.NewMapFromID(ids[0])
	if err != nil {
		return cfg, fmt.Errorf("dispatcher configuration: %w", err)
	}
	defer m.Close()
	mi, err := m.Info()
	if err != nil {
		return cfg, err
	}
	size := binary.Size(cfg)
	if mi.KeySize != 4 || mi.MaxEntries != 1 || int(mi.ValueSize) < 2 || mi.Flags&unix.BPF_F_RDONLY_PROG == 0 {
		return cfg, errNotDispatcher
	}
	raw := make([]byte, mi.ValueSize)
	if err := m.Lookup(uint32(0), raw); err != nil {
		return cfg, fmt.Errorf("dispatcher configuration: %w", err)
	}
	switch {
	case raw[0] != datapath.DispatcherMagic:
		return cfg, fmt.Errorf("libxdp dispatcher of version 1 (libxdp before 1.3): xdpguard joins version %d only; "+
			"unload its programs and load them again with a newer xdp-tools", datapath.DispatcherVersion)
	case raw[1] != datapath.DispatcherVersion:
		return cfg, fmt.Errorf("libxdp dispatcher of version %d: xdpguard joins version %d (libxdp 1.3-1.5) only", raw[1], datapath.DispatcherVersion)
	case len(raw) < size:
		return cfg, fmt.Errorf("libxdp dispatcher configuration of %d bytes, want %d", len(raw), size)
	}
	if _, err := binary.Decode(raw[:size], binary.LittleEndian, &cfg); err != nil {
		return cfg, err
	}
	if cfg.NumProgsEnabled > datapath.DispatcherSlots {
		return cfg, fmt.Errorf("libxdp dispatcher runs %d programs, more than its %d slots", cfg.NumProgsEnabled, datapath.DispatcherSlots)
	}
	return cfg, nil
}

// rebuild puts a new dispatcher running comps (sorted here) on old's
// interface in old's place, or, with old nil, on ifindex in mode. It
// returns the links of the new dispatcher, slot by slot (pinned; the
// caller closes them). On error nothing changed on the interface and
// nothing new is left pinned; the caller may read the interface again and
// retry (another tool changed it meanwhile).
func rebuild(ifindex int, mode Mode, old *dispatcher, comps []component) ([]link.Link, error) {
	if len(comps) > datapath.DispatcherSlots {
		return nil, fmt.Errorf("a libxdp dispatcher runs at most %d programs", datapath.DispatcherSlots)
	}
	// libxdp's order: priority, then name (its further tie-breaks only
	// matter between programs of the same name and priority).
	slices.SortStableFunc(comps, func(a, b component) int {
		if a.prio != b.prio {
			return int(int64(a.prio) - int64(b.prio))
		}
		return strings.Compare(a.name, b.name)
	})
	var cfg datapath.DispatcherConfig
	cfg.NumProgsEnabled = uint8(len(comps))
	frags := len(comps) > 0
	for i, c := range comps {
		cfg.ChainCallActions[i] = c.actions | 1<<datapath.DispatcherRetval
		cfg.RunPrios[i] = c.prio
		cfg.ProgramFlags[i] = c.flags
		frags = frags && c.flags&unix.BPF_F_XDP_HAS_FRAGS != 0
	}
	d, err := datapath.LoadDispatcher(cfg, frags)
	if err != nil {
		return nil, err
	}
	defer d.Close() // the interface and the links hold it
	info, err := d.Info()
	if err != nil {
		return nil, err
	}
	id, _ := info.ID()
	next := &dispatcher{ifindex: ifindex, id: id}
	dir := next.pinDir()
	links := make([]link.Link, 0, len(comps))
	fail := func(err error) ([]link.Link, error) {
		for _, l := range links {
			l.Close()
		}
		_ = removeDispatcherPins(dir)
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("libxdp pins: %w", err)
	}
	for i, c := range comps {
		l, err := link.AttachFreplace(d, datapath.DispatcherSlot(i), c.prog)
		if err != nil {
			return fail(fmt.Errorf("attach %s to slot %d of a new dispatcher: %w", c.name, i, err))
		}
		links = append(links, l)
		if err := l.Pin(filepath.Join(dir, fmt.Sprintf("prog%d-link", i))); err != nil {
			return fail(fmt.Errorf("pin %s's link: %w", c.name, err))
		}
		// A clone has no pin path of its own, so pinning it adds a pin
		// rather than moving the old dispatcher's.
		p, err := c.prog.Clone()
		if err != nil {
			return fail(err)
		}
		err = p.Pin(filepath.Join(dir, fmt.Sprintf("prog%d-prog", i)))
		p.Close()
		if err != nil {
			return fail(fmt.Errorf("pin %s: %w", c.name, err))
		}
	}
	if old != nil {
		mode = old.mode
	}
	if err := swapXDP(ifindex, d, old, mode); err != nil {
		return fail(err)
	}
	if old != nil {
		_ = removeDispatcherPins(old.pinDir())
	}
	return links, nil
}

// swapXDP attaches d to ifindex in place of old (or where nothing is, with
// old nil; d nil removes old) in one netlink request that fails if the
// interface no longer runs old: another tool changed it meanwhile.
func swapXDP(ifindex int, d *ebpf.Program, old *dispatcher, mode Mode) error {
	flags := uint32(nl.XDP_FLAGS_DRV_MODE)
	if mode == modeGeneric {
		flags = nl.XDP_FLAGS_SKB_MODE
	}
	fd := -1
	if d != nil {
		fd = d.FD()
	}
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(ifindex)
	req.AddData(msg)
	attrs := nl.NewRtAttr(unix.IFLA_XDP|unix.NLA_F_NESTED, nil)
	attrs.AddRtAttr(nl.IFLA_XDP_FD, nl.Uint32Attr(uint32(fd)))
	if old != nil {
		flags |= unix.XDP_FLAGS_REPLACE
		attrs.AddRtAttr(unix.IFLA_XDP_EXPECTED_FD, nl.Uint32Attr(uint32(old.prog.FD())))
	} else {
		flags |= unix.XDP_FLAGS_UPDATE_IF_NOEXIST
	}
	attrs.AddRtAttr(nl.IFLA_XDP_FLAGS, nl.Uint32Attr(flags))
	req.AddData(attrs)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("swap the dispatcher on ifindex %d: %w", ifindex, err)
	}
	return nil
}

// removeDispatcherPins removes a dispatcher's pin directory: only the
// progN-prog and progN-link pins libxdp's layout has.
func removeDispatcherPins(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	// Every name checked before anything is removed: a directory with
	// something else in it stays whole.
	for _, e := range entries {
		var n int
		var kind string
		if _, err := fmt.Sscanf(e.Name(), "prog%d-%s", &n, &kind); err != nil || (kind != "prog" && kind != "link") {
			return fmt.Errorf("%s: unexpected %s: left in place", dir, e.Name())
		}
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return os.Remove(dir)
}

// changeDispatcher reads ifindex's dispatcher under libxdp's lock and
// puts edit's set of components in its place, reading again and retrying
// when another tool swapped it meanwhile. edit gets the dispatcher (nil
// when the interface has none) and returns the new set.
func changeDispatcher(ifindex int, mode Mode, edit func(d *dispatcher) ([]component, error)) ([]component, []link.Link, error) {
	lock, err := lockLibxdp()
	if err != nil {
		return nil, nil, err
	}
	defer lock.Close()
	for attempt := 0; ; attempt++ {
		d, err := readDispatcher(ifindex)
		if errors.Is(err, errNotDispatcher) {
			d, err = nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		comps, err := edit(d)
		if err != nil {
			d.close()
			return nil, nil, err
		}
		var links []link.Link
		if len(comps) == 0 && d != nil {
			err = swapXDP(ifindex, nil, d, d.mode)
			if err == nil {
				_ = removeDispatcherPins(d.pinDir())
			}
		} else {
			links, err = rebuild(ifindex, mode, d, comps)
		}
		d.close()
		// EEXIST: the interface runs another program than the one read
		// (XDP_FLAGS_REPLACE), or, with nothing read, one appeared.
		if errors.Is(err, unix.EEXIST) && attempt < 3 {
			continue
		}
		return comps, links, err
	}
}

// dispatcherSlot is xdpguard as a component of the libxdp dispatcher on an
// interface. It holds no dispatcher: every change reads the one attached
// now (another tool may have rebuilt it) and swaps in a new one.
type dispatcherSlot struct {
	ifindex int
	mode    Mode
	frags   uint32
	prog    ebpf.ProgramID // xdpguard's component in force
	lnk     link.Link      // its freplace link in the dispatcher xdpguard built last
	pin     string         // where lnk is pinned, once it is
}

// joinDispatcher adds prog (loaded as a dispatcher component) to the
// dispatcher on ifindex at dispatcherPriority.
func joinDispatcher(ifindex int, mode Mode, prog *ebpf.Program, frags bool, own ebpf.MapID) (*dispatcherSlot, error) {
	s := &dispatcherSlot{ifindex: ifindex, mode: mode}
	if frags {
		s.frags = unix.BPF_F_XDP_HAS_FRAGS
	}
	ours, err := s.component(prog)
	if err != nil {
		return nil, err
	}
	if err := s.change(func(d *dispatcher) ([]component, error) {
		if d == nil {
			return nil, errNotDispatcher
		}
		if d.mode != mode {
			return nil, fmt.Errorf("the libxdp dispatcher on the interface runs in %s mode, not %s: run with --mode %s", d.mode, mode, d.mode)
		}
		if i := d.slotOf(ours.id); i >= 0 {
			return nil, fmt.Errorf("program %d is already slot %d of the dispatcher", ours.id, i)
		}
		// An xdpguard program of this interface already there (left by
		// a crash between the swap and the pin, or a failed detach) is
		// replaced, never run twice.
		return append(d.withoutUsing(own), ours), nil
	}, ours.id); err != nil {
		return nil, err
	}
	s.prog = ours.id
	return s, nil
}

func (s *dispatcherSlot) component(prog *ebpf.Program) (component, error) {
	info, err := prog.Info()
	if err != nil {
		return component{}, err
	}
	id, _ := info.ID()
	return component{prog: prog, id: id, name: info.Name, prio: dispatcherPriority, actions: 1 << xdpPass, flags: s.frags}, nil
}

// change swaps in the dispatcher edit describes and keeps the link of
// xdpguard's component, program ours.
func (s *dispatcherSlot) change(edit func(d *dispatcher) ([]component, error), ours ebpf.ProgramID) error {
	comps, links, err := changeDispatcher(s.ifindex, s.mode, edit)
	if err != nil {
		return err
	}
	var kept link.Link
	for i, l := range links {
		if comps[i].id == ours && kept == nil {
			kept = l
			continue
		}
		l.Close()
	}
	if kept == nil {
		return fmt.Errorf("program %d is not in the dispatcher built", ours)
	}
	if s.lnk != nil {
		s.lnk.Close()
	}
	s.lnk = kept
	return nil
}

// Update swaps in a dispatcher whose xdpguard slot runs prog (loaded as a
// component): each frame is judged by the old program or the new one.
func (s *dispatcherSlot) Update(prog *ebpf.Program) error {
	next, err := s.component(prog)
	if err != nil {
		return err
	}
	if err := s.change(func(d *dispatcher) ([]component, error) {
		if d == nil {
			return nil, fmt.Errorf("ifindex %d runs no libxdp dispatcher any more", s.ifindex)
		}
		i := d.slotOf(s.prog)
		if i < 0 {
			return nil, fmt.Errorf("xdpguard's program %d is no longer in the libxdp dispatcher on ifindex %d (removed by another tool?)", s.prog, s.ifindex)
		}
		comps := slices.Clone(d.comps)
		next.prio, next.actions = comps[i].prio, comps[i].actions
		comps[i] = next
		return comps, nil
	}, next.id); err != nil {
		return err
	}
	s.prog = next.id
	if s.pin != "" {
		// The pin held the link into the dispatcher just replaced (and
		// with it that dispatcher): move it to the new one. The switch
		// is done whatever happens here: a stale pin is only less
		// direct for a restart, which finds the slot by the pinned maps.
		_ = s.Pin(s.pin)
	}
	return nil
}

// Pin pins xdpguard's freplace link at path (its pin directory), replacing
// what was there in one rename: how adoption finds the slot after a
// restart.
func (s *dispatcherSlot) Pin(path string) error {
	if s.lnk == nil {
		return errors.New("no dispatcher link to pin")
	}
	// A handle of its own: pinning s.lnk, which libxdp's pin was loaded
	// or made as, would move that pin here.
	info, err := s.lnk.Info()
	if err != nil {
		return err
	}
	l, err := link.NewFromID(info.ID)
	if err != nil {
		return err
	}
	defer l.Close()
	tmp := path + "-new" // bpffs refuses names with a dot
	_ = os.Remove(tmp)
	if err := l.Pin(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	s.pin = path
	return nil
}

func (s *dispatcherSlot) Close() error {
	if s.lnk == nil {
		return nil
	}
	err := s.lnk.Close()
	s.lnk = nil
	return err
}

// Info is the freplace link's: its Program is xdpguard's component.
func (s *dispatcherSlot) Info() (*link.Info, error) {
	if s.lnk == nil {
		return nil, errors.New("no dispatcher link")
	}
	return s.lnk.Info()
}

// adoptDispatcherSlot adopts xdpguard's slot in the dispatcher on
// ifindex, found by the program that uses this interface's pinned map own
// (so a pinned link into a dispatcher another tool has since replaced, or
// none at all, still finds it), under libxdp's lock. frags is the hook the
// interface's MTU asks for now.
func adoptDispatcherSlot(ifindex int, own ebpf.MapID, frags bool) (*dispatcherSlot, bool) {
	lock, err := lockLibxdp()
	if err != nil {
		return nil, false
	}
	defer lock.Close()
	d, err := readDispatcher(ifindex)
	if err != nil {
		return nil, false
	}
	defer d.close()
	i := d.slotUsing(own)
	if i < 0 {
		return nil, false
	}
	l, err := link.LoadPinnedLink(filepath.Join(d.pinDir(), fmt.Sprintf("prog%d-link", i)), nil)
	if err != nil {
		return nil, false
	}
	s := &dispatcherSlot{ifindex: ifindex, mode: d.mode, prog: d.comps[i].id, lnk: l}
	if frags {
		s.frags = unix.BPF_F_XDP_HAS_FRAGS
	}
	return s, true
}

// leaveDispatcher takes every program that uses map own (xdpguard's, of
// this interface) out of the dispatcher on ifindex, removing the
// dispatcher when nothing else is left in it. errNotDispatcher: there was
// nothing to leave.
func leaveDispatcher(ifindex int, own ebpf.MapID) error {
	_, links, err := changeDispatcher(ifindex, ModeNative, func(d *dispatcher) ([]component, error) {
		if d == nil || d.slotUsing(own) < 0 {
			return nil, errNotDispatcher
		}
		return d.withoutUsing(own), nil
	})
	for _, l := range links {
		l.Close()
	}
	return err
}

// ownMap is the ID of the reason counters pinned in an interface's
// directory: every xdpguard program of that interface uses them, so a
// dispatcher's component using them is that interface's xdpguard.
func ownMap(dir string) (ebpf.MapID, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, datapath.StatsPin), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return id, nil
}

// runsDispatcher: ifindex runs a libxdp dispatcher now.
func runsDispatcher(ifindex int) bool {
	d, err := readDispatcher(ifindex)
	d.close()
	return err == nil
}

// inDispatcher reports whether ifindex runs a libxdp dispatcher with
// program among its components, and describes where.
func inDispatcher(ifindex int, program ebpf.ProgramID) (string, bool) {
	d, err := readDispatcher(ifindex)
	if err != nil {
		return "", false
	}
	defer d.close()
	i := d.slotOf(program)
	if i < 0 {
		return "", false
	}
	return fmt.Sprintf("slot %d of %d in libxdp's dispatcher (program %d, %s mode): %s", i, len(d.comps), d.id, d.mode, d.order()), true
}
