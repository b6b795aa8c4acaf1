package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"strings"
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

// Flood sends frame(i) for i = 0, 1, ... as fast as it can for d, calling
// during(i) after each send (nil for none). It returns how many it sent and
// for how long.
func (s *RawSender) Flood(t testing.TB, d time.Duration, frame func(i int) []byte, during func(i int)) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	sent := 0
	for time.Since(start) < d {
		if err := s.Send(frame(sent)); err != nil {
			t.Fatalf("send: %v", err)
		}
		sent++
		if during != nil {
			during(sent)
		}
	}
	return sent, time.Since(start)
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
	legit := make(chan string, 1)
	sent, elapsed := tx.Flood(t, 1500*time.Millisecond,
		func(i int) []byte { return l.synFrame(l.CliV4, l.SrvV4, 8080, uint16(10000+i%50000)) },
		func(i int) {
			if i == 2000 {
				go func() { legit <- l.Connect(l.CliV4b, l.SrvV4, 8080) }()
			}
		})
	if got := <-legit; got != "open" {
		t.Errorf("legitimate source during the flood: %s", got)
	}
	after := d.Scrape()
	passed := Delta(before, after, "xdpguard_passed_total", `reason="syn_allowed"`) - 1 // the legitimate connect's SYN
	limited := Delta(before, after, "xdpguard_drops_total", `reason="rate_limited"`)
	max := rate*elapsed.Seconds() + burst + 2
	t.Logf("sent %d SYNs in %v: %v passed (max %.0f), %v rate-limited", sent, elapsed, passed, max, limited)
	if sent < 2000 {
		t.Fatalf("only %d SYNs sent: the flood is too small to prove anything", sent)
	}
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
	time.Sleep(200 * time.Millisecond)
	after := d.Scrape()
	if n := Delta(before, after, "xdpguard_passed_total", `reason="syn_allowed"`); n != 0 {
		t.Errorf("%v crafted SYNs to a closed port passed", n)
	}
	dropped := Delta(before, after, "xdpguard_packets_total")
	for _, r := range []string{"not_ip", "not_tcp", "not_syn"} {
		dropped -= Delta(before, after, "xdpguard_passed_total", `reason="`+r+`"`)
	}
	if want := float64(len(variants) + len(v6variants)); dropped != want {
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
		out := sh(t, "ip", "netns", "exec", l.Client, "nmap", target.flag, "-sS", "-n", "-Pn",
			"-p", "1-1100,7000-9100", "--max-retries", "1", "--max-rtt-timeout", "100ms", "--min-rate", "3000",
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
	sent, elapsed := tx.Flood(t, time.Second, func(i int) []byte {
		// Sources in the benchmarking range, unroutable from the server namespace.
		src := fmt.Sprintf("198.19.%d.%d", i>>8&0xff, i&0xff)
		return l.synFrame(src, l.SrvV4, 8080, uint16(20000+i%40000))
	}, nil)
	after := d.Scrape()
	passed := Delta(before, after, "xdpguard_passed_total", `reason="syn_allowed"`)
	shed := Delta(before, after, "xdpguard_drops_total", `reason="port_rate_limited"`)
	sources := Metric(after, "xdpguard_ratelimit_sources")
	max := rate*elapsed.Seconds() + burst + 2
	t.Logf("%d spoofed SYNs in %v: %v passed (max %.0f), %v shed, %v sources tracked", sent, elapsed, passed, max, shed, sources)
	if sent < 10000 {
		t.Fatalf("only %d SYNs sent", sent)
	}
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
	// A source from the allowed set still connects once the port refills.
	time.Sleep(600 * time.Millisecond)
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8022: "open"})
}

// A source that floods past its SYN rate is banned: even its established
// connection stops; `bans` lists it and `unban` lets it back in.
func TestBanOverVeth(t *testing.T) {
	l, d := startLab(t, "tcp:\n  allow: [8022, 8080]\nratelimit:\n  syn:\n    rate: 5\n    burst: 5\n    ban: 60s\n")
	// An established connection from the future offender.
	var conn net.Conn
	var err error
	l.InNS(l.Client, func() {
		dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(l.CliV4)}, Timeout: time.Second}
		conn, err = dl.Dial("tcp", net.JoinHostPort(l.SrvV4, "8022"))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	tx := l.RawSender()
	tx.Flood(t, 200*time.Millisecond, func(i int) []byte { return l.synFrame(l.CliV4, l.SrvV4, 8080, uint16(20000+i%40000)) }, nil)

	// The established connection is cut: its data no longer gets through.
	_ = conn.SetDeadline(time.Now().Add(700 * time.Millisecond))
	if _, err := conn.Write([]byte("ping\n")); err == nil {
		if _, err := conn.Read(make([]byte, 8)); err == nil {
			t.Error("banned source's established connection still works")
		}
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "filtered"})
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8022: "open"})
	m := d.Scrape()
	if Metric(m, "xdpguard_banned_sources") != 1 || Metric(m, "xdpguard_drops_total", `reason="banned"`) < 1 {
		t.Errorf("ban metrics:\n%s", grep(m, "ban"))
	}

	out := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "bans", "--output", "json")
	var bans []struct{ Source, Remaining string }
	if err := json.Unmarshal([]byte(out), &bans); err != nil || len(bans) != 1 || bans[0].Source != l.CliV4+"/32" {
		t.Fatalf("bans: %v\n%s", err, out)
	}
	out = sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "unban", l.CliV4)
	if !strings.Contains(out, "unbanned "+l.CliV4+"/32") {
		t.Fatalf("unban: %s", out)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "open"})
}

var pingReceived = regexp.MustCompile(`(\d+) received`)

// Echo requests beyond a source's icmp.echo budget are dropped; neighbour
// discovery keeps working (IPv6 connects after the flood of pings).
func TestICMPEchoLimitOverVeth(t *testing.T) {
	_, err := exec.LookPath("ping")
	testutil.Require(t, err, "ping (iputils-ping)")
	l, d := startLab(t, labPolicy+"icmp:\n  echo:\n    rate: 1\n    burst: 3\n")
	for _, dst := range []string{l.SrvV4, l.SrvV6} {
		out, _ := execCombined("ip", "netns", "exec", l.Client, "ping", "-c", "20", "-i", "0.01", "-W", "1", dst)
		m := pingReceived.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("ping %s: %s", dst, out)
		}
		// A burst of 3; at 1/s, the 0.2 s of pings may earn one more.
		if n, _ := strconv.Atoi(m[1]); n < 3 || n > 4 {
			t.Errorf("ping %s: %d of 20 answered, want the burst of 3 (4 at most)\n%s", dst, n, out)
		}
	}
	if v := Metric(d.Scrape(), "xdpguard_drops_total", `reason="icmp_rate_limited"`); v < 30 {
		t.Errorf("icmp_rate_limited drops = %v", v)
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
	for port := uint16(7000); port < 7005; port++ {
		if err := tx.Send(l.synFrame(l.CliV4, l.SrvV4, port, 40000)); err != nil {
			t.Fatal(err)
		}
	}
	sent, elapsed := tx.Flood(t, time.Second, func(i int) []byte { return l.synFrame(l.CliV4b, l.SrvV4, 7777, uint16(10000+i%50000)) }, nil)

	// The daemon writes what the kernel sent; wait for the counters to agree.
	var m string
	var lines []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		m = d.Scrape()
		b, _ := os.ReadFile(path)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		if float64(len(lines)) == Metric(m, "xdpguard_events_written_total") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	max := rate*elapsed.Seconds() + burst + 2
	if n := float64(len(lines)); n < burst || n > max {
		t.Fatalf("%d events for %d drops in %v, want between the burst %d and %.0f", len(lines), sent+5, elapsed, burst, max)
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
	flood := func(d time.Duration) {
		tx.Flood(t, d, func(i int) []byte {
			if i%4 == 0 {
				return l.synFrame(l.CliV4b, l.SrvV4, 7777, uint16(20000+i%40000)) // a closed port
			}
			return l.synFrame(l.CliV4, l.SrvV4, 8080, uint16(20000+i%40000))
		}, nil)
	}
	done := make(chan struct{})
	go func() { flood(2500 * time.Millisecond); close(done) }()
	time.Sleep(300 * time.Millisecond)
	topOut := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "top", "--count", "1", "--interval", "1s", "--output", "json")
	statsOut := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "stats", "--count", "1", "--interval", "500ms", "--output", "json")
	text := sh(t, "ip", "netns", "exec", l.Server, xdpguardBin, "top", "--count", "1", "--interval", "300ms")
	<-done

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
	if len(it.Ports) == 0 || it.Ports[0].Port != 8080 || it.Ports[1].Port != 7777 {
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
