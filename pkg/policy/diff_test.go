package policy

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustParse(t testing.TB, doc string) *Policy {
	t.Helper()
	p, err := Parse("p.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return p
}

// Every section, on pairs of small policies: the lines a reader gets, and
// the summary.
func TestDiff(t *testing.T) {
	shanghai, _ := time.LoadLocation("Asia/Shanghai")
	wednesday := time.Date(2099, 11, 25, 10, 0, 0, 0, shanghai)
	saturday := time.Date(2099, 11, 28, 10, 0, 0, 0, shanghai)
	const ssh = "tcp:\n  allow: [22]\n"
	const office = `tcp:
  allow:
    - 22
    - port: 5432
      name: office-hours-db
      from: [10.0.0.0/8]
      schedule: {days: [mon-fri], from: "09:00", to: "18:00", tz: Asia/Shanghai}
`
	for _, tc := range []struct {
		name     string
		old, new string
		at       time.Time
		want     []string
		summary  string
	}{
		{
			name: "tcp ports opened", old: ssh, new: "tcp:\n  allow: [22, 8000-8100, 9000]\n",
			want:    []string{"tcp 8000-8100 opened to all", "tcp 9000 opened to all"},
			summary: "+102 ports",
		},
		{
			name: "tcp port closed, the rest reordered", old: "tcp:\n  allow: [22, 80, 443]\n", new: "tcp:\n  allow: [443, 22]\n",
			want:    []string{"tcp 80 closed to all"},
			summary: "-1 port",
		},
		{
			name: "udp ports and replies", old: ssh + "udp:\n  allow: [53]\n", new: ssh + "udp:\n  allow: [53, 123]\n  replies: 32768-60999\n",
			want:    []string{"udp 123 opened to all", "udp.replies: auto → 32768-60999"},
			summary: "+1 port, udp.replies changed",
		},
		{
			name: "udp section added", old: ssh, new: ssh + "udp:\n  allow: [53]\n",
			want: []string{"udp 0-52 closed to all", "udp 54-65535 closed to all",
				"udp: none (every datagram passes) → filtered by udp.allow, replies auto"},
			summary: "-65535 ports, udp changed",
		},
		{
			name: "a scoped rule reaches more sources",
			old:  "tcp:\n  allow: [22, {port: 3306, from: [10.0.0.0/8]}]\n",
			new:  "tcp:\n  allow: [22, {port: 3306, from: [10.0.0.0/8, 172.16.0.0/12]}]\n",
			want: []string{"172.16.0.0/12 now reaches tcp 3306"}, summary: "reach changed for 1 prefix",
		},
		{
			name: "IPv6: a scoped rule narrowed",
			old:  "tcp:\n  allow: [22, {port: 5432, from: [\"fd00::/8\"]}]\n",
			new:  "tcp:\n  allow: [22, {port: 5432, from: [\"fd00:1::/32\"]}]\n",
			want: []string{"fd00::/8 no longer reaches tcp 5432", "fd00:1::/32 (inside fd00::/8): unchanged"},
		},
		{
			name: "IPv4 and IPv6, tcp and udp, both ways",
			old:  "tcp:\n  allow: [22, {ports: 3300-3310, from: [10.1.0.0/16]}]\nudp:\n  allow: [{port: 53, from: [\"2001:db8::/32\"]}]\n",
			new:  "tcp:\n  allow: [22, {ports: 3300-3305, from: [10.0.0.0/8]}]\nudp:\n  allow: [{port: 53, from: [\"2001:db8::/32\"]}, {port: 123, from: [\"2001:db8::/32\"]}]\n",
			want: []string{
				"10.0.0.0/8 now reaches tcp 3300-3305",
				"10.1.0.0/16 (inside 10.0.0.0/8) no longer reaches tcp 3306-3310",
				"2001:db8::/32 now reaches udp 123",
			},
		},
		{
			name: "a nested prefix gains a port",
			old:  "tcp:\n  allow: [22, {port: 3306, from: [10.0.0.0/8]}]\n",
			new:  "tcp:\n  allow: [22, {port: 3306, from: [10.0.0.0/8]}, {port: 3307, from: [10.1.0.0/16]}]\n",
			want: []string{"10.1.0.0/16 now reaches tcp 3307"},
		},
		{
			name: "a scoped port opened to all is said once",
			old:  "tcp:\n  allow: [22, {port: 3306, from: [10.0.0.0/8]}]\n",
			new:  "tcp:\n  allow: [22, 3306]\n",
			want: []string{"tcp 3306 opened to all"},
		},
		{
			name: "a port closed to all stays open to some",
			old:  "tcp:\n  allow: [22, 3306]\n",
			new:  "tcp:\n  allow: [22, {port: 3306, from: [10.0.0.0/8]}]\n",
			want: []string{"tcp 3306 closed to all"},
		},
		{
			name: "a monitored rule enforced",
			old:  "tcp:\n  allow:\n    - 22\n    - {port: 6379, from: [10.1.0.0/16], mode: monitor, name: redis-trial}\n",
			new:  "tcp:\n  allow:\n    - 22\n    - {port: 6379, from: [10.1.0.0/16], name: redis-trial}\n",
			want: []string{"tcp 6379 no longer monitored (was rule redis-trial): what no rule admits is dropped"},
		},
		{
			name: "a rule put in monitor mode",
			old:  "tcp:\n  allow: [22, {port: 6379, from: [10.1.0.0/16]}]\n",
			new:  "tcp:\n  allow: [22, {port: 6379, from: [10.1.0.0/16], mode: monitor, name: redis}]\n",
			want: []string{"tcp 6379 now monitored (rule redis): what no rule admits passes, counted"},
		},
		{
			name: "the whole policy monitors", old: ssh, new: "mode: monitor\n" + ssh,
			want: []string{"mode: enforce → monitor"}, summary: "mode monitor",
		},
		{
			name: "a temporary rule added, in force", old: ssh, at: wednesday,
			new: "tcp:\n  allow: [22, {port: 8080, name: test-team, expires: 2099-12-04T18:00:00Z}]\n",
			want: []string{"tcp 8080 opened to all",
				"timed rule added: test-team: tcp 8080 from all, until 2099-12-04T18:00:00Z (active)"},
			summary: "+1 port, 1 timed rule added",
		},
		{
			name: "a temporary rule added, expired then", old: ssh, at: time.Date(2099, 12, 5, 0, 0, 0, 0, time.UTC),
			new:  "tcp:\n  allow: [22, {port: 8080, name: test-team, expires: 2099-12-04T18:00:00Z}]\n",
			want: []string{"timed rule added: test-team: tcp 8080 from all, until 2099-12-04T18:00:00Z (inactive)"},
		},
		{
			name: "a temporary rule extended", at: time.Date(2099, 12, 5, 0, 0, 0, 0, time.UTC),
			old: "tcp:\n  allow: [22, {port: 8080, name: test-team, from: [10.20.0.0/16], expires: 2099-12-04T18:00:00Z}]\n",
			new: "tcp:\n  allow: [22, {port: 8080, name: test-team, from: [10.20.0.0/16], expires: 2099-12-11T18:00:00Z}]\n",
			want: []string{"10.20.0.0/16 now reaches tcp 8080",
				"timed rule changed: test-team: tcp 8080 from 10.20.0.0/16, until 2099-12-04T18:00:00Z (inactive) → " +
					"test-team: tcp 8080 from 10.20.0.0/16, until 2099-12-11T18:00:00Z (active)"},
			summary: "reach changed for 1 prefix, 1 timed rule changed",
		},
		{
			name: "a scheduled rule removed, in its window", old: office, new: ssh, at: wednesday,
			want: []string{"10.0.0.0/8 no longer reaches tcp 5432",
				"timed rule removed: office-hours-db: tcp 5432 from 10.0.0.0/8, schedule Mon,Tue,Wed,Thu,Fri 09:00-18:00 Asia/Shanghai (active)"},
		},
		{
			name: "a scheduled rule removed, outside its window", old: office, new: ssh, at: saturday,
			want: []string{"timed rule removed: office-hours-db: tcp 5432 from 10.0.0.0/8, schedule Mon,Tue,Wed,Thu,Fri 09:00-18:00 Asia/Shanghai (inactive)"},
		},
		{
			name: "a timed rule gains a port",
			old:  "tcp:\n  allow: [22, {port: 8080, name: t, expires: 2099-12-04T18:00:00Z}]\n",
			new:  "tcp:\n  allow: [22, {port: 8080, name: t, expires: 2099-12-04T18:00:00Z}, {port: 8081, name: u, expires: 2099-12-04T18:00:00Z}]\n",
			at:   wednesday,
			want: []string{"tcp 8081 opened to all",
				"timed rule changed: t: tcp 8080 from all, until 2099-12-04T18:00:00Z (active) → t, u: tcp 8080-8081 from all, until 2099-12-04T18:00:00Z (active)"},
		},
		{
			name: "limits added, removed, changed",
			old:  ssh + "ratelimit:\n  syn: {rate: 100, burst: 200}\nicmp:\n  echo: {rate: 10, burst: 20}\n",
			new:  ssh + "ratelimit:\n  syn: {rate: 50, burst: 100, ban: 10m, max_sources: 100000}\n  syn_total: {rate: 10000, burst: 10000}\n",
			want: []string{
				"ratelimit.syn: 100/s burst 200 → 50/s burst 100",
				"ratelimit.syn.max_sources: 65536 → 100000",
				"ratelimit.syn.ban: none → 10m0s",
				"ratelimit.syn_total: none → 10000/s burst 10000",
				"icmp.echo: 10/s burst 20 → none",
			},
			summary: "limits changed",
		},
		{
			name: "listening settings",
			old:  ssh,
			new:  ssh + "  allow_listening: true\n  listening_users: [1000]\n  deny_ports: [6379, 7000-7010]\n",
			want: []string{
				"tcp.allow_listening: false → true",
				"tcp.deny_ports: none → 6379, 7000-7010",
				"tcp.listening_users: 0 → 0, 1000",
			},
			summary: "tcp.allow_listening, tcp.deny_ports, tcp.listening_users changed",
		},
		{
			name: "deny and trust, IPv4 and IPv6",
			old:  ssh + "sources:\n  deny: [203.0.113.0/24, 198.51.100.7]\n",
			new:  ssh + "sources:\n  deny: [198.51.100.7/32, \"2001:db8:bad::/48\", 192.0.2.0/24]\n  trust: [\"fd00::1\"]\n",
			want: []string{
				"sources.deny: +2 -1 entries (2 → 3); added 192.0.2.0/24, 2001:db8:bad::/48; removed 203.0.113.0/24",
				"sources.trust: +1 -0 entries (0 → 1); added fd00::1/128",
			},
			summary: "2 sources denied more, 1 source denied less, 1 source trusted more",
		},
		{
			name: "crowdsec added",
			old:  ssh, new: ssh + "crowdsec:\n  url: http://127.0.0.1:8080/\n  api_key_file: /etc/xdpguard/bouncer.key\n",
			want:    []string{"crowdsec: none → http://127.0.0.1:8080/, api_key_file /etc/xdpguard/bouncer.key, interval 10s"},
			summary: "crowdsec changed",
		},
		{
			name:    "crowdsec changed",
			old:     ssh + "crowdsec:\n  url: http://127.0.0.1:8080/\n  api_key_file: /etc/xdpguard/bouncer.key\n",
			new:     ssh + "crowdsec:\n  url: https://lapi.example:8080/\n  api_key_file: /etc/xdpguard/bouncer.key\n  interval: 1m\n",
			want:    []string{"crowdsec.url: http://127.0.0.1:8080/ → https://lapi.example:8080/", "crowdsec.interval: 10s → 1m0s"},
			summary: "crowdsec changed",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			if at.IsZero() {
				at = wednesday
			}
			old, cur := mustParse(t, tc.old), mustParse(t, tc.new)
			c := Diff(old, cur, at)
			if got := c.Lines(); !slices.Equal(got, tc.want) {
				t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if tc.summary != "" && c.Summary() != tc.summary {
				t.Errorf("summary %q, want %q", c.Summary(), tc.summary)
			}
			if c.Empty() {
				t.Error("Empty")
			}
			checkExact(t, old, cur, at, c, nil)
			// Backwards, what opened closes.
			back := Diff(cur, old, at)
			if len(back.Ports) != len(c.Ports) || len(back.Monitor) != len(c.Monitor) || back.Deny.Added != c.Deny.Removed {
				t.Errorf("backwards: %q", back.Lines())
			}
			checkExact(t, cur, old, at, back, nil)
		})
	}
}

// What every section looks like in JSON: lists, never null.
func TestDiffJSON(t *testing.T) {
	empty, err := json.Marshal(Diff(mustParse(t, "tcp:\n  allow: [22]\n"), mustParse(t, "tcp:\n  allow: [22]\n"), time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"ports":[],"scoped":[],"monitor":[],"timed":[],"limits":[],"settings":[],` +
		`"deny":{"old":0,"new":0,"added":0,"removed":0,"added_examples":[],"removed_examples":[]},` +
		`"trust":{"old":0,"new":0,"added":0,"removed":0,"added_examples":[],"removed_examples":[]},"lists":[]}`
	if string(empty) != want {
		t.Errorf("no change:\n%s\nwant\n%s", empty, want)
	}
	c := Diff(mustParse(t, "tcp:\n  allow: [22, {port: 3306, from: [10.0.0.0/8]}]\n"),
		mustParse(t, "tcp:\n  allow: [22, 80, {port: 3307, from: [10.0.0.0/8]}, {port: 8080, name: t, expires: 2099-12-04T18:00:00Z}]\n"),
		time.Date(2099, 12, 1, 0, 0, 0, 0, time.UTC))
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{
		`"ports":[{"proto":"tcp","first":80,"last":80,"change":"opened"},{"proto":"tcp","first":8080,"last":8080,"change":"opened"}]`,
		`"scoped":[{"prefix":"10.0.0.0/8","opened":[{"proto":"tcp","first":3307,"last":3307}],"closed":[{"proto":"tcp","first":3306,"last":3306}]}]`,
		`"timed":[{"change":"added","new":{"names":["t"],"ports":[{"proto":"tcp","first":8080,"last":8080}],"expires":"2099-12-04T18:00:00Z","active":true}}]`,
	} {
		if !strings.Contains(string(b), part) {
			t.Errorf("JSON lacks %s:\n%s", part, b)
		}
	}
	var back Change
	if err := json.Unmarshal(b, &back); err != nil || !slices.Equal(back.Lines(), c.Lines()) {
		t.Errorf("read back: %v\n%q\n%q", err, back.Lines(), c.Lines())
	}
}

// Policies that mean the same, written otherwise, and policies with one
// digest, change nothing.
func TestDiffOfEqualPolicies(t *testing.T) {
	for _, pair := range [][2]string{
		{"tcp:\n  allow: [22, 80, 443]\n", "tcp:\n  allow:\n    - 443\n    - 22\n    - 80\n"},
		{"tcp:\n  allow: [22, 80-82]\n", "tcp:\n  allow: [82, 81, 80, 22]\n"},
		{"tcp:\n  allow: [{port: 22, name: ssh}, {ports: 80-443, name: web}]\n", "tcp:\n  allow: [22, 80-443]\n"},
		{"tcp:\n  allow: [22, {port: 3306, from: [10.0.0.0/8, 192.0.2.7]}]\n", "tcp:\n  allow: [22, {port: 3306, from: [192.0.2.7/32]}, {port: 3306, from: [10.0.0.0/8]}]\n"},
		{"tcp:\n  allow: [22, {ports: 3306-3307, from: [\"2001:db8::1\"]}]\n", "tcp:\n  allow: [22, {port: 3307, from: [\"2001:db8::1/128\"]}, {port: 3306, from: [\"2001:db8::1\"]}]\n"},
		{"tcp:\n  allow: [22, {ports: 8080-8081, expires: 2099-12-04T18:00:00Z}]\n", "tcp:\n  allow: [22, {port: 8081, name: b, expires: 2099-12-04T18:00:00Z}, {port: 8080, expires: \"2099-12-05T02:00:00+08:00\"}]\n"},
		{"tcp:\n  allow: [22]\nsources:\n  deny: [192.0.2.1, \"2001:db8::/32\"]\n", "tcp:\n  allow: [22]\nsources:\n  deny: [\"2001:db8::/32\", 192.0.2.1/32]\n"},
		{"tcp:\n  allow: [22]\nudp:\n  allow: [53]\n", "tcp:\n  allow: [22]\nudp:\n  allow: [53]\n  replies: auto\n"},
	} {
		a, b := mustParse(t, pair[0]), mustParse(t, pair[1])
		for _, at := range []time.Time{time.Now(), time.Date(2099, 12, 4, 20, 0, 0, 0, time.UTC)} {
			if c := Diff(a, b, at); !c.Empty() || c.Summary() != "no change" {
				t.Errorf("%q\nvs %q:\n%s", pair[0], pair[1], strings.Join(c.Lines(), "\n"))
			}
		}
	}
	examples, _ := filepath.Glob("../../examples/*.yaml")
	for _, e := range examples {
		b, err := os.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		p := mustParse(t, string(b))
		checkUnchanged(t, p, e)
	}
}

// checkUnchanged holds Diff to the digest: a policy against itself, and
// against itself written back, changes nothing.
func checkUnchanged(t *testing.T, p *Policy, what string) {
	t.Helper()
	name := "again" // beside the policy: its list files are relative to it
	if p.Path != "" {
		name = filepath.Join(filepath.Dir(p.Path), "again.yaml")
	}
	again, err := Parse(name, p.Marshal())
	if err != nil {
		t.Fatalf("%s: written back: %v", what, err)
	}
	if again.Digest() != p.Digest() {
		t.Fatalf("%s: written back, another digest", what)
	}
	for _, at := range []time.Time{time.Now(), time.Date(2099, 12, 4, 20, 0, 0, 0, time.UTC)} {
		for _, q := range []*Policy{p, again} {
			if c := Diff(p, q, at); !c.Empty() {
				t.Fatalf("%s: equal digests, yet:\n%s\n%s", what, strings.Join(c.Lines(), "\n"), p.Marshal())
			}
		}
	}
}

// List files are compared by the file they name; their entries are in
// Deny and Trust.
func TestDiffListFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "drop.txt"), "203.0.113.0/24\n198.51.100.0/24\n", 0o644)
	writeFile(t, filepath.Join(dir, "more.txt"), "192.0.2.0/24\n", 0o644)
	writeFile(t, filepath.Join(dir, "office.txt"), "10.9.0.0/16\n", 0o644)
	old := filepath.Join(dir, "old.yaml")
	writeFile(t, old, "tcp:\n  allow: [22]\nsources:\n  deny_lists: [drop.txt]\n  trust_lists: [office.txt]\n", 0o600)
	cur := filepath.Join(dir, "new.yaml")
	writeFile(t, cur, "tcp:\n  allow: [22]\nsources:\n  deny_lists: [drop.txt, more.txt]\n", 0o600)
	a, err := Load(old)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(cur)
	if err != nil {
		t.Fatal(err)
	}
	c := Diff(a, b, time.Now())
	want := []string{
		"sources.deny: +1 -0 entries (2 → 3); added 192.0.2.0/24",
		"sources.trust: +0 -1 entries (1 → 0); removed 10.9.0.0/16",
		"deny list " + filepath.Join(dir, "more.txt") + " added (1 entries)",
		"trust list " + filepath.Join(dir, "office.txt") + " removed (1 entries)",
	}
	if got := c.Lines(); !slices.Equal(got, want) {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The file grew: the list changed, and so did the sources.
	writeFile(t, filepath.Join(dir, "drop.txt"), "203.0.113.0/24\n198.51.100.0/24\n2001:db8::/32\n", 0o644)
	grown, err := Load(old)
	if err != nil {
		t.Fatal(err)
	}
	c = Diff(a, grown, time.Now())
	want = []string{
		"sources.deny: +1 -0 entries (2 → 3); added 2001:db8::/32",
		"deny list " + filepath.Join(dir, "drop.txt") + ": 2 → 3 entries",
	}
	if got := c.Lines(); !slices.Equal(got, want) {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	checkUnchanged(t, grown, "list files")
}

// Deny lists of 100,000 entries each, a few differing both ways: exact
// counts, the first examples, in linear time and without allocating per
// entry.
func TestDiffLargeDenyLists(t *testing.T) {
	const n = 100_000
	var old, cur []netip.Prefix
	removed := map[int]bool{7: true, 50_000: true, 99_999: true}
	added := map[int]bool{3: true, 70_000: true}
	for i := range n {
		var p netip.Prefix
		if i%2 == 0 {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		} else {
			var b [16]byte
			b[0], b[1], b[2], b[3], b[4], b[5] = 0x20, 0x01, 0x0d, 0xb8, byte(i>>16), byte(i>>8)
			b[6] = byte(i)
			p = netip.PrefixFrom(netip.AddrFrom16(b), 56)
		}
		if !added[i] {
			old = append(old, p)
		}
		if !removed[i] {
			cur = append(cur, p)
		}
	}
	// The policy keeps them sorted, by address then length.
	slices.SortFunc(old, comparePrefix)
	slices.SortFunc(cur, comparePrefix)
	a := &Policy{AllowTCP: []PortRange{{22, 22}}, MaxSources: defaultMaxSources, Deny: old, Trust: old[:1000]}
	b := &Policy{AllowTCP: []PortRange{{22, 22}}, MaxSources: defaultMaxSources, Deny: cur, Trust: old[:1000]}
	start := time.Now()
	c := Diff(a, b, start)
	took := time.Since(start)
	t.Logf("%d against %d entries in %v", len(old), len(cur), took)
	if took > time.Second {
		t.Errorf("took %v", took)
	}
	if c.Deny.Added != 2 || c.Deny.Removed != 3 || c.Deny.Old != n-2 || c.Deny.New != n-3 || !c.Trust.Empty() {
		t.Fatalf("deny %+v", c.Deny)
	}
	if len(c.Deny.AddedExamples) != 2 || len(c.Deny.RemovedExamples) != 3 {
		t.Errorf("examples %v %v", c.Deny.AddedExamples, c.Deny.RemovedExamples)
	}
	for _, e := range c.Deny.AddedExamples {
		if slices.Contains(old, e) || !slices.Contains(cur, e) {
			t.Errorf("added example %s", e)
		}
	}
	for _, e := range c.Deny.RemovedExamples {
		if !slices.Contains(old, e) || slices.Contains(cur, e) {
			t.Errorf("removed example %s", e)
		}
	}
	if got := c.Summary(); got != "2 sources denied more, 3 sources denied less" {
		t.Errorf("summary %q", got)
	}
	// Entirely different lists: counts exact, examples bounded.
	other := make([]netip.Prefix, n)
	for i := range other {
		other[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16 + byte(i>>16), byte(i >> 8), byte(i)}), 32)
	}
	c = Diff(a, &Policy{AllowTCP: a.AllowTCP, MaxSources: defaultMaxSources, Deny: other, Trust: a.Trust}, start)
	if c.Deny.Added != n || c.Deny.Removed != n-2 || len(c.Deny.AddedExamples) != maxExamples || len(c.Deny.RemovedExamples) != maxExamples {
		t.Errorf("disjoint lists: +%d -%d, %d and %d examples", c.Deny.Added, c.Deny.Removed, len(c.Deny.AddedExamples), len(c.Deny.RemovedExamples))
	}
	// Allocations do not grow with the lists.
	small := &Policy{AllowTCP: a.AllowTCP, MaxSources: defaultMaxSources, Deny: old[:100]}
	smallNew := &Policy{AllowTCP: a.AllowTCP, MaxSources: defaultMaxSources, Deny: cur[:100]}
	allocsSmall := testing.AllocsPerRun(5, func() { Diff(small, smallNew, start) })
	allocsLarge := testing.AllocsPerRun(5, func() { Diff(a, b, start) })
	if allocsLarge > allocsSmall+10 {
		t.Errorf("%v allocations for 100 entries, %v for 100,000", allocsSmall, allocsLarge)
	}
}

// A random policy of few ports and nested prefixes (so rules overlap and
// nest), as a document.
func randomDoc(r *rand.Rand) string {
	prefix := func() string {
		if r.IntN(2) == 0 {
			a := netip.AddrFrom4([4]byte{10, byte(r.IntN(2)), byte(r.IntN(4)), byte(r.IntN(4))})
			return netip.PrefixFrom(a, []int{8, 15, 16, 24, 30, 32}[r.IntN(6)]).Masked().String()
		}
		var b [16]byte
		b[0], b[1], b[2], b[3], b[5], b[15] = 0x20, 0x01, 0x0d, 0xb8, byte(r.IntN(2)), byte(r.IntN(4))
		return netip.PrefixFrom(netip.AddrFrom16(b), []int{32, 47, 48, 64, 127, 128}[r.IntN(6)]).Masked().String()
	}
	from := func() string {
		var ps []netip.Prefix
		for range 1 + r.IntN(3) {
			ps = append(ps, netip.MustParsePrefix(prefix()))
		}
		var strs []string
		for _, p := range disjoint(ps) {
			strs = append(strs, quote(p.String()))
		}
		return "[" + strings.Join(strs, ", ") + "]"
	}
	item := func(udp bool) string {
		lo := 1 + r.IntN(30)
		ports := fmt.Sprint(lo)
		if r.IntN(2) == 0 {
			ports = fmt.Sprintf("%q", fmt.Sprintf("%d-%d", lo, lo+r.IntN(5)))
		}
		var fields []string
		fields = append(fields, "ports: "+ports)
		scoped := r.IntN(3) > 0
		if scoped {
			fields = append(fields, "from: "+from())
			if r.IntN(4) == 0 {
				fields = append(fields, "mode: monitor")
			}
		}
		if r.IntN(4) == 0 {
			fields = append(fields, fmt.Sprintf("expires: 2099-12-0%dT00:00:00Z", 1+r.IntN(4)))
		}
		if r.IntN(6) == 0 {
			fields = append(fields, `schedule: {days: [mon-fri], from: "09:00", to: "18:00"}`)
		}
		if r.IntN(3) == 0 {
			fields = append(fields, fmt.Sprintf("name: n%d", r.IntN(3)))
		}
		if !scoped && len(fields) == 1 && r.IntN(2) == 0 {
			return ports
		}
		return "{" + strings.Join(fields, ", ") + "}"
	}
	var b strings.Builder
	if r.IntN(6) == 0 {
		b.WriteString("mode: monitor\n")
	}
	b.WriteString("tcp:\n  allow:\n    - 22\n")
	for range r.IntN(7) {
		b.WriteString("    - " + item(false) + "\n")
	}
	if r.IntN(2) == 0 {
		b.WriteString("udp:\n  allow: [")
		var items []string
		for range r.IntN(5) {
			items = append(items, item(true))
		}
		b.WriteString(strings.Join(items, ", ") + "]\n")
		if r.IntN(2) == 0 {
			b.WriteString("  replies: " + []string{"none", "auto", "30-35"}[r.IntN(3)] + "\n")
		}
	}
	if r.IntN(2) == 0 {
		fmt.Fprintf(&b, "ratelimit:\n  syn: {rate: %d, burst: 20}\n", 1+r.IntN(3))
	}
	if r.IntN(2) == 0 {
		fmt.Fprintf(&b, "sources:\n  deny: %s\n", from())
	}
	return b.String()
}

func quote(s string) string { return `"` + s + `"` }

// checkExact holds a Change to what the policies do, source by source and
// port by port (AllowsFrom, AllowsUDPFrom, MonitorRule): a port opened to
// all is open now, one closed was open; otherwise the longest scoped item
// holding the source says what changed for it, and nothing did if none
// does. The sources are those given, plus each rule's prefixes and
// addresses inside them.
func checkExact(t *testing.T, old, cur *Policy, at time.Time, c Change, addrs []netip.Addr) {
	t.Helper()
	a, b := old.At(at), cur.At(at)
	for _, p := range []*Policy{a, b} {
		for _, r := range p.Scoped {
			for _, f := range r.From {
				last := f.Addr().AsSlice()
				last[len(last)-1] |= 1
				end, _ := netip.AddrFromSlice(last)
				addrs = append(addrs, f.Addr(), end, f.Addr().Prev(), f.Addr().Next())
			}
		}
	}
	addrs = append(addrs, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::ffff"))
	in := func(ps []Ports, proto string, port uint16) bool {
		return slices.ContainsFunc(ps, func(p Ports) bool { return p.Proto == proto && p.First <= port && port <= p.Last })
	}
	allows := func(p *Policy, proto string, port uint16, src netip.Addr) bool {
		if proto == "tcp" {
			return p.AllowsFrom(port, src)
		}
		return p.AllowsUDPFrom(port, src)
	}
	for _, proto := range []string{"tcp", "udp"} {
		for port := uint16(0); port < 40; port++ {
			var pc *PortChange
			for i := range c.Ports {
				if in([]Ports{c.Ports[i].Ports}, proto, port) {
					pc = &c.Ports[i]
				}
			}
			for _, src := range addrs {
				if !src.IsValid() {
					continue
				}
				was, is := allows(a, proto, port, src), allows(b, proto, port, src)
				if pc != nil {
					if (pc.Change == "opened" && !is) || (pc.Change == "closed" && !was) {
						t.Fatalf("%s: %s from %s: was %v, is %v", pc, proto, src, was, is)
					}
					continue
				}
				var sc *ScopeChange
				for i := range c.Scoped {
					if s := &c.Scoped[i]; s.Prefix.Contains(src) && (sc == nil || s.Prefix.Bits() > sc.Prefix.Bits()) {
						sc = s
					}
				}
				opened, closed := false, false
				if sc != nil {
					opened, closed = in(sc.Opened, proto, port), in(sc.Closed, proto, port)
				}
				if (opened && (was || !is)) || (closed && (!was || is)) || (!opened && !closed && was != is) {
					t.Fatalf("%s %d from %s: was %v, is %v; the change says opened %v closed %v (%v)\n%s", proto, port, src, was, is, opened, closed, sc, strings.Join(c.Lines(), "\n"))
				}
			}
			pi := map[string]uint8{"tcp": ProtoTCP, "udp": ProtoUDP}[proto]
			wasMon, isMon := a.MonitorRule(pi, port) != nil, b.MonitorRule(pi, port) != nil
			var mc *MonitorChange
			for i := range c.Monitor {
				if in([]Ports{c.Monitor[i].Ports}, proto, port) {
					mc = &c.Monitor[i]
				}
			}
			if (mc == nil) != (wasMon == isMon) || (mc != nil && (mc.Change == "monitored") != isMon) {
				t.Fatalf("%s %d: monitored %v, then %v; the change says %v", proto, port, wasMon, isMon, mc)
			}
		}
	}
}

// Random pairs of policies: the Change is exact (checkExact), and each
// policy against itself and written back changes nothing.
func TestDiffRandomPolicies(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	times := []time.Time{time.Date(2099, 11, 30, 10, 0, 0, 0, time.UTC), time.Date(2099, 12, 2, 20, 0, 0, 0, time.UTC)}
	for round := range 400 {
		da, db := randomDoc(r), randomDoc(r)
		a, err1 := Parse("a", []byte(da))
		b, err2 := Parse("b", []byte(db))
		if err1 != nil || err2 != nil {
			continue // a port both open to all and denied, say
		}
		at := times[round%2]
		c := Diff(a, b, at)
		if a.Digest() == b.Digest() && !c.Empty() {
			t.Fatalf("equal digests, yet %q", c.Lines())
		}
		checkExact(t, a, b, at, c, nil)
		checkUnchanged(t, a, fmt.Sprintf("round %d", round))
	}
}

// FuzzDiff: whatever parses changes nothing against itself and against
// itself written back.
func FuzzDiff(f *testing.F) {
	f.Add([]byte(issueExample))
	f.Add([]byte(scopedDoc))
	examples, _ := filepath.Glob("../../examples/*.yaml")
	for _, e := range examples {
		if b, err := os.ReadFile(e); err == nil {
			f.Add(b)
		}
	}
	r := rand.New(rand.NewPCG(7, 8))
	for range 20 {
		f.Add([]byte(randomDoc(r)))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := Parse("fuzz", doc)
		if err != nil {
			return
		}
		checkUnchanged(t, p, "fuzz")
	})
}
