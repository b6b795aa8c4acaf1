package loader_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

// A rate of 1/s makes refills negligible within a test: every count is exact.
const slowPolicy = basePolicy + "ratelimit:\n  syn:\n    rate: 1\n    burst: 5\n"

func TestSourceLimitHoldsBurst(t *testing.T) {
	d := load(t, mustPolicy(t, slowPolicy))
	got := countReasons(t, d, repeat(srcFrame("192.0.2.7", 22), 12)...)
	if got[loader.PassSYNAllowed] != 5 || got[loader.DropRateLimited] != 7 {
		t.Fatalf("12 SYNs from one source: %v, want 5 passed and 7 rate_limited", got)
	}
	// Another source has its own budget, on any open port.
	got = countReasons(t, d, repeat(srcFrame("192.0.2.8", 443), 5)...)
	if got[loader.PassSYNAllowed] != 5 {
		t.Fatalf("second source: %v, want 5 passed", got)
	}
	drops, err := maps.ReadPortDrops(d.PortDrops)
	if err != nil || len(drops) != 1 || drops[0].Port != 22 || drops[0].RateLimited != 7 {
		t.Fatalf("port drops %v (%v), want 7 rate_limited on 22", drops, err)
	}
}

func TestSourceLimitKeysIPv6By64(t *testing.T) {
	d := load(t, mustPolicy(t, slowPolicy))
	// Rotating the low 64 bits inside one /64 does not mint new budgets.
	var frames [][]byte
	for i := 1; i <= 8; i++ {
		frames = append(frames, srcFrame("2001:db8:aa:bb::"+string(rune('0'+i)), 22))
	}
	got := countReasons(t, d, frames...)
	if got[loader.PassSYNAllowed] != 5 || got[loader.DropRateLimited] != 3 {
		t.Fatalf("one /64: %v, want 5 passed, 3 limited", got)
	}
	got = countReasons(t, d, srcFrame("2001:db8:aa:bc::1", 22))
	if got[loader.PassSYNAllowed] != 1 {
		t.Fatalf("neighbouring /64: %v, want its own budget", got)
	}
	// An IPv4 source never shares an IPv6 /64's key.
	got = countReasons(t, d, srcFrame("0.0.0.0", 22))
	if got[loader.PassSYNAllowed] != 1 {
		t.Fatalf("IPv4 0.0.0.0: %v", got)
	}
}

func TestLimiterUntouchedByNonSYNAndClosedPorts(t *testing.T) {
	d := load(t, mustPolicy(t, slowPolicy+"  syn_total:\n    rate: 1\n    burst: 5\n"))
	ack := testpkt.NewSYN("192.0.2.9", "198.51.100.1", 22)
	ack.Flags = testpkt.ACK
	for i := 0; i < 20; i++ {
		run(t, d, ack.Bytes())
		run(t, d, srcFrame("192.0.2.10", 8080))
	}
	if n, err := maps.CountEntries(d.SrcBuckets); err != nil || n != 0 {
		t.Fatalf("source table has %d entries (%v) after non-SYNs and closed-port SYNs", n, err)
	}
	var tat uint64
	for _, port := range []uint32{22, 8080} {
		if err := d.PortBuckets().Lookup(port, &tat); err != nil || tat != 0 {
			t.Fatalf("port %d bucket = %d (%v), want untouched", port, tat, err)
		}
	}
}

func TestPortAggregateLimit(t *testing.T) {
	d := load(t, mustPolicy(t, basePolicy+"ratelimit:\n  syn:\n    rate: 1\n    burst: 2\n  syn_total:\n    rate: 1\n    burst: 5\n"))
	// One source floods: its own bucket stops it after 2, before it can
	// drain the port's budget.
	got := countReasons(t, d, repeat(srcFrame("192.0.2.1", 80), 10)...)
	if got[loader.PassSYNAllowed] != 2 || got[loader.DropRateLimited] != 8 {
		t.Fatalf("single-source flood: %v", got)
	}
	// Spoofed sources share the port's budget of 5: 3 left.
	var frames [][]byte
	for i := 2; i < 8; i++ {
		frames = append(frames, srcFrame("192.0.2."+string(rune('0'+i)), 80))
	}
	got = countReasons(t, d, frames...)
	if got[loader.PassSYNAllowed] != 3 || got[loader.DropPortRateLimited] != 3 {
		t.Fatalf("many sources: %v, want 3 passed, 3 port_rate_limited", got)
	}
	// The saturated port sheds new sources without adding them to the table.
	before, _ := maps.CountEntries(d.SrcBuckets)
	run(t, d, srcFrame("203.0.113.200", 80))
	if after, _ := maps.CountEntries(d.SrcBuckets); after != before {
		t.Fatalf("shed SYN inserted a source (%d -> %d entries)", before, after)
	}
	// Another port has its own aggregate budget.
	if got := countReasons(t, d, srcFrame("192.0.2.9", 443)); got[loader.PassSYNAllowed] != 1 {
		t.Fatalf("other port: %v", got)
	}
}

func monotonicNow(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// Clock and overflow safety: a bucket idle for a month refills to the burst
// and no more; a bucket stamped far in the future (a lowered limit, or a
// stale write) is clamped and recovers instead of locking the source out.
func TestLimiterClockEdges(t *testing.T) {
	d := load(t, mustPolicy(t, slowPolicy))
	key := loader.SrcKey{Addr: [4]uint32{0, 0, 0xffff0000, 0x070200c0}} // ::ffff:192.0.2.7 in network order
	month := uint64(30 * 24 * time.Hour)
	now := monotonicNow(t)
	stale := uint64(1)
	if now > month {
		stale = now - month
	}
	if err := d.SrcBuckets.Put(key, loader.SourceState{At: stale}); err != nil {
		t.Fatal(err)
	}
	got := countReasons(t, d, repeat(srcFrame("192.0.2.7", 22), 7)...)
	if got[loader.PassSYNAllowed] != 5 {
		t.Fatalf("after a month idle: %v, want exactly the burst (5) to pass", got)
	}

	future := monotonicNow(t) + 1<<62
	if err := d.SrcBuckets.Put(key, loader.SourceState{At: future}); err != nil {
		t.Fatal(err)
	}
	if got := countReasons(t, d, srcFrame("192.0.2.7", 22)); got[loader.DropRateLimited] != 1 {
		t.Fatalf("future-stamped bucket: %v, want a drop", got)
	}
	var st loader.SourceState
	if err := d.SrcBuckets.Lookup(key, &st); err != nil {
		t.Fatal(err)
	}
	tat := st.At
	limit := uint64(5 * time.Second) // burst 5 at 1/s
	if now := monotonicNow(t); tat > now+limit {
		t.Fatalf("bucket not clamped: %d ns ahead, limit %d", tat-now, limit)
	}
}

// Over real time the limiter passes rate*t + burst, give or take a token for
// the coarse clock's tick.
func TestSourceLimitRefills(t *testing.T) {
	d := load(t, mustPolicy(t, basePolicy+"ratelimit:\n  syn:\n    rate: 100\n    burst: 5\n"))
	f := srcFrame("192.0.2.50", 22)
	if got := countReasons(t, d, repeat(f, 8)...); got[loader.PassSYNAllowed] != 5 {
		t.Fatalf("burst: %v", got)
	}
	time.Sleep(200 * time.Millisecond) // 20 tokens, capped at the burst of 5
	if got := countReasons(t, d, repeat(f, 8)...); got[loader.PassSYNAllowed] != 5 {
		t.Fatalf("after refill: %v, want the burst again", got)
	}
	time.Sleep(50 * time.Millisecond) // 5 tokens
	got := countReasons(t, d, repeat(f, 8)...)
	if n := got[loader.PassSYNAllowed]; n < 4 || n > 5 {
		t.Fatalf("after 50ms at 100/s: %d passed, want 5±1", n)
	}
}
