package trace

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/listening"
	"github.com/xdpguard/xdpguard/pkg/policy"
	"github.com/xdpguard/xdpguard/pkg/protect"
	"github.com/xdpguard/xdpguard/pkg/reference"
)

// Preview judges sampled SYNs and datagrams under a candidate policy: today's
// verdict is the loaded program's own (exact, per sample); the candidate's
// is reference.Classify's (§1 and §2: ports, scoped rules, deny lists,
// monitor mode). Samples that a limit or a ban decided today are counted
// apart: the candidate's limits start from today's buckets, which no model
// of a sample can know. Each sample is also judged under the current policy
// by the model; where that disagrees with the kernel, the file is not what is
// loaded (or the model is wrong), and the report says how often.
type Preview struct {
	current, candidate *policy.Policy
	protected          map[netip.Prefix]bool // keys sources.deny never cuts
	r                  Report
	cut, opened        map[flow]*Flow
}

// Report is what a preview found.
type Report struct {
	Samples int `json:"samples"`
	// Compared: samples judged by both policies' rules.
	Compared int `json:"compared"`
	// LimitedToday: dropped today by a limit or a ban; not compared.
	LimitedToday int `json:"limited_today"`
	// ModelDisagrees: samples whose kernel verdict under the policy in
	// force differs from the model's under the current policy file.
	ModelDisagrees int `json:"model_disagrees"`
	// Cut: sampled traffic that passes today and the candidate drops;
	// Opened: dropped today, and the candidate lets it through.
	Cut    Change `json:"cut"`
	Opened Change `json:"opened"`
}

// Change is one direction of a preview's differences.
type Change struct {
	Samples    int     `json:"samples"`
	TopSources []Count `json:"top_sources"`
	TopPorts   []Count `json:"top_ports"`
	Flows      []Flow  `json:"flows"`
}

// Count is a source's or a port's number of samples.
type Count struct {
	Key     string `json:"key"`
	Samples int    `json:"samples"`
}

// Flow is a source, a protocol and a destination port, with the verdicts.
type Flow struct {
	Source    string `json:"source"`
	Proto     string `json:"proto"`
	Port      uint16 `json:"port"`
	Samples   int    `json:"samples"`
	Today     string `json:"today"`     // reason today (the kernel's)
	Candidate string `json:"candidate"` // reason under the candidate
	Rule      string `json:"rule,omitempty"`
}

type flow struct {
	src   netip.Addr
	proto string
	port  uint16
}

// NewPreview compares current (the policy in force) with candidate;
// protected are the sources the data path never denies.
func NewPreview(current, candidate *policy.Policy, protected protect.Sources) *Preview {
	return &Preview{current: current, candidate: candidate, protected: protectedKeys(protected), cut: map[flow]*Flow{}, opened: map[flow]*Flow{}}
}

// protectedKeys are the keys of protected sources (an IPv6 one's /64), as
// the daemon writes them into xdpg_protected.
func protectedKeys(ps protect.Sources) map[netip.Prefix]bool {
	out := map[netip.Prefix]bool{}
	for a := range ps {
		out[reference.KeyOf(a)] = true
	}
	return out
}

// judge is reference.Classify under pol with the data path's exemption of
// protected sources from sources.deny (docs/datapath.md §1.5; link-local
// sources Classify exempts itself).
func judge(frame []byte, pol *policy.Policy, protected map[netip.Prefix]bool) reference.Verdict {
	v := reference.Classify(frame, pol)
	if v.Reason == datapath.DropSourceDenied && protected[reference.KeyOf(v.Addr)] {
		undenied := *pol
		undenied.Deny = nil
		v = reference.Classify(frame, &undenied)
	}
	return v
}

// stateful: reasons decided by a limiter or a ban, not by rules.
func stateful(r datapath.Reason) bool {
	return r == datapath.DropRateLimited || r == datapath.DropPortRateLimited || r == datapath.DropBanned ||
		r == datapath.DropICMPRateLimited
}

// Add judges one sample.
func (p *Preview) Add(pk Packet) {
	p.r.Samples++
	if stateful(pk.reason) {
		p.r.LimitedToday++
		return
	}
	cur := judge(pk.frame, p.current, p.protected)
	if cur.Reason != pk.reason || cur.Passes(p.current) != pk.passed {
		p.r.ModelDisagrees++
	}
	cand := judge(pk.frame, p.candidate, p.protected)
	p.r.Compared++
	candPass := cand.Passes(p.candidate)
	if candPass == pk.passed {
		return
	}
	into := p.cut
	if candPass {
		into = p.opened
	}
	k := flow{pk.src, pk.Proto, pk.DstPort}
	f := into[k]
	if f == nil {
		f = &Flow{Source: pk.Src, Proto: pk.Proto, Port: pk.DstPort, Today: pk.Reason, Candidate: cand.Reason.Name(), Rule: cand.Rule}
		into[k] = f
	}
	f.Samples++
}

// topN entries kept in each list of a report.
const topN = 10

// Report sums up the samples added so far.
func (p *Preview) Report() Report {
	r := p.r
	r.Cut, r.Opened = change(p.cut), change(p.opened)
	return r
}

func change(flows map[flow]*Flow) Change {
	c := Change{TopSources: []Count{}, TopPorts: []Count{}, Flows: []Flow{}}
	bySrc, byPort := map[string]int{}, map[string]int{}
	for _, f := range flows {
		c.Samples += f.Samples
		bySrc[f.Source] += f.Samples
		byPort[fmt.Sprintf("%s/%d", f.Proto, f.Port)] += f.Samples
		c.Flows = append(c.Flows, *f)
	}
	sort.Slice(c.Flows, func(i, j int) bool {
		a, b := c.Flows[i], c.Flows[j]
		if a.Samples != b.Samples {
			return a.Samples > b.Samples
		}
		return fmt.Sprint(a.Source, a.Proto, a.Port) < fmt.Sprint(b.Source, b.Proto, b.Port)
	})
	if len(c.Flows) > topN {
		c.Flows = c.Flows[:topN]
	}
	c.TopSources, c.TopPorts = top(bySrc), top(byPort)
	return c
}

func top(m map[string]int) []Count {
	out := []Count{}
	for k, n := range m {
		out = append(out, Count{k, n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Samples != out[j].Samples {
			return out[i].Samples > out[j].Samples
		}
		return out[i].Key < out[j].Key
	})
	if len(out) > topN {
		out = out[:topN]
	}
	return out
}

// Warning is a candidate's cut of something that must never be cut: an
// established SSH session's client, or a protected source.
type Warning struct {
	Source string `json:"source"`
	Why    string `json:"why"`
	What   string `json:"what"`
}

// Warnings judges, under the candidate, the clients of the SSH sessions
// established now (sessions, from listening.Established) and the protected
// sources (protect.Discover): a candidate that denies one cuts it at once;
// one that closes its SSH port to a session's client refuses its next
// connection.
func Warnings(candidate *policy.Policy, sessions []listening.Conn, protected protect.Sources) []Warning {
	out := []Warning{}
	keys := protectedKeys(protected)
	for _, s := range sessions {
		peer := s.Peer.Addr()
		ack := judge(tcpFrame(peer, s.Local.Addr(), s.Peer.Port(), s.Local.Port(), 0x10), candidate, keys)
		if !ack.Passes(candidate) {
			out = append(out, Warning{peer.String(), "ssh-session",
				fmt.Sprintf("the candidate CUTS the established SSH session %s -> %s now (%s)", s.Peer, s.Local, ack.Reason.Name())})
			continue
		}
		syn := judge(tcpFrame(peer, s.Local.Addr(), s.Peer.Port(), s.Local.Port(), 0x02), candidate, keys)
		if !syn.Passes(candidate) {
			out = append(out, Warning{peer.String(), "ssh-session",
				fmt.Sprintf("the candidate refuses new SSH connections from %s, the client of an established session to %s (%s)", peer, s.Local, syn.Reason.Name())})
		}
	}
	addrs := make([]netip.Addr, 0, len(protected))
	for a := range protected {
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].Less(addrs[j]) })
	// A protected source the candidate denies stays exempt in the data
	// path: said, since the list probably holds more than it should.
	for _, a := range addrs {
		dst := netip.IPv4Unspecified()
		if a.Is6() {
			dst = netip.IPv6Unspecified()
		}
		if v := reference.Classify(tcpFrame(a, dst, 40000, 22, 0x10), candidate); v.Reason == datapath.DropSourceDenied {
			out = append(out, Warning{a.String(), protected[a].String(),
				fmt.Sprintf("the candidate's sources.deny holds %s, a protected source (%s): the data path keeps it exempt, but the list is probably too wide", a, protected[a])})
		}
	}
	return out
}

// tcpFrame is an Ethernet frame of one TCP segment from src to dst, for the
// model: only the headers it reads are filled.
func tcpFrame(src, dst netip.Addr, sport, dport uint16, flags uint8) []byte {
	var b []byte
	eth := make([]byte, 14)
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	tcp[12], tcp[13] = 5<<4, flags
	if src.Is4() {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		ip := make([]byte, 20)
		ip[0], ip[8], ip[9] = 0x45, 64, 6
		binary.BigEndian.PutUint16(ip[2:], 40)
		s, d := src.As4(), dst.Unmap().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		b = append(append(eth, ip...), tcp...)
	} else {
		binary.BigEndian.PutUint16(eth[12:], 0x86dd)
		ip := make([]byte, 40)
		ip[0], ip[6], ip[7] = 0x60, 6, 64
		binary.BigEndian.PutUint16(ip[4:], 20)
		s, d := src.As16(), dst.As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
		b = append(append(eth, ip...), tcp...)
	}
	return b
}
