package reference

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

const ms = uint64(1_000_000)

func mustPolicy(t *testing.T, doc string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return p
}

// The emission interval is 1e9/rate rounded to the nearest ns, halves up;
// the tolerance is burst intervals.
func TestNewGCRA(t *testing.T) {
	for _, c := range []struct {
		rate, burst     uint64
		interval, limit uint64
	}{
		{1, 1, 1e9, 1e9},
		{3, 2, 333_333_333, 666_666_666},        // 333,333,333.3
		{7, 1, 142_857_143, 142_857_143},        // 142,857,142.86
		{128_000, 4, 7813, 4 * 7813},            // 7812.5: half up
		{10_000_000, 1_000_000_000, 100, 100e9}, // the largest accepted
		{1000, 1, 1e6, 1e6},
	} {
		g := NewGCRA(&policy.Limit{Rate: c.rate, Burst: c.burst})
		if g.Interval != c.interval || g.Limit != c.limit {
			t.Errorf("rate %d burst %d: %+v, want interval %d limit %d", c.rate, c.burst, g, c.interval, c.limit)
		}
	}
	if NewGCRA(nil).On() {
		t.Error("no limit is a limiter")
	}
}

// GCRA by its definition (virtual scheduling): a sequence worked by hand
// for 10 per second, burst 3 (interval 100 ms, limit 300 ms).
func TestGCRAHandComputed(t *testing.T) {
	g := NewGCRA(&policy.Limit{Rate: 10, Burst: 3})
	t0 := uint64(1e12)
	steps := []struct {
		at      uint64 // ms after t0
		admit   bool
		tatMsT0 uint64 // the bucket's tat after, ms after t0
	}{
		// A new bucket (tat 0): base = now; 0+100 ≤ 300.
		{0, true, 100},
		{0, true, 200},   // base 100: 200 ≤ 300
		{0, true, 300},   // base 200: 300 ≤ 300, the burst's last
		{0, false, 300},  // base 300: 400 > 300, refused, unchanged
		{50, false, 300}, // 300+100-50 = 350 > 300
		{99, false, 300}, // 301 > 300: one ns short
		{100, true, 400}, // 300+100-100 = 300 ≤ 300
		{100, false, 400},
		{250, true, 500},  // 400+100-250 = 250
		{250, false, 500}, // 500+100-250 = 350
		{299, false, 500}, // 301
		{300, true, 600},  // 300
		// Idle for long: base = now, and the burst is back, no more.
		{5000, true, 5100},
		{5000, true, 5200},
		{5000, true, 5300},
		{5000, false, 5300},
	}
	var tat uint64
	for i, s := range steps {
		now := t0 + s.at*ms
		if s.at%100 == 99 { // a nanosecond short of the next 100 ms
			now = t0 + (s.at+1)*ms - 1
		}
		if peek := g.Peek(tat, now); peek != s.admit {
			t.Fatalf("step %d at +%d ms: peek %v, want %v", i, s.at, peek, s.admit)
		}
		var ok bool
		tat, ok = g.Take(tat, now)
		if ok != s.admit || tat != t0+s.tatMsT0*ms {
			t.Fatalf("step %d at +%d ms: admitted %v, tat +%d ns, want %v, +%d ms", i, s.at, ok, tat-t0, s.admit, s.tatMsT0)
		}
	}
	// A bucket further ahead than the limit (the limit was lowered by a
	// reload): refused and clamped to now + limit, then it recovers.
	now := t0
	tat, ok := g.Take(now+10_000*ms, now)
	if ok || tat != now+300*ms {
		t.Fatalf("bucket 10 s ahead: admitted %v, tat +%d ns, want refused and now + 300 ms", ok, tat-now)
	}
	// Exactly at the limit ahead: refused (400 > 300), not clamped.
	if tat2, ok := g.Take(now+300*ms, now); ok || tat2 != now+300*ms {
		t.Fatalf("bucket at the limit: %v %d", ok, tat2-now)
	}
	if tat, ok = g.Take(tat, now+100*ms); !ok || tat != now+400*ms {
		t.Fatalf("after the clamp, one interval later: admitted %v, tat +%d", ok, tat-now)
	}
	// Peek changes nothing: the same take twice.
	if g.Peek(tat, now+100*ms) || g.Peek(tat, now+100*ms) {
		t.Fatal("peek admitted past the burst")
	}
}

// The promises of §3: a stream at 95% of the rate is never refused, and a
// stream above the rate passes rate * time + burst (within 1%), for rates
// and bursts across the accepted range, on the precise clock.
func TestGCRARates(t *testing.T) {
	for _, rate := range []uint64{1, 3, 250, 1000, 7777, 100_000, 10_000_000} {
		for _, burst := range []uint64{1, 2, 10, 1000} {
			g := NewGCRA(&policy.Limit{Rate: rate, Burst: burst})
			period := 1e9 / float64(rate)
			var tat uint64
			t0 := uint64(1e15)
			events := 20_000
			for i := 0; i < events; i++ {
				now := t0 + uint64(float64(i)*period/0.95)
				var ok bool
				if tat, ok = g.Take(tat, now); !ok {
					t.Fatalf("rate %d burst %d: event %d of a stream at 95%% refused", rate, burst, i)
				}
			}
			tat = 0
			passed := 0
			gap := period / 3
			for i := 0; i < 3*events; i++ {
				var ok bool
				if tat, ok = g.Take(tat, t0+uint64(float64(i)*gap)); ok {
					passed++
				}
			}
			elapsed := float64(3*events-1) * gap
			want := float64(burst) + elapsed/period
			if want > float64(3*events) {
				want = float64(3 * events)
			}
			if d := float64(passed) - want; d > want/100+1 || d < -want/100-1 {
				t.Errorf("rate %d burst %d: 3x the rate for %.0f ns passed %d, want %.0f ±1%%", rate, burst, elapsed, passed, want)
			}
		}
	}
}

func TestKeyOf(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":              "192.0.2.7/32",
		"0.0.0.0":                "0.0.0.0/32",
		"2001:db8:aa:bb:1:2:3:4": "2001:db8:aa:bb::/64",
		"::":                     "::/64",
		"fe80::1:2":              "fe80::1:2/128",
		"febf::1":                "febf::1/128",
		"fec0::1":                "fec0::/64",
		"ff02::1":                "ff02::/64",
	} {
		if got := KeyOf(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

const modelPolicy = `tcp:
  allow:
    - 22
    - 80
    - port: 3306
      from: [10.1.0.0/16]
    - port: 8080
      from: [10.1.0.0/16]
      mode: monitor
      name: trial
udp:
  allow: [53]
  replies: 40000-40010
ratelimit:
  syn: {rate: 1, burst: 2, ban: 60s}
  syn_total: {rate: 10, burst: 4}
icmp:
  echo: {rate: 1, burst: 1}
sources:
  trust: [10.2.0.0/16, "2001:db8:aa::7"]
`

func srcOf(src string) (netip.Addr, string) {
	a := netip.MustParseAddr(src)
	if a.Is4() {
		return a, "198.51.100.1"
	}
	return a, "2001:db8:1::1"
}

func syn(src string, port uint16) []byte {
	_, dst := srcOf(src)
	return testpkt.NewSYN(src, dst, port).Bytes()
}

func udp(src string, port uint16) []byte {
	_, dst := srcOf(src)
	f := testpkt.NewSYN(src, dst, port)
	f.Proto, f.Payload = testpkt.ProtoUDP, []byte("query")
	return f.Bytes()
}

func icmp(src string, typ byte) []byte {
	a, dst := srcOf(src)
	f := testpkt.NewSYN(src, dst, 0)
	f.Proto = 1
	if a.Is6() {
		f.Proto = testpkt.ProtoICMP6
	}
	f.Payload = []byte{typ, 0, 0, 0, 0, 1, 0, 1}
	return f.Bytes()
}

func ack(src string, port uint16) []byte {
	_, dst := srcOf(src)
	f := testpkt.NewSYN(src, dst, port)
	f.Flags = testpkt.ACK
	return f.Bytes()
}

// step is one packet of a hand-written sequence: at ms after t0 (coarse
// and precise alike), what it must get.
type step struct {
	at    uint64
	frame []byte
	want  datapath.Reason
}

func play(t *testing.T, m *Model, t0 uint64, steps []step) {
	t.Helper()
	for i, s := range steps {
		now := t0 + s.at*ms
		if got := m.Judge(s.frame, now, now); got.Reason != s.want {
			t.Fatalf("step %d (+%d ms): %s, want %s (%+v)", i, s.at, got.Reason.Name(), s.want.Name(), got)
		}
	}
}

// §3 for one source: the burst, the refusal that bans, what the ban drops
// and what it does not, and its end.
func TestModelBanLifecycle(t *testing.T) {
	pol := mustPolicy(t, modelPolicy)
	m := NewModel(pol, false)
	t0 := uint64(1e12)
	s := "192.0.2.7"
	play(t, m, t0, []step{
		{0, syn(s, 22), datapath.PassSYNAllowed},
		{0, syn(s, 80), datapath.PassSYNAllowed}, // one bucket for every port
		{0, syn(s, 22), datapath.DropRateLimited},
		{0, syn(s, 22), datapath.DropBanned},
		{1, udp(s, 53), datapath.DropBanned},
		{1, icmp(s, 8), datapath.DropBanned},
		{1, icmp(s, 17), datapath.DropBanned},
		{1, syn(s, 9999), datapath.DropPortNotAllowed}, // closed: never judged for bans
		{1, ack(s, 22), datapath.PassNotSYN},
		{1, udp(s, 40005), datapath.PassUDPReply},
		{1, udp(s, 161), datapath.DropUDPPortNotAllowed},
		{1, icmp(s, 0), datapath.PassNotTCP},
		{1, icmp(s, 3), datapath.PassNotTCP},
	})
	bans := m.Bans()
	k := KeyOf(netip.MustParseAddr(s))
	if len(bans) != 1 || bans[k] != (Ban{End: t0 + 60_000*ms, Drops: 4}) {
		t.Fatalf("bans %v, want %s until t0 + 60 s with 4 drops", bans, k)
	}
	if b := m.SYNBuckets()[k]; b != (Bucket{TAT: t0 + 2000*ms, Refused: 1}) {
		t.Fatalf("bucket %+v", b)
	}
	// The per-port bucket was charged by the two admitted SYNs only.
	if m.PortTAT(22) != t0+100*ms || m.PortTAT(80) != t0+100*ms {
		t.Fatalf("port buckets 22: +%d, 80: +%d", m.PortTAT(22)-t0, m.PortTAT(80)-t0)
	}
	// Active while its end is after the coarse clock; ended at its end.
	play(t, m, t0, []step{{60_000 - 1, udp(s, 53), datapath.DropBanned}})
	if b, ok := m.BanOf(netip.MustParseAddr(s)); !ok || b.Drops != 5 {
		t.Fatalf("ban %+v %v", b, ok)
	}
	play(t, m, t0, []step{
		{60_000, udp(s, 53), datapath.PassUDPAllowed},
		{60_000, syn(s, 22), datapath.PassSYNAllowed},
	})
	if len(m.Bans()) != 0 {
		t.Fatalf("ended ban kept: %v", m.Bans())
	}
	h := m.Health()
	if h != (Health{SourceInserts: 1}) {
		t.Fatalf("health %+v", h)
	}
}

// The coarse clock: with precise false the limiters read coarse, and a
// precise time ahead of it changes nothing; ban ends are always coarse.
func TestModelClocks(t *testing.T) {
	pol := mustPolicy(t, modelPolicy)
	t0 := uint64(1e12)
	for _, precise := range []bool{false, true} {
		m := NewModel(pol, precise)
		s := "192.0.2.8"
		m.Judge(syn(s, 22), t0+5*ms, t0)
		k := KeyOf(netip.MustParseAddr(s))
		want := t0 + 1000*ms
		if precise {
			want += 5 * ms
		}
		if got := m.SYNBuckets()[k].TAT; got != want {
			t.Errorf("precise %v: tat +%d, want +%d", precise, got-t0, want-t0)
		}
		m.Judge(syn(s, 22), t0+5*ms, t0)
		m.Judge(syn(s, 22), t0+5*ms, t0) // refused: banned until now + 60 s
		end := t0 + 60_000*ms
		if precise {
			end += 5 * ms
		}
		if b, _ := m.BanOf(netip.MustParseAddr(s)); b.End != end {
			t.Errorf("precise %v: ban ends +%d", precise, b.End-t0)
		}
		// The ban's end is compared with the coarse clock only.
		if v := m.Judge(syn(s, 22), end+10*ms, end-1); v.Reason != datapath.DropBanned {
			t.Errorf("precise %v: coarse before the end: %s", precise, v.Reason.Name())
		}
		if v := m.Judge(syn(s, 22), end, end); v.Reason != datapath.PassSYNAllowed {
			t.Errorf("precise %v: at the end: %s", precise, v.Reason.Name())
		}
	}
}

// Trust meets no limit and no ban; link-local and protected sources are
// limited but never banned; keys are /32, /64, link-local /128.
func TestModelTrustAndProtection(t *testing.T) {
	pol := mustPolicy(t, modelPolicy)
	m := NewModel(pol, false)
	m.SetProtected(netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8:cc::10"))
	t0 := uint64(1e12)
	at := uint64(0)
	// Ports 22 and 80 alternate, so syn_total (burst 4, 10/s) never binds.
	for _, c := range []struct {
		src    string
		passed int
	}{
		{"10.2.3.4", 5}, {"2001:db8:aa::7", 5}, // trusted
		{"fe80::1", 2}, {"169.254.7.7", 2}, {"192.0.2.53", 2}, {"2001:db8:cc::10", 2},
		{"2001:db8:cc::99", 1}, // ::10's /64: its bucket (a token back after 1 s) and its protection
		{"fe80::2", 2},         // not fe80::1's bucket
		{"2001:db8:aa::1", 2},  // the trusted host's /64 neighbour: limited, banned
	} {
		at += 1000 // a second apart: the port buckets refill
		passed := 0
		for i := 0; i < 5; i++ {
			now := t0 + (at+uint64(i)*100)*ms
			switch v := m.Judge(syn(c.src, 22+58*uint16(i%2)), now, now); v.Reason {
			case datapath.PassSYNAllowed:
				passed++
			case datapath.DropRateLimited, datapath.DropBanned:
			default:
				t.Fatalf("%s: %s", c.src, v.Reason.Name())
			}
		}
		if passed != c.passed {
			t.Errorf("%s: %d of 5 passed, want %d", c.src, passed, c.passed)
		}
	}
	if h := m.Health(); h.BansProtected != 3+3+3+3+4+3 {
		t.Errorf("bans refused as protected: %d", h.BansProtected)
	}
	bans := m.Bans()
	if len(bans) != 1 || bans[netip.MustParsePrefix("2001:db8:aa::/64")].End == 0 {
		t.Fatalf("bans %v, want the trusted host's /64 only", bans)
	}
	now := t0 + (at+2000)*ms
	// The trusted host inside the banned /64 passes everything.
	for _, f := range [][]byte{syn("2001:db8:aa::7", 22), udp("2001:db8:aa::7", 53), icmp("2001:db8:aa::7", 128)} {
		if v := m.Judge(f, now, now); v.Reason.Dropped() {
			t.Errorf("trusted host in a banned /64: %s", v.Reason.Name())
		}
	}
	// Its neighbour's ICMP requests are banned, its errors not.
	if v := m.Judge(icmp("2001:db8:aa::2", 139), now, now); v.Reason != datapath.DropBanned {
		t.Errorf("node information query from the banned /64: %s", v.Reason.Name())
	}
	if v := m.Judge(icmp("2001:db8:aa::2", 2), now, now); v.Reason != datapath.PassNotTCP {
		t.Errorf("packet too big from the banned /64: %s", v.Reason.Name())
	}
}

// Step 4 sheds a SYN on the port's bucket before the source's is created;
// a full ban table bans nobody more, and says so.
func TestModelPortPeekAndFullBanTable(t *testing.T) {
	pol := mustPolicy(t, modelPolicy)
	m := NewModel(pol, false)
	m.BanTableSize = 1
	t0 := uint64(1e12)
	for i := 0; i < 4; i++ {
		if v := m.Judge(syn(fmt.Sprintf("198.18.0.%d", i), 22), t0, t0); v.Reason != datapath.PassSYNAllowed {
			t.Fatalf("SYN %d: %s", i, v.Reason.Name())
		}
	}
	v := m.Judge(syn("198.18.0.9", 22), t0, t0)
	if v.Reason != datapath.DropPortRateLimited || v.Rule != "tcp/22" {
		t.Fatalf("fifth source on a port of burst 4: %+v", v)
	}
	if h := m.Health(); h.SourceInserts != 4 || len(m.SYNBuckets()) != 4 {
		t.Fatalf("a shed SYN created a bucket: %+v", h)
	}
	// Two offenders (on two ports: each port's burst is 4), room for one
	// ban.
	for i, s := range []string{"198.18.0.1", "198.18.0.2"} {
		now, port := t0+2000*ms, uint16(22+58*i)
		m.Judge(syn(s, port), now, now)
		m.Judge(syn(s, port), now, now)
		if v := m.Judge(syn(s, port), now, now); v.Reason != datapath.DropRateLimited {
			t.Fatalf("%s: %s", s, v.Reason.Name())
		}
	}
	if h := m.Health(); h.BansNotStored != 1 || len(m.Bans()) != 1 {
		t.Fatalf("health %+v, bans %v", h, m.Bans())
	}
}

// A monitor-mode rule's would-be drop still meets limits and bans (§2),
// counted under that rule.
func TestModelMonitoredSYNLimited(t *testing.T) {
	pol := mustPolicy(t, modelPolicy)
	m := NewModel(pol, false)
	t0 := uint64(1e12)
	var got []string
	for i := 0; i < 4; i++ {
		v := m.Judge(syn("192.0.2.1", 8080), t0, t0)
		got = append(got, fmt.Sprintf("%s %s %v %v", v.Reason.Name(), v.Rule, v.Monitored, v.Passes(pol)))
	}
	want := "[port_not_allowed trial true true port_not_allowed trial true true rate_limited trial false false banned trial false false]"
	if fmt.Sprint(got) != want {
		t.Fatalf("%v\nwant %v", got, want)
	}
}

// ICMP is judged under every policy (a prefix ban may apply to any): the
// type byte must be there. Every request type shares one bucket.
func TestModelICMP(t *testing.T) {
	t0 := uint64(1e12)
	short := func(src string) []byte {
		a, dst := srcOf(src)
		f := testpkt.NewSYN(src, dst, 0)
		f.Proto = 1
		if a.Is6() {
			f.Proto = testpkt.ProtoICMP6
		}
		return f.Bytes()
	}
	plain := mustPolicy(t, "tcp:\n  allow: [22]\n")
	bans := mustPolicy(t, "tcp:\n  allow: [22]\nratelimit:\n  syn: {rate: 1, burst: 1, ban: 1s}\n")
	for _, pol := range []*policy.Policy{plain, bans} {
		for _, src := range []string{"192.0.2.1", "2001:db8::1"} {
			if v := Classify(short(src), pol); v.Reason != datapath.DropMalformed {
				t.Errorf("%s: ICMP without a type: %s", src, v.Reason.Name())
			}
		}
	}
	m := NewModel(mustPolicy(t, modelPolicy), false)
	for _, typ := range []byte{8, 13, 15, 17} {
		v := m.Judge(icmp("192.0.2.1", typ), t0, t0)
		if want := datapath.DropICMPRateLimited; typ == 8 && v.Reason != datapath.PassNotTCP || typ != 8 && v.Reason != want {
			t.Errorf("type %d: %s", typ, v.Reason.Name())
		}
	}
	for _, typ := range []byte{0, 3, 5, 11, 14, 16, 18, 128, 139} { // not requests over IPv4
		if v := m.Judge(icmp("192.0.2.1", typ), t0, t0); v.Reason != datapath.PassNotTCP || v.Class != ClassNone {
			t.Errorf("ICMP type %d: %+v", typ, v)
		}
	}
	for _, typ := range []byte{1, 2, 3, 4, 129, 130, 133, 134, 135, 136, 137, 140, 143, 8} { // not requests over IPv6
		if v := m.Judge(icmp("2001:db8::1", typ), t0, t0); v.Reason != datapath.PassNotTCP || v.Class != ClassNone {
			t.Errorf("ICMPv6 type %d: %+v", typ, v)
		}
	}
	if v := m.Judge(icmp("2001:db8::1", 139), t0, t0); v.Reason != datapath.PassNotTCP {
		t.Errorf("first node information query: %s", v.Reason.Name())
	}
	if v := m.Judge(icmp("2001:db8::2", 128), t0, t0); v.Reason != datapath.DropICMPRateLimited {
		t.Errorf("echo request from the same /64 after a query: %s", v.Reason.Name())
	}
	b := m.ICMPBuckets()
	if len(b) != 2 || b[netip.MustParsePrefix("192.0.2.1/32")].Refused != 3 || b[netip.MustParsePrefix("2001:db8::/64")].Refused != 1 {
		t.Errorf("ICMP buckets %v", b)
	}
	if len(m.SYNBuckets()) != 0 {
		t.Errorf("ICMP requests took SYN tokens: %v", m.SYNBuckets())
	}
}
