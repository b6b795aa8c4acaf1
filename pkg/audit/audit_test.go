package audit

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// now is the audits' time: a Thursday.
var now = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)

func parse(t *testing.T, doc string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("policy.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("policy:\n%s\n%v", doc, err)
	}
	return p
}

func listener(proto Proto, port uint16, addr string, uid uint32, process string) Listener {
	return Listener{Proto: proto, Port: port, Addr: netip.MustParseAddr(addr), UID: uid, Process: process}
}

// want is a finding's identity, what the table compares.
type want struct {
	kind    Kind
	sev     Severity
	subject string
}

func identities(fs []Finding) []want {
	var out []want
	for _, f := range fs {
		out = append(out, want{f.Kind, f.Severity, f.Subject})
	}
	return out
}

// input is an audit of doc at now with every socket listed.
func input(t *testing.T, doc string, ls ...Listener) Input {
	t.Helper()
	return Input{Policy: parse(t, doc), Now: now, Listeners: ls, ListedTCP: true, ListedUDP: true}
}

const limits = "ratelimit:\n  syn: {rate: 20, burst: 40}\n"

// checkFinding holds every finding to the API's promises.
func checkFinding(t *testing.T, f Finding) {
	t.Helper()
	if !slices.Contains(Kinds, f.Kind) {
		t.Errorf("%s: kind not in Kinds", f.Kind)
	}
	if f.Severity < Low || f.Severity > High {
		t.Errorf("%s %s: severity %d", f.Kind, f.Subject, f.Severity)
	}
	if f.Subject == "" || f.Message == "" || f.Fix == "" {
		t.Errorf("%s: empty subject, message or fix: %+v", f.Kind, f)
	}
}

func TestCleanPolicyHasNoFinding(t *testing.T) {
	for _, c := range []struct {
		name, doc string
		ls        []Listener
	}{
		{"ipv4", "tcp:\n  allow:\n    - {port: 22, from: [198.51.100.0/24], name: ssh}\n" + limits,
			[]Listener{listener(TCP, 22, "0.0.0.0", 0, "sshd"), listener(TCP, 22, "::", 0, "sshd")}},
		{"ipv6", "tcp:\n  allow:\n    - {port: 22, from: [\"2001:db8:1::/48\", 192.0.2.0/24], name: ssh}\n" + limits,
			[]Listener{listener(TCP, 22, "::", 0, "sshd")}},
		{"udp scoped, loopback listeners", "tcp:\n  allow:\n    - {port: 22, from: [198.51.100.0/24]}\n" + limits +
			"udp:\n  allow:\n    - {port: 161, from: [10.10.0.0/16]}\n",
			[]Listener{listener(TCP, 22, "198.51.100.7", 0, "sshd"), listener(UDP, 161, "0.0.0.0", 0, "snmpd"),
				listener(TCP, 6379, "127.0.0.1", 999, "redis-server"), listener(TCP, 6379, "::1", 999, "redis-server"),
				listener(UDP, 53, "127.0.0.53", 991, "systemd-resolved"), listener(TCP, 5432, "::ffff:127.0.0.1", 70, ""),
				listener(UDP, 45000, "0.0.0.0", 1000, "")}}, // in the reply range
	} {
		t.Run(c.name, func(t *testing.T) {
			in := input(t, c.doc, c.ls...)
			in.Usage = Usage{Since: now.AddDate(0, 0, -90), LastHit: map[string]time.Time{}}
			for _, n := range in.Policy.RuleNames() {
				in.Usage.LastHit[n] = now.Add(-time.Hour)
			}
			if fs := Run(in); len(fs) != 0 {
				t.Errorf("findings for a clean policy:\n%s", dump(fs))
			}
		})
	}
}

func dump(fs []Finding) string {
	b, _ := json.MarshalIndent(fs, "", "  ")
	return string(b)
}

func TestKinds(t *testing.T) {
	type tc struct {
		name string
		in   func(t *testing.T) Input
		want []want
	}
	only := func(sp ...SensitivePort) func(*Input) { return func(in *Input) { in.Sensitive = sp } }
	redis := SensitivePort{TCP, 6379, "redis", High, "no authentication"}
	mysql := SensitivePort{TCP, 3306, "mysql", High, "database login"}
	with := func(doc string, ls []Listener, mods ...func(*Input)) func(t *testing.T) Input {
		return func(t *testing.T) Input {
			in := input(t, doc, ls...)
			for _, m := range mods {
				m(&in)
			}
			return in
		}
	}
	none := func(in *Input) { in.Sensitive = []SensitivePort{} }
	unlisted := func(in *Input) { in.ListedTCP, in.ListedUDP = false, false }
	at := func(t time.Time) func(*Input) { return func(in *Input) { in.Now = t } }
	l := listener
	cases := []tc{
		// sensitive_port_open
		{"sensitive open to all", with("tcp:\n  allow: [6379]\n"+limits, []Listener{l(TCP, 6379, "0.0.0.0", 999, "redis-server")}),
			[]want{{kindSensitivePortOpen, High, "tcp/6379"}}},
		{"ssh open to all is medium", with("tcp:\n  allow: [22]\n"+limits, []Listener{l(TCP, 22, "::", 0, "sshd")}),
			[]want{{kindSensitivePortOpen, Medium, "tcp/22"}}},
		{"sensitive, sockets unknown", with("tcp:\n  allow: [3306]\n"+limits+"udp:\n  allow: []\n", nil, unlisted),
			[]want{{kindSensitivePortOpen, High, "tcp/3306"}}},
		{"sensitive inside an open range", with("tcp:\n  allow: [\"6000-6500\"]\n"+limits, []Listener{l(TCP, 6000, "0.0.0.0", 0, "")}, only(redis)),
			[]want{{kindSensitivePortOpen, High, "tcp/6379"}}},
		{"from 0.0.0.0/0", with("tcp:\n  allow:\n    - {port: 5432, from: [0.0.0.0/0]}\n"+limits, []Listener{l(TCP, 5432, "0.0.0.0", 70, "postgres")}),
			[]want{{kindSensitivePortOpen, High, "tcp/5432"}}},
		{"from ::/0", with("tcp:\n  allow:\n    - {port: 5432, from: [\"::/0\"]}\n"+limits, []Listener{l(TCP, 5432, "::", 70, "postgres")}),
			[]want{{kindSensitivePortOpen, High, "tcp/5432"}}},
		{"from a wide public IPv4 range", with("tcp:\n  allow:\n    - {port: 5432, from: [8.0.0.0/7, 10.0.0.0/8]}\n"+limits, []Listener{l(TCP, 5432, "0.0.0.0", 70, "")}),
			[]want{{kindSensitivePortOpen, High, "tcp/5432"}}},
		{"from a wide public IPv6 range", with("tcp:\n  allow:\n    - {port: 5432, from: [\"2000::/3\"]}\n"+limits, []Listener{l(TCP, 5432, "::", 70, "")}),
			[]want{{kindSensitivePortOpen, High, "tcp/5432"}}},
		{"from private and narrow ranges", with("tcp:\n  allow:\n    - {port: 5432, from: [10.0.0.0/8, \"fc00::/7\", 198.18.0.0/15, 203.0.0.0/16, \"2001:db8::/32\"]}\n"+limits,
			[]Listener{l(TCP, 5432, "0.0.0.0", 70, "")}), nil},
		{"monitor-mode rule", with("tcp:\n  allow:\n    - {port: 6379, from: [10.0.0.0/8], mode: monitor, name: trial}\n"+limits,
			[]Listener{l(TCP, 6379, "0.0.0.0", 999, "")}),
			[]want{{kindSensitivePortOpen, High, "tcp/6379"}, {kindMonitorRule, Low, "trial"}}},
		{"opened by allow_listening", with("tcp:\n  allow_listening: true\n  deny_ports: [11211]\n"+limits,
			[]Listener{l(TCP, 6379, "0.0.0.0", 0, "redis-server")}, only(redis, mysql)),
			[]want{{kindSensitivePortOpen, High, "tcp/6379"}, {kindListeningUnguarded, Low, "tcp/3306"}}},
		{"udp, no udp section", with("tcp:\n  allow:\n    - {port: 22, from: [10.0.0.0/8]}\n",
			[]Listener{l(TCP, 22, "0.0.0.0", 0, ""), l(UDP, 11211, "0.0.0.0", 11, "memcached")}),
			[]want{{kindSensitivePortOpen, High, "udp/11211"}, {kindUDPUnfiltered, Medium, "udp"}}},
		{"udp open to all", with("tcp:\n  allow: []\n  allow_empty: true\nudp:\n  allow: [161]\n",
			[]Listener{l(UDP, 161, "0.0.0.0", 0, "snmpd")}),
			[]want{{kindSensitivePortOpen, High, "udp/161"}}},

		// zombie_port
		{"zombie", with("tcp:\n  allow: [8080]\n"+limits, nil), []want{{kindZombiePort, Medium, "tcp/8080"}}},
		{"sensitive zombie is high, once", with("tcp:\n  allow: [6379]\n"+limits, nil), []want{{kindZombiePort, High, "tcp/6379"}}},
		{"scoped zombie is low", with("tcp:\n  allow:\n    - {port: 8080, from: [10.0.0.0/8]}\n"+limits, nil),
			[]want{{kindZombiePort, Low, "tcp/8080"}}},
		{"udp zombie", with("tcp:\n  allow: []\n  allow_empty: true\nudp:\n  allow: [53]\n", nil), []want{{kindZombiePort, Medium, "udp/53"}}},
		{"loopback listeners serve nothing", with("tcp:\n  allow: [8080]\n"+limits,
			[]Listener{l(TCP, 8080, "127.0.0.1", 0, ""), l(TCP, 8080, "::1", 0, ""), l(TCP, 8080, "::ffff:127.0.0.1", 0, "")}),
			[]want{{kindZombiePort, Medium, "tcp/8080"}}},
		{"specific-address listener serves", with("tcp:\n  allow: [8080]\n"+limits, []Listener{l(TCP, 8080, "2001:db8::5", 0, "")}), nil},
		{"a range with one listener is served", with("tcp:\n  allow: [\"7000-7100\"]\n"+limits, []Listener{l(TCP, 7050, "0.0.0.0", 0, "")}), nil},
		{"a sensitive port in a served range", with("tcp:\n  allow: [\"9000-9100\"]\n"+limits, []Listener{l(TCP, 9050, "0.0.0.0", 0, "")}),
			[]want{{kindSensitivePortOpen, High, "tcp/9042"}}},
		{"no zombie without the socket list", with("tcp:\n  allow: [8080]\n"+limits+"udp:\n  allow: []\n", nil, unlisted), nil},
		{"inactive timed rule is no zombie", with("tcp:\n  allow:\n    - {port: 8080, from: [10.0.0.0/8], schedule: {days: [sat], from: \"09:00\", to: \"10:00\"}}\n"+limits, nil),
			nil},
		{"zombie range holding a sensitive port", with("tcp:\n  allow: [\"6000-6500\"]\n"+limits, nil, only(redis)),
			[]want{{kindZombiePort, High, "tcp/6000-6500"}}},

		// closed_listener
		{"closed listener", with("tcp:\n  allow:\n    - {port: 22, from: [10.0.0.0/8]}\n"+limits,
			[]Listener{l(TCP, 22, "0.0.0.0", 0, "sshd"), l(TCP, 8080, "0.0.0.0", 1000, "python3"), l(TCP, 8080, "::", 1000, "python3")}),
			[]want{{kindClosedListener, Low, "tcp/8080"}}},
		{"closed listener of another user under allow_listening", with("tcp:\n  allow_listening: true\n"+limits,
			[]Listener{l(TCP, 22, "0.0.0.0", 0, "sshd"), l(TCP, 8080, "0.0.0.0", 1000, "python3")}, none),
			[]want{{kindClosedListener, Medium, "tcp/8080"}}},
		{"listening_users opens it", with("tcp:\n  allow_listening: true\n  listening_users: [1000]\n"+limits,
			[]Listener{l(TCP, 8080, "0.0.0.0", 1000, "python3")}, none), nil},
		{"deny_ports closes on purpose", with("tcp:\n  allow: [22]\n  allow_listening: true\n  deny_ports: [6379]\n"+limits,
			[]Listener{l(TCP, 22, "0.0.0.0", 0, ""), l(TCP, 6379, "0.0.0.0", 0, "redis-server")}, none), nil},
		{"udp closed listener; the reply range is reachable", with("tcp:\n  allow: []\n  allow_empty: true\nudp:\n  allow: []\n",
			[]Listener{l(UDP, 5000, "0.0.0.0", 0, ""), l(UDP, 45000, "::", 0, "")}),
			[]want{{kindClosedListener, Low, "udp/5000"}}},
		{"udp replies: none", with("tcp:\n  allow: []\n  allow_empty: true\nudp:\n  allow: []\n  replies: none\n",
			[]Listener{l(UDP, 45000, "::", 0, "")}),
			[]want{{kindClosedListener, Low, "udp/45000"}}},
		{"udp reply range given", func(t *testing.T) Input {
			in := input(t, "tcp:\n  allow: []\n  allow_empty: true\nudp:\n  allow: []\n", l(UDP, 45000, "::", 0, ""), l(UDP, 20000, "::", 0, ""))
			in.Ephemeral = policy.PortRange{First: 20000, Last: 30000}
			return in
		}, []want{{kindClosedListener, Low, "udp/45000"}}},
		{"a timed rule opens at times", with("tcp:\n  allow:\n    - {port: 8080, from: [10.0.0.0/8], schedule: {days: [sat], from: \"09:00\", to: \"10:00\"}}\n"+limits,
			[]Listener{l(TCP, 8080, "0.0.0.0", 0, "")}), nil},

		// scope_bypassed, listening_unguarded
		{"scope bypassed", with("tcp:\n  allow:\n    - {port: 8443, from: [10.0.0.0/8]}\n  allow_listening: true\n"+limits,
			[]Listener{l(TCP, 8443, "0.0.0.0", 0, "")}, none),
			[]want{{kindScopeBypassed, Medium, "tcp/8443"}}},
		{"sensitive scope bypassed: one finding", with("tcp:\n  allow:\n    - {port: 6379, from: [10.0.0.0/8]}\n  allow_listening: true\n"+limits,
			[]Listener{l(TCP, 6379, "0.0.0.0", 0, "")}, only(redis)),
			[]want{{kindSensitivePortOpen, High, "tcp/6379"}}},
		{"listening unguarded", with("tcp:\n  allow:\n    - {ports: 8443-8444, from: [10.0.0.0/8]}\n  allow_listening: true\n"+limits,
			[]Listener{l(TCP, 8443, "10.0.0.1", 1000, "")}, only(redis, mysql)),
			[]want{{kindListeningUnguarded, Low, "tcp/3306,6379,8443-8444"}}},
		{"listening guarded", with("tcp:\n  allow: [22]\n  allow_listening: true\n  deny_ports: [3306, 6379]\n"+limits,
			[]Listener{l(TCP, 22, "0.0.0.0", 0, "")}, only(redis, mysql)), nil},

		// unlimited_open_port
		{"unlimited", with("tcp:\n  allow: [80, 443, {port: 8443, from: [\"::/0\"]}, {port: 9000, from: [10.0.0.0/8]}]\n  allow_listening: true\n",
			[]Listener{l(TCP, 80, "0.0.0.0", 33, ""), l(TCP, 443, "::", 33, ""), l(TCP, 8443, "::", 1000, ""), l(TCP, 9000, "::", 1000, ""), l(TCP, 8080, "::", 0, "")}, none),
			[]want{{kindUnlimitedOpenPort, Medium, "tcp/80,443,8080,8443"}, {kindListeningUnguarded, Low, "tcp/9000"}}},
		{"syn_total is no per-source limit", with("tcp:\n  allow: [80]\nratelimit:\n  syn_total: {rate: 1000, burst: 1000}\n",
			[]Listener{l(TCP, 80, "0.0.0.0", 33, "")}), []want{{kindUnlimitedOpenPort, Medium, "tcp/80"}}},
		{"scoped ports need no limit", with("tcp:\n  allow:\n    - {port: 9000, from: [10.0.0.0/8]}\n", []Listener{l(TCP, 9000, "::", 0, "")}), nil},

		// udp_unfiltered
		{"udp unfiltered, sockets unknown", with("tcp:\n  allow:\n    - {port: 22, from: [10.0.0.0/8]}\n", nil, unlisted),
			[]want{{kindUDPUnfiltered, Low, "udp"}}},
		{"udp unfiltered, a listener", with("tcp:\n  allow:\n    - {port: 22, from: [10.0.0.0/8]}\n",
			[]Listener{l(TCP, 22, "0.0.0.0", 0, ""), l(UDP, 51820, "0.0.0.0", 0, "")}),
			[]want{{kindUDPUnfiltered, Medium, "udp"}}},

		// wide_trust
		{"wide trust", with("tcp:\n  allow: []\n  allow_empty: true\nsources:\n  trust: [0.0.0.0/0, \"::/0\"]\n", nil),
			[]want{{kindWideTrust, High, "0.0.0.0/0"}, {kindWideTrust, High, "::/0"}}},
		{"wide public trust", with("tcp:\n  allow: []\n  allow_empty: true\nsources:\n  trust: [8.0.0.0/7, 64.0.0.0/15, \"2400::/31\", \"2800::/5\"]\n", nil),
			[]want{{kindWideTrust, Medium, "8.0.0.0/7"}, {kindWideTrust, Medium, "64.0.0.0/15"}, {kindWideTrust, Medium, "2400::/31"}, {kindWideTrust, Medium, "2800::/5"}}},
		{"narrow or private trust", with("tcp:\n  allow: []\n  allow_empty: true\nsources:\n  trust: [10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12, 198.18.0.0/15, 240.0.0.0/4, 64.0.0.0/16, \"fc00::/7\", \"fe80::/10\", \"2001:db8::/32\", \"3fff::/20\", \"2400::/32\"]\n", nil),
			nil},
		{"wide trust threshold", with("tcp:\n  allow: []\n  allow_empty: true\nsources:\n  trust: [64.0.0.0/16, \"2400::/40\"]\n", nil,
			func(in *Input) { in.Thresholds = Thresholds{WideIPv4Bits: 20, WideIPv6Bits: 48} }),
			[]want{{kindWideTrust, Medium, "64.0.0.0/16"}, {kindWideTrust, Medium, "2400::/40"}}},

		// monitor_mode, monitor_rule
		{"monitor mode", with("mode: monitor\ntcp:\n  allow:\n    - {port: 22, from: [10.0.0.0/8]}\n", []Listener{l(TCP, 22, "::", 0, "")}),
			[]want{{kindMonitorMode, Medium, "mode"}}},
		{"monitor rule", with("tcp:\n  allow:\n    - {port: 8080, from: [10.0.0.0/8], mode: monitor}\n"+limits, []Listener{l(TCP, 8080, "::", 0, "")}),
			[]want{{kindMonitorRule, Low, "tcp/8080 from 10.0.0.0/8"}}},

		// expired_rule, never_applies, shadowed_rule
		{"expired", with("tcp:\n  allow:\n    - {port: 8080, from: [10.0.0.0/8], expires: 2099-01-01T00:00:00Z, name: test-team}\n"+limits,
			[]Listener{l(TCP, 8080, "::", 0, "")}, at(now.Add(time.Hour))),
			[]want{{kindExpiredRule, Medium, "test-team"}, {kindClosedListener, Low, "tcp/8080"}}},
		{"expired open-to-all timed rule", with("tcp:\n  allow:\n    - {port: 8080, expires: 2099-01-01T00:00:00Z}\n"+limits, nil, at(now)),
			[]want{{kindExpiredRule, Medium, "tcp/8080"}}},
		{"expires before its schedule opens", with("tcp:\n  allow:\n    - {port: 8080, from: [10.0.0.0/8], name: weekend, expires: 2099-01-02T00:00:00Z, schedule: {days: [sat], from: \"09:00\", to: \"10:00\"}}\n"+limits,
			nil, unlisted),
			[]want{{kindNeverApplies, Low, "weekend"}, {kindUDPUnfiltered, Low, "udp"}}},
		{"expires in its window", with("tcp:\n  allow:\n    - {port: 8080, from: [10.0.0.0/8], name: weekend, expires: 2099-01-03T09:45:00Z, schedule: {days: [sat], from: \"09:00\", to: \"10:00\"}}\n"+limits+"udp:\n  allow: []\n",
			nil, unlisted), nil},
		{"expires in its window, in its zone", with("tcp:\n  allow:\n    - {port: 8080, from: [10.0.0.0/8], name: weekend, expires: 2099-01-03T02:30:00Z, schedule: {days: [sat], from: \"09:00\", to: \"10:00\", tz: Asia/Shanghai}}\n"+limits+"udp:\n  allow: []\n",
			nil, unlisted), nil},
		{"expires before its window, in its zone", with("tcp:\n  allow:\n    - {port: 8080, from: [10.0.0.0/8], name: weekend, expires: 2099-01-03T00:30:00Z, schedule: {days: [sat], from: \"09:00\", to: \"10:00\", tz: Asia/Shanghai}}\n"+limits+"udp:\n  allow: []\n",
			nil, unlisted), []want{{kindNeverApplies, Low, "weekend"}}},
		{"every source denied", with("tcp:\n  allow:\n    - {port: 8080, from: [203.0.113.0/25, \"2001:db8:1::/48\"], name: partner}\n"+limits+
			"sources:\n  deny: [203.0.113.0/24, \"2001:db8::/32\"]\n", []Listener{l(TCP, 8080, "::", 0, "")}),
			[]want{{kindClosedListener, Low, "tcp/8080"}, {kindNeverApplies, Low, "partner"}}},
		{"some sources denied", with("tcp:\n  allow:\n    - {port: 8080, from: [203.0.113.0/25, \"2001:db9::/48\"], name: partner}\n"+limits+
			"sources:\n  deny: [203.0.113.0/24, \"2001:db8::/32\"]\n", []Listener{l(TCP, 8080, "::", 0, "")}), nil},
		{"shadowed", with("tcp:\n  allow: [22, {port: 22, from: [10.0.0.0/8], name: admin}]\n"+limits, []Listener{l(TCP, 22, "::", 0, "")}, none),
			[]want{{kindShadowedRule, Low, "admin"}}},
		{"shadowed by a range, timed", with("tcp:\n  allow: [\"8000-8100\", {port: 8080, schedule: {days: [mon-fri], from: \"09:00\", to: \"18:00\"}, name: office}]\n"+limits,
			[]Listener{l(TCP, 8080, "::", 0, "")}, none),
			[]want{{kindShadowedRule, Low, "office"}}},
		{"udp shadowed", with("tcp:\n  allow: []\n  allow_empty: true\nudp:\n  allow: [53, {port: 53, from: [10.0.0.0/8], name: dns-internal}]\n", []Listener{l(UDP, 53, "::", 0, "")}, none),
			[]want{{kindShadowedRule, Low, "dns-internal"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := Run(c.in(t))
			for _, f := range fs {
				checkFinding(t, f)
			}
			if got := identities(fs); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v\nwant %v\n%s", got, c.want, dump(fs))
			}
		})
	}
}

func TestNeverAppliesOnABuiltSchedule(t *testing.T) {
	p := parse(t, "tcp:\n  allow:\n    - {port: 8080, from: [10.0.0.0/8], name: a}\n    - {port: 8081, from: [10.0.0.0/8], name: b}\n"+limits)
	p.Scoped[0].Schedule = &policy.Schedule{From: 60, To: 120}                                 // no days
	p.Scoped[1].Schedule = &policy.Schedule{Days: [7]bool{true}, From: 600, To: 600, Loc: nil} // empty window
	fs := Run(Input{Policy: p, Now: now, Sensitive: []SensitivePort{}})
	want := []want{{kindNeverApplies, Low, "a"}, {kindNeverApplies, Low, "b"}, {kindUDPUnfiltered, Low, "udp"}}
	if got := identities(fs); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v\n%s", got, want, dump(fs))
	}
}

func TestUnusedRule(t *testing.T) {
	doc := "tcp:\n  allow:\n    - {port: 8443, from: [10.0.0.0/8], name: partner}\n    - {port: 8444, from: [10.0.0.0/8], name: partner}\n" + limits
	ls := []Listener{listener(TCP, 8443, "::", 0, ""), listener(TCP, 8444, "::", 0, "")}
	day := 24 * time.Hour
	for _, c := range []struct {
		name  string
		usage Usage
		th    Thresholds
		want  bool
	}{
		{"never hit in 40 days", Usage{Since: now.Add(-40 * day)}, Thresholds{}, true},
		{"last hit 35 days ago", Usage{Since: now.Add(-90 * day), LastHit: map[string]time.Time{"partner": now.Add(-35 * day)}}, Thresholds{}, true},
		{"hit yesterday", Usage{Since: now.Add(-90 * day), LastHit: map[string]time.Time{"partner": now.Add(-day)}}, Thresholds{}, false},
		{"observed 10 days only", Usage{Since: now.Add(-10 * day)}, Thresholds{}, false},
		{"added 5 days ago", Usage{Since: now.Add(-90 * day), FirstSeen: map[string]time.Time{"partner": now.Add(-5 * day)}}, Thresholds{}, false},
		{"no record", Usage{}, Thresholds{}, false},
		{"shorter threshold", Usage{Since: now.Add(-10 * day)}, Thresholds{UnusedFor: 7 * day}, true},
		{"hits of another rule", Usage{Since: now.Add(-40 * day), LastHit: map[string]time.Time{"tcp/8443": now}}, Thresholds{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := input(t, doc, ls...)
			in.Usage, in.Thresholds = c.usage, c.th
			fs := Run(in)
			var expect []want
			if c.want {
				expect = []want{{kindUnusedRule, Low, "partner"}}
			}
			if got := identities(fs); !reflect.DeepEqual(got, expect) {
				t.Errorf("got %v, want %v\n%s", got, expect, dump(fs))
			}
			if c.want && !strings.Contains(fs[0].Fix, "`"+`{port: 8443, from: ["10.0.0.0/8"], name: "partner"}`+"`, `"+
				`{port: 8444, from: ["10.0.0.0/8"], name: "partner"}`+"`") {
				t.Errorf("fix names not both rules of the name: %s", fs[0].Fix)
			}
		})
	}
	// Dead and shadowed rules have their own findings.
	in := input(t, "tcp:\n  allow: [22, {port: 22, from: [10.0.0.0/8], name: admin}, {port: 8080, from: [10.0.0.0/8], expires: 2099-01-01T00:00:00Z, name: gone}]\n"+limits,
		listener(TCP, 22, "::", 0, ""))
	in.Now, in.Usage, in.Sensitive = now.Add(time.Hour), Usage{Since: now.Add(-90 * day), LastHit: map[string]time.Time{"tcp/22": now}}, []SensitivePort{}
	want := []want{{kindExpiredRule, Medium, "gone"}, {kindShadowedRule, Low, "admin"}}
	if got := identities(Run(in)); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestWideTrustFromAList(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "partners.netset")
	if err := os.WriteFile(list, []byte("# partners\n8.0.0.0/7\n192.0.2.10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := parse(t, "tcp:\n  allow: []\n  allow_empty: true\nsources:\n  trust: [\"::/0\"]\n  trust_lists: ["+list+"]\n")
	fs := Run(Input{Policy: p, Now: now, ListedUDP: true})
	want := []want{{kindWideTrust, High, "::/0"}, {kindWideTrust, Medium, "8.0.0.0/7"}}
	if got := identities(fs); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v\n%s", got, want, dump(fs))
	}
	if !strings.Contains(fs[1].Message, "a trust list ("+list+")") || !strings.Contains(fs[1].Fix, "trust list") {
		t.Errorf("the list is not named: %+v", fs[1])
	}
	if !strings.Contains(fs[0].Fix, `in sources.trust, replace "::/0"`) {
		t.Errorf("the inline entry is not named: %+v", fs[0])
	}
}

// messy is a policy with most kinds of finding, and its sockets.
func messy(t *testing.T) Input {
	in := input(t, `mode: monitor
tcp:
  allow:
    - 22
    - "6000-6500"
    - 8080
    - {port: 22, from: [10.0.0.0/8], name: admin}
    - {port: 5432, from: ["::/0", 10.0.0.0/8], name: db}
    - {port: 8443, from: [10.0.0.0/8], mode: monitor, name: trial}
    - {port: 9000, from: ["2001:db8:1::/48"], name: denied}
  allow_listening: true
  deny_ports: [11211]
udp:
  allow: [53, 11211]
sources:
  deny: ["2001:db8::/32"]
  trust: [0.0.0.0/0, "2400::/12", "2a00:1450::/32"]
`,
		listener(TCP, 22, "0.0.0.0", 0, "sshd"), listener(TCP, 22, "::", 0, "sshd"),
		listener(TCP, 5432, "::", 70, "postgres"), listener(TCP, 3000, "0.0.0.0", 0, "grafana"),
		listener(TCP, 4000, "::", 1000, "node"), listener(TCP, 6379, "127.0.0.1", 999, "redis-server"),
		listener(UDP, 11211, "0.0.0.0", 11, "memcached"), listener(UDP, 5000, "0.0.0.0", 0, ""),
		listener(TCP, 11211, "0.0.0.0", 11, "memcached"))
	in.Usage = Usage{Since: now.AddDate(0, 0, -60), LastHit: map[string]time.Time{"tcp/22": now}}
	return in
}

func TestDeterministic(t *testing.T) {
	in := messy(t)
	first := Run(in)
	if len(first) < 10 {
		t.Fatalf("the messy policy gives only %d findings:\n%s", len(first), dump(first))
	}
	kinds := map[Kind]bool{}
	for _, f := range first {
		checkFinding(t, f)
		kinds[f.Kind] = true
	}
	t.Logf("%d findings of %d kinds", len(first), len(kinds))
	if !slices.IsSortedFunc(first, func(x, y Finding) int {
		if x.Severity != y.Severity {
			return int(y.Severity - x.Severity)
		}
		if x.Kind != y.Kind {
			return strings.Compare(string(x.Kind), string(y.Kind))
		}
		return naturalCompare(x.Subject, y.Subject)
	}) {
		t.Errorf("not sorted:\n%s", dump(first))
	}
	firstJSON, _ := json.Marshal(first)
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		in := messy(t)
		r.Shuffle(len(in.Listeners), func(i, j int) { in.Listeners[i], in.Listeners[j] = in.Listeners[j], in.Listeners[i] })
		in.Listeners = append(in.Listeners, in.Listeners[0]) // a socket listed twice
		got, _ := json.Marshal(Run(in))
		if string(got) != string(firstJSON) {
			t.Fatalf("another order of the same input gives other findings:\n%s\nvs\n%s", got, firstJSON)
		}
	}
	if !reflect.DeepEqual(Run(messy(t)), first) {
		t.Error("a second run differs")
	}
}

func TestMessyPolicy(t *testing.T) {
	fs := Run(messy(t))
	want := []want{
		{kindSensitivePortOpen, High, "tcp/5432"}, // from ::/0
		{kindSensitivePortOpen, High, "udp/11211"},
		{kindWideTrust, High, "0.0.0.0/0"},
		{kindZombiePort, High, "tcp/6000-6500"},  // holds 6379 and 6443; the redis listener is on loopback
		{kindClosedListener, Medium, "tcp/4000"}, // uid 1000, not in listening_users
		{kindMonitorMode, Medium, "mode"},
		{kindSensitivePortOpen, Medium, "tcp/22"},
		{kindUnlimitedOpenPort, Medium, "tcp/22,3000,5432,6000-6500,8080,8443"}, // 3000: allow_listening; 8443: monitor
		{kindWideTrust, Medium, "2400::/12"},
		{kindZombiePort, Medium, "tcp/8080"},
		{kindZombiePort, Medium, "tcp/8443"},
		{kindZombiePort, Medium, "udp/53"},
		{kindClosedListener, Low, "udp/5000"}, // tcp/11211 is in deny_ports: closed on purpose
		{kindListeningUnguarded, Low, "tcp/23,111,135,139,445,1433,1521,2049,2375,2379-2380,3306,3389,5432,5900,5984,9042,9200,9300,10250,10255,27017"},
		{kindMonitorRule, Low, "trial"},
		{kindNeverApplies, Low, "denied"},
		{kindShadowedRule, Low, "admin"},
		{kindUnusedRule, Low, "db"},
		{kindUnusedRule, Low, "tcp/6000-6500"},
		{kindUnusedRule, Low, "tcp/8080"},
		{kindUnusedRule, Low, "trial"},
		{kindUnusedRule, Low, "udp/53"},
		{kindUnusedRule, Low, "udp/11211"},
	}
	if got := identities(fs); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v\n%s", got, want, dump(fs))
	}
}

func TestWide(t *testing.T) {
	th := Thresholds{WideIPv4Bits: defaultWideIPv4Bits, WideIPv6Bits: defaultWideIPv6Bits}
	for _, c := range []struct {
		prefix string
		wide   bool
	}{
		{"0.0.0.0/0", true}, {"::/0", true}, {"0.0.0.0/1", true}, {"8.0.0.0/7", true}, {"64.0.0.0/15", true},
		{"64.0.0.0/16", false}, {"64.1.2.0/24", false},
		{"10.0.0.0/8", false}, {"100.64.0.0/10", false}, {"127.0.0.0/8", false}, {"172.16.0.0/12", false},
		{"172.0.0.0/8", true}, // holds 172.16.0.0/12, and public space
		{"198.18.0.0/15", false}, {"224.0.0.0/4", false}, {"240.0.0.0/4", false}, {"0.0.0.0/8", false},
		{"2000::/3", true}, {"2400::/31", true}, {"2400::/32", false}, {"2001:db8::/32", false},
		{"fc00::/7", false}, {"fd00::/8", false}, {"fe80::/10", false}, {"ff00::/8", false},
		{"3fff::/20", false}, {"5f00::/16", false}, {"2002::/16", true}, {"2001::/23", true},
		{"8000::/1", true},
	} {
		if got := th.wide(netip.MustParsePrefix(c.prefix)); got != c.wide {
			t.Errorf("wide(%s) = %v, want %v", c.prefix, got, c.wide)
		}
	}
}

// TestNotPublicAgreesWithNetip holds the registry table to netip's own
// predicates: every block netip knows is in it, and each block of it
// that netip knows is classed the same.
func TestNotPublicAgreesWithNetip(t *testing.T) {
	if !slices.IsSortedFunc(notPublic, comparePrefix) || nested(notPublic) {
		t.Fatal("notPublic must be sorted and not nested")
	}
	special := func(a netip.Addr) bool {
		return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
			a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified()
	}
	for _, s := range []string{
		"10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "127.0.0.1", "127.255.0.1", "169.254.1.1",
		"224.0.0.1", "239.1.1.1", "0.0.0.0", "fc00::1", "fdff::1", "::1", "::", "fe80::1", "febf::1", "ff02::1", "ff0e::1",
	} {
		a := netip.MustParseAddr(s)
		if !special(a) {
			t.Fatalf("netip does not class %s as special", s)
		}
		if isPublic(netip.PrefixFrom(a, a.BitLen())) {
			t.Errorf("%s: netip says it is not public (private, loopback, link-local, multicast or unspecified); notPublic misses it", s)
		}
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "172.32.0.1", "192.169.0.1", "2606:4700::1111", "2a00:1450::1"} {
		a := netip.MustParseAddr(s)
		if special(a) || !isPublic(netip.PrefixFrom(a, a.BitLen())) {
			t.Errorf("%s is public", s)
		}
	}
	for _, b := range notPublic {
		if a := b.Addr(); a.IsGlobalUnicast() && !a.IsPrivate() {
			// The registries' blocks netip has no predicate for: not private, yet not global either.
			switch b.String() {
			case "100.64.0.0/10", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
				"64:ff9b:1::/48", "100::/64", "2001:db8::/32", "3fff::/20", "5f00::/16":
			default:
				t.Errorf("%s: netip calls it global unicast; is it in the registry as not globally reachable?", b)
			}
		}
	}
}

func TestSeverity(t *testing.T) {
	for _, s := range []string{"low", "medium", "high", " HIGH "} {
		v, err := ParseSeverity(s)
		if err != nil || !strings.EqualFold(v.String(), strings.TrimSpace(s)) {
			t.Errorf("ParseSeverity(%q) = %v, %v", s, v, err)
		}
	}
	for _, s := range []string{"", "none", "critical", "2"} {
		if _, err := ParseSeverity(s); err == nil {
			t.Errorf("ParseSeverity(%q) accepted", s)
		}
	}
	if Worst(nil) != None || None >= Low {
		t.Error("no findings must be below every threshold")
	}
	fs := []Finding{{Severity: Low}, {Severity: High}, {Severity: Medium}}
	if Worst(fs) != High || Worst(fs[:1]) != Low {
		t.Error("Worst")
	}
	b, err := json.Marshal(Finding{Kind: kindZombiePort, Severity: Medium, Subject: "tcp/80", Message: "m", Fix: "f"})
	if err != nil || string(b) != `{"kind":"zombie_port","severity":"medium","subject":"tcp/80","message":"m","fix":"f"}` {
		t.Errorf("JSON: %s, %v", b, err)
	}
	var f Finding
	if err := json.Unmarshal(b, &f); err != nil || f.Severity != Medium {
		t.Errorf("JSON back: %+v, %v", f, err)
	}
	if _, err := json.Marshal(Severity(7)); err == nil {
		t.Error("an unknown severity marshalled")
	}
}

func TestNaturalCompare(t *testing.T) {
	sorted := []string{"0.0.0.0/0", "9.0.0.0/8", "10.0.0.0/8", "tcp/7", "tcp/007", "tcp/22", "tcp/22,80", "tcp/443", "tcp/3306", "tcp/9000-9002", "udp", "udp/53"}
	shuffled := slices.Clone(sorted)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	slices.SortFunc(shuffled, naturalCompare)
	if !slices.Equal(shuffled, sorted) {
		t.Errorf("got %q", shuffled)
	}
}

func TestDefaultSensitivePorts(t *testing.T) {
	if !slices.IsSortedFunc(DefaultSensitivePorts, func(x, y SensitivePort) int {
		return comparePortKey(portKey{x.Proto, x.Port}, portKey{y.Proto, y.Port})
	}) {
		t.Error("not sorted by protocol, then port")
	}
	seen := map[portKey]bool{}
	for _, s := range DefaultSensitivePorts {
		k := portKey{s.Proto, s.Port}
		if seen[k] || s.Name == "" || s.Why == "" || s.Severity < Low || s.Severity > High || (s.Proto != TCP && s.Proto != UDP) {
			t.Errorf("bad entry %+v", s)
		}
		seen[k] = true
	}
	for _, p := range []uint16{22, 23, 135, 139, 445, 2375, 2379, 3306, 3389, 5432, 5900, 5984, 6379, 9042, 9200, 10250, 11211, 27017} {
		if !seen[portKey{TCP, p}] {
			t.Errorf("tcp/%d missing", p)
		}
	}
}

// TestItemRoundTrips: the rules fixes quote are the rules the file holds.
func TestItemRoundTrips(t *testing.T) {
	for _, it := range []string{
		`22`, `"9000-9002"`, `{port: 22, name: "ssh"}`, `{ports: "80-443", name: "web"}`,
		`{port: 5432, from: ["10.0.0.0/8", "fd00::/8"]}`, `{port: 6379, from: ["10.1.0.0/16"], name: "trial", mode: monitor}`,
		`{port: 8080, from: ["10.20.0.0/16"], name: "test-team", expires: "2099-12-04T18:00:00Z"}`,
		`{port: 5432, from: ["10.0.0.0/8"], schedule: {days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00", tz: "Asia/Shanghai"}}`,
		`{port: 8080, schedule: {days: [sun, sat], from: "00:00", to: "24:00", tz: "UTC"}}`,
	} {
		p := parse(t, "tcp:\n  allow:\n    - "+it+"\n")
		r := append(p.Open, p.Scoped...)[0]
		if got := item(&r); got != it {
			t.Errorf("item(%s) = %s", it, got)
		}
	}
}

// TestFixesParse: the YAML a fix says to write is valid where it goes.
func TestFixesParse(t *testing.T) {
	var fixes []string
	for _, f := range Run(messy(t)) {
		fixes = append(fixes, f.Fix)
	}
	deny := regexp.MustCompile("`(deny_ports: \\[[^`]*\\])`")
	ratelimit := regexp.MustCompile("`(ratelimit: [^`]*)`")
	checked := 0
	for _, fix := range fixes {
		for _, m := range deny.FindAllStringSubmatch(fix, -1) {
			parse(t, "tcp:\n  allow: []\n  allow_listening: true\n  "+m[1]+"\n")
			checked++
		}
		for _, m := range ratelimit.FindAllStringSubmatch(fix, -1) {
			parse(t, "tcp:\n  allow: [80]\n"+m[1]+"\n")
			checked++
		}
		if strings.Contains(fix, placeholder) {
			if _, err := policy.Parse("p", []byte("tcp:\n  allow:\n    - {port: 22, from: ["+placeholder+"]}\n")); err == nil {
				t.Error("the placeholder parses: a pasted fix could open a port")
			}
		}
	}
	if checked < 2 {
		t.Errorf("checked %d fixes", checked)
	}
}

// TestDocListsEveryKind: the package comment is the checklist of every
// kind (docs/operations.md's audit checklist comes from it).
func TestDocListsEveryKind(t *testing.T) {
	src, err := os.ReadFile("audit.go")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(src[:strings.Index(string(src), "package audit")])
	listed := regexp.MustCompile(`//   - \[ \] ([a-z_]+) \(`).FindAllStringSubmatch(doc, -1)
	var names []Kind
	for _, m := range listed {
		names = append(names, Kind(m[1]))
	}
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	if !slices.Equal(sorted, Kinds) || !slices.IsSorted(Kinds) {
		t.Errorf("the checklist lists %v; Kinds (sorted) is %v", names, Kinds)
	}
}

func TestNilPolicy(t *testing.T) {
	if fs := Run(Input{}); fs != nil {
		t.Errorf("%v", fs)
	}
}

// TestOperationsDocHoldsTheChecklist: docs/operations.md's audit
// checklist is the package comment's, word for word, so neither drifts.
func TestOperationsDocHoldsTheChecklist(t *testing.T) {
	src, err := os.ReadFile("audit.go")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(src[:strings.Index(string(src), "package audit")])
	doc = doc[strings.Index(doc, "//   - [ ]"):strings.Index(doc, "// Findings come sorted")]
	var want strings.Builder
	for _, l := range strings.Split(strings.TrimRight(doc, "\n"), "\n") {
		if rest, ok := strings.CutPrefix(l, "//   "); ok {
			l = rest
		} else {
			l = strings.TrimLeft(l, "/")
		}
		want.WriteString(strings.TrimRight(l, " ") + "\n")
	}
	ops, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- audit checklist: from pkg/audit's package comment -->\n", "<!-- end audit checklist -->"
	s := string(ops)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("docs/operations.md has no %q ... %q block", begin, end)
	}
	checklist := strings.TrimRight(want.String(), "\n") + "\n"
	if got := s[i+len(begin) : j]; got != checklist {
		t.Errorf("docs/operations.md's checklist differs from the package comment; it should read:\n%s", checklist)
	}
}
