package datapath_test

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/pkg/policy"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

// A rate of 1/s makes refills negligible within a test: every count is exact.
const slowPolicy = basePolicy + "ratelimit:\n  syn:\n    rate: 1\n    burst: 5\n"

func TestSourceLimitHoldsBurst(t *testing.T) {
	d, _ := loadFrozen(t, mustPolicy(t, slowPolicy))
	got := countReasons(t, d, repeat(srcFrame("192.0.2.7", 22), 12)...)
	if got[datapath.PassSYNAllowed] != 5 || got[datapath.DropRateLimited] != 7 {
		t.Fatalf("12 SYNs from one source: %v, want 5 passed and 7 rate_limited", got)
	}
	// Another source has its own budget, on any open port.
	got = countReasons(t, d, repeat(srcFrame("192.0.2.8", 443), 5)...)
	if got[datapath.PassSYNAllowed] != 5 {
		t.Fatalf("second source: %v, want 5 passed", got)
	}
	drops, err := maps.Of(d.Maps).PortDrops(0)
	if err != nil || len(drops) != 1 || drops[0].Port != 22 || drops[0].RateLimited != 7 {
		t.Fatalf("port drops %v (%v), want 7 rate_limited on 22", drops, err)
	}
}

func TestSourceLimitKeysIPv6By64(t *testing.T) {
	d, _ := loadFrozen(t, mustPolicy(t, slowPolicy))
	// Rotating the low 64 bits inside one /64 does not mint new budgets.
	var frames [][]byte
	for i := 1; i <= 8; i++ {
		frames = append(frames, srcFrame("2001:db8:aa:bb::"+string(rune('0'+i)), 22))
	}
	got := countReasons(t, d, frames...)
	if got[datapath.PassSYNAllowed] != 5 || got[datapath.DropRateLimited] != 3 {
		t.Fatalf("one /64: %v, want 5 passed, 3 limited", got)
	}
	got = countReasons(t, d, srcFrame("2001:db8:aa:bc::1", 22))
	if got[datapath.PassSYNAllowed] != 1 {
		t.Fatalf("neighbouring /64: %v, want its own budget", got)
	}
	// An IPv4 source never shares an IPv6 /64's key.
	got = countReasons(t, d, srcFrame("0.0.0.0", 22))
	if got[datapath.PassSYNAllowed] != 1 {
		t.Fatalf("IPv4 0.0.0.0: %v", got)
	}
}

func TestLimiterUntouchedByNonSYNAndClosedPorts(t *testing.T) {
	d, _ := loadFrozen(t, mustPolicy(t, slowPolicy+"  syn_total:\n    rate: 1\n    burst: 5\n"))
	ack := testpkt.NewSYN("192.0.2.9", "198.51.100.1", 22)
	ack.Flags = testpkt.ACK
	for i := 0; i < 20; i++ {
		run(t, d, ack.Bytes())
		run(t, d, srcFrame("192.0.2.10", 8080))
	}
	if n, err := sourceEntries(d); err != nil || n != 0 {
		t.Fatalf("source table has %d entries (%v) after non-SYNs and closed-port SYNs", n, err)
	}
	var tat uint64
	for _, port := range []uint32{22, 8080} {
		if err := d.XdpgPortBuckets.Lookup(port, &tat); err != nil || tat != 0 {
			t.Fatalf("port %d bucket = %d (%v), want untouched", port, tat, err)
		}
	}
}

func TestPortAggregateLimit(t *testing.T) {
	d, _ := loadFrozen(t, mustPolicy(t, basePolicy+"ratelimit:\n  syn:\n    rate: 1\n    burst: 2\n  syn_total:\n    rate: 1\n    burst: 5\n"))
	// One source floods: its own bucket stops it after 2, before it can
	// drain the port's budget.
	got := countReasons(t, d, repeat(srcFrame("192.0.2.1", 80), 10)...)
	if got[datapath.PassSYNAllowed] != 2 || got[datapath.DropRateLimited] != 8 {
		t.Fatalf("single-source flood: %v", got)
	}
	// Spoofed sources share the port's budget of 5: 3 left.
	var frames [][]byte
	for i := 2; i < 8; i++ {
		frames = append(frames, srcFrame("192.0.2."+string(rune('0'+i)), 80))
	}
	got = countReasons(t, d, frames...)
	if got[datapath.PassSYNAllowed] != 3 || got[datapath.DropPortRateLimited] != 3 {
		t.Fatalf("many sources: %v, want 3 passed, 3 port_rate_limited", got)
	}
	// The saturated port sheds new sources without adding them to the table.
	before, _ := sourceEntries(d)
	run(t, d, srcFrame("203.0.113.200", 80))
	if after, _ := sourceEntries(d); after != before {
		t.Fatalf("shed SYN inserted a source (%d -> %d entries)", before, after)
	}
	// Another port has its own aggregate budget.
	if got := countReasons(t, d, srcFrame("192.0.2.9", 443)); got[datapath.PassSYNAllowed] != 1 {
		t.Fatalf("other port: %v", got)
	}
}

// Clock and overflow safety: a bucket idle for a month refills to the burst
// and no more; a bucket stamped far in the future (a lowered limit, or a
// stale write) is clamped and recovers instead of locking the source out.
func TestLimiterClockEdges(t *testing.T) {
	d, now := loadFrozen(t, mustPolicy(t, slowPolicy))
	key := datapath.SrcKey{Addr: [4]uint32{0, 0, 0xffff0000, 0x070200c0}} // ::ffff:192.0.2.7 in network order
	month := uint64(30 * 24 * time.Hour)
	stale := uint64(1)
	if now > month {
		stale = now - month
	}
	if err := d.XdpgSrcBuckets.Put(key, datapath.SourceState{At: stale}); err != nil {
		t.Fatal(err)
	}
	got := countReasons(t, d, repeat(srcFrame("192.0.2.7", 22), 7)...)
	if got[datapath.PassSYNAllowed] != 5 {
		t.Fatalf("after a month idle: %v, want exactly the burst (5) to pass", got)
	}

	future := now + 1<<62
	if err := d.XdpgSrcBuckets.Put(key, datapath.SourceState{At: future}); err != nil {
		t.Fatal(err)
	}
	if got := countReasons(t, d, srcFrame("192.0.2.7", 22)); got[datapath.DropRateLimited] != 1 {
		t.Fatalf("future-stamped bucket: %v, want a drop", got)
	}
	var st datapath.SourceState
	if err := d.XdpgSrcBuckets.Lookup(key, &st); err != nil {
		t.Fatal(err)
	}
	tat := st.At
	limit := uint64(5 * time.Second) // burst 5 at 1/s
	if tat > now+limit {
		t.Fatalf("bucket not clamped: %d ns ahead, limit %d", tat-now, limit)
	}
}

// loadClocked loads pol into the test build of the program, whose clocks the
// test sets, and returns the coarse clock's tick on this host.
func loadClocked(t *testing.T, pol *policy.Policy) (*datapath.Generation, *datapath.TestClock, uint64) {
	t.Helper()
	testutil.RequirePrivileged(t)
	d, clk, err := datapath.LoadDetachedTestClock(pol)
	if err != nil {
		t.Fatalf("load the test-clock build: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	var res unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_MONOTONIC_COARSE, &res); err != nil {
		t.Fatal(err)
	}
	return d, clk, uint64(res.Nano())
}

// loadFrozen loads pol into the test build of the program with time
// standing still at the host's monotonic now (returned): counts of limited
// SYNs are exact however slowly the test runs (in an emulated kernel a
// second can pass between two SYNs).
func loadFrozen(t *testing.T, pol *policy.Policy) (*datapath.Generation, uint64) {
	t.Helper()
	d, clk, tick := loadClocked(t, pol)
	now := datapath.MonotonicNow()
	if err := clk.Set(now, now-now%tick); err != nil {
		t.Fatal(err)
	}
	return d, now
}

// stream sends n copies of frame, one every gap ns from t0, with the coarse
// clock as the kernel shows it (rounded down to a tick), and counts what
// passed.
func stream(t *testing.T, d *datapath.Generation, clk *datapath.TestClock, tick, t0, gap uint64, n int, frame []byte) int {
	t.Helper()
	passed := 0
	for i := 0; i < n; i++ {
		now := t0 + uint64(i)*gap
		if err := clk.Set(now, now-now%tick); err != nil {
			t.Fatal(err)
		}
		ret, err := d.Program.Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatal(err)
		}
		if ret == xdpPass {
			passed++
		}
	}
	return passed
}

// Every accepted rate and burst is honoured, whatever the coarse clock's
// tick: an even stream at 95% of the rate is never refused, and a stream at
// twice the rate passes rate*time + burst within 5%. Each limiter (per
// source, per port, ICMP requests), rates from 1/s to 1,000,000/s, bursts
// down to 1, on timestamps the test controls. On the coarse clock alone,
// burst 1 at 1000/s passed 250/s (one per 4 ms tick).
func TestRatesHonouredAtAnyBurst(t *testing.T) {
	limiters := []struct {
		name, section string
		frame         []byte
	}{
		{"syn", "ratelimit:\n  syn", srcFrame("192.0.2.7", 22)},
		{"syn_total", "ratelimit:\n  syn_total", srcFrame("192.0.2.7", 22)},
		{"icmp.echo", "icmp:\n  echo", icmpFrame("192.0.2.7", 8)},
	}
	rates, bursts := []uint64{1, 10, 250, 1000, 10_000, 100_000, 1_000_000}, []uint64{1, 2, 10, 100}
	if os.Getenv("XDPGUARD_RATES_SHORT") != "" {
		// The kernel matrix (an emulated CPU, a program load per case):
		// the ends and the middle, which the host's run fills in.
		rates, bursts = []uint64{1, 1000, 1_000_000}, []uint64{1, 100}
	}
	for _, lim := range limiters {
		for _, rate := range rates {
			for _, burst := range bursts {
				name := fmt.Sprintf("%s/%d per s/burst %d", lim.name, rate, burst)
				t.Run(name, func(t *testing.T) {
					pol := mustPolicy(t, fmt.Sprintf("%s%s: {rate: %d, burst: %d}\n", basePolicy, lim.section, rate, burst))
					d, clk, tick := loadClocked(t, pol)
					interval := float64(pol.SYN.GCRA().IntervalNs + pol.SYNTotal.GCRA().IntervalNs + pol.ICMPEcho.GCRA().IntervalNs)
					// Enough events that 5% is more than a coarse tick's worth.
					events := max(1000, 10*burst)
					t0 := uint64(1e12) + 1234567 // not on a tick
					// A stream at 95% of the rate: never refused.
					gap := uint64(interval / 0.95)
					if n := stream(t, d, clk, tick, t0, gap, int(events), lim.frame); n != int(events) {
						t.Errorf("a stream at 95%% of the rate: %d of %d passed", n, events)
					}
					// Twice the rate, after the bucket refilled: rate*time + burst.
					t1 := t0 + uint64(events)*gap + uint64(float64(burst+1)*interval) + tick
					gap = uint64(interval / 2)
					n := int(2 * events)
					elapsed := float64(uint64(n-1) * gap)
					want := float64(burst) + elapsed/interval
					got := float64(stream(t, d, clk, tick, t1, gap, n, lim.frame))
					if got < want*0.95 || got > want*1.05+1 {
						t.Errorf("twice the rate for %.0f ns: %.0f passed, want %.0f ±5%% (precise clock: %v)", elapsed, got, want, datapath.NeedsPreciseClock(pol, tick))
					}
				})
			}
		}
	}
	// The case of the issue: burst 1 at 1000/s, a client at 735/s for 4 s.
	pol := mustPolicy(t, basePolicy+"ratelimit:\n  syn: {rate: 1000, burst: 1, ban: 60s}\n")
	d, clk, tick := loadClocked(t, pol)
	if n := stream(t, d, clk, tick, 5e12, uint64(1_000_000_000/735), 2940, srcFrame("192.0.2.8", 22)); n != 2940 {
		t.Errorf("735/s under a 1000/s limit with burst 1: %d of 2940 passed", n)
	}
	if bans, _ := bansOf(d); len(bans) != 0 {
		t.Errorf("a client under its rate was banned: %v", bans)
	}
}

// Refills over (test) time: a drained bucket refills to its burst and no
// more, and half a burst's time earns half the burst.
func TestSourceLimitRefills(t *testing.T) {
	pol := mustPolicy(t, basePolicy+"ratelimit:\n  syn:\n    rate: 100\n    burst: 5\n")
	d, clk, tick := loadClocked(t, pol)
	f := srcFrame("192.0.2.50", 22)
	t0 := uint64(1e12)
	if n := stream(t, d, clk, tick, t0, 1, 8, f); n != 5 {
		t.Fatalf("burst: %d passed, want 5", n)
	}
	t0 += 200e6 // 20 tokens' time, capped at the burst of 5
	if n := stream(t, d, clk, tick, t0, 1, 8, f); n != 5 {
		t.Fatalf("after 200 ms: %d passed, want the burst again", n)
	}
	t0 += 32e6 // 3.2 tokens (8 ticks of 4 ms: the coarse clock moves by ticks)
	if n := stream(t, d, clk, tick, t0, 1, 8, f); n != 3 {
		t.Fatalf("after 32 ms at 100/s: %d passed, want 3", n)
	}
}

// Contention loses nothing: threads on every CPU run the program on one
// source and one port, under limits never reached; no SYN may be refused
// (gcra_take once refused after two lost compare-and-swaps).
func TestLimiterLosesNothingToContention(t *testing.T) {
	d := load(t, mustPolicy(t, basePolicy+"ratelimit:\n  syn: {rate: 10000000, burst: 1000000000}\n  syn_total: {rate: 10000000, burst: 1000000000}\n"))
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	const repeat = 1_000_000
	frame := srcFrame("192.0.2.77", 443)
	var wg sync.WaitGroup
	errs := make(chan error, cpus)
	threads := min(cpus, runtime.NumCPU())
	for cpu := 0; cpu < threads; cpu++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				errs <- err
				return
			}
			_, err := d.Program.Run(&ebpf.RunOptions{Data: frame, Repeat: repeat})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := maps.Of(d.Maps).Reasons()
	if err != nil {
		t.Fatal(err)
	}
	h, err := maps.Of(d.Maps).Health()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d SYNs passed, %d admitted after %d lost compare-and-swaps", got[datapath.PassSYNAllowed], h[datapath.HealthLimiterContended], 8)
	if got[datapath.DropRateLimited] != 0 || got[datapath.DropPortRateLimited] != 0 || got[datapath.PassSYNAllowed] < repeat*uint64(threads) {
		t.Errorf("under limits never reached: %d passed, %d rate_limited, %d port_rate_limited",
			got[datapath.PassSYNAllowed], got[datapath.DropRateLimited], got[datapath.DropPortRateLimited])
	}
}
