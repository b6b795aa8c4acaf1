package loader_test

import (
	"net/netip"
	"testing"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/loader"
)

const banPolicy = basePolicy + `ratelimit:
  syn:
    rate: 1
    burst: 2
    ban: 60s
sources:
  trust: ["2001:db8:aa::7"]
`

func TestBanAfterExceedingLimit(t *testing.T) {
	d := load(t, mustPolicy(t, banPolicy))
	got := countReasons(t, d, repeat(srcFrame("192.0.2.7", 22), 3)...)
	if got[loader.PassSYNAllowed] != 2 || got[loader.DropRateLimited] != 1 {
		t.Fatalf("before the ban: %v", got)
	}
	// Banned: every packet of the source, on any port, any protocol.
	ack := with(testpkt.NewSYN("192.0.2.7", "198.51.100.1", 22), func(f *testpkt.Frame) { f.Flags = testpkt.ACK })
	udp := with(testpkt.NewSYN("192.0.2.7", "198.51.100.1", 53), func(f *testpkt.Frame) { f.Proto = testpkt.ProtoUDP })
	for name, f := range map[string][]byte{"SYN": srcFrame("192.0.2.7", 443), "ACK": ack.Bytes(), "UDP": udp.Bytes()} {
		if _, r := run(t, d, f); r != loader.DropBanned {
			t.Errorf("banned source %s: %s", name, r.Name())
		}
	}
	if _, r := run(t, d, srcFrame("192.0.2.8", 22)); r != loader.PassSYNAllowed {
		t.Errorf("neighbour of a banned source: %s", r.Name())
	}
	bans, err := loader.ReadBans(d.Bans)
	if err != nil || len(bans) != 1 || bans[0].Source.String() != "192.0.2.7/32" || bans[0].Drops != 3 {
		t.Fatalf("bans %+v %v, want 192.0.2.7/32 with the 3 packets it dropped", bans, err)
	}
	if left := bans[0].Until - loader.MonotonicNow(); left < 59e9 || left > 60e9 {
		t.Errorf("ban ends in %dns, want about 60s", left)
	}

	if ok, err := loader.Unban(d.Bans, netip.MustParseAddr("192.0.2.7")); !ok || err != nil {
		t.Fatalf("unban: %v %v", ok, err)
	}
	if _, r := run(t, d, ack.Bytes()); r != loader.PassNotSYN {
		t.Errorf("after unban: %s", r.Name())
	}
}

func TestBanCoversIPv6Slash64ButNotTrusted(t *testing.T) {
	d := load(t, mustPolicy(t, banPolicy))
	countReasons(t, d, repeat(srcFrame("2001:db8:aa::1", 22), 3)...)
	if _, r := run(t, d, srcFrame("2001:db8:aa::ffff", 80)); r != loader.DropBanned {
		t.Errorf("other host in the banned /64: %s", r.Name())
	}
	if _, r := run(t, d, srcFrame("2001:db8:aa::7", 80)); r != loader.PassSYNAllowed {
		t.Errorf("trusted host in the banned /64: %s", r.Name())
	}
	if _, r := run(t, d, srcFrame("2001:db8:ab::1", 80)); r != loader.PassSYNAllowed {
		t.Errorf("another /64: %s", r.Name())
	}
}

// An expired ban is lifted by the data path itself.
func TestBanExpiresInDataPath(t *testing.T) {
	d := load(t, mustPolicy(t, banPolicy))
	key := loader.SrcKeyOf(netip.MustParseAddr("192.0.2.9"))
	// A second ago: the data path reads a coarse clock, up to a tick behind.
	if err := d.Bans.Put(key, loader.SourceState{At: loader.MonotonicNow() - 1e9}); err != nil {
		t.Fatal(err)
	}
	if _, r := run(t, d, srcFrame("192.0.2.9", 22)); r != loader.PassSYNAllowed {
		t.Fatalf("expired ban still enforced: %s", r.Name())
	}
	var ban loader.SourceState
	if err := d.Bans.Lookup(key, &ban); err == nil {
		t.Fatal("expired ban left in the map")
	}
}

func TestSrcKeyRoundTrip(t *testing.T) {
	for in, want := range map[string]string{"192.0.2.7": "192.0.2.7/32", "2001:db8:aa:bb:1:2:3:4": "2001:db8:aa:bb::/64", "::ffff:10.0.0.1": "10.0.0.1/32"} {
		if got := loader.SrcKeyOf(netip.MustParseAddr(in)).Prefix().String(); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}
