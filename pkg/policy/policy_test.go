package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

const issueExample = `tcp:
  allow: [22, 80, 443, 9000-9002]
ratelimit:
  syn:          # per source
    rate: 100   # SYNs per second
    burst: 200
  syn_total:    # per allowed port, all sources together
    rate: 10000
    burst: 10000
`

func TestParseIssueExample(t *testing.T) {
	p, err := Parse("p.yaml", []byte(issueExample))
	if err != nil {
		t.Fatal(err)
	}
	want := "tcp allow [22,80,443,9000-9002]; syn per source 100/s burst 200 (table 65536); syn per port 10000/s burst 10000"
	if got := p.Summary(); got != want {
		t.Fatalf("summary\n got %s\nwant %s", got, want)
	}
	for port, open := range map[uint16]bool{22: true, 21: false, 9000: true, 9001: true, 9002: true, 9003: false, 8999: false, 0: false} {
		if p.Allows(port) != open {
			t.Errorf("Allows(%d) = %v", port, !open)
		}
	}
	if g := p.SYN.GCRA(); g.IntervalNs != 10_000_000 || g.LimitNs != 2_000_000_000 {
		t.Errorf("GCRA %+v", g)
	}
}

func TestRangesMergeAndDigestIgnoresLayout(t *testing.T) {
	a, err := Parse("a", []byte("tcp:\n  allow: [\"10-20\", 15, 21, \"5-9\", 443]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Summary(); !strings.HasPrefix(got, "tcp allow [5-21,443]") {
		t.Fatalf("merged: %s", got)
	}
	b, _ := Parse("b", []byte("# comment\ntcp:\n  allow:\n    - 443\n    - 5-9\n    - 10-20\n    - 21\n    - 15\n"))
	if a.Digest() != b.Digest() {
		t.Fatal("same meaning, different digest")
	}
	// The same ports under other rules count differently: another policy.
	merged, _ := Parse("m", []byte("tcp:\n  allow: [443, 5-21]\n"))
	if a.Digest() == merged.Digest() {
		t.Fatal("rules renamed, same digest")
	}
	c, _ := Parse("c", []byte("tcp:\n  allow: [443, 5-22]\n"))
	if a.Digest() == c.Digest() {
		t.Fatal("different policies, same digest")
	}
}

// Every bad input names the file, the line, the column and the field, in
// our words.
func TestErrorsNameLineAndField(t *testing.T) {
	for _, tc := range []struct{ doc, at, field, msg string }{
		{"tcp:\n  allow: [22]\n  bogus: 1\n", "3:3", "tcp.bogus", `unknown field "bogus"; known here: allow, allow_empty`},
		{"tcp:\n  allow: [22]\ntcp:\n  allow: [80]\n", "3:1", "tcp", "given twice (first at line 1)"},
		{"tcp:\n  allow: [22, 70000]\n", "2:15", "tcp.allow[1]", "port 70000 is out of range [1, 65535]"},
		{"tcp:\n  allow: [0]\n", "2:11", "tcp.allow[0]", "port 0 is out of range"},
		{"tcp:\n  allow: [-1]\n", "2:11", "tcp.allow[0]", "port -1 is out of range"},
		{"tcp:\n  allow:\n    - 22\n    - 80-70\n", "4:7", "tcp.allow[1]", `range "80-70" is reversed: write 70-80`},
		{"tcp:\n  allow: [ssh]\n", "2:11", "tcp.allow[0]", `"ssh": "ssh" is not a port number`},
		{"tcp:\n  allow: [{port: 1, from: 5}]\n", "2:21", "tcp.allow[0].from", "want a non-empty list"},
		{"tcp:\n  allow: [[1, 2]]\n", "2:11", "tcp.allow[0]", "want a port like 443"},
		{"tcp:\n  allow: []\n", "2:3", "tcp.allow", "empty allow-list would refuse every new TCP connection"},
		{"tcp:\n  allow: 22\n", "2:10", "tcp.allow", "want a list ([a, b] or - lines), got the number \"22\""},
		{"tcp:\n  allow: [22]\n  allow_listening: yes please\n", "3:20", "tcp.allow_listening", `want true or false, got the text "yes please"`},
		{"ratelimit:\n  syn: {rate: 1, burst: 1}\n", "1:1", "", "missing the tcp section"},
		{"tcp:\n  allow: [22]\nratelimit:\n  syn:\n    rate: 0\n    burst: 5\n", "5:5", "ratelimit.syn.rate", "0 is out of range [1, 10000000] per second"},
		{"tcp:\n  allow: [22]\nratelimit:\n  syn:\n    rate: 999999999999\n    burst: 5\n", "5:5", "ratelimit.syn.rate", "999999999999 is out of range"},
		{"tcp:\n  allow: [22]\nratelimit:\n  syn:\n    rate: 99999999999999999999999\n    burst: 5\n", "5:11", "ratelimit.syn.rate", `"99999999999999999999999" is far too large`},
		{"tcp:\n  allow: [22]\nratelimit:\n  syn:\n    rate: -5\n    burst: 5\n", "5:5", "ratelimit.syn.rate", "-5 is negative; use 1..10000000 per second"},
		{"tcp:\n  allow: [22]\nratelimit:\n  syn:\n    rate: 2.5\n    burst: 5\n", "5:11", "ratelimit.syn.rate", `want a whole number, got the number "2.5"`},
		{"tcp:\n  allow: [22]\nratelimit:\n  syn_total:\n    rate: 5\n", "4:3", "ratelimit.syn_total", "missing burst"},
		{"tcp:\n  allow: [22]\nratelimit:\n  syn:\n    rate: 5\n    burst: 5\n    max_sources: 10\n", "7:5", "ratelimit.syn.max_sources", "10 is out of range"},
		{"tcp:\n  allow: [22]\n  allow_empty: true\n", "3:3", "tcp.allow_empty", "allow_empty: true with a non-empty allow-list"},
		{"tcp: [\n", "1:", "", ""},
		{"", "1:1", "", "missing the tcp section"},
		{"\x00\x01\x02garbage", "1:1", "", ""},
		{"tcp:\n  allow: !foo 0\n", "2:10", "", `tags ("!foo") are not supported`}, // go-yaml panicked here
		{"tcp:\n  allow: &a [22]\nudp:\n  allow: *a\n", "2:10", "", "anchors and aliases (&name, *name) are not supported"},
		{"tcp:\n  allow: [22]\n---\ntcp:\n  allow: [80]\n", "3:1", "", "more than one document"},
	} {
		_, err := Parse("p.yaml", []byte(tc.doc))
		if err == nil {
			t.Errorf("%q: accepted", tc.doc)
			continue
		}
		want := "p.yaml:" + tc.at
		if tc.field != "" {
			want += ": " + tc.field + ": " + tc.msg
		} else if tc.msg != "" {
			want += ": " + tc.msg
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q:\n got %v\nwant %s", tc.doc, err, want)
		}
	}
}

// Every error of every stage, in one pass: unknown keys, values of the
// wrong type, values out of range, and the checks across fields.
func TestAllErrorsReportedAtOnce(t *testing.T) {
	doc := "tcp:\n  allow: [0, 70000, 9-1]\n  bogus: 1\n  alsobogus: 2\nratelimit:\n  syn:\n    rate: -5\n    burst: many\nudp:\n  allow: [53]\n  replies: 40000-30000\nweird: true\n"
	_, err := Parse("p.yaml", []byte(doc))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"p.yaml:2:11: tcp.allow[0]: port 0", "p.yaml:2:14: tcp.allow[1]: port 70000", "p.yaml:2:21: tcp.allow[2]: range \"9-1\" is reversed",
		"p.yaml:3:3: tcp.bogus: unknown field", "p.yaml:4:3: tcp.alsobogus: unknown field",
		"p.yaml:7:5: ratelimit.syn.rate: -5 is negative", "p.yaml:8:12: ratelimit.syn.burst: want a whole number",
		"p.yaml:11:3: udp.replies: range \"40000-30000\" is reversed", "p.yaml:12:1: weird: unknown field",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "p.yaml:"); n != 9 {
		t.Errorf("%d errors, want 9:\n%v", n, err)
	}
}

func TestExplicitEmptyAllowList(t *testing.T) {
	p, err := Parse("p", []byte("tcp:\n  allow_empty: true\n"))
	if err != nil || len(p.AllowTCP) != 0 || !p.AllowEmpty {
		t.Fatalf("%+v %v", p, err)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(path, []byte(issueExample), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, maxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("huge file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(issueExample))
	f.Add([]byte("tcp:\n  allow: [1-65535]\n"))
	examples, _ := filepath.Glob("../../examples/*.yaml")
	for _, e := range examples {
		if b, err := os.ReadFile(e); err == nil {
			f.Add(b)
		}
	}
	located := regexp.MustCompile(`^fuzz:\d+:\d+: `)
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := Parse("fuzz", doc)
		if err != nil {
			// Every error names a line and a column (but the count of
			// those left out), and none runs on.
			for _, line := range strings.Split(err.Error(), "\n") {
				if !located.MatchString(line) && !strings.HasPrefix(line, "fuzz: ... and ") {
					t.Fatalf("error without a line: %q", line)
				}
			}
			if len(err.Error()) > (maxErrors+1)*(maxMsgLen+200) {
				t.Fatalf("%d bytes of errors", len(err.Error()))
			}
			return
		}
		// Whatever parses must be a consistent, sorted, merged policy.
		for i, r := range p.AllowTCP {
			if r.First == 0 || r.First > r.Last || (i > 0 && uint32(p.AllowTCP[i-1].Last)+1 >= uint32(r.First)) {
				t.Fatalf("bad ranges %v", p.AllowTCP)
			}
		}
		tcpRules := 0
		for _, r := range append(append([]Rule{}, p.Open...), p.Scoped...) {
			if r.Ports.First == 0 || r.Ports.First > r.Ports.Last {
				t.Fatalf("rule %q has ports %v", r.Name, r.Ports)
			}
			if r.Proto == ProtoTCP {
				tcpRules++
			}
		}
		if tcpRules == 0 && !p.AllowEmpty && !p.AllowListening {
			t.Fatal("empty allow-list accepted without allow_empty")
		}
		// It means the same written back.
		again, err := Parse("again", p.Marshal())
		if err != nil {
			t.Fatalf("the policy written back does not parse: %v\n%s", err, p.Marshal())
		}
		if again.Digest() != p.Digest() {
			t.Fatalf("written back, the policy changed:\n%s", p.Marshal())
		}
	})
}

// Every example, written back, means the same.
func TestMarshalRoundTrip(t *testing.T) {
	examples, _ := filepath.Glob("../../examples/*.yaml")
	docs := []string{issueExample, "tcp:\n  allow_empty: true\nudp:\n  allow: []\n  replies: none\n"}
	for _, e := range examples {
		b, err := os.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	for _, doc := range docs {
		p, err := Parse("p", []byte(doc))
		if err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		again, err := Parse("again", p.Marshal())
		if err != nil || again.Digest() != p.Digest() {
			t.Errorf("round trip: %v\n%s\n->\n%s", err, doc, p.Marshal())
		}
	}
}

func TestSourceLists(t *testing.T) {
	p, err := Parse("p", []byte("tcp:\n  allow: [22]\nsources:\n  deny: [203.0.113.0/24, 2001:db8:bad::/48, 198.51.100.7]\n  trust: [192.0.2.10/32, fd00::/8]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Deny) != 3 || len(p.Trust) != 2 || !strings.Contains(p.Summary(), "3 denied, 2 trusted") {
		t.Fatalf("%+v %s", p, p.Summary())
	}
	if p.Deny[2].String() != "2001:db8:bad::/48" || p.Deny[1].String() != "203.0.113.0/24" || p.Deny[0].String() != "198.51.100.7/32" {
		t.Fatalf("deny list %v", p.Deny)
	}
	for addr, want := range map[string]bool{"203.0.113.9": true, "203.0.114.1": false, "2001:db8:bad:1::5": true, "198.51.100.7": true, "198.51.100.8": false} {
		if inSorted(p.Deny, netip.MustParseAddr(addr)) != want {
			t.Errorf("deny contains %s = %v", addr, !want)
		}
	}
	q, _ := Parse("q", []byte("tcp:\n  allow: [22]\nsources:\n  deny: [198.51.100.7, 203.0.113.0/24, 2001:db8:bad::/48]\n  trust: [fd00::/8, 192.0.2.10/32]\n"))
	if p.Digest() != q.Digest() {
		t.Error("list order changed the digest")
	}
}

func TestSourceListErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"sources:\n  deny: [10.0.0.1/8]\n", `p.yaml:4:10: sources.deny[0]: "10.0.0.1/8" has host bits set: did you mean 10.0.0.0/8?`},
		{"sources:\n  deny: [10.0.0.0/33]\n", `sources.deny[0]: "10.0.0.0/33" is not an address or CIDR`},
		{"sources:\n  deny: [example.com]\n", `sources.deny[0]: "example.com" is not an address or CIDR`},
		{"sources:\n  deny: [\"::ffff:10.0.0.1\"]\n", `is an IPv4-mapped IPv6 address`},
		{"sources:\n  deny:\n    - 10.0.0.0/8\n    - 10.1.0.0/16\n", `p.yaml:6:7: sources.deny[1]: 10.1.0.0/16 is inside 10.0.0.0/8 (entry 0)`},
		{"sources:\n  trust: [192.0.2.1, 192.0.2.1]\n", `sources.trust[1]: 192.0.2.1/32 is listed twice`},
		{"sources:\n  deny: [10.0.0.0/8]\n  trust: [10.9.0.0/16]\n", `sources.trust: 10.9.0.0/16 overlaps denied 10.0.0.0/8`},
		{"sources:\n  allow: [10.0.0.0/8]\n", `unknown field "allow"`},
	} {
		_, err := Parse("p.yaml", []byte("tcp:\n  allow: [22]\n"+tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s", tc.doc, err, tc.want)
		}
	}
}

const scopedDoc = `tcp:
  allow:
    - 22
    - port: 3306
      from: [172.16.0.0/12, "fd00::/8"]
    - ports: 30000-32767
      from: [10.0.0.0/8]
    - ports: 3300-3310
      from: [10.1.0.0/16]
`

func TestScopedRules(t *testing.T) {
	p, err := Parse("p", []byte(scopedDoc))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		port uint16
		src  string
		want bool
	}{
		{22, "8.8.8.8", true},
		{3306, "172.20.1.1", true},
		{3306, "fd12::1", true},
		{3306, "10.9.9.9", false},
		{3306, "10.1.2.3", true}, // via 3300-3310 from 10.1/16
		{3311, "10.1.2.3", false},
		{31000, "10.1.2.3", true}, // union: 10.1/16 is inside 10/8
		{31000, "11.0.0.1", false},
		{29999, "10.0.0.1", false},
	} {
		if got := p.AllowsFrom(tc.port, netip.MustParseAddr(tc.src)); got != tc.want {
			t.Errorf("AllowsFrom(%d, %s) = %v", tc.port, tc.src, got)
		}
	}
	tab := p.ScopedTable()
	if len(tab.Prefixes) != 4 || len(tab.Groups) != 3 {
		t.Fatalf("table %+v", tab)
	}
	for i, pf := range tab.Prefixes {
		if pf.String() == "10.1.0.0/16" && fmt.Sprint(tab.Groups[tab.Group[i]]) != "[[3300-3310 30000-32767] []]" {
			t.Errorf("10.1/16 group %v: the union of its rules and 10/8's", tab.Groups[tab.Group[i]])
		}
	}
	if fmt.Sprint(tab.Ports) != "[[3300-3310 30000-32767] []]" {
		t.Errorf("scoped ports %v", tab.Ports)
	}
}

func TestScopedRuleErrors(t *testing.T) {
	for _, tc := range []struct{ item, want string }{
		{"{port: 3306, from: []}", "tcp.allow[0].from: want a non-empty list of CIDRs"},
		{"{port: 3306, from: 10.0.0.0/8}", "tcp.allow[0].from: want a non-empty list of CIDRs"},
		{"{port: 3306, ports: 1-2, from: [10.0.0.0/8]}", "give exactly one of port and ports"},
		{"{port: 1-2, from: [10.0.0.0/8]}", `"1-2" is a range: use ports`},
		{"{ports: 9-1, from: [10.0.0.0/8]}", "tcp.allow[0].ports: range \"9-1\" is reversed"},
		{"{port: 3306, from: [10.0.0.1/8]}", `tcp.allow[0].from[0]: "10.0.0.1/8" has host bits set`},
		{"{port: 3306, from: [10.0.0.0/8], bogus: x}", `tcp.allow[0].bogus: unknown field "bogus"`},
		{"{port: 3306, name: \"\"}", `tcp.allow[0].name: want a non-empty string`},
		{"{port: 3306, from: [5]}", "tcp.allow[0].from[0]: want a CIDR string"},
		{"{port: 3306, name: a/b}", `tcp.allow[0].name: "a/b": a name may not contain /`},
		{"{port: 3306, name: " + strings.Repeat("x", 64) + "}", "tcp.allow[0].name: 64 bytes; at most 63"},
		{"{port: 3306, mode: monitor}", "tcp.allow[0].mode: monitor needs from"},
		{"{port: 3306, from: [10.0.0.0/8], mode: dry-run}", "tcp.allow[0].mode: dry-run: want enforce or monitor"},
	} {
		_, err := Parse("p.yaml", []byte("tcp:\n  allow:\n    - "+tc.item+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.item, err, tc.want)
		}
	}
}

func TestBanDuration(t *testing.T) {
	p, err := Parse("p", []byte("tcp:\n  allow: [22]\nratelimit:\n  syn:\n    rate: 5\n    burst: 5\n    ban: 90s\n"))
	if err != nil || p.Ban.Seconds() != 90 || !strings.Contains(p.Summary(), "ban 1m30s") {
		t.Fatalf("%v %v", p, err)
	}
	for doc, want := range map[string]string{
		"ban: soon": `ratelimit.syn.ban: "soon" is not a duration`,
		"ban: 10ms": "ratelimit.syn.ban: 10ms is out of range [1s, 168h0m0s]",
		"ban: 30d":  `"30d" is not a duration`,
	} {
		_, err := Parse("p", []byte("tcp:\n  allow: [22]\nratelimit:\n  syn:\n    rate: 5\n    burst: 5\n    "+doc+"\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", doc, err)
		}
	}
}

func TestUDPSection(t *testing.T) {
	p, err := Parse("p", []byte("tcp:\n  allow: [22]\nudp:\n  allow: [53, {port: 161, from: [10.0.0.0/8]}]\n  replies: 40000-40010\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Summary(), "udp allow [53] replies 40000-40010") || len(p.Scoped) != 1 || p.Scoped[0].Proto != ProtoUDP {
		t.Fatalf("%s %+v", p.Summary(), p.Scoped)
	}
	if !p.AllowsUDPFrom(161, netip.MustParseAddr("10.1.1.1")) || p.AllowsUDPFrom(161, netip.MustParseAddr("11.1.1.1")) || p.AllowsFrom(161, netip.MustParseAddr("10.1.1.1")) {
		t.Error("UDP scoped rule leaks into TCP, or does not apply")
	}
	for doc, want := range map[string]string{
		"replies: sometimes": `udp.replies: "sometimes"`,
		"replies: 9-1":       `udp.replies: range "9-1" is reversed`,
		"bogus: 1":           `unknown field "bogus"`,
	} {
		_, err := Parse("p", []byte("tcp:\n  allow: [22]\nudp:\n  allow: [53]\n  "+doc+"\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", doc, err)
		}
	}
	auto, _ := Parse("p", []byte("tcp:\n  allow: [22]\nudp:\n  allow: [53]\n"))
	none, _ := Parse("p", []byte("tcp:\n  allow: [22]\nudp:\n  allow: [53]\n  replies: none\n"))
	if !auto.UDP.RepliesAuto || none.UDP.RepliesAuto || none.UDP.Replies.First != 0 || auto.Digest() == none.Digest() {
		t.Errorf("replies auto/none: %+v %+v", auto.UDP, none.UDP)
	}
}

func TestICMPSection(t *testing.T) {
	p, err := Parse("p", []byte("tcp:\n  allow: [22]\nicmp:\n  echo: {rate: 10, burst: 20}\n"))
	if err != nil || p.ICMPEcho == nil || p.ICMPEcho.Rate != 10 || !strings.Contains(p.Summary(), "icmp echo per source 10/s burst 20") {
		t.Fatalf("%+v %v", p, err)
	}
	if _, err := Parse("p", []byte("tcp:\n  allow: [22]\nicmp:\n  echo: {rate: 0, burst: 20}\n")); err == nil || !strings.Contains(err.Error(), "icmp.echo.rate: 0 is out of range") {
		t.Fatalf("rate 0: %v", err)
	}
}

func TestMode(t *testing.T) {
	m, err := Parse("p", []byte("mode: monitor\ntcp:\n  allow: [22]\n"))
	e, _ := Parse("p", []byte("mode: enforce\ntcp:\n  allow: [22]\n"))
	if err != nil || !m.Monitor || e.Monitor || m.Digest() == e.Digest() || !strings.HasPrefix(m.Summary(), "MONITOR ONLY") {
		t.Fatalf("%+v %+v %v", m, e, err)
	}
	if _, err := Parse("p", []byte("mode: audit\ntcp:\n  allow: [22]\n")); err == nil || !strings.Contains(err.Error(), `p:1:1: mode: "audit": want enforce or monitor`) {
		t.Fatalf("bad mode: %v", err)
	}
}

func TestAllowListening(t *testing.T) {
	p, err := Parse("p", []byte("tcp:\n  allow: [22]\n  allow_listening: true\n  deny_ports: [6379, 9000-9100]\n"))
	if err != nil {
		t.Fatal(err)
	}
	eff := p.WithListening([]uint16{80, 443, 6379, 9050, 23})
	if fmt.Sprint(eff.AllowTCP) != "[22-23 80 443]" || fmt.Sprint(p.AllowTCP) != "[22]" {
		t.Fatalf("effective %v, base %v (must stay untouched)", eff.AllowTCP, p.AllowTCP)
	}
	off, _ := Parse("p", []byte("tcp:\n  allow: [22]\n"))
	if fmt.Sprint(off.WithListening([]uint16{80}).AllowTCP) != "[22]" {
		t.Error("listening ports opened without allow_listening")
	}
	if _, err := Parse("p", []byte("tcp:\n  allow_listening: true\n")); err != nil {
		t.Errorf("allow_listening with no explicit ports: %v", err)
	}
	for doc, want := range map[string]string{
		"tcp:\n  allow: [22]\n  deny_ports: [80]\n":                          "tcp.deny_ports: only means something with allow_listening",
		"tcp:\n  allow: [22]\n  allow_listening: true\n  deny_ports: [22]\n": "tcp.deny_ports: 22 overlaps allowed 22",
	} {
		if _, err := Parse("p", []byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v", doc, err)
		}
	}
}

func TestLockOut(t *testing.T) {
	p, _ := Parse("p", []byte("tcp:\n  allow:\n    - 80\n    - port: 22\n      from: [10.0.0.0/8]\nsources:\n  deny: [192.0.2.0/24]\n"))
	for conn, want := range map[string]string{
		"10.1.2.3 50000 10.0.0.1 22":       "",
		"172.16.0.9 50000 10.0.0.1 22":     "refuse new connections to port 22 from 172.16.0.9",
		"192.0.2.5 50000 10.0.0.1 80":      "sources.deny holds 192.0.2.5",
		"2001:db8::1 50000 2001:db8::2 80": "",
		"":                                 "",
		"garbage":                          "",
	} {
		err := p.LockOut(conn)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%q: %v, want %q", conn, err, want)
		}
	}
	m, _ := Parse("p", []byte("mode: monitor\ntcp:\n  allow: [80]\n"))
	if err := m.LockOut("172.16.0.9 50000 10.0.0.1 22"); err != nil {
		t.Errorf("monitor mode locks nobody out: %v", err)
	}
}

func TestNamedRuleOpenToAll(t *testing.T) {
	p, err := Parse("p", []byte("tcp:\n  allow:\n    - {port: 3306, name: db}\n"))
	if err != nil || fmt.Sprint(p.AllowTCP) != "[3306]" || len(p.Scoped) != 0 {
		t.Fatalf("%+v %v", p, err)
	}
}

func TestTimedRules(t *testing.T) {
	doc := `tcp:
  allow:
    - 22
    - port: 8080
      name: test-team
      from: [10.0.0.0/8]
      expires: 2099-12-01T18:00:00Z
    - port: 9090
      name: office-hours
      schedule: {days: [mon-fri], from: "09:00", to: "18:00", tz: Asia/Shanghai}
`
	p, err := Parse("p", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	shanghai, _ := time.LoadLocation("Asia/Shanghai")
	wedMorning := time.Date(2099, 11, 25, 10, 0, 0, 0, shanghai) // a Wednesday
	at := p.At(wedMorning)
	src := netip.MustParseAddr("10.1.1.1")
	if !at.AllowsFrom(8080, src) || !at.Allows(9090) || at.AllowsFrom(8080, netip.MustParseAddr("11.1.1.1")) {
		t.Errorf("Wednesday 10:00: %v %+v", at.AllowTCP, at.Scoped)
	}
	sat := p.At(time.Date(2099, 11, 28, 10, 0, 0, 0, shanghai))
	if sat.Allows(9090) || !sat.AllowsFrom(8080, src) {
		t.Errorf("Saturday: 9090 open=%v", sat.Allows(9090))
	}
	after := p.At(time.Date(2099, 12, 2, 10, 0, 0, 0, shanghai))
	if after.AllowsFrom(8080, src) {
		t.Error("expired rule still applies")
	}
	if next := p.NextChange(wedMorning); !next.Equal(time.Date(2099, 11, 25, 18, 0, 0, 0, shanghai)) {
		t.Errorf("next change after Wed 10:00: %v, want 18:00 that day", next)
	}
	if next := p.NextChange(time.Date(2099, 11, 27, 19, 0, 0, 0, shanghai)); !next.Equal(time.Date(2099, 11, 30, 9, 0, 0, 0, shanghai)) {
		t.Errorf("next change after Friday 19:00: %v, want Monday 09:00", next)
	}
	lines := strings.Join(p.TimedRules(wedMorning), "\n")
	if !strings.Contains(lines, "rule test-team: tcp 8080 from [10.0.0.0/8]: ACTIVE (until 2099-12-01T18:00:00Z)") ||
		!strings.Contains(lines, "rule office-hours: tcp 9090 from all: ACTIVE (in schedule Mon,Tue,Wed,Thu,Fri 09:00-18:00 Asia/Shanghai)") {
		t.Errorf("timed rules:\n%s", lines)
	}
	if p.At(wedMorning).Digest() == p.At(time.Date(2099, 11, 28, 10, 0, 0, 0, shanghai)).Digest() {
		t.Error("policies in force on Wednesday and Saturday have one digest")
	}
}

func TestTimedRuleErrors(t *testing.T) {
	for item, want := range map[string]string{
		"{port: 1, expires: 2001-01-01T00:00:00Z}":                                             "tcp.allow[0].expires: 2001-01-01T00:00:00Z is in the past",
		"{port: 1, expires: tomorrow}":                                                         `tcp.allow[0].expires: "tomorrow": want a time like`,
		"{port: 1, schedule: {days: [funday], from: \"09:00\", to: \"10:00\"}}":                `tcp.allow[0].schedule.days[0]: "funday" is not a day`,
		"{port: 1, schedule: {days: [mon], from: \"9am\", to: \"10:00\"}}":                     `tcp.allow[0].schedule.from: "9am": want a time like`,
		"{port: 1, schedule: {days: [mon], from: \"22:00\", to: \"06:00\"}}":                   "split a window across midnight into two rules",
		"{port: 1, schedule: {days: [mon], from: \"09:00\", to: \"10:00\", tz: Mars/Olympus}}": `tcp.allow[0].schedule.tz: "Mars/Olympus" is not a time zone`,
		"{port: 1, schedule: {from: \"09:00\", to: \"10:00\"}}":                                "tcp.allow[0].schedule: missing days",
		"{port: 1, schedule: {days: [mon], from: \"09:00\", to: \"10:00\", every: 2}}":         `tcp.allow[0].schedule.every: unknown field "every"`,
	} {
		_, err := Parse("p.yaml", []byte("tcp:\n  allow:\n    - 22\n    - "+strings.Replace(item, "tcp.allow[0]", "tcp.allow[1]", 1)+"\n"))
		want = strings.Replace(want, "tcp.allow[0]", "tcp.allow[1]", 1)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s:\n got %v\nwant %s", item, err, want)
		}
	}
}

// Every allow item is a rule with a name: the operator's, or one made from
// what it says. The first rule naming a port counts it.
func TestRuleNamesAndAttribution(t *testing.T) {
	p, err := Parse("p.yaml", []byte(`tcp:
  allow:
    - 22
    - {ports: 8000-8010, name: web}
    - {port: 8005, name: late}
    - {port: 3306, from: [10.0.0.0/8, 172.16.0.0/12]}
    - {port: 3306, from: [10.1.0.0/16], name: office, mode: monitor}
  allow_listening: true
udp:
  allow: [53, {port: 53, name: dns}]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]string(nil), ImplicitRules...), "tcp/22", "web", "late", "tcp/3306 from 10.0.0.0/8 +1", "office", "udp/53", "dns")
	if got := p.RuleNames(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("names\n got %q\nwant %q", got, want)
	}
	open := p.WithListening([]uint16{9000, 22}).OpenRules()
	if got := fmt.Sprint(open); got != "[[22=tcp/22 8000-8010=web 9000=tcp/listening] [53=udp/53]]" {
		t.Errorf("open rules %s", got)
	}
	tab := p.ScopedTable()
	if got := fmt.Sprint(tab.Monitor); got != "[[3306=office] []]" {
		t.Errorf("monitor %s", got)
	}
	for i, pf := range tab.Prefixes {
		if got := fmt.Sprint(tab.Rules[tab.Group[i]]); pf.String() == "10.1.0.0/16" && got != "[[3306=tcp/3306 from 10.0.0.0/8 +1] []]" {
			t.Errorf("10.1/16 counts 3306 under %s, want the first rule", got)
		}
	}
	if p.MonitorRule(ProtoTCP, 3306).Name != "office" || p.MonitorRule(ProtoTCP, 22) != nil {
		t.Error("MonitorRule")
	}
	renamed, _ := Parse("p.yaml", []byte("tcp:\n  allow: [{port: 22, name: ssh}]\n"))
	plain, _ := Parse("p.yaml", []byte("tcp:\n  allow: [22]\n"))
	if renamed.Digest() == plain.Digest() {
		t.Error("renaming a rule must change the digest (a reload must relabel its counters)")
	}
}

func TestTooManyRules(t *testing.T) {
	var b strings.Builder
	b.WriteString("tcp:\n  allow:\n")
	for i := 1; i <= maxRules+1; i++ {
		fmt.Fprintf(&b, "    - %d\n", i)
	}
	_, err := Parse("p.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d distinct rule names; at most %d", maxRules+1, maxRules)) {
		t.Fatalf("got %v", err)
	}
	// Shared names do not count twice.
	b.Reset()
	b.WriteString("tcp:\n  allow:\n")
	for i := 1; i <= maxRules+1; i++ {
		fmt.Fprintf(&b, "    - {port: %d, name: many}\n", i)
	}
	if _, err := Parse("p.yaml", []byte(b.String())); err != nil {
		t.Fatal(err)
	}
}

// firstWins agrees with the port-by-port definition on random overlapping
// rules, and handles a policy that lists every port.
func TestFirstWins(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 300; n++ {
		var in []RuleRange
		for i := r.IntN(6); i >= 0; i-- {
			a, b := uint16(r.IntN(40)), uint16(r.IntN(40))
			in = append(in, RuleRange{PortRange{min(a, b), max(a, b)}, fmt.Sprint("r", r.IntN(3))})
		}
		got := map[uint16]string{}
		for _, rr := range firstWins(in) {
			for p := uint32(rr.Ports.First); p <= uint32(rr.Ports.Last); p++ {
				if _, dup := got[uint16(p)]; dup {
					t.Fatalf("%v: port %d twice", in, p)
				}
				got[uint16(p)] = rr.Rule
			}
		}
		for p := uint16(0); p < 41; p++ {
			want := ""
			for _, rr := range in {
				if rr.Ports.First <= p && p <= rr.Ports.Last {
					want = rr.Rule
					break
				}
			}
			if got[p] != want {
				t.Fatalf("%v: port %d under %q, want %q", in, p, got[p], want)
			}
		}
	}
	var all []RuleRange
	for p := 1; p <= 65535; p++ {
		all = append(all, RuleRange{PortRange{uint16(p), uint16(p)}, "bulk"})
	}
	if out := firstWins(all); len(out) != 1 || out[0].Ports != (PortRange{1, 65535}) {
		t.Fatalf("%v", out)
	}
}

// Files an attacker or an accident could produce are refused, each with a
// message that says what is wrong and where.
func TestBadPolicyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := "tcp:\n  allow: [22]\n"
	nested := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	cases := map[string]struct{ path, want string }{
		"world-writable": {write("ww.yaml", good, 0o666), "lets others write it"},
		"group-writable": {write("gw.yaml", good, 0o620), "lets others write it"},
		"truncated":      {write("trunc.yaml", "tcp:\n  allow: [22, 80\n", 0o600), "trunc.yaml:"},
		"empty":          {write("empty.yaml", "", 0o600), "missing the tcp section"},
		"garbage":        {write("bin.yaml", "\x00\x01\xfe\xff\x7f", 0o600), "bin.yaml"},
		"deeply nested":  {write("deep.yaml", "tcp:\n  allow: "+nested+"\n", 0o600), "deep.yaml"},
		"duplicate keys": {write("dup.yaml", "tcp:\n  allow: [22]\ntcp:\n  allow: [80]\n", 0o600), "dup.yaml:3"},
		"out of range":   {write("range.yaml", "tcp:\n  allow: [65536]\n", 0o600), "range.yaml:2:11: tcp.allow[0]: port 65536 is out of range"},
	}
	// A symlink is followed, and the file it leads to is what is checked.
	if err := os.Symlink(cases["world-writable"].path, filepath.Join(dir, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	cases["symlink to a writable file"] = struct{ path, want string }{filepath.Join(dir, "link.yaml"), "lets others write it"}
	if os.Geteuid() == 0 {
		other := write("other.yaml", good, 0o644)
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cases["owned by another user"] = struct{ path, want string }{other, "owned by uid 65534"}
	}
	for name, c := range cases {
		_, err := Load(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, c.want)
		}
	}
	if _, err := Load(write("ok.yaml", good, 0o644)); err != nil {
		t.Errorf("a root-owned 0644 file: %v", err)
	}
}

// A FIFO at the policy path (a path recorded in pins another tool wrote,
// read by `status`) is refused at once, not waited on.
func TestLoadRefusesAFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Load(path); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("FIFO: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Load blocked on a FIFO")
	}
}
