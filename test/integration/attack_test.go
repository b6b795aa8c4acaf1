package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

// RawSender sends Ethernet frames out of the client's veth.
type RawSender struct {
	fd      int
	ifindex int
}

func (l *Lab) RawSender() *RawSender {
	s := &RawSender{}
	var err error
	l.InNS(l.Client, func() {
		var ifi int
		if ifi, err = netIfindex(l.CliIf); err != nil {
			return
		}
		s.ifindex = ifi
		proto := int(htons(unix.ETH_P_ALL))
		if s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto); err != nil {
			return
		}
		err = unix.Bind(s.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi})
	})
	if err != nil {
		l.t.Fatalf("raw socket: %v", err)
	}
	l.t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

func (s *RawSender) Send(frame []byte) error {
	return unix.Sendto(s.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: s.ifindex})
}

// FloodUntil sends frame(i) for i = 0, 1, ... as fast as it can until ctx
// ends, calling during(n) after the n-th send (nil for none). It returns
// how many it sent, for how long, and the first send error. Traffic that a
// command or a scrape observes while it runs must be ended by that
// observer (cancel ctx once it is done), never by a duration: on a slower
// or busier machine the observer would sample after the traffic ended.
func (s *RawSender) FloodUntil(ctx context.Context, frame func(i int) []byte, during func(n int)) (int, time.Duration, error) {
	done := ctx.Done()
	start := time.Now()
	sent := 0
	for {
		select {
		case <-done:
			return sent, time.Since(start), nil
		default:
		}
		if err := s.Send(frame(sent)); err != nil {
			return sent, time.Since(start), fmt.Errorf("send: %w", err)
		}
		sent++
		if during != nil {
			during(sent)
		}
	}
}

// Flood is FloodUntil for a fixed time d: only for a burst whose effect is
// checked after it ends, with nothing sampling it meanwhile.
func (s *RawSender) Flood(t testing.TB, d time.Duration, frame func(i int) []byte, during func(i int)) (int, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	sent, elapsed, err := s.FloodUntil(ctx, frame, during)
	if err != nil {
		t.Fatal(err)
	}
	return sent, elapsed
}

// FloodAtLeast floods until it has sent n frames and d has passed: a flood
// whose size the test relies on is bounded by its count, not by how fast
// this machine sends.
func (s *RawSender) FloodAtLeast(t testing.TB, n int, d time.Duration, frame func(i int) []byte) (int, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	sent, elapsed, err := s.FloodUntil(ctx, frame, func(i int) {
		if i >= n && time.Since(start) >= d {
			cancel()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return sent, elapsed
}

// FloodInBackground floods from a goroutine and returns once the first
// warm frames are out, so that whatever observes the flood starts with it
// under way. The flood runs until stop is called (or the test ends); stop
// returns how many frames it sent and for how long.
func (s *RawSender) FloodInBackground(t testing.TB, warm int, frame func(i int) []byte) (stop func() (int, time.Duration)) {
	t.Helper()
	type result struct {
		sent    int
		elapsed time.Duration
		err     error
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	res := make(chan result, 1)
	go func() {
		var r result
		r.sent, r.elapsed, r.err = s.FloodUntil(ctx, frame, func(i int) {
			if i == warm {
				close(started)
			}
		})
		res <- r
	}()
	var once sync.Once
	var r result
	end := func() {
		once.Do(func() {
			cancel()
			r = <-res
		})
	}
	t.Cleanup(end) // before the sender's socket closes: cleanups run last-registered first
	select {
	case <-started:
	case r = <-res:
		once.Do(cancel)
		t.Fatalf("flood ended after %d frames: %v", r.sent, r.err)
	}
	return func() (int, time.Duration) {
		t.Helper()
		end()
		if r.err != nil {
			t.Fatalf("flood: %v", r.err)
		}
		return r.sent, r.elapsed
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// synFrame is a SYN from src to the server, addressed to its MAC.
func (l *Lab) synFrame(src, dst string, dport, sport uint16) []byte {
	f := testpkt.NewSYN(src, dst, dport)
	f.SPort = sport
	copy(f.DstMAC[:], l.SrvMAC)
	copy(f.SrcMAC[:], l.CliMAC)
	return f.Bytes()
}

// A single-source SYN flood passes about rate*time + burst SYNs, while
// another source still connects.
func TestSingleSourceFloodHeldToRate(t *testing.T) {
	const rate, burst = 50, 20
	l, d := startLab(t, fmt.Sprintf("tcp:\n  allow: [8022, 8080]\nratelimit:\n  syn:\n    rate: %d\n    burst: %d\n", rate, burst))
	tx := l.RawSender()
	before := d.Scrape()
	// The flood lasts until the legitimate connect, started 2,000 SYNs
	// in, is over, and at least 1.5 s.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	minimum := time.NewTimer(1500 * time.Millisecond)
	defer minimum.Stop()
	legit := make(chan string, 1)
	start := time.Now()
	sent, elapsed, err := tx.FloodUntil(ctx,
		func(i int) []byte { return l.synFrame(l.CliV4, l.SrvV4, 8080, uint16(10000+i%50000)) },
		func(i int) {
			if i == 2000 {
				go func() {
					legit <- l.ConnectTimeout(l.CliV4b, l.SrvV4, 8080, 3*time.Second)
					<-minimum.C
					cancel()
				}()
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	if got := <-legit; got != "open" {
		t.Errorf("legitimate source during the flood: %s", got)
	}
	judgedSYNs := func(m string) float64 {
		return Delta(before, m, "xdpguard_passed_total", `reason="syn_allowed"`) + Delta(before, m, "xdpguard_drops_total", `reason="rate_limited"`)
	}
	after, judged := d.Settle(float64(sent+1), judgedSYNs)
	// Every SYN counted was judged between the flood's start and judged.
	window := judged.Sub(start)
	passed := Delta(before, after, "xdpguard_passed_total", `reason="syn_allowed"`) - 1 // the legitimate connect's SYN
	limited := Delta(before, after, "xdpguard_drops_total", `reason="rate_limited"`)
	max := rate*window.Seconds() + burst + 2
	t.Logf("sent %d SYNs in %v (judged within %v): %v passed (max %.0f), %v rate-limited", sent, elapsed, window, passed, max, limited)
	if passed < burst || passed > max {
		t.Errorf("flood passed %v SYNs, want between the burst %d and rate*t+burst %.0f", passed, burst, max)
	}
	if passed+limited < float64(sent)*0.99 {
		t.Errorf("passed %v + limited %v is far below %d sent", passed, limited, sent)
	}
}

// Crafted SYNs of every evasive variant, sent over the wire to a port that
// listens but is closed by policy, never open a connection: the server's
// kernel would answer each with a SYN-ACK, so none may reach it.
func TestCraftedSYNsNeverReachClosedPort(t *testing.T) {
	l, d := startLab(t, labPolicy)
	tx := l.RawSender()
	variants := map[string]func(*testpkt.Frame){
		"plain":           func(*testpkt.Frame) {},
		"ip options":      func(f *testpkt.Frame) { f.IPOptions = []byte{1, 1, 1, 0} },
		"ecn":             func(f *testpkt.Frame) { f.Flags |= testpkt.ECE | testpkt.CWR },
		"syn+fin":         func(f *testpkt.Frame) { f.Flags |= testpkt.FIN },
		"payload":         func(f *testpkt.Frame) { f.Payload = []byte("x") },
		"first fragment":  func(f *testpkt.Frame) { f.MoreFrags = true },
		"vlan":            func(f *testpkt.Frame) { f.VLANs = []uint16{testpkt.EtherQ} },
		"tiny first frag": func(f *testpkt.Frame) { f.MoreFrags = true; f.TotLen = 28; f.TruncateTo = 42 },
	}
	v6variants := map[string]func(*testpkt.Frame){
		"v6 plain": func(*testpkt.Frame) {},
		"v6 hbh+dst": func(f *testpkt.Frame) {
			f.Ext = []testpkt.Ext{{Type: testpkt.ExtHopByHop}, {Type: testpkt.ExtDestOpts}}
		},
		"v6 first frag": func(f *testpkt.Frame) { f.Ext = []testpkt.Ext{{Type: testpkt.ExtFragment, More: true}} },
	}
	send := func(src, dst string, name string, mod func(*testpkt.Frame)) {
		f := testpkt.NewSYN(src, dst, 7777)
		copy(f.DstMAC[:], l.SrvMAC)
		copy(f.SrcMAC[:], l.CliMAC)
		mod(&f)
		if err := tx.Send(f.Bytes()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	before := d.Scrape()
	for name, mod := range variants {
		send(l.CliV4, l.SrvV4, name, mod)
	}
	for name, mod := range v6variants {
		send(l.CliV6, l.SrvV6, name, mod)
	}
	// Every packet but those passed as not IP, not TCP or not a SYN: the
	// crafted SYNs, once all are judged.
	judgedSYNs := func(m string) float64 {
		n := Delta(before, m, "xdpguard_packets_total")
		for _, r := range []string{"not_ip", "not_tcp", "not_syn"} {
			n -= Delta(before, m, "xdpguard_passed_total", `reason="`+r+`"`)
		}
		return n
	}
	want := float64(len(variants) + len(v6variants))
	after, _ := d.Settle(want, judgedSYNs)
	if n := Delta(before, after, "xdpguard_passed_total", `reason="syn_allowed"`); n != 0 {
		t.Errorf("%v crafted SYNs to a closed port passed", n)
	}
	dropped := judgedSYNs(after)
	if dropped != want {
		t.Errorf("%v of %v crafted SYNs dropped", dropped, want)
	}
	// And the listener on 7777 accepted nothing: a real connect is filtered.
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered"})
}

var nmapPort = regexp.MustCompile(`(\d+)/(open|closed|filtered)/tcp`)

// A real scanner sees exactly the allowed ports open (or closed when nothing
// listens) and everything else filtered.
func TestNmapSYNScan(t *testing.T) {
	_, err := exec.LookPath("nmap")
	testutil.Require(t, err, "nmap")
	l, _ := startLab(t, labPolicy)
	for _, target := range []struct{ flag, addr string }{{"-4", l.SrvV4}, {"-6", l.SrvV6}} {
		// An answer nmap reads after its timeout makes an open port look
		// filtered: on a busy machine nmap may run late by more than a
		// veth's RTT. At least 300 ms per probe, three probes: the
		// filtered ports cost about half a second more, not the result.
		out := sh(t, "ip", "netns", "exec", l.Client, "nmap", target.flag, "-sS", "-n", "-Pn",
			"-p", "1-1100,7000-9100", "--max-retries", "2", "--min-rtt-timeout", "300ms", "--max-rtt-timeout", "1s", "--min-rate", "3000",
			"-oG", "-", target.addr)
		got := map[string][]int{}
		for _, m := range nmapPort.FindAllStringSubmatch(out, -1) {
			p, _ := strconv.Atoi(m[1])
			got[m[2]] = append(got[m[2]], p)
		}
		for _, v := range got {
			sort.Ints(v)
		}
		if fmt.Sprint(got["open"]) != "[8022 8080]" || fmt.Sprint(got["closed"]) != "[9000 9001 9002]" {
			t.Errorf("nmap %s: open %v closed %v, want open [8022 8080] closed [9000 9001 9002]\n%s", target.flag, got["open"], got["closed"], out)
		}
		ignored := regexp.MustCompile(`Ignored State: filtered \((\d+)\)`).FindStringSubmatch(out)
		total := 1100 + (9100 - 7000 + 1)
		if ignored == nil || ignored[1] != strconv.Itoa(total-5-len(got["filtered"])) {
			t.Errorf("nmap %s: want the other %d ports filtered\n%s", target.flag, total-5, out)
		}
	}
}

// A spoofed-source flood at an open port is held to the port's aggregate
// rate, and SYNs shed there never enter the per-source table.
func TestSpoofedFloodShedByPortAggregate(t *testing.T) {
	const rate, burst = 100, 50
	l, d := startLab(t, fmt.Sprintf("tcp:\n  allow: [8022, 8080]\nratelimit:\n  syn:\n    rate: 10\n    burst: 10\n  syn_total:\n    rate: %d\n    burst: %d\n", rate, burst))
	tx := l.RawSender()
	before := d.Scrape()
	start := time.Now()
	sent, elapsed := tx.FloodAtLeast(t, 10000, time.Second, func(i int) []byte {
		// Sources in the benchmarking range, unroutable from the server namespace.
		src := fmt.Sprintf("198.19.%d.%d", i>>8&0xff, i&0xff)
		return l.synFrame(src, l.SrvV4, 8080, uint16(20000+i%40000))
	})
	after, judged := d.Settle(float64(sent), func(m string) float64 {
		n := Delta(before, m, "xdpguard_passed_total", `reason="syn_allowed"`)
		for _, r := range []string{"port_rate_limited", "rate_limited"} {
			n += Delta(before, m, "xdpguard_drops_total", `reason="`+r+`"`)
		}
		return n
	})
	window := judged.Sub(start) // every SYN counted was judged in it
	passed := Delta(before, after, "xdpguard_passed_total", `reason="syn_allowed"`)
	shed := Delta(before, after, "xdpguard_drops_total", `reason="port_rate_limited"`)
	sources := Metric(after, "xdpguard_ratelimit_sources")
	max := rate*window.Seconds() + burst + 2
	t.Logf("%d spoofed SYNs in %v (judged within %v): %v passed (max %.0f), %v shed, %v sources tracked", sent, elapsed, window, passed, max, shed, sources)
	if passed > max || passed < burst {
		t.Errorf("%v passed, want between %d and %.0f", passed, burst, max)
	}
	if shed < float64(sent)*0.9 {
		t.Errorf("only %v of %d shed by the port aggregate", shed, sent)
	}
	// Only SYNs that got past the port's peek touch the table: about the
	// passed ones, plus the few that lost the race for the port's last token.
	if sources > 2*passed+10 {
		t.Errorf("%v sources tracked for %v passed SYNs: shed SYNs are filling the table", sources, passed)
	}
	// A source from the allowed set still connects: at once to another
	// port (each port has its own budget), and to the flooded one once it
	// refills. Settle saw the last SYN judged, so the bucket refills from
	// then on at the policy's rate: 600 ms is 60 tokens (capped at the
	// burst), well past the one the connect takes.
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8022: "open"})
	time.Sleep(time.Until(judged.Add(600 * time.Millisecond)))
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8080: "open"})
}

// A source that floods past its SYN rate is banned: its new connections
// are filtered while its established one goes on (what a ban stops is in
// docs/datapath.md); `bans` lists it and `unban` lets it connect again.
func TestBanOverVeth(t *testing.T) {
	l, d := startLab(t, "tcp:\n  allow: [8022, 8080]\nratelimit:\n  syn:\n    rate: 5\n    burst: 5\n    ban: 60s\n")
	conn := dialFrom(t, l, l.CliV4, l.SrvV4, 8022) // the future offender's
	tx := l.RawSender()
	// Far more SYNs than the burst: sent by count, then waited on.
	for i := 0; i < 200; i++ {
		if err := tx.Send(l.synFrame(l.CliV4, l.SrvV4, 8080, uint16(20000+i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the offender banned", 10*time.Second, func() bool { return bannedSources(t, l)[l.CliV4+"/32"] })
	if err := echoes(conn); err != nil {
		t.Errorf("the banned source's established connection was cut: %v", err)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "filtered"})
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8022: "open"})
	m := d.Scrape()
	if Metric(m, "xdpguard_banned_sources", `origin="limit"`) != 1 || Metric(m, "xdpguard_drops_total", `reason="banned"`) < 1 {
		t.Errorf("ban metrics:\n%s", grep(m, "ban"))
	}
	out := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "unban", l.CliV4)
	if !strings.Contains(out, "unbanned "+l.CliV4+"/32") {
		t.Fatalf("unban: %s", out)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "open"})
	if b := bannedSources(t, l); len(b) != 0 {
		t.Errorf("bans after unban: %v", b)
	}
}

var pingReceived = regexp.MustCompile(`(\d+) received`)

// Echo requests beyond a source's icmp.echo budget are dropped; neighbour
// discovery keeps working (IPv6 connects after the flood of pings).
func TestICMPEchoLimitOverVeth(t *testing.T) {
	_, err := exec.LookPath("ping")
	testutil.Require(t, err, "ping (iputils-ping)")
	const rate, burst, count = 1, 3, 20
	l, d := startLab(t, labPolicy+fmt.Sprintf("icmp:\n  echo:\n    rate: %d\n    burst: %d\n", rate, burst))
	wantDrops := -2.0 // the slack this check always had
	for _, dst := range []string{l.SrvV4, l.SrvV6} {
		start := time.Now()
		out, _ := execCombined("ip", "netns", "exec", l.Client, "ping", "-c", strconv.Itoa(count), "-i", "0.01", "-W", "1", dst)
		elapsed := time.Since(start) // the pings were all sent and judged within it
		m := pingReceived.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("ping %s: %s", dst, out)
		}
		// The burst of 3; at 1/s, the time the pings took may earn more:
		// one for the usual 0.2 s, more if this machine was slow to send.
		max := burst + int(math.Ceil(rate*elapsed.Seconds()))
		if n, _ := strconv.Atoi(m[1]); n < burst || n > max {
			t.Errorf("ping %s: %d of %d answered in %v, want the burst of %d (%d at most)\n%s", dst, n, count, elapsed, burst, max, out)
		}
		wantDrops += float64(count - max)
	}
	rateLimited := func(m string) float64 { return Metric(m, "xdpguard_drops_total", `reason="icmp_rate_limited"`) }
	if m, _ := d.Settle(wantDrops, rateLimited); rateLimited(m) < wantDrops {
		t.Errorf("icmp_rate_limited drops = %v, want %v at least", rateLimited(m), wantDrops)
	}
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{8080: "open"})
}

// Drop events over the wire: a scan and a flood of closed ports are logged
// as JSON lines, at most the budget; what the budget leaves out is counted.
func TestDropEventsLogOverVeth(t *testing.T) {
	const rate, burst = 20, 10
	l := NewLab(t)
	l.WritePolicy(labPolicy)
	path := filepath.Join(l.dir, "drops.jsonl")
	d := l.StartDaemon("--events", path, "--events-rate", fmt.Sprint(rate), "--events-burst", fmt.Sprint(burst))
	tx := l.RawSender()
	before := d.Scrape()
	start := time.Now()
	for port := uint16(7000); port < 7005; port++ {
		if err := tx.Send(l.synFrame(l.CliV4, l.SrvV4, port, 40000)); err != nil {
			t.Fatal(err)
		}
	}
	sent, elapsed := tx.Flood(t, time.Second, func(i int) []byte { return l.synFrame(l.CliV4b, l.SrvV4, 7777, uint16(10000+i%50000)) }, nil)

	// First the kernel: every drop judged (the budget's window ends with
	// the last one).
	drops := func(m string) float64 {
		return Delta(before, m, "xdpguard_drops_total", `reason="port_not_allowed"`)
	}
	m, judged := d.Settle(float64(sent+5), drops)
	window := judged.Sub(start)
	// Then the daemon: it writes what the kernel sent. Every drop is an
	// event or counted as lost; wait until the events are all written.
	var lines []string
	accounted := func(m string) float64 {
		return Delta(before, m, "xdpguard_events_written_total") +
			Delta(before, m, "xdpguard_events_lost_total", `cause="over_budget"`) +
			Delta(before, m, "xdpguard_events_lost_total", `cause="ring_full"`)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m = d.Scrape()
		b, _ := os.ReadFile(path)
		lines = nil
		if s := strings.TrimSpace(string(b)); s != "" {
			lines = strings.Split(s, "\n")
		}
		if (float64(len(lines)) == Metric(m, "xdpguard_events_written_total") && accounted(m) >= drops(m)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	max := rate*window.Seconds() + burst + 2
	if n := float64(len(lines)); n < burst || n > max {
		t.Fatalf("%d events for %d drops in %v (judged within %v), want between the burst %d and %.0f", len(lines), sent+5, elapsed, window, burst, max)
	}
	if w := Metric(m, "xdpguard_events_written_total"); w != float64(len(lines)) {
		t.Errorf("events_written_total %v, file has %d lines", w, len(lines))
	}
	lost := Metric(m, "xdpguard_events_lost_total", `cause="over_budget"`)
	if lost+float64(len(lines)) < float64(sent) {
		t.Errorf("%v lost + %d logged < %d dropped", lost, len(lines), sent)
	}
	var first struct {
		Time                    time.Time
		Interface, Reason, Rule string
		Source, Proto           string
		DPort                   uint16
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("%v: %s", err, lines[0])
	}
	if first.Interface != l.SrvIf || first.Reason != "port_not_allowed" || first.Source != l.CliV4 || first.Proto != "tcp" ||
		first.DPort != 7000 || first.Rule != "tcp/closed" || time.Since(first.Time) > time.Minute || time.Since(first.Time) < 0 {
		t.Errorf("first event %+v", first)
	}
	d.Stop() // the readers must not hold up a clean exit
}

// `top` and `stats` during a flood: the flooding source leads the
// rate-limited sources, a banned one shows its ban, the scanned closed port
// leads the ports, and rates are per second over the interval.
func TestTopAndStatsDuringFlood(t *testing.T) {
	l, _ := startLab(t, "tcp:\n  allow: [8022, 8080]\nratelimit:\n  syn:\n    rate: 5\n    burst: 5\n")
	tx := l.RawSender()
	// The flood is under way (its first thousand SYNs out) before the
	// first command samples, and lasts until the last one is done.
	stop := tx.FloodInBackground(t, 1000, func(i int) []byte {
		if i%4 == 0 {
			return l.synFrame(l.CliV4b, l.SrvV4, 7777, uint16(20000+i%40000)) // a closed port
		}
		return l.synFrame(l.CliV4, l.SrvV4, 8080, uint16(20000+i%40000))
	})
	topOut := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "top", "--count", "1", "--interval", "1s", "--output", "json")
	statsOut := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "stats", "--count", "1", "--interval", "500ms", "--output", "json")
	text := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "top", "--count", "1", "--interval", "300ms")
	sent, elapsed := stop()
	t.Logf("%d SYNs in %v while top and stats sampled", sent, elapsed)

	type counter struct {
		Total     float64
		PerSecond float64 `json:"per_second"`
	}
	var frame struct {
		Interfaces []struct {
			Interface string
			Dropped   counter
			Drops     map[string]counter
			Ports     []struct {
				Port  int
				Total counter
			}
			Sources []struct {
				Source string
				Drops  counter
			} `json:"rate_limited_sources"`
		}
	}
	if err := json.Unmarshal([]byte(topOut), &frame); err != nil || len(frame.Interfaces) != 1 {
		t.Fatalf("top json: %v\n%s", err, topOut)
	}
	it := frame.Interfaces[0]
	if it.Interface != l.SrvIf || len(it.Sources) == 0 || it.Sources[0].Source != l.CliV4+"/32" || it.Sources[0].Drops.PerSecond < 100 {
		t.Errorf("top: the flooding source should lead the rate-limited sources at over 100/s:\n%s", topOut)
	}
	if len(it.Ports) < 2 || it.Ports[0].Port != 8080 || it.Ports[1].Port != 7777 {
		t.Errorf("top: ports 8080 (rate limited) and 7777 (closed) should lead:\n%s", topOut)
	}
	if err := json.Unmarshal([]byte(statsOut), &frame); err != nil {
		t.Fatalf("stats json: %v\n%s", err, statsOut)
	}
	it = frame.Interfaces[0]
	if it.Drops["rate_limited"].PerSecond < 100 || it.Drops["port_not_allowed"].PerSecond < 30 || it.Dropped.Total < it.Drops["rate_limited"].Total {
		t.Errorf("stats: drop rates during the flood:\n%s", statsOut)
	}
	for _, want := range []string{"RATE-LIMITED SOURCE", l.CliV4 + "/32", "banned source: none", "PORT"} {
		if !strings.Contains(text, want) {
			t.Errorf("top line mode lacks %q:\n%s", want, text)
		}
	}
}
