package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/pkg/explain"
)

// explained is the part of `xdpguard explain --output json` the tests read.
type explained struct {
	Verdict, Reason, Rule string
	Effects               []string
	Source                struct {
		Denied, Trusted bool
		Bans            []struct{ Prefix, Origin, Reason string }
		SYN             *struct{ Tokens, Burst uint64 } `json:"syn_bucket"`
	}
}

// explainIn judges a tuple with the engine of `xdpguard explain`, in
// process (the race-checked binary takes seconds a call): the pins are on
// the host-shared bpffs, and program and map ids are the kernel's.
func explainIn(t *testing.T, l *Lab, args ...string) explained {
	t.Helper()
	var q explain.Query
	for i := 0; i+1 < len(args); i += 2 {
		v := args[i+1]
		switch args[i] {
		case "--src":
			q.Src = netip.MustParseAddr(v)
		case "--dst":
			q.Dst = netip.MustParseAddr(v)
		case "--proto":
			q.Proto = v
		case "--dport":
			n, _ := strconv.Atoi(v)
			q.Dport = uint16(n)
		case "--vlan":
			n, _ := strconv.Atoi(v)
			q.VLAN = uint16(n)
		default:
			t.Fatalf("explainIn: %s", args[i])
		}
	}
	res, err := explain.Explain(filepath.Join("/run/xdpguard/bpffs/xdpguard/netns-"+l.Server, l.SrvIf), l.SrvIf, q, 0)
	if err != nil {
		t.Fatalf("explain %v: %v", args, err)
	}
	b, _ := json.Marshal(res)
	var e explained
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// explainCLI is `xdpguard explain --output json` in the server namespace.
func explainCLI(t *testing.T, l *Lab, args ...string) explained {
	t.Helper()
	out := xdpguardIn(t, l, append([]string{"explain", "--output", "json"}, args...)...)
	var e explained
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatalf("explain %v: %v\n%s", args, err, out)
	}
	return e
}

// ping sends one ICMP echo request from src to dst in the client namespace
// and reports whether the reply came back.
func ping(l *Lab, src, dst string) bool {
	_, err := execCombined("ip", "netns", "exec", l.Client, "ping", "-c", "1", "-W", "1", "-I", src, dst)
	return err == nil
}

// The verdict `xdpguard explain` gives a tuple is what the real packet
// then meets: connect() opens or times out, the UDP service answers or
// not, ping is answered or not. IPv4 and IPv6; a port open to all, a
// scoped rule from inside and outside, a monitor-mode rule, a rule that
// expires later and one scheduled for another day, denied, trusted,
// banned (by `xdpguard ban`) and rate-limited sources, a VLAN-tagged
// connection. Explain changes nothing the real packet then meets: each
// source's first real SYN after its explain still finds its bucket as
// explain found it.
func TestExplainMatchesRealTraffic(t *testing.T) {
	l := NewLab(t)
	base4 := strings.TrimSuffix(l.SrvV4, ".1")
	base6 := strings.TrimSuffix(l.SrvV6, "::1")
	addr4 := func(i int) string { return fmt.Sprintf("%s.%d", base4, i) }
	addr6 := func(i int) string { return fmt.Sprintf("%s::%x", base6, i) }
	for i := 10; i <= 20; i++ {
		sh(t, "ip", "netns", "exec", l.Client, "ip", "addr", "add", addr4(i)+"/24", "dev", l.CliIf)
		sh(t, "ip", "netns", "exec", l.Client, "ip", "addr", "add", addr6(i)+"/64", "dev", l.CliIf, "nodad")
	}
	// A VLAN: 802.1Q tag 100 between the two veths, on its own subnet. The
	// client's veth inserts the tag in the frame (no VLAN offload), so the
	// filter sees it. Kernels without 8021q cannot: the VLAN rows are then
	// left out, said in the log (the BPF_PROG_RUN test of pkg/explain
	// judges tagged frames everywhere).
	vlanNet := strings.Replace(base4, "198.18.", "198.20.", 1)
	vlanSrv, vlanCli := vlanNet+".1", vlanNet+".2"
	vlanOK := true
	if out, err := execCombined("ip", "netns", "exec", l.Client, "ip", "link", "add", "link", l.CliIf, "name", "v100", "type", "vlan", "id", "100"); err != nil {
		if !strings.Contains(out, "Unknown device type") {
			t.Fatalf("add a VLAN device: %v\n%s", err, out)
		}
		vlanOK = false
		t.Log("this kernel has no 802.1Q devices (8021q): the VLAN rows are not run over veth")
	}
	if vlanOK {
		sh(t, "ip", "netns", "exec", l.Client, "ethtool", "-K", l.CliIf, "txvlan", "off")
		sh(t, "ip", "netns", "exec", l.Server, "ip", "link", "add", "link", l.SrvIf, "name", "v100", "type", "vlan", "id", "100")
		for _, c := range []struct{ ns, addr string }{{l.Client, vlanCli}, {l.Server, vlanSrv}} {
			sh(t, "ip", "netns", "exec", c.ns, "ip", "addr", "add", c.addr+"/24", "dev", "v100")
			sh(t, "ip", "netns", "exec", c.ns, "ip", "link", "set", "v100", "up")
		}
	}
	l.Listen(8022, 7777, 9000, 8080, 8081)
	udpEcho(t, l, l.Server, "[::]:5353")
	udpEcho(t, l, l.Server, "[::]:1161")
	scoped4, scoped6, denied4, denied6, trusted4, banned4, limited4 := addr4(11), addr6(11), addr4(12), addr6(12), addr4(13), addr4(14), addr4(15)
	other := time.Now().UTC().Add(72 * time.Hour).Weekday().String()[:3]
	l.WritePolicy(fmt.Sprintf(`tcp:
  allow:
    - 8022
    - port: 7777
      from: [%s, "%s"]
    - port: 9000
      name: trial
      from: [10.0.0.0/8]
      mode: monitor
    - port: 8080
      name: temporary
      expires: %s
    - port: 8081
      name: another-day
      schedule: {days: [%s], from: "00:00", to: "24:00"}
ratelimit:
  syn: {rate: 1, burst: 3}
icmp:
  echo: {rate: 100, burst: 100}
udp:
  allow: [5353]
sources:
  deny: [%s, "%s"]
  trust: [%s]
`, scoped4, scoped6, time.Now().Add(time.Hour).UTC().Format(time.RFC3339), strings.ToLower(other), denied4, denied6, trusted4))
	l.StartDaemon()
	xdpguardIn(t, l, "ban", banned4, "--for", "1h", "--reason", "test")

	type tuple struct {
		name, src, proto string
		port             int
		vlan             bool
		want             string // the explained verdict
		reason, rule     string
	}
	connect := func(c tuple) string {
		dst := l.SrvV4
		switch {
		case c.vlan:
			dst = vlanSrv
		case strings.Contains(c.src, ":"):
			dst = l.SrvV6
		}
		switch c.proto {
		case "tcp":
			if l.Connect(c.src, dst, c.port) == "open" {
				return "pass"
			}
		case "udp":
			var conn net.Conn
			var err error
			l.InNS(l.Client, func() {
				d := net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(c.src)}}
				conn, err = d.Dial("udp", net.JoinHostPort(dst, fmt.Sprint(c.port)))
			})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(700 * time.Millisecond))
			buf := make([]byte, 8)
			if _, err := conn.Write([]byte("query")); err == nil {
				if n, err := conn.Read(buf); err == nil && string(buf[:n]) == "query" {
					return "pass"
				}
			}
		case "icmp":
			if ping(l, c.src, dst) {
				return "pass"
			}
		}
		return "drop"
	}
	check := func(c tuple, e explained) {
		t.Helper()
		if e.Verdict != c.want || e.Reason != c.reason || e.Rule != c.rule {
			t.Errorf("%s: explain says %s %s rule %q, want %s %s rule %q", c.name, e.Verdict, e.Reason, e.Rule, c.want, c.reason, c.rule)
		}
		real := connect(c)
		if want := map[string]string{"pass": "pass", "would-drop": "pass", "drop": "drop"}[e.Verdict]; real != want {
			t.Errorf("%s: explain says %s, the real %s then %s", c.name, e.Verdict, c.proto, map[string]string{"pass": "got through", "drop": "did not"}[real])
		}
	}
	args := func(c tuple) []string {
		a := []string{"--src", c.src, "--proto", c.proto}
		if c.port != 0 {
			a = append(a, "--dport", fmt.Sprint(c.port))
		}
		if c.vlan {
			a = append(a, "--vlan", "100", "--dst", vlanSrv)
		}
		return a
	}
	for _, c := range []tuple{
		{"open port, IPv4", addr4(10), "tcp", 8022, false, "pass", "syn_allowed", "tcp/8022"},
		{"open port, IPv6", addr6(10), "tcp", 8022, false, "pass", "syn_allowed", "tcp/8022"},
		{"closed port, IPv6", addr6(10), "tcp", 7777, false, "drop", "port_not_allowed", "tcp/closed"},
		{"scoped rule, inside, IPv4", scoped4, "tcp", 7777, false, "pass", "syn_allowed", "tcp/7777 from " + scoped4 + "/32 +1"},
		{"scoped rule, inside, IPv6", scoped6, "tcp", 7777, false, "pass", "syn_allowed", "tcp/7777 from " + scoped4 + "/32 +1"},
		{"scoped rule, outside", addr4(16), "tcp", 7777, false, "drop", "port_not_allowed", "tcp/closed"},
		{"monitor-mode rule, outside", addr4(16), "tcp", 9000, false, "would-drop", "port_not_allowed", "trial"},
		{"timed rule in force", addr4(17), "tcp", 8080, false, "pass", "syn_allowed", "temporary"},
		{"timed rule scheduled for another day", addr4(17), "tcp", 8081, false, "drop", "port_not_allowed", "tcp/closed"},
		{"denied, IPv4", denied4, "tcp", 8022, false, "drop", "source_denied", "sources/deny"},
		{"denied, IPv6 ping", denied6, "icmp", 0, false, "drop", "source_denied", "sources/deny"},
		{"ping", addr4(18), "icmp", 0, false, "pass", "not_tcp", ""},
		{"banned", banned4, "tcp", 8022, false, "drop", "banned", "tcp/8022"},
		{"banned, UDP to a service", banned4, "udp", 5353, false, "drop", "banned", "udp/5353"},
		{"UDP service", addr6(18), "udp", 5353, false, "pass", "udp_allowed", "udp/5353"},
		{"UDP closed port", addr6(18), "udp", 1161, false, "drop", "udp_port_not_allowed", "udp/closed"},
		{"VLAN, open port", vlanCli, "tcp", 8022, true, "pass", "syn_allowed", "tcp/8022"},
		{"VLAN, closed port", vlanCli, "tcp", 7777, true, "drop", "port_not_allowed", "tcp/closed"},
	} {
		if c.vlan && !vlanOK {
			continue
		}
		explainer := explainIn
		if c.name == "banned" {
			explainer = explainCLI // the command itself, for some rows
		}
		e := explainer(t, l, args(c)...)
		check(c, e)
		switch c.name {
		case "denied, IPv4":
			if !e.Source.Denied {
				t.Errorf("%s: source not shown denied", c.name)
			}
		case "banned":
			if len(e.Source.Bans) != 1 || e.Source.Bans[0].Origin != "cli" || e.Source.Bans[0].Reason != "test" {
				t.Errorf("%s: bans %+v, want the CLI's", c.name, e.Source.Bans)
			}
		}
	}

	// Trusted: past its burst, it still connects.
	for range 4 {
		if got := l.Connect(trusted4, l.SrvV4, 8022); got != "open" {
			t.Fatalf("trusted source: %s", got)
		}
	}
	e := explainIn(t, l, "--src", trusted4, "--proto", "tcp", "--dport", "8022")
	if !e.Source.Trusted {
		t.Error("trusted source not shown trusted")
	}
	check(tuple{"trusted, past its burst", trusted4, "tcp", 8022, false, "pass", "syn_allowed", "tcp/8022"}, e)

	// Explain takes no token: three explains, then the source's burst of
	// three real connections all open, and explain sees the bucket spent.
	for range 3 {
		if e := explainIn(t, l, "--src", addr4(19), "--proto", "tcp", "--dport", "8022"); e.Verdict != "pass" {
			t.Fatalf("a fresh source: %+v", e)
		}
	}
	for i := range 3 {
		if got := l.Connect(addr4(19), l.SrvV4, 8022); got != "open" {
			t.Errorf("real connection %d of a burst of 3 after three explains: %s (explain took a token?)", i+1, got)
		}
	}

	// Rate-limited: while a flood of SYNs from the source keeps its bucket
	// empty, explain says rate_limited and connect() times out. The flood
	// ends once both are done.
	tx := l.RawSender()
	ctx, stop := context.WithCancel(context.Background())
	flooded := make(chan struct{})
	started := make(chan struct{})
	go func() {
		defer close(flooded)
		_, _, _ = tx.FloodUntil(ctx, func(i int) []byte { return l.synFrame(limited4, l.SrvV4, 8022, uint16(20000+i%20000)) },
			func(n int) {
				if n == 100 {
					close(started)
				}
			})
	}()
	<-started
	e = explainCLI(t, l, "--src", limited4, "--proto", "tcp", "--dport", "8022")
	if e.Source.SYN == nil || e.Source.SYN.Tokens != 0 {
		t.Errorf("flooding source: SYN bucket %+v, want empty", e.Source.SYN)
	}
	check(tuple{"rate-limited", limited4, "tcp", 8022, false, "drop", "rate_limited", "tcp/8022"}, e)
	stop()
	<-flooded

	// The text form names the verdict, the reason, the rule and the ban.
	text := xdpguardIn(t, l, "explain", "--src", banned4, "--proto", "tcp", "--dport", "8022")
	t.Logf("explain's text:\n%s", text)
	for _, want := range []string{"verdict:  drop (banned)", "rule:     tcp/8022 (counted as dropped)", "banned: " + banned4 + "/32 until", "origin cli"} {
		if !strings.Contains(text, want) {
			t.Errorf("explain's text lacks %q:\n%s", want, text)
		}
	}
}
