// Package policy reads, validates and compiles xdpguard policy files.
//
// A policy is parsed strictly (unknown keys, duplicate keys and wrong types
// are errors), validated as a whole, and compiled into the form the data path
// uses. Every error names the file, line and field, and nothing is compiled
// from a policy with any error: callers get a complete policy or none.
package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Limits on what a policy may say. The GCRA counts whole nanoseconds, so a
// rate up to maxRate (an interval of at least 100 ns) is honoured within
// 0.5%; a burst above maxBurst buys nothing.
const (
	maxRate           = 10_000_000
	maxBurst          = 1_000_000_000
	defaultMaxSources = 65536
	minMaxSources     = 1024
	maxMaxSources     = 1 << 24
	minBan            = time.Second
	maxBan            = 7 * 24 * time.Hour
	// maxFileSize bounds what we read: a policy is a few kilobytes.
	maxFileSize = 4 << 20
)

// Policy is the validated content of a policy file.
type Policy struct {
	// Path is the file it was loaded from ("" when parsed from memory).
	Path string
	// AllowTCP lists the TCP port ranges that accept new connections,
	// sorted and merged.
	AllowTCP []PortRange
	// AllowListening opens, besides AllowTCP, every port a local socket
	// listens on (outside loopback), minus DenyPorts; the daemon keeps the
	// set current (WithListening).
	AllowListening bool
	DenyPorts      []PortRange
	// ListeningUIDs are the users whose listening sockets open their port
	// under AllowListening (root alone unless tcp.listening_users says
	// more): any other local user could otherwise open a port to the world.
	ListeningUIDs []uint32
	// Open lists the rules that open their ports to all (TCP and UDP), in
	// file order: they name the counters of AllowTCP and UDP.Allow.
	Open []Rule
	// Scoped lists the rules that open ports to listed sources only, and
	// the timed rules (see At).
	Scoped []Rule
	// AllowEmpty records that the operator asked for an empty allow-list.
	AllowEmpty bool
	// SYN limits each source (IPv4 /32, IPv6 /64); nil means unlimited.
	SYN *Limit
	// SYNTotal limits each allowed port, all sources together; nil means unlimited.
	SYNTotal *Limit
	// MaxSources sizes the per-source limiter table.
	MaxSources uint32
	// Ban is how long a source that exceeds its SYN limit is dropped
	// entirely; 0 means no bans.
	Ban time.Duration
	// Monitor: judge and count, but pass everything (mode: monitor).
	Monitor bool
	// ICMPEcho limits ICMP/ICMPv6 echo requests per source; nil means none.
	ICMPEcho *Limit
	// UDP, when set, filters UDP by destination port; nil passes all UDP.
	UDP *UDPPolicy
	// Deny lists sources whose packets are all dropped, before anything
	// else: sources.deny and the entries of sources.deny_lists, sorted,
	// none inside another.
	Deny []netip.Prefix
	// Trust lists sources exempt from the rate limits and every ban (port
	// rules and deny lists still apply): sources.trust and the entries of
	// sources.trust_lists, sorted, none inside another.
	Trust []netip.Prefix
	// DenyInline and TrustInline are what the policy file itself lists;
	// DenyLists and TrustLists its list files.
	DenyInline, TrustInline []netip.Prefix
	DenyLists, TrustLists   []SourceList
	// CrowdSec, when set, makes the daemon a CrowdSec bouncer.
	CrowdSec *CrowdSec
	// SynProxy is set when some tcp.allow rule has syn_proxy always or
	// auto: the synproxy section, defaults filled in.
	SynProxy *SynProxy

	// Computed once, on first use (a copy made by At or WithListening
	// starts without them).
	scoped *ScopedTable
	digest *[32]byte
}

// UDPPolicy says which UDP ports accept datagrams.
type UDPPolicy struct {
	// Allow lists ports open to all (scoped ones are in Policy.Scoped).
	Allow []PortRange
	// Replies is where replies to this host's own traffic arrive: the
	// ephemeral port range. RepliesAuto means the kernel's
	// net.ipv4.ip_local_port_range, read at each load; a zero range
	// (First 0) with RepliesAuto false means none.
	Replies     PortRange
	RepliesAuto bool
}

// PortRange is an inclusive range of ports.
type PortRange struct{ First, Last uint16 }

func (r PortRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// Limit is a rate in events per second with a burst.
type Limit struct {
	Rate  uint64
	Burst uint64
}

// Error is a problem found in a policy file, with where it is.
type Error struct {
	File   string
	Line   int // 0 when unknown
	Column int
	Field  string // path of the field, e.g. "ratelimit.syn.rate"
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// file mirrors the YAML document; decoding it strictly rejects unknown keys.
type file struct {
	Mode *string `yaml:"mode"`
	TCP  *struct {
		Allow          []any `yaml:"allow"`
		AllowEmpty     bool  `yaml:"allow_empty"`
		AllowListening bool  `yaml:"allow_listening"`
		ListeningUsers []any `yaml:"listening_users"`
		DenyPorts      []any `yaml:"deny_ports"`
	} `yaml:"tcp"`
	RateLimit *struct {
		SYN *struct {
			Rate       *int64  `yaml:"rate"`
			Burst      *int64  `yaml:"burst"`
			MaxSources *int64  `yaml:"max_sources"`
			Ban        *string `yaml:"ban"`
		} `yaml:"syn"`
		SYNTotal *struct {
			Rate  *int64 `yaml:"rate"`
			Burst *int64 `yaml:"burst"`
		} `yaml:"syn_total"`
	} `yaml:"ratelimit"`
	ICMP *struct {
		Echo *struct {
			Rate  *int64 `yaml:"rate"`
			Burst *int64 `yaml:"burst"`
		} `yaml:"echo"`
	} `yaml:"icmp"`
	UDP *struct {
		Allow   []any   `yaml:"allow"`
		Replies *string `yaml:"replies"`
	} `yaml:"udp"`
	Sources *struct {
		Deny       []string `yaml:"deny"`
		Trust      []string `yaml:"trust"`
		DenyLists  []string `yaml:"deny_lists"`
		TrustLists []string `yaml:"trust_lists"`
	} `yaml:"sources"`
	CrowdSec *rawCrowdSec `yaml:"crowdsec"`
	SynProxy *rawSynProxy `yaml:"synproxy"`
}

// Load reads and validates the policy file at path.
func Load(path string) (*Policy, error) {
	// O_NONBLOCK: a FIFO at path (say, a path recorded in pins another
	// tool wrote) must be refused below, not block the reader forever.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, &Error{File: path, Msg: "not a regular file"}
	}
	if err := checkTrusted(st); err != nil {
		return nil, &Error{File: path, Msg: err.Error()}
	}
	if st.Size() > maxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("file is %d bytes; a policy may be at most %d", st.Size(), maxFileSize)}
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("policy: read %s: %w", path, err)
	}
	p, err := Parse(path, data)
	if p != nil {
		if abs, aerr := filepath.Abs(path); aerr == nil {
			p.Path = abs
		}
		p.CrowdSec.resolve(filepath.Dir(p.Path))
	}
	return p, err
}

// checkTrusted refuses a policy file that someone other than its reader (or
// root) could have written: the policy decides who reaches this host, so
// it must be as protected as the daemon. The file is the one opened, after
// symlinks (a Kubernetes ConfigMap is a chain of them).
func checkTrusted(st os.FileInfo) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if euid := uint32(os.Geteuid()); sys.Uid != 0 && sys.Uid != euid {
		return fmt.Errorf("owned by uid %d: a policy file must be owned by root or by the user reading it (uid %d); chown it", sys.Uid, euid)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("mode %#o lets others write it: chmod go-w", st.Mode().Perm())
	}
	return nil
}

// Parse validates a policy document; name is used in errors. Every problem
// of every stage is reported (up to maxErrors), each with its line, column
// and field; nothing is returned from a document with any.
func Parse(name string, data []byte) (*Policy, error) {
	v := validator{name: name, dir: filepath.Dir(name)}
	if !v.precheck(data) {
		return nil, errors.Join(v.errors()...)
	}
	astFile, err := parseYAML(name, data)
	if err != nil {
		return nil, err
	}
	v.ast = astFile
	var raw file
	if len(astFile.Docs) > 1 {
		if d := astFile.Docs[1]; d.Start != nil {
			v.failPos(d.Start.Position, "", "more than one document (---): a policy is one")
		} else {
			v.failAt(d, "", "more than one document (---): a policy is one")
		}
	}
	if len(astFile.Docs) > 0 {
		v.decode(astFile.Docs[0], reflect.ValueOf(&raw).Elem(), "$")
	}
	p := v.policy(&raw)
	if len(v.errs) > 0 {
		return nil, errors.Join(v.errors()...)
	}
	return p, nil
}

// parseYAML builds the document's syntax tree. go-yaml v1.19 panics on some
// malformed documents (a tagged value where a sequence is expected, found
// by FuzzParse): a bad file must be refused, never crash the daemon
// mid-reload. Only the library's code runs under this recover: a panic in
// our own validation reaches the fuzzer.
func parseYAML(name string, data []byte) (f *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, &Error{File: name, Msg: fmt.Sprintf("the YAML parser failed on this document (%s); check its syntax", short(r))}
		}
	}()
	// Repeated keys are the decoder's to report, each of them (decode).
	f, err = parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		return nil, yamlError(name, err)
	}
	return f, nil
}

func yamlError(name string, err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		pos := ye.GetToken().Position
		return &Error{File: name, Line: pos.Line, Column: pos.Column, Msg: ye.GetMessage()}
	}
	return &Error{File: name, Msg: err.Error()}
}

type validator struct {
	name    string
	dir     string // where relative list files are
	ast     *ast.File
	errs    []error
	dropped int             // errors beyond maxErrors
	bad     map[string]bool // paths whose value could not be decoded (reported)
}

// fail records an error at the YAML path (e.g. "$.tcp.allow[2]"); the line is
// that of the node, or of its closest existing parent.
func (v *validator) fail(path, format string, args ...any) {
	e := &Error{File: v.name, Field: strings.TrimPrefix(path, "$"), Msg: fmt.Sprintf(format, args...)}
	e.Field = strings.TrimPrefix(e.Field, ".")
	e.Line, e.Column = 1, 1
	if len(v.errs) >= maxErrors {
		v.dropped++ // not worth locating
		return
	}
	for p := path; p != "" && p != "$"; p = parentPath(p) {
		if tok := v.token(p); tok != nil {
			e.Line, e.Column = tok.Position.Line, tok.Position.Column
			break
		}
	}
	v.add(e)
}

// token is where path is written: the key for a mapping field, the item
// for a sequence element.
func (v *validator) token(path string) *token.Token {
	parent := parentPath(path)
	if m, ok := v.node(parent).(*ast.MappingNode); ok && !strings.HasSuffix(path, "]") {
		key := path[len(parent)+1:]
		for _, kv := range m.Values {
			if kv.Key.String() == key {
				return kv.Key.GetToken()
			}
		}
	}
	if n := v.node(path); n != nil {
		return n.GetToken()
	}
	return nil
}

func (v *validator) node(path string) ast.Node {
	if v.ast == nil {
		return nil
	}
	p, err := yaml.PathString(path)
	if err != nil {
		return nil
	}
	n, err := p.FilterFile(v.ast)
	if err != nil {
		return nil
	}
	return n
}

func parentPath(p string) string {
	if p == "$" {
		return ""
	}
	i := strings.LastIndexAny(p, ".[")
	if i <= 0 {
		return "$"
	}
	return p[:i]
}

func (v *validator) policy(raw *file) *Policy {
	p := &Policy{MaxSources: defaultMaxSources}
	if raw.TCP == nil {
		v.fail("$", "missing the tcp section: say which ports accept connections (tcp.allow)")
		return p
	}
	if raw.Mode != nil {
		switch *raw.Mode {
		case "enforce":
		case "monitor":
			p.Monitor = true
		default:
			v.fail("$.mode", "%q: want enforce or monitor", *raw.Mode)
		}
	}
	p.AllowTCP = v.allowList("$.tcp.allow", raw.TCP.Allow, ProtoTCP, p)
	if i := raw.ICMP; i != nil && i.Echo != nil {
		p.ICMPEcho = v.limit("$.icmp.echo", i.Echo.Rate, i.Echo.Burst)
	}
	if u := raw.UDP; u != nil {
		p.UDP = &UDPPolicy{Allow: v.allowList("$.udp.allow", u.Allow, ProtoUDP, p), RepliesAuto: true}
		if u.Replies != nil {
			switch r := strings.TrimSpace(*u.Replies); r {
			case "auto":
			case "none":
				p.UDP.RepliesAuto = false
			default:
				if pr, ok := v.portRange("$.udp.replies", r); ok {
					p.UDP.Replies, p.UDP.RepliesAuto = pr, false
				}
			}
		}
	}
	p.AllowEmpty = raw.TCP.AllowEmpty
	p.AllowListening = raw.TCP.AllowListening
	p.ListeningUIDs = v.listeningUsers("$.tcp.listening_users", raw.TCP.ListeningUsers)
	if len(raw.TCP.ListeningUsers) > 0 && !p.AllowListening {
		v.fail("$.tcp.listening_users", "only means something with allow_listening: true")
	}
	for i, item := range raw.TCP.DenyPorts {
		if r, ok := v.portRange(fmt.Sprintf("$.tcp.deny_ports[%d]", i), item); ok {
			p.DenyPorts = append(p.DenyPorts, r)
		}
	}
	p.DenyPorts = mergeRanges(p.DenyPorts)
	if len(p.DenyPorts) > 0 && !p.AllowListening {
		v.fail("$.tcp.deny_ports", "only means something with allow_listening: true")
	}
	for _, d := range p.DenyPorts {
		for _, a := range p.AllowTCP {
			if d.First <= a.Last && a.First <= d.Last {
				v.fail("$.tcp.deny_ports", "%s overlaps allowed %s", d, a)
			}
		}
	}
	switch {
	case len(raw.TCP.Allow) == 0 && !p.AllowEmpty && !p.AllowListening:
		v.fail("$.tcp.allow", "empty allow-list would refuse every new TCP connection, SSH included; "+
			"set tcp.allow_empty: true if that is what you want")
	case len(raw.TCP.Allow) > 0 && p.AllowEmpty:
		v.fail("$.tcp.allow_empty", "allow_empty: true with a non-empty allow-list; remove one of them")
	}

	if rl := raw.RateLimit; rl != nil {
		if s := rl.SYN; s != nil {
			p.SYN = v.limit("$.ratelimit.syn", s.Rate, s.Burst)
			if s.MaxSources != nil {
				if n, ok := v.inRange("$.ratelimit.syn.max_sources", *s.MaxSources, minMaxSources, maxMaxSources, ""); ok {
					p.MaxSources = uint32(n)
				}
			}
			if s.Ban != nil {
				d, err := time.ParseDuration(*s.Ban)
				switch {
				case err != nil:
					v.fail("$.ratelimit.syn.ban", "%q is not a duration (like 60s, 10m, 1h)", *s.Ban)
				case d < minBan || d > maxBan:
					v.fail("$.ratelimit.syn.ban", "%s is out of range [%s, %s]", d, minBan, maxBan)
				default:
					p.Ban = d
				}
			}
		}
		if s := rl.SYNTotal; s != nil {
			p.SYNTotal = v.limit("$.ratelimit.syn_total", s.Rate, s.Burst)
		}
	}
	if n := len(p.RuleNames()) - len(ImplicitRules); n > maxRules {
		v.fail("$.tcp.allow", "%d distinct rule names; at most %d: each item without a name is a rule of its own "+
			"(tcp/22, tcp/80, ...); write ranges, or give items a shared name (name: web) to count them together", n, maxRules)
	}
	if n := len(p.ScopedTable().Groups); n > maxScopedGroups {
		v.fail("$.tcp.allow", "source-scoped rules give %d distinct port sets; at most %d", n, maxScopedGroups)
	}
	if src := raw.Sources; src != nil {
		p.DenyInline = v.sourceList("$.sources.deny", src.Deny)
		p.TrustInline = v.sourceList("$.sources.trust", src.Trust)
		// The inline entries first, the lists' appended: one slice, made
		// a union in place.
		var denied, trusted []netip.Prefix
		p.DenyLists, denied = v.lists("$.sources.deny_lists", src.DenyLists, slices.Clone(p.DenyInline))
		p.TrustLists, trusted = v.lists("$.sources.trust_lists", src.TrustLists, slices.Clone(p.TrustInline))
		p.Deny, p.Trust = p.DenyInline, p.TrustInline
		if len(p.DenyLists) > 0 {
			p.Deny = union(denied)
		}
		if len(p.TrustLists) > 0 {
			p.Trust = union(trusted)
		}
		for i, o := range overlapping(p.Deny, p.Trust) {
			if i == maxErrors {
				break
			}
			v.overlap(o[0], o[1], p)
		}
	}
	p.CrowdSec = v.crowdSec(raw.CrowdSec)
	v.synProxy(raw.SynProxy, p)
	return p
}

func (v *validator) limit(path string, rate, burst *int64) *Limit {
	var l Limit
	okRate, okBurst := false, false
	if rate == nil {
		if !v.bad[path+".rate"] {
			v.fail(path, "missing rate (per second)")
		}
	} else {
		l.Rate, okRate = v.inRange(path+".rate", *rate, 1, maxRate, " per second")
	}
	if burst == nil {
		if !v.bad[path+".burst"] {
			v.fail(path, "missing burst")
		}
	} else {
		l.Burst, okBurst = v.inRange(path+".burst", *burst, 1, maxBurst, "")
	}
	if !okRate || !okBurst {
		return nil
	}
	return &l
}

// inRange checks a whole number against [lo, hi], saying how to fix it.
func (v *validator) inRange(path string, n, lo, hi int64, unit string) (uint64, bool) {
	switch {
	case n < 0:
		v.fail(path, "%d is negative; use %d..%d%s", n, lo, hi, unit)
	case n < lo || n > hi:
		v.fail(path, "%d is out of range [%d, %d]%s", n, lo, hi, unit)
	default:
		return uint64(n), true
	}
	return 0, false
}

// portRange accepts 443, "443" or "9000-9002".
func (v *validator) portRange(path string, item any) (PortRange, bool) {
	switch x := item.(type) {
	case uint64:
		if x < 1 || x > 65535 {
			v.fail(path, "port %d is out of range [1, 65535]", x)
			return PortRange{}, false
		}
		return PortRange{uint16(x), uint16(x)}, true
	case int64:
		v.fail(path, "port %d is out of range [1, 65535]", x)
		return PortRange{}, false
	case string:
		lo, hi, isRange := strings.Cut(strings.TrimSpace(x), "-")
		first, err1 := parsePort(lo)
		last, err2 := first, error(nil)
		if isRange {
			last, err2 = parsePort(hi)
		}
		if err := errors.Join(err1, err2); err != nil {
			v.fail(path, "%q: %v (want a port like 443 or a range like 9000-9002)", x, err)
			return PortRange{}, false
		}
		if last < first {
			v.fail(path, "range %q is reversed: write %d-%d", x, last, first)
			return PortRange{}, false
		}
		return PortRange{first, last}, true
	default:
		v.fail(path, "want a port like 443 or a range like \"9000-9002\", got %v", item)
		return PortRange{}, false
	}
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d is out of range [1, 65535]", n)
	}
	return uint16(n), nil
}

// mergeRanges sorts ranges and joins overlapping or adjacent ones.
func mergeRanges(rs []PortRange) []PortRange {
	sort.Slice(rs, func(i, j int) bool { return rs[i].First < rs[j].First })
	var out []PortRange
	for _, r := range rs {
		if n := len(out); n > 0 && uint32(r.First) <= uint32(out[n-1].Last)+1 {
			if r.Last > out[n-1].Last {
				out[n-1].Last = r.Last
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// Allows reports whether TCP port p accepts new connections.
func (p *Policy) Allows(port uint16) bool {
	i := sort.Search(len(p.AllowTCP), func(i int) bool { return p.AllowTCP[i].Last >= port })
	return i < len(p.AllowTCP) && p.AllowTCP[i].First <= port
}

// Digest identifies the policy's meaning: files that differ only in layout,
// order or comments have the same digest.
func (p *Policy) Digest() [32]byte {
	if p.digest == nil {
		d := p.computeDigest()
		p.digest = &d
	}
	return *p.digest
}

func (p *Policy) computeDigest() [32]byte {
	h := sha256.New()
	put := func(v uint64) { _ = binary.Write(h, binary.LittleEndian, v) }
	put(uint64(len(p.AllowTCP)))
	for _, r := range p.AllowTCP {
		put(uint64(r.First)<<16 | uint64(r.Last))
	}
	for _, l := range []*Limit{p.SYN, p.SYNTotal, p.ICMPEcho} {
		if l == nil {
			put(0)
			put(0)
			continue
		}
		put(l.Rate)
		put(l.Burst)
	}
	put(uint64(p.MaxSources))
	put(uint64(p.Ban))
	h.Write([]byte(fmt.Sprint("listening", p.AllowListening, p.DenyPorts, p.ListeningUIDs)))
	if p.Monitor {
		h.Write([]byte("monitor"))
	}
	if p.UDP != nil {
		h.Write([]byte(fmt.Sprint("udp", p.UDP.Allow, p.UDP.Replies, p.UDP.RepliesAuto)))
	}
	h.Write([]byte(p.scopedDigest()))
	// Which rule counts each open port (names and overlaps, not the order
	// of the file).
	h.Write([]byte(fmt.Sprint("open", p.OpenRules())))
	st := p.ScopedTable()
	h.Write([]byte(fmt.Sprint("scoped", st.Rules, st.Monitor)))
	h.Write([]byte(fmt.Sprint(p.SynProxy, p.SynProxyPorts(SynProxyAlways), p.SynProxyPorts(SynProxyAuto))))
	var buf []byte
	for _, list := range [][]netip.Prefix{p.Deny, p.Trust} {
		put(uint64(len(list)))
		for _, pr := range list {
			buf, _ = pr.AppendBinary(buf[:0])
			h.Write(buf)
		}
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d
}

// Summary is a one-line human description of the policy.
func (p *Policy) Summary() string {
	var ports []string
	for _, r := range p.AllowTCP {
		ports = append(ports, r.String())
	}
	s := "tcp allow [" + strings.Join(ports, ",") + "]"
	if p.Monitor {
		s = "MONITOR ONLY (nothing is dropped); " + s
	}
	if p.SYN != nil {
		s += fmt.Sprintf("; syn per source %d/s burst %d (table %d)", p.SYN.Rate, p.SYN.Burst, p.MaxSources)
		if p.Ban > 0 {
			s += fmt.Sprintf(", ban %s", p.Ban)
		}
	} else {
		s += "; syn per source unlimited"
	}
	if p.SYNTotal != nil {
		s += fmt.Sprintf("; syn per port %d/s burst %d", p.SYNTotal.Rate, p.SYNTotal.Burst)
	} else {
		s += "; syn per port unlimited"
	}
	if p.AllowListening {
		s += "; plus listening ports"
		if len(p.DenyPorts) > 0 {
			s += fmt.Sprint(" except ", p.DenyPorts)
		}
	}
	if p.ICMPEcho != nil {
		s += fmt.Sprintf("; icmp echo per source %d/s burst %d", p.ICMPEcho.Rate, p.ICMPEcho.Burst)
	}
	if u := p.UDP; u != nil {
		var ports []string
		for _, r := range u.Allow {
			ports = append(ports, r.String())
		}
		replies := "auto"
		if !u.RepliesAuto {
			replies = "none"
			if u.Replies.First != 0 {
				replies = u.Replies.String()
			}
		}
		s += "; udp allow [" + strings.Join(ports, ",") + "] replies " + replies
	}
	if len(p.Scoped) > 0 {
		s += fmt.Sprintf("; %d source-scoped rules", len(p.Scoped))
	}
	if p.SynProxy != nil {
		s += fmt.Sprintf("; syn proxy always %v auto %v", p.SynProxyPorts(SynProxyAlways), p.SynProxyPorts(SynProxyAuto))
		if p.SynProxy.AutoAbove > 0 {
			s += fmt.Sprintf(" (above %d/s, hold %s)", p.SynProxy.AutoAbove, p.SynProxy.AutoHold)
		}
	}
	if len(p.Deny) > 0 || len(p.Trust) > 0 {
		s += fmt.Sprintf("; sources: %d denied, %d trusted", len(p.Deny), len(p.Trust))
	}
	return s
}
