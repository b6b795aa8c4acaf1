package datapath_test

import (
	"testing"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/datapath"
)

const icmpPolicy = basePolicy + `icmp:
  echo:
    rate: 1
    burst: 3
sources:
  trust: [192.0.2.99]
`

func icmpFrame(src string, typ byte) []byte {
	f := testpkt.NewSYN(src, "198.51.100.1", 0)
	f.Proto = 1
	if len(src) > 15 || src[0] == '2' {
		f = testpkt.NewSYN(src, "2001:db8:1::1", 0)
		f.Proto = testpkt.ProtoICMP6
	}
	f.Payload = []byte{typ, 0, 0, 0, 0, 1, 0, 1}
	return f.Bytes()
}

func TestICMPEchoLimit(t *testing.T) {
	d, _ := loadFrozen(t, mustPolicy(t, icmpPolicy))
	got := countReasons(t, d, repeat(icmpFrame("192.0.2.1", 8), 6)...)
	if got[datapath.PassNotTCP] != 3 || got[datapath.DropICMPRateLimited] != 3 {
		t.Fatalf("6 echo requests, burst 3: %v", got)
	}
	// What must always pass, even from a source over its echo limit.
	for name, f := range map[string][]byte{
		"echo reply":                icmpFrame("192.0.2.1", 0),
		"fragmentation needed":      icmpFrame("192.0.2.1", 3),
		"ICMPv6 neighbour solicit":  icmpFrame("2001:db8::1", 135),
		"ICMPv6 neighbour advert":   icmpFrame("2001:db8::1", 136),
		"ICMPv6 router advert":      icmpFrame("2001:db8::1", 134),
		"ICMPv6 packet too big":     icmpFrame("2001:db8::1", 2),
		"ICMPv6 echo reply":         icmpFrame("2001:db8::1", 129),
		"ICMPv4 type 128 is not v6": icmpFrame("192.0.2.1", 128),
	} {
		for i := 0; i < 5; i++ {
			if _, r := run(t, d, f); r != datapath.PassNotTCP {
				t.Errorf("%s: %s", name, r.Name())
			}
		}
	}
	got = countReasons(t, d, icmpFrame("2001:db8:5::1", 128), icmpFrame("2001:db8:5::2", 128), icmpFrame("2001:db8:5::3", 128), icmpFrame("2001:db8:5::4", 128))
	if got[datapath.DropICMPRateLimited] != 1 {
		t.Errorf("one IPv6 /64 shares its echo budget: %v", got)
	}
	if got := countReasons(t, d, repeat(icmpFrame("192.0.2.99", 8), 6)...); got[datapath.PassNotTCP] != 6 {
		t.Errorf("trusted source: %v", got)
	}
	// The SYN limiter is separate: pings did not spend 192.0.2.1's SYN budget.
	if _, r := run(t, d, srcFrame("192.0.2.1", 22)); r != datapath.PassSYNAllowed {
		t.Errorf("SYN after pings: %s", r.Name())
	}
}

// Every ICMP message that asks this host for an answer is limited like
// echo, in the one bucket per source: timestamp, information and address
// mask requests, ICMPv6 node information queries. MLD and router
// solicitations (neighbour protocols) are not requests.
func TestICMPRequestsShareTheEchoLimit(t *testing.T) {
	d, _ := loadFrozen(t, mustPolicy(t, icmpPolicy))
	v4 := countReasons(t, d, icmpFrame("192.0.2.3", 13), icmpFrame("192.0.2.3", 15), icmpFrame("192.0.2.3", 17), icmpFrame("192.0.2.3", 8), icmpFrame("192.0.2.3", 13))
	if v4[datapath.PassNotTCP] != 3 || v4[datapath.DropICMPRateLimited] != 2 {
		t.Errorf("timestamp, information, address mask, echo, timestamp (burst 3): %v", v4)
	}
	v6 := countReasons(t, d, icmpFrame("2001:db8:6::1", 139), icmpFrame("2001:db8:6::1", 139), icmpFrame("2001:db8:6::1", 128), icmpFrame("2001:db8:6::1", 139))
	if v6[datapath.PassNotTCP] != 3 || v6[datapath.DropICMPRateLimited] != 1 {
		t.Errorf("node information queries and echo (burst 3): %v", v6)
	}
	for name, typ := range map[string]byte{"MLD query": 130, "MLD report": 131, "router solicitation": 133, "node information reply": 140} {
		for i := 0; i < 4; i++ {
			if _, r := run(t, d, icmpFrame("2001:db8:6::1", typ)); r != datapath.PassNotTCP {
				t.Errorf("%s from a source over its limit: %s", name, r.Name())
			}
		}
	}
}
