package datapath_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

const banPolicy = basePolicy + `udp:
  allow: [53]
  replies: 40000-40100
ratelimit:
  syn:
    rate: 1
    burst: 2
    ban: 60s
sources:
  trust: ["2001:db8:aa::7"]
`

// A ban stops what could start something from the source (SYNs, datagrams
// to services, ICMP requests) and nothing else: a spoofer who gets a victim
// banned cannot cut its established connections, the replies to our own
// traffic or its ICMP errors.
func TestBanStopsNewConnectionsOnly(t *testing.T) {
	d, now := loadFrozen(t, mustPolicy(t, banPolicy))
	got := countReasons(t, d, repeat(srcFrame("192.0.2.7", 22), 3)...)
	if got[datapath.PassSYNAllowed] != 2 || got[datapath.DropRateLimited] != 1 {
		t.Fatalf("before the ban: %v", got)
	}
	ack := with(testpkt.NewSYN("192.0.2.7", "198.51.100.1", 22), func(f *testpkt.Frame) { f.Flags = testpkt.ACK })
	synAck := with(testpkt.NewSYN("192.0.2.7", "198.51.100.1", 40001), func(f *testpkt.Frame) { f.Flags = testpkt.SYN | testpkt.ACK })
	for name, want := range map[string]struct {
		frame []byte
		want  datapath.Reason
	}{
		"SYN to an open port":           {srcFrame("192.0.2.7", 443), datapath.DropBanned},
		"SYN to a closed port":          {srcFrame("192.0.2.7", 8080), datapath.DropPortNotAllowed},
		"datagram to a UDP service":     {udpFrame("192.0.2.7", 53).Bytes(), datapath.DropBanned},
		"echo request":                  {icmpFrame("192.0.2.7", 8), datapath.DropBanned},
		"timestamp request":             {icmpFrame("192.0.2.7", 13), datapath.DropBanned},
		"established: ACK":              {ack.Bytes(), datapath.PassNotSYN},
		"reply to our connect: SYN-ACK": {synAck.Bytes(), datapath.PassNotSYN},
		"reply to our UDP query":        {udpFrame("192.0.2.7", 40050).Bytes(), datapath.PassUDPReply},
		"ICMP error":                    {icmpFrame("192.0.2.7", 3), datapath.PassNotTCP},
		"echo reply":                    {icmpFrame("192.0.2.7", 0), datapath.PassNotTCP},
	} {
		if _, r := run(t, d, want.frame); r != want.want {
			t.Errorf("banned source, %s: %s, want %s", name, r.Name(), want.want.Name())
		}
	}
	if _, r := run(t, d, srcFrame("192.0.2.8", 22)); r != datapath.PassSYNAllowed {
		t.Errorf("neighbour of a banned source: %s", r.Name())
	}
	bans, err := bansOf(d)
	if err != nil || len(bans) != 1 || bans[0].Source.String() != "192.0.2.7/32" || bans[0].Drops != 4 {
		t.Fatalf("bans %+v %v, want 192.0.2.7/32 with the 4 packets it dropped", bans, err)
	}
	// 60 s after the limiter's clock read it: the coarse clock, up to a
	// tick behind the precise one.
	if left := bans[0].Until - now; left > 60e9 || left < 59e9 {
		t.Errorf("ban ends %dns after the SYN that earned it, want 60s", left)
	}
	if ok, err := maps.Of(d.Maps).Unban(netip.MustParsePrefix("192.0.2.7/32")); !ok || err != nil {
		t.Fatalf("unban: %v %v", ok, err)
	}
	if _, r := run(t, d, udpFrame("192.0.2.7", 53).Bytes()); r != datapath.PassUDPAllowed {
		t.Errorf("after unban: %s", r.Name())
	}
}

func TestBanCoversIPv6Slash64ButNotTrusted(t *testing.T) {
	d, _ := loadFrozen(t, mustPolicy(t, banPolicy))
	countReasons(t, d, repeat(srcFrame("2001:db8:aa::1", 22), 3)...)
	if _, r := run(t, d, srcFrame("2001:db8:aa::ffff", 80)); r != datapath.DropBanned {
		t.Errorf("other host in the banned /64: %s", r.Name())
	}
	if _, r := run(t, d, srcFrame("2001:db8:aa::7", 80)); r != datapath.PassSYNAllowed {
		t.Errorf("trusted host in the banned /64: %s", r.Name())
	}
	if _, r := run(t, d, srcFrame("2001:db8:ab::1", 80)); r != datapath.PassSYNAllowed {
		t.Errorf("another /64: %s", r.Name())
	}
}

// Link-local sources and the sources the daemon protects (SSH peers,
// gateways, resolvers) are never banned, however fast they send SYNs; a
// link-local source is limited on its own, not with its /64 (every
// neighbour).
func TestProtectedSourcesAreNeverBanned(t *testing.T) {
	d, _ := loadFrozen(t, mustPolicy(t, banPolicy))
	resolver := netip.MustParseAddr("192.0.2.53")
	operator := netip.MustParseAddr("2001:db8:cc::10")
	if err := maps.Of(d.Maps).SetProtected(map[netip.Addr]datapath.Protection{
		resolver: datapath.ProtectResolver, operator: datapath.ProtectSSH,
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		src    string
		passed int
	}{{"fe80::1", 2}, {"169.254.7.7", 2}, {"192.0.2.53", 2}, {"2001:db8:cc::10", 2}, {"2001:db8:cc::99", 0}} {
		// ::99 is in ::10's /64: one bucket, already spent, and one protection.
		src := c.src
		got := countReasons(t, d, repeat(srcFrame(src, 22), 5)...)
		if got[datapath.PassSYNAllowed] != c.passed || got[datapath.DropRateLimited] != 5-c.passed {
			t.Errorf("%s: %v, want %d passed, the rest rate-limited, no ban", src, got, c.passed)
		}
		if _, r := run(t, d, udpFrame(src, 53).Bytes()); r != datapath.PassUDPAllowed {
			t.Errorf("%s banned: %s", src, r.Name())
		}
	}
	if got := countReasons(t, d, srcFrame("fe80::2", 22), srcFrame("fe80::2", 22)); got[datapath.PassSYNAllowed] != 2 {
		t.Errorf("fe80::2 shares fe80::1's budget: %v", got)
	}
	if bans, _ := bansOf(d); len(bans) != 0 {
		t.Errorf("protected sources banned: %v", bans)
	}
	h, err := maps.Of(d.Maps).Health()
	if err != nil || h[datapath.HealthBansProtected] != 17 {
		t.Errorf("bans refused as protected: %v (%v), want 17", h[datapath.HealthBansProtected], err)
	}
	// Unprotected, the operator's /64 is banned like anyone's.
	if err := maps.Of(d.Maps).SetProtected(map[netip.Addr]datapath.Protection{resolver: datapath.ProtectResolver}); err != nil {
		t.Fatal(err)
	}
	countReasons(t, d, repeat(srcFrame("2001:db8:cc::10", 22), 3)...)
	if _, r := run(t, d, srcFrame("2001:db8:cc::10", 22)); r != datapath.DropBanned {
		t.Errorf("no longer protected: %s", r.Name())
	}
	got, err := maps.Of(d.Maps).Protected()
	if err != nil || len(got) != 1 || got[0].Source.String() != "192.0.2.53/32" || got[0].Why != datapath.ProtectResolver {
		t.Errorf("protected: %+v %v", got, err)
	}
}

// Bans cannot be evicted: a spray of offending sources larger than the ban
// table fills it, the bans that do not fit are counted, and the first
// offender's ban stays until it ends.
func TestBansSurviveASprayLargerThanTheTable(t *testing.T) {
	d, now := loadFrozen(t, mustPolicy(t, banPolicy))
	countReasons(t, d, repeat(srcFrame("192.0.2.7", 22), 3)...)
	// Fill the rest of the table as a spray would, then offend once more.
	size := int(d.XdpgBans.MaxEntries())
	keys := make([]datapath.SrcKey, 0, size)
	vals := make([]datapath.SourceState, 0, size)
	until := now + 3600e9
	for i := 0; len(keys) < size-1; i++ {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], 0x0a000000+uint32(i))
		keys = append(keys, datapath.SrcKeyOf(netip.AddrFrom4(a)))
		vals = append(vals, datapath.SourceState{At: until})
	}
	if _, err := d.XdpgBans.BatchUpdate(keys, vals, nil); err != nil {
		t.Fatal(err)
	}
	// 200 more offenders, each over its rate: none fits.
	for i := 0; i < 200; i++ {
		src := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String()
		countReasons(t, d, repeat(srcFrame(src, 22), 3)...)
	}
	if _, r := run(t, d, srcFrame("192.0.2.7", 443)); r != datapath.DropBanned {
		t.Errorf("the first offender's ban was lost to the spray: %s", r.Name())
	}
	h, err := maps.Of(d.Maps).Health()
	if err != nil || h[datapath.HealthBansNotStored] != 200 {
		t.Errorf("bans not stored: %v (%v), want 200", h[datapath.HealthBansNotStored], err)
	}
	if _, r := run(t, d, srcFrame("198.18.0.1", 22)); r != datapath.DropRateLimited {
		t.Errorf("an offender whose ban did not fit is still rate-limited: %s", r.Name())
	}
	// Ended bans are swept by the daemon, making room again.
	if err := d.XdpgBans.Put(keys[0], datapath.SourceState{At: 1}); err != nil {
		t.Fatal(err)
	}
	if n, err := maps.Of(d.Maps).SweepBans(); n != 1 || err != nil {
		t.Fatalf("sweep: %d %v", n, err)
	}
}

// An expired ban is lifted by the data path itself.
func TestBanExpiresInDataPath(t *testing.T) {
	d, now := loadFrozen(t, mustPolicy(t, banPolicy))
	key := datapath.SrcKeyOf(netip.MustParseAddr("192.0.2.9"))
	if err := d.XdpgBans.Put(key, datapath.SourceState{At: now - 1e9}); err != nil {
		t.Fatal(err)
	}
	if _, r := run(t, d, srcFrame("192.0.2.9", 22)); r != datapath.PassSYNAllowed {
		t.Fatalf("expired ban still enforced: %s", r.Name())
	}
	var ban datapath.SourceState
	if err := d.XdpgBans.Lookup(key, &ban); err == nil {
		t.Fatal("expired ban left in the map")
	}
}

func TestSrcKeyRoundTrip(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7": "192.0.2.7/32", "2001:db8:aa:bb:1:2:3:4": "2001:db8:aa:bb::/64", "::ffff:10.0.0.1": "10.0.0.1/32",
		"fe80::1:2": "fe80::1:2/128", "febf::1": "febf::1/128", "fec0::1": "fec0::/64",
	} {
		if got := datapath.SrcKeyOf(netip.MustParseAddr(in)).Prefix().String(); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

// A deny list holding private and link-local ranges (as FireHOL level1
// does) drops every packet of the other sources in them, but never those
// of link-local neighbours or of the sources the daemon protects (their
// key: an IPv6 one's /64), which are judged as if undenied.
func TestDenyNeverCutsProtectedOrLinkLocal(t *testing.T) {
	d := load(t, mustPolicy(t, basePolicy+`sources:
  deny: [10.0.0.0/8, 169.254.0.0/16, "fe80::/10", "2001:db8:cc::/48"]
`))
	if err := maps.Of(d.Maps).SetProtected(map[netip.Addr]datapath.Protection{
		netip.MustParseAddr("10.0.0.1"): datapath.ProtectGateway, netip.MustParseAddr("2001:db8:cc::10"): datapath.ProtectSSH,
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		src       string
		syn, ack  datapath.Reason
		closedSYN datapath.Reason
	}{
		{"10.0.0.1", datapath.PassSYNAllowed, datapath.PassNotSYN, datapath.DropPortNotAllowed},
		{"10.0.0.2", datapath.DropSourceDenied, datapath.DropSourceDenied, datapath.DropSourceDenied},
		{"169.254.1.1", datapath.PassSYNAllowed, datapath.PassNotSYN, datapath.DropPortNotAllowed},
		{"fe80::1", datapath.PassSYNAllowed, datapath.PassNotSYN, datapath.DropPortNotAllowed},
		{"2001:db8:cc::99", datapath.PassSYNAllowed, datapath.PassNotSYN, datapath.DropPortNotAllowed}, // in ::10's /64
		{"2001:db8:cc:1::10", datapath.DropSourceDenied, datapath.DropSourceDenied, datapath.DropSourceDenied},
	} {
		if _, r := run(t, d, srcFrame(c.src, 22)); r != c.syn {
			t.Errorf("%s: SYN to 22 %s, want %s", c.src, r.Name(), c.syn.Name())
		}
		ack := testpkt.NewSYN(c.src, "198.51.100.1", 22)
		if ack.Src.Is6() {
			ack.Dst = netip.MustParseAddr("2001:db8:1::1")
		}
		ack.Flags = testpkt.ACK
		if _, r := run(t, d, ack.Bytes()); r != c.ack {
			t.Errorf("%s: ACK %s, want %s", c.src, r.Name(), c.ack.Name())
		}
		if _, r := run(t, d, srcFrame(c.src, 23)); r != c.closedSYN {
			t.Errorf("%s: SYN to closed 23 %s, want %s", c.src, r.Name(), c.closedSYN.Name())
		}
	}
}
