package explain_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/explain"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

const testPolicy = `tcp:
  allow:
    - 22
    - port: 3306
      from: [10.1.0.0/16, "fd00:1::/32"]
    - port: 5432
      name: pg-trial
      from: [10.0.0.0/8]
      mode: monitor
ratelimit:
  syn: {rate: 1, burst: 2, ban: 1h} # an hour: longer than the test, even under qemu
icmp:
  echo: {rate: 1, burst: 1}
udp:
  allow: [53]
  replies: none
sources:
  deny: [203.0.113.0/24, "2001:db8:bad::/48"]
  trust: [192.0.2.10]
`

func load(t *testing.T, doc string) *datapath.Generation {
	t.Helper()
	testutil.RequirePrivileged(t)
	pol, err := policy.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	gen, err := datapath.LoadDetached(pol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gen.Close() })
	return gen
}

// snapshot is every entry of every map of the program, as bytes (per-CPU
// maps: every CPU's value).
func snapshot(t *testing.T, m *datapath.Maps) map[string]string {
	t.Helper()
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("ebpf")
		mp := v.Field(i).Interface().(*ebpf.Map)
		if mp.Type() == ebpf.RingBuf {
			continue // read apart: see drainEvents
		}
		var lines []string
		if mp.Type() == ebpf.LPMTrie { // no batch reads
			key, val := make([]byte, mp.KeySize()), make([]byte, mp.ValueSize())
			it := mp.Iterate()
			for it.Next(&key, &val) {
				lines = append(lines, fmt.Sprintf("%x=%x", key, val))
			}
			if err := it.Err(); err != nil {
				t.Fatalf("read %s: %v", name, err)
			}
		} else {
			per := 1
			if mp.Type() == ebpf.PerCPUArray || mp.Type() == ebpf.PerCPUHash {
				per = cpus
			}
			const chunk = 4096
			keys := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(int(mp.KeySize()), reflect.TypeFor[byte]())), chunk, chunk)
			vals := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(int(mp.ValueSize()), reflect.TypeFor[byte]())), chunk*per, chunk*per)
			var cursor ebpf.MapBatchCursor
			for {
				n, err := mp.BatchLookup(&cursor, keys.Interface(), vals.Interface(), nil)
				ks, vs := int(mp.KeySize()), int(mp.ValueSize())*per
				rawK := unsafe.Slice((*byte)(keys.UnsafePointer()), chunk*ks)
				rawV := unsafe.Slice((*byte)(vals.UnsafePointer()), chunk*vs)
				if mp.Type() == ebpf.Array || mp.Type() == ebpf.PerCPUArray {
					// Keys in order: the values' bytes are the content.
					sum := sha256.Sum256(rawV[:n*vs])
					lines = append(lines, string(sum[:]))
				} else {
					for j := range n {
						lines = append(lines, string(rawK[j*ks:(j+1)*ks])+"="+string(rawV[j*vs:(j+1)*vs]))
					}
				}
				if errors.Is(err, ebpf.ErrKeyNotExist) {
					break
				}
				if err != nil {
					t.Fatalf("read %s: %v", name, err)
				}
			}
		}
		if mp.Type() != ebpf.Array && mp.Type() != ebpf.PerCPUArray {
			sort.Strings(lines) // a hash's order may change
		}
		out[name] = strings.Join(lines, "\n")
	}
	return out
}

func q(src, proto string, dport uint16) explain.Query {
	return explain.Query{Src: netip.MustParseAddr(src), Proto: proto, Dport: dport}
}

// Every verdict explain gives is the one the program in force then gives
// the same frame, and explain changes none of its maps: counters, buckets,
// bans, the events budget, the event ring. The live state is primed with
// real packets first: a source over its rate (banned), a spent ICMP
// bucket, a prefix ban.
func TestExplainMatchesTheProgramAndChangesNothing(t *testing.T) {
	gen := load(t, testPolicy)
	set := maps.Of(gen.Maps)
	if err := set.SetEventBudget(1000, 1000); err != nil {
		t.Fatal(err)
	}
	ring, err := ringbuf.NewReader(gen.XdpgEvents)
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	liveRun := func(qq explain.Query) (uint32, datapath.Reason, bool) {
		t.Helper()
		if err := qq.Validate(); err != nil {
			t.Fatal(err)
		}
		before, _ := set.Reasons()
		beforeM, _ := set.Monitored()
		ret, err := gen.Program.Run(&ebpf.RunOptions{Data: qq.Frame()})
		if err != nil {
			t.Fatal(err)
		}
		after, _ := set.Reasons()
		afterM, _ := set.Monitored()
		for i := range after {
			if after[i] != before[i] {
				return ret, datapath.Reason(i), false
			}
			if afterM[i] != beforeM[i] {
				return ret, datapath.Reason(i), true
			}
		}
		t.Fatal("no reason counted")
		return 0, 0, false
	}
	drainEvents := func() int {
		n := 0
		ring.SetDeadline(time.Now().Add(20 * time.Millisecond))
		for {
			if _, err := ring.Read(); err != nil {
				return n
			}
			n++
		}
	}
	// Prime: 198.51.100.7 spends its 2 SYNs and is banned by the third;
	// 100.64.0.0/10 is banned by hand. Buckets refill within a second or
	// two (rate 1): the cases that need one spent spend it themselves.
	for range 3 {
		liveRun(q("198.51.100.7", "tcp", 22))
	}
	if _, err := set.Ban(netip.MustParsePrefix("100.64.0.0/10"), datapath.MonotonicNow()+uint64(time.Hour), datapath.BanCLI, "abuse desk"); err != nil {
		t.Fatal(err)
	}
	drainEvents()

	// Spent buckets are written, far ahead (an hour of debt): a bucket
	// spent by real packets refills within a second at rate 1, sooner than
	// a loaded machine runs a case.
	spend := func(m *ebpf.Map, src string, drops uint64) {
		k := datapath.SrcKeyOf(netip.MustParseAddr(src))
		if err := m.Put(&k, &datapath.SourceState{At: datapath.MonotonicNow() + uint64(time.Hour), Drops: drops}); err != nil {
			t.Fatal(err)
		}
	}
	prime := map[string]func(){
		"ICMP bucket spent":             func() { spend(gen.XdpgIcmpBuckets, "198.51.100.8", 0) },
		"rate-limited, would be banned": func() { spend(gen.XdpgSrcBuckets, "198.51.100.9", 5) },
	}
	tag := func(v uint16) explain.Query { x := q("198.51.100.20", "tcp", 23); x.VLAN = v; return x }
	ack := q("198.51.100.20", "tcp", 23)
	ack.Flags, _ = explain.ParseFlags("ack")
	for _, c := range []struct {
		name                  string
		q                     explain.Query
		verdict, reason, rule string
		check                 func(*explain.Result) string
	}{
		{"open port v4", q("198.51.100.30", "tcp", 22), "pass", "syn_allowed", "tcp/22", func(r *explain.Result) string {
			if r.Source.SYN == nil || r.Source.SYN.Tokens != 2 || len(r.Effects) != 1 || !strings.Contains(r.Effects[0], "SYN bucket") {
				return fmt.Sprintf("a new source: full bucket, one token taken: %+v %v", r.Source.SYN, r.Effects)
			}
			return ""
		}},
		{"closed port v4", q("198.51.100.30", "tcp", 23), "drop", "port_not_allowed", "tcp/closed", nil},
		{"closed port v6", q("2001:db8:1::5", "tcp", 23), "drop", "port_not_allowed", "tcp/closed", nil},
		{"open port v6", q("2001:db8:1::5", "tcp", 22), "pass", "syn_allowed", "tcp/22", nil},
		{"not a SYN", ack, "pass", "not_syn", "", nil},
		{"VLAN tagged, closed port", tag(100), "drop", "port_not_allowed", "tcp/closed", nil},
		{"scoped rule, inside v4", q("10.1.2.3", "tcp", 3306), "pass", "syn_allowed", "tcp/3306 from 10.1.0.0/16 +1", nil},
		{"scoped rule, inside v6", q("fd00:1::7", "tcp", 3306), "pass", "syn_allowed", "tcp/3306 from 10.1.0.0/16 +1", nil},
		{"scoped rule, outside", q("10.2.2.3", "tcp", 3306), "drop", "port_not_allowed", "tcp/closed", nil},
		{"monitor-mode rule, outside", q("198.51.100.30", "tcp", 5432), "would-drop", "port_not_allowed", "pg-trial", func(r *explain.Result) string {
			if r.RuleCounter != "monitored" {
				return "counter " + r.RuleCounter
			}
			return ""
		}},
		{"monitor-mode rule, inside", q("10.9.9.9", "tcp", 5432), "pass", "syn_allowed", "pg-trial", nil},
		{"denied v4", q("203.0.113.5", "tcp", 22), "drop", "source_denied", "sources/deny", func(r *explain.Result) string {
			if !r.Source.Denied {
				return "not shown denied"
			}
			return ""
		}},
		{"denied v6, any packet", q("2001:db8:bad::1", "udp", 9999), "drop", "source_denied", "sources/deny", nil},
		{"trusted", q("192.0.2.10", "tcp", 22), "pass", "syn_allowed", "tcp/22", func(r *explain.Result) string {
			if !r.Source.Trusted || len(r.Effects) != 0 {
				return fmt.Sprintf("trusted %v, effects %v (a trusted source takes no token)", r.Source.Trusted, r.Effects)
			}
			return ""
		}},
		{"banned by its rate", q("198.51.100.7", "tcp", 22), "drop", "banned", "tcp/22", func(r *explain.Result) string {
			if len(r.Source.Bans) != 1 || r.Source.Bans[0].Origin != "limit" || r.Source.SYN == nil || r.Source.SYN.Refused != 1 {
				return fmt.Sprintf("bans %+v bucket %+v", r.Source.Bans, r.Source.SYN)
			}
			return ""
		}},
		{"banned UDP to a service", q("198.51.100.7", "udp", 53), "drop", "banned", "udp/53", nil},
		{"prefix ban", q("100.64.1.1", "icmp", 0), "drop", "banned", "", func(r *explain.Result) string {
			if len(r.Source.Bans) != 1 || r.Source.Bans[0].Origin != "cli" || r.Source.Bans[0].Reason != "abuse desk" || r.Source.Bans[0].Prefix != "100.64.0.0/10" {
				return fmt.Sprintf("bans %+v", r.Source.Bans)
			}
			return ""
		}},
		{"ICMP bucket spent", q("198.51.100.8", "icmp", 0), "drop", "icmp_rate_limited", "", func(r *explain.Result) string {
			if r.Source.ICMP == nil || r.Source.ICMP.Tokens != 0 {
				return fmt.Sprintf("ICMP bucket %+v", r.Source.ICMP)
			}
			return ""
		}},
		{"ICMP echo", q("198.51.100.31", "icmp", 0), "pass", "not_tcp", "", nil},
		{"rate-limited, would be banned", q("198.51.100.9", "tcp", 22), "drop", "rate_limited", "tcp/22", func(r *explain.Result) string {
			if r.Source.SYN == nil || r.Source.SYN.Tokens != 0 || r.Source.SYN.Refused != 5 || len(r.Source.Bans) != 0 {
				return fmt.Sprintf("bucket %+v bans %v, want spent, 5 refused, no ban yet", r.Source.SYN, r.Source.Bans)
			}
			if !strings.Contains(strings.Join(r.Effects, ";"), "bans 198.51.100.9/32 until") {
				return fmt.Sprintf("effects %v: want the ban it would write", r.Effects)
			}
			return ""
		}},
		{"UDP closed", q("198.51.100.30", "udp", 161), "drop", "udp_port_not_allowed", "udp/closed", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if p := prime[c.name]; p != nil {
				p()
			}
			drainEvents()
			before := snapshot(t, gen.Maps)
			res, err := explain.Judge(gen.Program, set, c.q)
			if err != nil {
				t.Fatal(err)
			}
			after := snapshot(t, gen.Maps)
			for name := range before {
				if before[name] != after[name] {
					t.Errorf("explain changed the live %s:\nbefore %x\nafter  %x", name, before[name], after[name])
				}
			}
			if n := drainEvents(); n != 0 {
				t.Errorf("explain sent %d drop events to the live ring", n)
			}
			if res.Verdict != c.verdict || res.Reason != c.reason || res.Rule != c.rule {
				t.Errorf("explain: %s %s rule %q, want %s %s rule %q", res.Verdict, res.Reason, res.Rule, c.verdict, c.reason, c.rule)
			}
			if c.check != nil {
				if msg := c.check(res); msg != "" {
					t.Error(msg)
				}
			}
			// What the program in force then does to the same frame.
			ret, reason, monitored := liveRun(c.q)
			want := map[string]uint32{"pass": 2, "would-drop": 2, "drop": 1}[res.Verdict]
			if ret != want || reason.Name() != res.Reason || monitored != (res.Verdict == "would-drop") {
				t.Errorf("the program in force: ret %d reason %s monitored %v; explain said %s %s", ret, reason.Name(), monitored, res.Verdict, res.Reason)
			}
		})
	}
	// The live run of that last case banned the source; explain did not
	// (the snapshots around it were equal), and now sees the ban.
	res, err := explain.Judge(gen.Program, set, q("198.51.100.9", "tcp", 22))
	if err != nil {
		t.Fatal(err)
	}
	if res.Reason != "banned" || len(res.Source.Bans) != 1 || res.Source.Bans[0].Origin != "limit" {
		t.Errorf("after the live program banned it: %s %+v", res.Reason, res.Source.Bans)
	}
}

// Under mode: monitor every drop is a would-be drop, the closed-port fast
// path's included, and the program in force agrees.
func TestExplainInMonitorMode(t *testing.T) {
	gen := load(t, "mode: monitor\ntcp:\n  allow: [22]\nsources:\n  deny: [203.0.113.0/24]\n")
	set := maps.Of(gen.Maps)
	for _, c := range []struct {
		q               explain.Query
		verdict, rule   string
		reason, counter string
	}{
		{q("198.51.100.1", "tcp", 23), "would-drop", "tcp/closed", "port_not_allowed", "monitored"},
		{q("203.0.113.9", "tcp", 22), "would-drop", "sources/deny", "source_denied", "monitored"},
		{q("198.51.100.1", "tcp", 22), "pass", "tcp/22", "syn_allowed", "passed"},
	} {
		res, err := explain.Judge(gen.Program, set, c.q)
		if err != nil {
			t.Fatal(err)
		}
		if res.Verdict != c.verdict || res.Rule != c.rule || res.Reason != c.reason || res.RuleCounter != c.counter || !res.Generation.Monitor {
			t.Errorf("%+v: %s %s %s %s (monitor %v)", c.q, res.Verdict, res.Reason, res.Rule, res.RuleCounter, res.Generation.Monitor)
		}
		qq := c.q
		_ = qq.Validate()
		ret, err := gen.Program.Run(&ebpf.RunOptions{Data: qq.Frame()})
		if err != nil || ret != 2 {
			t.Errorf("%+v: the program in force returned %d %v, want XDP_PASS", c.q, ret, err)
		}
	}
}

// Every map of the program has a role in explain, and the maps it shares
// with the program in force are those the program cannot write.
func TestEveryMapHasARole(t *testing.T) {
	spec, err := datapath.Spec()
	if err != nil {
		t.Fatal(err)
	}
	names := explain.Roles()
	for name, ms := range spec.Maps {
		r, ok := names[name]
		if !ok {
			t.Errorf("%s has no role", name)
			continue
		}
		if r == "view" && ms.Flags&0x80 == 0 && name != ".rodata" { // BPF_F_RDONLY_PROG; .rodata gets it at load
			t.Errorf("%s is shared with the live program but not BPF_F_RDONLY_PROG", name)
		}
	}
}

func TestFrameFlags(t *testing.T) {
	f, err := explain.ParseFlags("syn,ack")
	if err != nil || f != 0x12 || explain.FlagString(f) != "syn,ack" {
		t.Errorf("syn,ack: %x %v", f, err)
	}
	if _, err := explain.ParseFlags("syn,bogus"); err == nil {
		t.Error("bogus flag accepted")
	}
	qq := explain.Query{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("::1"), Proto: "tcp", Dport: 1}
	if err := qq.Validate(); err == nil {
		t.Error("mixed families accepted")
	}
	qq = explain.Query{Src: netip.MustParseAddr("10.0.0.1"), Proto: "tcp", Dport: 22, VLAN: 7}
	if err := qq.Validate(); err != nil {
		t.Fatal(err)
	}
	if f := qq.Frame(); !bytes.Equal(f[12:16], []byte{0x81, 0, 0, 7}) || !bytes.Equal(f[16:18], []byte{8, 0}) {
		t.Errorf("VLAN frame: % x", f[:18])
	}
}
