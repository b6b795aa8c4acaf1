// Package explain judges a crafted packet with the program in force on an
// interface, and changes nothing: `xdpguard explain`.
//
// The program judging it is the loaded generation's own: the embedded
// object is loaded again beside the live program and must have the live
// program's tag (the same instructions), with the live program's .rodata
// (its compiled policy, frozen) and its per-generation source tries as
// read-only views (the kernel refuses the program any write to them:
// BPF_F_RDONLY_PROG), and copies of what it writes (limiter buckets, bans)
// holding the entries this packet can reach. Its counters, drop events and
// health counters are maps of its own, zero before the run, so the one
// counter slot that moved names the reason and the rule. Then BPF_PROG_RUN
// runs it once on the frame. No live map is written: not a counter, bucket,
// ban or event.
package explain

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

// Result is explain's answer.
type Result struct {
	Interface string `json:"interface,omitempty"`
	Packet    Packet `json:"packet"`
	// Verdict is pass, drop, would-drop (a drop monitor mode, or a
	// monitor-mode rule, lets through) or answered (a SYN the SYN proxy
	// answers with a cookie).
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"` // a pkg/datapath reason name
	// Rule is the counter label of the rule that decides, "" when no rule
	// counts the packet (it never reached the port rules).
	Rule string `json:"rule,omitempty"`
	// RuleCounter is which of the rule's counters the packet adds to:
	// passed, dropped or monitored.
	RuleCounter string `json:"rule_counter,omitempty"`
	// Effects are what the packet would change in the live state, had it
	// arrived: a token taken, a ban written.
	Effects []string `json:"effects"`
	// Source is what applies to the source right now.
	Source Source `json:"source"`
	// Generation is the program and policy that judged.
	Generation Generation `json:"generation"`
}

// Packet is the query as judged.
type Packet struct {
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Proto    string `json:"proto"`
	Sport    uint16 `json:"sport,omitempty"`
	Dport    uint16 `json:"dport,omitempty"`
	Flags    string `json:"flags,omitempty"`
	ICMPType *uint8 `json:"icmp_type,omitempty"`
	VLAN     uint16 `json:"vlan,omitempty"`
}

// Source is the state that applies to a source: lists, bans, buckets.
type Source struct {
	Key       string `json:"key"` // its limiter and ban key: IPv4 /32, IPv6 /64, link-local /128
	Denied    bool   `json:"denied"`
	Trusted   bool   `json:"trusted"`
	Protected string `json:"protected,omitempty"` // why it is never banned (ssh-session, gateway, resolver), if it is
	Bans      []Ban  `json:"bans"`
	// SYN and ICMP are its limiter buckets (nil: no entry, a full bucket;
	// or no such limit in force).
	SYN  *Bucket `json:"syn_bucket,omitempty"`
	ICMP *Bucket `json:"icmp_bucket,omitempty"`
}

// Ban is a ban in force on the source: its own (origin limit) or one of a
// prefix holding it.
type Ban struct {
	Prefix    string    `json:"prefix"`
	Origin    string    `json:"origin"`
	Reason    string    `json:"reason,omitempty"`
	Until     time.Time `json:"until"`
	Remaining string    `json:"remaining"`
	Drops     uint64    `json:"drops"`
}

// Bucket is a limiter bucket's state now.
type Bucket struct {
	// Tokens is how many events it would admit now, back to back; Burst
	// when full.
	Tokens  uint64 `json:"tokens"`
	Burst   uint64 `json:"burst"`
	Refused uint64 `json:"refused"` // events it refused so far
	// Full is when it is full again (now if it is).
	Full time.Time `json:"full_at"`
}

// Generation identifies what judged the packet.
type Generation struct {
	Number       uint64    `json:"number"`
	PolicyDigest string    `json:"policy_digest"`
	PolicyPath   string    `json:"policy_path,omitempty"`
	Loaded       time.Time `json:"loaded"`
	Monitor      bool      `json:"monitor"`
	ProgramID    uint32    `json:"program_id"`
	ProgramTag   string    `json:"program_tag"`
}

// Explain judges q with the program attached through the pinned link in
// the interface pin directory dir, or, with no pinned link (a clsact
// filter, on kernels without tcx), the program unpinned names (0: none).
// iface is for the result.
func Explain(dir, iface string, q Query, unpinned ebpf.ProgramID) (*Result, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	set, err := maps.Open(dir, false)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	id := unpinned
	if set.Link != nil {
		info, err := set.Link.Info()
		if err != nil {
			return nil, fmt.Errorf("read the pinned link: %w", err)
		}
		id = info.Program
	}
	if id == 0 {
		return nil, fmt.Errorf("%s: no pinned link: the filter is not attached", dir)
	}
	live, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return nil, fmt.Errorf("open the program in force (id %d): %w (explain needs CAP_SYS_ADMIN)", id, err)
	}
	defer live.Close()
	res, err := judge(live, set, q)
	if err != nil {
		return nil, err
	}
	res.Interface = iface
	return res, nil
}

// judge is Explain given the program in force, and the pinned maps only
// Go reads (the rule counters' names, the generation's record).
func judge(live *ebpf.Program, pins *maps.Set, q Query) (*Result, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	lv, err := openLive(live)
	if err != nil {
		return nil, err
	}
	defer lv.close()
	sh, err := loadShadow(lv, q)
	if err != nil {
		return nil, err
	}
	defer sh.close()
	frame := q.Frame()
	ret, err := sh.prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		return nil, fmt.Errorf("BPF_PROG_RUN: %w", err)
	}
	res := &Result{Packet: packetOf(q), Effects: []string{}}
	if err := sh.outcome(res, ret); err != nil {
		return nil, err
	}
	res.Rule = pins.RuleNameAt(sh.ruleSlot)
	if err := lv.describe(res, q, sh, pins); err != nil {
		return nil, err
	}
	return res, nil
}

func packetOf(q Query) Packet {
	p := Packet{Src: q.Src.String(), Dst: q.Dst.String(), Proto: q.Proto, VLAN: q.VLAN}
	switch q.Proto {
	case "tcp":
		p.Sport, p.Dport, p.Flags = q.Sport, q.Dport, flagString(q.Flags)
	case "udp":
		p.Sport, p.Dport = q.Sport, q.Dport
	case "icmp":
		t := q.ICMPType
		p.ICMPType = &t
		if q.Src.Is6() {
			p.Proto = "icmpv6"
		}
	}
	return p
}

// live is the program in force and its maps, by their C names.
type live struct {
	prog   *ebpf.Program
	info   *ebpf.ProgramInfo
	byName map[string]*ebpf.Map
	maps   *datapath.Maps // the same maps, as the generated struct
	rodata []byte         // its compiled policy
	spec   *ebpf.CollectionSpec
}

// kernelName is a map's name as the kernel keeps it (BPF_OBJ_NAME_LEN).
func kernelName(s string) string {
	if len(s) > 15 {
		return s[:15]
	}
	return s
}

func openLive(prog *ebpf.Program) (*live, error) {
	spec, err := datapath.Spec()
	if err != nil {
		return nil, err
	}
	info, err := prog.Info()
	if err != nil {
		return nil, fmt.Errorf("read the program in force: %w", err)
	}
	ids, ok := info.MapIDs()
	if !ok {
		return nil, errors.New("the kernel does not list the maps of the program in force")
	}
	names := map[string]string{}
	for name := range spec.Maps {
		names[kernelName(name)] = name
	}
	// The trace entry's section is loaded as the pinned map of its name.
	names[kernelName(datapath.TracePin)] = ".data." + datapath.TracePin
	lv := &live{prog: prog, info: info, byName: map[string]*ebpf.Map{}, maps: new(datapath.Maps), spec: spec}
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			lv.close()
			return nil, fmt.Errorf("open map %d of the program in force: %w", id, err)
		}
		mi, err := m.Info()
		if err != nil {
			m.Close()
			lv.close()
			return nil, fmt.Errorf("read map %d of the program in force: %w", id, err)
		}
		name, ok := names[mi.Name]
		if !ok || lv.byName[name] != nil {
			m.Close()
			lv.close()
			return nil, fmt.Errorf("the program in force uses a map %q this xdpguard does not know: "+
				"it is another version's; run the explain of the xdpguard that loaded it", mi.Name)
		}
		lv.byName[name] = m
	}
	v := reflect.ValueOf(lv.maps).Elem()
	for i := range v.NumField() {
		if m := lv.byName[v.Type().Field(i).Tag.Get("ebpf")]; m != nil {
			v.Field(i).Set(reflect.ValueOf(m))
		}
	}
	ro := lv.byName[".rodata"]
	if ro == nil {
		lv.close()
		return nil, errors.New("the program in force has no .rodata: not an xdpguard program")
	}
	lv.rodata = make([]byte, ro.ValueSize())
	if err := ro.Lookup(uint32(0), &lv.rodata); err != nil {
		lv.close()
		return nil, fmt.Errorf("read the policy of the program in force (.rodata): %w", err)
	}
	return lv, nil
}

func (lv *live) close() {
	for _, m := range lv.byName {
		m.Close()
	}
}

// u64 reads a `volatile const` of the program in force from its .rodata.
func (lv *live) u64(name string) uint64 {
	vs := lv.spec.Variables[name]
	if vs == nil || vs.SectionName != ".rodata" || int(vs.Offset+vs.Size()) > len(lv.rodata) {
		return 0
	}
	b := lv.rodata[vs.Offset : vs.Offset+vs.Size()]
	var out uint64
	for i := len(b) - 1; i >= 0; i-- { // little-endian (bpfel)
		out = out<<8 | uint64(b[i])
	}
	return out
}

// describe fills what applies to the source now, from the live maps
// (read only: lookups and iteration write nothing).
func (lv *live) describe(res *Result, q Query, sh *shadow, pins *maps.Set) error {
	key := datapath.SrcKeyOf(q.Src)
	res.Source = Source{Key: key.Prefix().String(), Bans: []Ban{}}
	wallNow, now := time.Now(), datapath.MonotonicNow()
	at := func(mono uint64) time.Time {
		return wallNow.Add(time.Duration(int64(mono - now))).UTC().Round(time.Millisecond)
	}
	host := netip.PrefixFrom(q.Src, q.Src.BitLen())
	lpm := datapath.LPMKeyOf(host)
	var b8 uint8
	if lv.u64("has_trust") != 0 && lv.maps.XdpgTrust != nil {
		res.Source.Trusted = lv.maps.XdpgTrust.Lookup(&lpm, &b8) == nil
	}
	res.Source.Denied = sh.denied
	var prot uint32
	if lv.maps.XdpgProtected != nil && lv.maps.XdpgProtected.Lookup(&key, &prot) == nil {
		res.Source.Protected = datapath.Protection(prot).String()
	}
	var st datapath.SourceState
	if lv.maps.XdpgBans != nil && lv.maps.XdpgBans.Lookup(&key, &st) == nil && st.At > now {
		res.Source.Bans = append(res.Source.Bans, Ban{Prefix: key.Prefix().String(), Origin: datapath.BanLimit.String(),
			Until: at(st.At), Remaining: time.Duration(st.At - now).Round(time.Second).String(), Drops: st.Drops})
	}
	if lv.maps.XdpgBanRanges != nil {
		err := containingBans(lv.maps.XdpgBanRanges, q.Src, func(k datapath.LPMKey, v datapath.BanRange) {
			if v.Until > now {
				res.Source.Bans = append(res.Source.Bans, Ban{Prefix: k.Prefix().String(), Origin: datapath.BanOrigin(v.Origin).String(),
					Reason: v.ReasonText(), Until: at(v.Until), Remaining: time.Duration(v.Until - now).Round(time.Second).String(), Drops: v.Drops})
			}
		})
		if err != nil {
			return err
		}
	}
	bucket := func(m *ebpf.Map, interval, limit uint64) *Bucket {
		if interval == 0 || m == nil {
			return nil
		}
		b := &Bucket{Burst: limit / interval, Tokens: limit / interval, Full: wallNow.UTC().Round(time.Millisecond)}
		var st datapath.SourceState
		if m.Lookup(&key, &st) != nil {
			return b
		}
		b.Refused = st.Drops
		if st.At > now {
			ahead := st.At - now
			b.Tokens = 0
			if ahead <= limit {
				b.Tokens = (limit - ahead) / interval
			}
			b.Full = at(st.At)
		}
		return b
	}
	res.Source.SYN = bucket(lv.maps.XdpgSrcBuckets, lv.u64("src_interval_ns"), lv.u64("src_limit_ns"))
	res.Source.ICMP = bucket(lv.maps.XdpgIcmpBuckets, lv.u64("icmp_interval_ns"), lv.u64("icmp_limit_ns"))

	g := Generation{ProgramTag: lv.info.Tag, Monitor: lv.u64("monitor") != 0}
	if id, ok := lv.info.ID(); ok {
		g.ProgramID = uint32(id)
	}
	if meta, err := pins.Meta(); err == nil {
		g.Number, g.PolicyDigest, g.PolicyPath = meta.Generation, fmt.Sprintf("%x", meta.PolicyDigest), meta.Path()
		g.Loaded = time.Unix(0, int64(meta.LoadedUnixNs)).UTC()
	}
	res.Generation = g
	return nil
}

// containingBans calls fn with every prefix ban whose prefix holds addr,
// longest first: the kernel's own longest-prefix lookups, each one bit
// shorter than the last match.
func containingBans(m *ebpf.Map, addr netip.Addr, fn func(datapath.LPMKey, datapath.BanRange)) error {
	k := datapath.LPMKeyOf(netip.PrefixFrom(addr, addr.BitLen()))
	for {
		var v datapath.BanRange
		err := m.Lookup(&k, &v)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read prefix bans: %w", err)
		}
		p := netip.PrefixFrom(addr, int(v.Bits)).Masked()
		fn(datapath.LPMKeyOf(p), v)
		if v.Bits == 0 {
			return nil
		}
		k.Prefixlen = 32 + uint32(v.Bits) - 1
	}
}
