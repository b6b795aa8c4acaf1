package datapath_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/policy"
	"github.com/xdpguard/xdpguard/pkg/reference"
)

// The stateful comparison: the program built with a test clock
// (LoadDetachedTestClock) and reference.Model see the same long random
// sequence of packets at the same explicit times; every packet's verdict
// and reason, and periodically all the state (per-source SYN and ICMP
// buckets, per-port buckets, bans, health counters), must agree exactly.

// modelRules are the port rules of the compared policies: open ports,
// a scoped port (IPv4 and IPv6 sources), a monitor-mode rule, a port a
// listening socket opens (modelListening), UDP services open to all and to
// some, a reply range.
const modelRules = `tcp:
  allow:
    - 22
    - 80
    - 443
    - port: 3306
      from: [10.1.0.0/16, "2001:db8:bb::/48"]
    - port: 8080
      from: [10.1.0.0/16]
      mode: monitor
      name: trial-8080
  allow_listening: true
udp:
  allow:
    - 53
    - port: 5000
      from: [10.1.0.0/16]
  replies: 40000-40010
`

// modelPolicies are the policies compared, and which clock their limiters
// must read (datapath.NeedsPreciseClock with the host's tick).
var modelPolicies = []struct {
	name, text string
	precise    bool
	// fillBans starts with the ban table full (fillBanTable).
	fillBans bool
}{
	{"coarse clock", modelRules + `ratelimit:
  syn: {rate: 20, burst: 5, ban: 2s}
  syn_total: {rate: 200, burst: 50}
icmp:
  echo: {rate: 10, burst: 3}
sources:
  trust: [10.2.0.0/16, "2001:db8:aa::7"]
`, false, false},
	// Burst 1 at 1000/s: a tolerance under a tick plus an interval.
	{"precise clock", modelRules + `ratelimit:
  syn: {rate: 1000, burst: 1, ban: 2s}
  syn_total: {rate: 5000, burst: 3}
icmp:
  echo: {rate: 500, burst: 1}
sources:
  trust: [10.2.0.0/16, "2001:db8:aa::7"]
`, true, false},
	// Bans without syn_total or icmp.echo (ICMP is judged for bans alone),
	// a deny list (no fast path), and a full ban table.
	{"bans only", modelRules + `ratelimit:
  syn: {rate: 50, burst: 3, ban: 1s}
sources:
  trust: [10.2.0.0/16, "2001:db8:aa::7"]
  deny: [203.0.113.0/24, "2001:db8:dd::/64", 192.0.2.0/24, "2001:db8:cc::/48", 169.254.0.0/16, "fe80::/10"]
`, false, true},
	// No limits at all: only prefix bans judge sources (and ICMP is
	// judged for them).
	{"prefix bans alone", modelRules, false, false},
	// Monitor mode: everything passes, judged and limited as usual, and
	// no limit ban is written or enforced though the policy asks for
	// them; prefix bans still drop.
	{"monitor mode", "mode: monitor\n" + modelRules + `ratelimit:
  syn: {rate: 50, burst: 3, ban: 1s}
  syn_total: {rate: 500, burst: 20}
icmp:
  echo: {rate: 10, burst: 3}
sources:
  trust: [10.2.0.0/16, "2001:db8:aa::7"]
`, false, false},
}

// modelHot are the sources that send most packets, so that limits, bans
// and their ends are reached: trusted ones, untrusted neighbours in a
// trusted host's /64, protected ones (and a neighbour in a protected /64),
// link-local (protected by the data path, and a link-local IPv6 source is
// its own key), IPv6 /64 neighbours sharing a key, sources a scoped rule
// admits, denied ones, and sources never valid on the wire (IPv4-mapped:
// malformed) or odd (unspecified, multicast, loopback, broadcast).
var modelHot = []string{
	"10.2.0.5", "2001:db8:aa::7", "2001:db8:aa::1", "2001:db8:aa::ffff",
	"192.0.2.53", "2001:db8:cc::10", "2001:db8:cc::99",
	"169.254.7.7", "169.254.1.1", "fe80::1", "fe80::2", "febf::1:2", "fec0::1",
	"10.1.2.3", "10.1.9.9", "198.51.100.7", "203.0.113.9", "2001:db8:dd::5",
	"2001:db8:bb::1", "2001:db8:bb::2", "2001:db8:bb:0:1::3", "2001:db8:bb:1::1",
	"::", "ff02::1", "224.0.0.1", "255.255.255.255", "0.0.0.0", "::1", "127.0.0.1",
	"::ffff:198.51.100.7", "::ffff:10.2.0.5",
}

// modelProtected are the keys given to xdpg_protected (and the model).
var modelProtected = []string{"192.0.2.53", "2001:db8:cc::10"}

// modelSources draws sources: mostly the hot ones, else one of many
// (1000 IPv4, 100 in the scoped 10.1/16, 300 IPv6 /64s whose low bits
// rotate): far fewer keys than the per-source tables hold, so nothing is
// evicted (the model has no LRU).
type modelSources struct {
	hot  []netip.Addr
	many []netip.Addr
}

func newModelSources(r *rand.Rand) *modelSources {
	s := &modelSources{}
	for _, h := range modelHot {
		s.hot = append(s.hot, netip.MustParseAddr(h))
	}
	for i := 0; i < 1000; i++ {
		s.many = append(s.many, netip.AddrFrom4([4]byte{10, 50, byte(i >> 8), byte(i)}))
	}
	for i := 0; i < 100; i++ {
		s.many = append(s.many, netip.AddrFrom4([4]byte{10, 1, byte(r.IntN(256)), byte(r.IntN(256))}))
	}
	for i := 0; i < 300; i++ {
		var a [16]byte
		copy(a[:], []byte{0x20, 0x01, 0x0d, 0xb8, 0x10, byte(i >> 8), byte(i)})
		s.many = append(s.many, netip.AddrFrom16(a))
	}
	return s
}

func (s *modelSources) draw(r *rand.Rand) netip.Addr {
	if r.IntN(5) < 3 {
		return s.hot[r.IntN(len(s.hot))]
	}
	a := s.many[r.IntN(len(s.many))]
	if a.Is6() {
		b := a.As16()
		for i := 8; i < 16; i++ {
			b[i] = byte(r.IntN(256))
		}
		a = netip.AddrFrom16(b)
	}
	return a
}

// modelListening is the port a listening socket opens.
const modelListening = 8443

// modelPorts are the destination ports the packets use, for comparing the
// per-port buckets.
var modelPorts = []uint16{22, 80, 443, 3306, 8080, 9999, 8443, 53, 5000, 40005, 161}

// modelFrame draws a packet from src: SYNs to open, scoped, monitored,
// listening and closed ports, SYN+FIN, other TCP, UDP to services, replies
// and closed ports, ICMP requests of every type, other ICMP messages, and
// ICMP without a type.
func modelFrame(r *rand.Rand, src netip.Addr) []byte {
	dst := netip.MustParseAddr("198.51.100.1")
	if src.Is6() {
		dst = netip.MustParseAddr("2001:db8:1::1") // an IPv4-mapped source stays IPv6
	}
	f := testpkt.Frame{Src: src, Dst: dst, SPort: uint16(1024 + r.IntN(60000)), Flags: testpkt.SYN}
	pick := func(xs ...uint16) uint16 { return xs[r.IntN(len(xs))] }
	switch n := r.IntN(100); {
	case n < 30:
		f.DPort = pick(22, 80, 443)
	case n < 36:
		f.DPort = 3306
	case n < 42:
		f.DPort = 8080
	case n < 47:
		f.DPort = pick(9999, modelListening)
	case n < 48:
		f.DPort, f.Flags = 22, testpkt.SYN|testpkt.FIN
	case n < 56:
		f.DPort, f.Flags = pick(22, 9999), uint8(pick(testpkt.ACK, testpkt.SYN|testpkt.ACK, testpkt.RST))
	case n < 74:
		f.Proto, f.DPort, f.Payload = testpkt.ProtoUDP, pick(53, 53, 53, 5000, 40005, 40005, 161), []byte("query")
	default:
		f.Proto = 1
		if src.Is6() {
			f.Proto = testpkt.ProtoICMP6
		}
		var typ uint16
		switch {
		case n < 90 && src.Is6():
			typ = pick(128, 128, 139)
		case n < 90:
			typ = pick(8, 8, 13, 15, 17)
		case src.Is6():
			typ = pick(1, 2, 3, 129, 133, 134, 135, 136, 143, 8)
		default:
			typ = pick(0, 3, 5, 11, 14, 128)
		}
		f.Payload = []byte{byte(typ), 0, 0, 0, 0, 1, 0, 1}
		if r.IntN(50) == 0 {
			f.Payload = nil // no type byte: malformed where ICMP is judged
		}
	}
	// Headers that change where the transport header is, but not what it
	// says: a VLAN tag, IPv4 options or IPv6 extension headers, a first
	// fragment (judged on its whole transport header); and now and then a
	// later fragment, which carries none.
	if r.IntN(10) == 0 {
		f.VLANs = []uint16{pick(testpkt.EtherQ, testpkt.EtherQinQ)}
	}
	v6 := src.Is6()
	switch n := r.IntN(50); {
	case n < 4 && !v6:
		f.IPOptions = make([]byte, 4*(1+r.IntN(10)))
	case n < 4:
		f.Ext = []testpkt.Ext{{Type: uint8(pick(testpkt.ExtHopByHop, testpkt.ExtDestOpts, testpkt.ExtRouting, testpkt.ExtAH)), Len: uint8(r.IntN(3))}}
	case n < 7 && !v6:
		f.MoreFrags = true
	case n < 7:
		f.Ext = append(f.Ext, testpkt.Ext{Type: testpkt.ExtFragment, More: true})
	case n < 8 && !v6:
		f.FragOffset = uint16(1 + r.IntN(100))
	case n < 8:
		f.Ext = append(f.Ext, testpkt.Ext{Type: testpkt.ExtFragment, FragOffset: uint16(1 + r.IntN(100))})
	}
	return f.Bytes()
}

// modelClock advances time in phases, each with its own largest step:
// packets at the same instant, within a tick, a few ticks apart, seconds
// apart; now and then a jump past a ban's length.
type modelClock struct {
	t, tick, ban uint64
	left         int
	step         uint64
}

func (c *modelClock) next(r *rand.Rand) (precise, coarse uint64) {
	if c.left == 0 {
		steps := []uint64{1e3, 20e3, 200e3, c.tick / 2, c.tick, 3 * c.tick, 50e6, 500e6, 3e9}
		c.left, c.step = 20+r.IntN(2000), steps[r.IntN(len(steps))]
	}
	c.left--
	switch {
	case r.IntN(5000) == 0:
		long := max(c.ban, 2e9) // without bans, still a jump over every bucket's tolerance
		c.t += long + uint64(r.Int64N(int64(long)))
	case r.IntN(3) == 0: // the same instant
	default:
		c.t += uint64(r.Int64N(int64(c.step) + 1))
	}
	return c.t, c.t - c.t%c.tick
}

// reasonReader tells which reason counter one run moved, reading the
// counters (both halves: drops monitor mode let pass count apart) in one
// batch.
type reasonReader struct {
	m          *ebpf.Map
	cpus       int
	keys       []uint32
	vals, prev []uint64
}

func newReasonReader(t testing.TB, m *ebpf.Map) *reasonReader {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	n := 2 * datapath.NumReasons
	rr := &reasonReader{m: m, cpus: cpus, keys: make([]uint32, n), vals: make([]uint64, n*cpus), prev: make([]uint64, n)}
	rr.read(t)
	return rr
}

func (rr *reasonReader) read(t testing.TB) []uint64 {
	var cursor ebpf.MapBatchCursor
	got, err := rr.m.BatchLookup(&cursor, rr.keys, rr.vals, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) || got != len(rr.keys) {
		t.Fatalf("read the reason counters: %d of %d, %v", got, len(rr.keys), err)
	}
	sums := make([]uint64, len(rr.keys))
	for i, k := range rr.keys {
		for c := 0; c < rr.cpus; c++ {
			sums[k] += rr.vals[i*rr.cpus+c]
		}
	}
	return sums
}

// moved is the reason whose counter moved since the last call (exactly one
// must have moved, by one), and whether it moved in the monitored half.
func (rr *reasonReader) moved(t testing.TB) (datapath.Reason, bool) {
	now := rr.read(t)
	found, half := -1, false
	for i := range now {
		switch now[i] - rr.prev[i] {
		case 0:
		case 1:
			if found >= 0 {
				t.Fatalf("two reason counters moved: %d and %d", found, i)
			}
			found, half = i%datapath.NumReasons, i >= datapath.NumReasons
		default:
			t.Fatalf("reason counter %d moved by %d", i, now[i]-rr.prev[i])
		}
	}
	if found < 0 {
		t.Fatal("no reason counter moved")
	}
	rr.prev = now
	return datapath.Reason(found), half
}

// programMap is the map of d's program with that name (the kernel keeps 15
// characters of it): for tables the loader does not export.
func programMap(t testing.TB, d *datapath.Generation, name string) *ebpf.Map {
	t.Helper()
	info, err := d.Program.Info()
	if err != nil {
		t.Fatal(err)
	}
	ids, ok := info.MapIDs()
	if !ok {
		t.Fatal("the kernel does not list a program's maps")
	}
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			t.Fatal(err)
		}
		if mi, err := m.Info(); err == nil && strings.HasPrefix(name, mi.Name) && len(mi.Name) >= min(len(name), 15) {
			t.Cleanup(func() { m.Close() })
			return m
		}
		m.Close()
	}
	t.Fatalf("no map %s in the program", name)
	return nil
}

// readSourceTable reads a per-source table (SYN or ICMP buckets, bans) by
// the prefix each key stands for.
func readSourceTable(t testing.TB, m *ebpf.Map) map[netip.Prefix]datapath.SourceState {
	t.Helper()
	out := map[netip.Prefix]datapath.SourceState{}
	keys := make([]datapath.SrcKey, 4096)
	vals := make([]datapath.SourceState, 4096)
	var cursor ebpf.MapBatchCursor
	for {
		got, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < got; i++ {
			out[keys[i].Prefix()] = vals[i]
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// diffTable lists the differences between a table of the program and the
// model's, at most a few.
func diffTable[V any](name string, got map[netip.Prefix]datapath.SourceState, want map[netip.Prefix]V, conv func(V) datapath.SourceState) []string {
	var out []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			out = append(out, fmt.Sprintf("%s %s: missing from the program, model %+v", name, k, conv(w)))
		} else if g != conv(w) {
			out = append(out, fmt.Sprintf("%s %s: program %+v, model %+v", name, k, g, conv(w)))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("%s %s: program %+v, not in the model", name, k, g))
		}
	}
	sort.Strings(out)
	return out[:min(len(out), 10)]
}

// compareState compares every piece of state the model keeps with the
// program's.
func compareState(t testing.TB, d *datapath.Generation, icmpBuckets *ebpf.Map, m *reference.Model) []string {
	t.Helper()
	bucket := func(b reference.Bucket) datapath.SourceState {
		return datapath.SourceState{At: b.TAT, Drops: b.Refused}
	}
	ban := func(b reference.Ban) datapath.SourceState { return datapath.SourceState{At: b.End, Drops: b.Drops} }
	diffs := diffTable("SYN bucket", readSourceTable(t, d.XdpgSrcBuckets), m.SYNBuckets(), bucket)
	diffs = append(diffs, diffTable("ICMP bucket", readSourceTable(t, icmpBuckets), m.ICMPBuckets(), bucket)...)
	diffs = append(diffs, diffTable("ban", readSourceTable(t, d.XdpgBans), m.Bans(), ban)...)
	diffs = append(diffs, diffTable("prefix ban", readRangeBans(t, d.XdpgBanRanges), m.RangeBans(), ban)...)
	for _, port := range modelPorts {
		var tat uint64
		if err := d.XdpgPortBuckets.Lookup(uint32(port), &tat); err != nil {
			t.Fatal(err)
		}
		if tat != m.PortTAT(port) {
			diffs = append(diffs, fmt.Sprintf("port %d bucket: program %d, model %d", port, tat, m.PortTAT(port)))
		}
	}
	h, err := maps.Of(d.Maps).Health()
	if err != nil {
		t.Fatal(err)
	}
	want := m.Health()
	for _, c := range []struct {
		name string
		idx  int
		want uint64
	}{
		{"bans_protected", datapath.HealthBansProtected, want.BansProtected},
		{"bans_not_stored", datapath.HealthBansNotStored, want.BansNotStored},
		{"src_inserts", datapath.HealthSourceInserts, want.SourceInserts},
		{"limiter_contended", datapath.HealthLimiterContended, want.LimiterContended},
	} {
		if h[c.idx] != c.want {
			diffs = append(diffs, fmt.Sprintf("health %s: program %d, model %d", c.name, h[c.idx], c.want))
		}
	}
	return diffs
}

// carryOver writes, into the program's tables and the model, state as an
// earlier generation with other limits would have left it: buckets far
// ahead of the clock (a lowered limit: the next refusal clamps them), a ban
// still running and one that has ended, unseen.
func carryOver(t testing.TB, d *datapath.Generation, icmpBuckets *ebpf.Map, m *reference.Model, pol *policy.Policy, t0 uint64) {
	t.Helper()
	ahead := func(l *policy.Limit) uint64 { return t0 + 50*reference.NewGCRA(l).Limit + 12345 }
	put := func(tbl *ebpf.Map, a netip.Addr, st datapath.SourceState) {
		if err := tbl.Put(datapath.SrcKeyOf(a), st); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"198.51.100.7", "2001:db8:bb::1", "fe80::1", "10.1.2.3", "2001:db8:aa::1"} {
		a := netip.MustParseAddr(s)
		if pol.SYN != nil {
			b := reference.Bucket{TAT: ahead(pol.SYN), Refused: 7}
			put(d.XdpgSrcBuckets, a, datapath.SourceState{At: b.TAT, Drops: b.Refused})
			m.PutSYNBucket(reference.KeyOf(a), b)
		}
		if pol.ICMPEcho != nil {
			b := reference.Bucket{TAT: ahead(pol.ICMPEcho), Refused: 3}
			put(icmpBuckets, a, datapath.SourceState{At: b.TAT, Drops: b.Refused})
			m.PutICMPBucket(reference.KeyOf(a), b)
		}
	}
	if pol.SYNTotal != nil {
		if err := d.XdpgPortBuckets.Put(uint32(443), ahead(pol.SYNTotal)); err != nil {
			t.Fatal(err)
		}
		m.PutPortTAT(443, ahead(pol.SYNTotal))
	}
	if pol.Ban > 0 {
		for s, end := range map[string]uint64{"203.0.113.9": t0 + 5e9, "2001:db8:aa::ffff": t0 - 1} {
			a := netip.MustParseAddr(s)
			put(d.XdpgBans, a, datapath.SourceState{At: end})
			m.SetBan(a, end)
		}
	}
}

// modelRangeBans are the prefix bans written before each sequence, with
// when they end relative to its start (-1: already ended): nested ones
// whose narrowest has ended (the next wider decides), more ended nested
// ones than the data path looks through, ended /0s (the search stops),
// and bans covering trusted, protected and link-local sources (which are
// exempt).
var modelRangeBans = []struct {
	prefix string
	end    time.Duration
}{
	{"10.50.0.0/23", 30 * time.Minute},
	{"10.50.1.0/24", -1},
	{"10.50.1.128/25", 10 * time.Minute},
	{"10.50.2.0/24", 2 * time.Hour},
	{"10.50.2.0/25", -1}, {"10.50.2.0/26", -1}, {"10.50.2.0/27", -1}, {"10.50.2.0/28", -1},
	{"0.0.0.0/0", -1}, {"::/0", -1},
	{"10.2.0.0/16", 1e15},
	{"192.0.2.0/24", 1e15},
	{"169.254.0.0/16", 1e15},
	{"fe80::/10", 1e15},
	{"2001:db8:1000::/40", time.Hour},
	{"2001:db8:1001::/48", -1},
	{"2001:db8:bb::/48", 10 * time.Minute},
	{"2001:db8:cc::/48", 1e15},
	{"2001:db8:aa::7/128", 1e15},
}

// setRangeBans writes modelRangeBans into the program's table, through
// the operator's writer, and into the model.
func setRangeBans(t testing.TB, d *datapath.Generation, m *reference.Model, t0 uint64) {
	t.Helper()
	for _, rb := range modelRangeBans {
		p := netip.MustParsePrefix(rb.prefix)
		end := t0 + uint64(rb.end)
		if rb.end < 0 {
			end = t0 - 1
		}
		if _, err := maps.Of(d.Maps).Ban(p, end, datapath.BanCLI, "model"); err != nil {
			t.Fatal(err)
		}
		m.SetRangeBan(p, end)
	}
}

// readRangeBans is the program's prefix-ban table.
func readRangeBans(t testing.TB, m *ebpf.Map) map[netip.Prefix]datapath.SourceState {
	t.Helper()
	out := map[netip.Prefix]datapath.SourceState{}
	var k datapath.LPMKey
	var v datapath.BanRange
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[k.Prefix()] = datapath.SourceState{At: v.Until, Drops: v.Drops}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// fillBanTable fills the ban table with bans of 10.50.0.0/16, as a spray
// of offenders would. They end long after the sequence, but for one in 50
// of them, ending 10 to 60 minutes in: every IPv4 source of
// modelSources.many is one of them, so those are lifted on sight and make
// room, one at a time, for new bans; till then none can be stored.
func fillBanTable(t testing.TB, d *datapath.Generation, m *reference.Model, r *rand.Rand, t0 uint64) {
	t.Helper()
	size := int(d.XdpgBans.MaxEntries()) - len(m.Bans())
	keys := make([]datapath.SrcKey, 0, size)
	vals := make([]datapath.SourceState, 0, size)
	for i := 0; len(keys) < size; i++ {
		a := netip.AddrFrom4([4]byte{10, 50, byte(i >> 8), byte(i)})
		end := t0 + 1e15
		if r.IntN(50) == 0 {
			end = t0 + 600e9 + uint64(r.Int64N(3000e9))
		}
		keys, vals = append(keys, datapath.SrcKeyOf(a)), append(vals, datapath.SourceState{At: end})
		m.SetBan(a, end)
	}
	if _, err := d.XdpgBans.BatchUpdate(keys, vals, nil); err != nil {
		t.Fatal(err)
	}
	if len(m.Bans()) != m.BanTableSize || m.BanTableSize != int(d.XdpgBans.MaxEntries()) {
		t.Fatalf("the model's ban table: %d of %d, the program's holds %d", len(m.Bans()), m.BanTableSize, d.XdpgBans.MaxEntries())
	}
}

// compareKey compares the state one packet from src may have changed: its
// key's ban, SYN or ICMP bucket, and its port's bucket.
func compareKey(t testing.TB, d *datapath.Generation, icmpBuckets *ebpf.Map, m *reference.Model, src netip.Addr, v reference.Verdict) []string {
	t.Helper()
	k, bk := reference.KeyOf(src), datapath.SrcKeyOf(src)
	lookup := func(tbl *ebpf.Map) (datapath.SourceState, bool) {
		var st datapath.SourceState
		err := tbl.Lookup(bk, &st)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return st, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return st, true
	}
	var diffs []string
	same := func(name string, got datapath.SourceState, gotOK bool, want datapath.SourceState, wantOK bool) {
		if got != want || gotOK != wantOK {
			diffs = append(diffs, fmt.Sprintf("%s of %s: program %+v (present %v), model %+v (present %v)", name, k, got, gotOK, want, wantOK))
		}
	}
	gb, gok := lookup(d.XdpgBans)
	mb, mok := m.BanOf(src)
	same("ban", gb, gok, datapath.SourceState{At: mb.End, Drops: mb.Drops}, mok)
	switch v.Class {
	case reference.ClassSYN:
		gs, gok := lookup(d.XdpgSrcBuckets)
		ms, mok := m.SYNBucket(k)
		same("SYN bucket", gs, gok, datapath.SourceState{At: ms.TAT, Drops: ms.Refused}, mok)
		var tat uint64
		if err := d.XdpgPortBuckets.Lookup(uint32(v.Port), &tat); err != nil {
			t.Fatal(err)
		}
		if tat != m.PortTAT(v.Port) {
			diffs = append(diffs, fmt.Sprintf("port %d bucket: program %d, model %d", v.Port, tat, m.PortTAT(v.Port)))
		}
	case reference.ClassICMPRequest:
		gi, gok := lookup(icmpBuckets)
		mi, mok := m.ICMPBucket(k)
		same("ICMP bucket", gi, gok, datapath.SourceState{At: mi.TAT, Drops: mi.Refused}, mok)
	}
	return diffs
}

// TestModelAgreesWithDataPath runs XDPGUARD_MODEL_N (default 100,000)
// random packets at random times per policy through the test-clock build
// of the program and through reference.Model. XDPGUARD_MODEL_SEED replays
// a sequence (the seed is logged).
func TestModelAgreesWithDataPath(t *testing.T) {
	n := 100_000
	if s := os.Getenv("XDPGUARD_MODEL_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatalf("XDPGUARD_MODEL_N: %v", err)
		}
	}
	seed := rand.Uint64()
	if s := os.Getenv("XDPGUARD_MODEL_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("XDPGUARD_MODEL_SEED: %v", err)
		}
	}
	for i, mp := range modelPolicies {
		t.Run(mp.name, func(t *testing.T) { testModel(t, mp.text, mp.precise, mp.fillBans, n, seed+uint64(i)) })
	}
}

func testModel(t *testing.T, text string, wantPrecise, fillBans bool, n int, seed uint64) {
	pol := mustPolicy(t, text).WithListening([]uint16{modelListening})
	d, clk, tick := loadClocked(t, pol)
	precise := datapath.NeedsPreciseClock(pol, tick)
	if precise != wantPrecise {
		t.Fatalf("limiters on the precise clock: %v with a %d ns tick; this policy is meant to test %v", precise, tick, wantPrecise)
	}
	t.Logf("XDPGUARD_MODEL_SEED=%d, %d packets, tick %d ns, precise clock %v", seed, n, tick, precise)
	m := reference.NewModel(pol, precise)
	var protected []netip.Addr
	want := map[netip.Addr]datapath.Protection{}
	for _, p := range modelProtected {
		a := netip.MustParseAddr(p)
		protected, want[a] = append(protected, a), datapath.ProtectSSH
	}
	if err := maps.Of(d.Maps).SetProtected(want); err != nil {
		t.Fatal(err)
	}
	m.SetProtected(protected...)
	icmpBuckets := programMap(t, d, "xdpg_icmp_buckets")
	reasons := newReasonReader(t, d.XdpgStats)
	r := rand.New(rand.NewPCG(seed, 3))
	t0 := 1e12 + uint64(r.Int64N(1e9))
	carryOver(t, d, icmpBuckets, m, pol, t0)
	setRangeBans(t, d, m, t0)
	if fillBans {
		fillBanTable(t, d, m, r, t0)
	}

	// XDPGUARD_MODEL_CHECK sets how often (in packets) the state is
	// compared: 1 finds the packet where a difference starts.
	every := 10_000
	if s := os.Getenv("XDPGUARD_MODEL_CHECK"); s != "" {
		every, _ = strconv.Atoi(s)
		every = max(every, 1)
	}
	sources := newModelSources(r)
	clock := &modelClock{t: t0, tick: tick, ban: uint64(pol.Ban)}
	var lastSet uint64
	seen := map[datapath.Reason]int{}
	wantRules := map[string]maps.Rule{}
	var wantReasons, wantMonitored maps.Reasons
	lifted, monitoredPasses := 0, 0
	check := func(when string) {
		if diffs := compareState(t, d, icmpBuckets, m); len(diffs) > 0 {
			t.Fatalf("%s (XDPGUARD_MODEL_SEED=%d): the state differs:\n%s", when, seed, strings.Join(diffs, "\n"))
		}
	}
	for i := 0; i < n; i++ {
		src := sources.draw(r)
		frame := modelFrame(r, src)
		tp, tc := clock.next(r)
		if tp != lastSet {
			if err := clk.Set(tp, tc); err != nil {
				t.Fatal(err)
			}
			lastSet = tp
		}
		before, hadBan := m.BanOf(src)
		ret, err := d.Program.Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatal(err)
		}
		got, inMonitoredHalf := reasons.moved(t)
		v := m.Judge(frame, tp, tc)
		passes := v.Passes(pol)
		if got != v.Reason || (ret == xdpPass) != passes || inMonitoredHalf != (v.Reason.Dropped() && passes) {
			t.Fatalf("packet %d (XDPGUARD_MODEL_SEED=%d) from %s at %d ns (coarse %d): program %s (verdict %d, monitored %v), model %s (passes %v, rule %q)\nban before: %v %+v\nframe %x",
				i, seed, src, tp, tc, got.Name(), ret, inMonitoredHalf, v.Reason.Name(), passes, v.Rule, hadBan, before, frame)
		}
		if _, still := m.BanOf(src); hadBan && !still {
			lifted++
		}
		if v.Class != reference.ClassNone {
			if diffs := compareKey(t, d, icmpBuckets, m, src, v); len(diffs) > 0 {
				t.Fatalf("packet %d (XDPGUARD_MODEL_SEED=%d) from %s at %d ns (coarse %d): %s, rule %q; the state differs:\n%s\nban before: %v %+v\nframe %x",
					i, seed, src, tp, tc, v.Reason.Name(), v.Rule, strings.Join(diffs, "\n"), hadBan, before, frame)
			}
		}
		seen[v.Reason]++
		if v.Reason.Dropped() && passes {
			wantMonitored[v.Reason]++
			monitoredPasses++
		} else {
			wantReasons[v.Reason]++
		}
		countRule(wantRules, v, pol)
		if (i+1)%every == 0 {
			check(fmt.Sprintf("after packet %d (from %s at %d ns, coarse %d: %s, rule %q; frame %x)", i, src, tp, tc, v.Reason.Name(), v.Rule, frame))
		}
	}
	check("at the end")
	if len(m.SYNBuckets()) >= int(pol.MaxSources) || len(m.ICMPBuckets()) >= int(pol.MaxSources) {
		t.Fatalf("%d and %d sources: the LRU tables may have evicted some", len(m.SYNBuckets()), len(m.ICMPBuckets()))
	}

	// The counters the verdicts imply: reasons and rules.
	gotReasons, err1 := maps.Of(d.Maps).Reasons()
	gotMonitored, err2 := maps.Of(d.Maps).Monitored()
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if gotReasons != wantReasons || gotMonitored != wantMonitored {
		t.Errorf("reason counters: program %v (+%v monitored), model %v (+%v)", gotReasons, gotMonitored, wantReasons, wantMonitored)
	}
	gotRules := ruleCounts(t, d)
	for name, w := range wantRules {
		if gotRules[name] != w {
			t.Errorf("rule %q: program %+v, model %+v", name, gotRules[name], w)
		}
	}
	for name, g := range gotRules {
		if _, ok := wantRules[name]; !ok && g.Passed+g.Dropped+g.Monitored > 0 {
			t.Errorf("rule %q counted %+v; the model counts nothing there", name, g)
		}
	}

	// What the sequence must have reached to prove much.
	h := m.Health()
	var tally []string
	for _, reason := range datapath.AllReasons() {
		if seen[reason] > 0 {
			verdict := "pass"
			if reason.Dropped() {
				verdict = "drop"
			}
			tally = append(tally, fmt.Sprintf("%s (%s) %d", reason.Name(), verdict, seen[reason]))
		}
	}
	t.Logf("%s; %d bans in the table, %d lifted on sight, health %+v, %d SYN and %d ICMP buckets",
		strings.Join(tally, ", "), len(m.Bans()), lifted, h, len(m.SYNBuckets()), len(m.ICMPBuckets()))
	musts := []datapath.Reason{datapath.PassSYNAllowed, datapath.PassNotSYN, datapath.PassNotTCP, datapath.PassUDPAllowed,
		datapath.PassUDPReply, datapath.DropUDPPortNotAllowed, datapath.DropPortNotAllowed,
		datapath.DropMalformed, datapath.DropInvalidFlags}
	if pol.SYN != nil {
		musts = append(musts, datapath.DropRateLimited)
	}
	if fillBans && h.BansNotStored == 0 {
		t.Error("the ban table was full, and no ban went unstored")
	}
	// (The tables, compared above, hold no ban the model did not write:
	// in monitor mode, none but the carried-over ones.) Prefix bans drop
	// under every policy; the exempt sources' never count a drop.
	musts = append(musts, datapath.DropBanned)
	ranges := m.RangeBans()
	dropping := []string{"2001:db8:1000::/40", "2001:db8:bb::/48"}
	if !fillBans { // else 10.50/16's limit bans decide first
		dropping = append(dropping, "10.50.0.0/23", "10.50.1.128/25", "10.50.2.0/24")
	}
	for _, p := range dropping {
		if ranges[netip.MustParsePrefix(p)].Drops == 0 {
			t.Errorf("the prefix ban of %s dropped nothing", p)
		}
	}
	exempt := []string{"192.0.2.0/24", "169.254.0.0/16", "fe80::/10", "2001:db8:cc::/48"}
	if len(pol.Trust) > 0 {
		exempt = append(exempt, "10.2.0.0/16", "2001:db8:aa::7/128")
	}
	for _, p := range exempt {
		if d := ranges[netip.MustParsePrefix(p)].Drops; d != 0 {
			t.Errorf("the prefix ban of %s, whose sources are trusted, protected or link-local, dropped %d", p, d)
		}
	}
	if pol.Ban > 0 && !pol.Monitor {
		if lifted == 0 || h.BansProtected == 0 {
			t.Errorf("bans lifted on sight: %d, refused as protected: %d; both must happen", lifted, h.BansProtected)
		}
	}
	if pol.SYNTotal != nil {
		musts = append(musts, datapath.DropPortRateLimited)
	}
	if pol.ICMPEcho != nil {
		musts = append(musts, datapath.DropICMPRateLimited)
	}
	if len(pol.Deny) > 0 {
		musts = append(musts, datapath.DropSourceDenied)
	}
	for _, reason := range musts {
		if seen[reason] == 0 {
			t.Errorf("no packet got %s", reason.Name())
		}
	}
	if (pol.SYN != nil && h.SourceInserts == 0) || monitoredPasses == 0 {
		t.Errorf("sources inserted %d, monitored drops %d: both must happen", h.SourceInserts, monitoredPasses)
	}
	if wantRules["trial-8080"].Monitored == 0 || wantRules[policy.RuleTCPListening].Passed == 0 {
		t.Errorf("the monitor-mode rule let %d through, the listening socket's port %d", wantRules["trial-8080"].Monitored, wantRules[policy.RuleTCPListening].Passed)
	}
}

// countRule adds a verdict to the per-rule counts the program should show:
// passed, dropped, or monitored (a drop that passes, by a monitor-mode rule
// or the policy's mode).
func countRule(want map[string]maps.Rule, v reference.Verdict, pol *policy.Policy) {
	if v.Rule == "" {
		return
	}
	r := want[v.Rule]
	r.Name = v.Rule
	switch {
	case !v.Reason.Dropped():
		r.Passed++
	case v.Passes(pol):
		r.Monitored++
	default:
		r.Dropped++
	}
	want[v.Rule] = r
}
