package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Marshal writes the policy back as a policy file: canonical YAML that
// parses to a policy with the same digest (FuzzParse holds it to that).
// Rules keep their order within their kind; names xdpguard would give are
// left out.
func (p *Policy) Marshal() []byte {
	var b strings.Builder
	if p.Monitor {
		b.WriteString("mode: monitor\n")
	}
	b.WriteString("tcp:\n")
	rules := func(proto uint8) []string {
		var out []string
		for _, list := range [][]Rule{p.Open, p.Scoped} {
			for _, r := range list {
				if r.Proto == proto {
					out = append(out, r.yaml())
				}
			}
		}
		return out
	}
	if tcp := rules(ProtoTCP); len(tcp) > 0 {
		b.WriteString("  allow:\n")
		for _, r := range tcp {
			b.WriteString("    - " + r + "\n")
		}
	}
	if p.AllowEmpty {
		b.WriteString("  allow_empty: true\n")
	}
	if p.AllowListening {
		b.WriteString("  allow_listening: true\n")
		var users []string
		for _, uid := range p.ListeningUIDs {
			if uid != 0 {
				users = append(users, strconv.FormatUint(uint64(uid), 10))
			}
		}
		if len(users) > 0 {
			b.WriteString("  listening_users: [" + strings.Join(users, ", ") + "]\n")
		}
	}
	if len(p.DenyPorts) > 0 {
		b.WriteString("  deny_ports: [" + rangeList(p.DenyPorts) + "]\n")
	}
	if p.SYN != nil || p.SYNTotal != nil {
		b.WriteString("ratelimit:\n")
		if p.SYN != nil {
			fmt.Fprintf(&b, "  syn: {rate: %d, burst: %d", p.SYN.Rate, p.SYN.Burst)
			if p.MaxSources != defaultMaxSources {
				fmt.Fprintf(&b, ", max_sources: %d", p.MaxSources)
			}
			if p.Ban > 0 {
				fmt.Fprintf(&b, ", ban: %s", p.Ban)
			}
			b.WriteString("}\n")
		}
		if p.SYNTotal != nil {
			fmt.Fprintf(&b, "  syn_total: {rate: %d, burst: %d}\n", p.SYNTotal.Rate, p.SYNTotal.Burst)
		}
	}
	if p.ICMPEcho != nil {
		fmt.Fprintf(&b, "icmp:\n  echo: {rate: %d, burst: %d}\n", p.ICMPEcho.Rate, p.ICMPEcho.Burst)
	}
	if u := p.UDP; u != nil {
		b.WriteString("udp:\n")
		udp := rules(ProtoUDP)
		b.WriteString("  allow:")
		if len(udp) == 0 {
			b.WriteString(" []")
		}
		b.WriteString("\n")
		for _, r := range udp {
			b.WriteString("    - " + r + "\n")
		}
		switch {
		case u.RepliesAuto:
			b.WriteString("  replies: auto\n")
		case u.Replies.First == 0:
			b.WriteString("  replies: none\n")
		default:
			fmt.Fprintf(&b, "  replies: %q\n", u.Replies.String())
		}
	}
	if len(p.Deny)+len(p.Trust)+len(p.DenyLists)+len(p.TrustLists) > 0 {
		b.WriteString("sources:\n")
		for _, l := range []struct {
			key  string
			list []netip.Prefix
		}{{"deny", p.DenyInline}, {"trust", p.TrustInline}} {
			if len(l.list) > 0 {
				b.WriteString("  " + l.key + ": [" + prefixList(l.list) + "]\n")
			}
		}
		for _, l := range []struct {
			key   string
			files []SourceList
		}{{"deny_lists", p.DenyLists}, {"trust_lists", p.TrustLists}} {
			if len(l.files) > 0 {
				paths := make([]string, len(l.files))
				for i, f := range l.files {
					paths[i] = strconv.Quote(f.Path)
				}
				b.WriteString("  " + l.key + ": [" + strings.Join(paths, ", ") + "]\n")
			}
		}
	}
	b.WriteString(p.SynProxy.yaml())
	if p.CrowdSec != nil {
		b.WriteString(p.CrowdSec.yaml())
	}
	return []byte(b.String())
}

// yaml is the rule as one flow-style allow-list item.
func (r Rule) yaml() string {
	var f []string
	if r.Ports.First == r.Ports.Last {
		f = append(f, "port: "+strconv.Itoa(int(r.Ports.First)))
	} else {
		f = append(f, fmt.Sprintf("ports: %q", r.Ports.String()))
	}
	if len(r.From) > 0 {
		f = append(f, "from: ["+prefixList(r.From)+"]")
	}
	if r.Name != defaultRuleName(r) {
		f = append(f, "name: "+strconv.Quote(r.Name))
	}
	if r.Monitor {
		f = append(f, "mode: monitor")
	}
	if r.SynProxy != SynProxyOff {
		f = append(f, "syn_proxy: "+r.SynProxy.String())
	}
	if !r.Expires.IsZero() {
		f = append(f, "expires: "+strconv.Quote(r.Expires.Format(time.RFC3339Nano)))
	}
	if s := r.Schedule; s != nil {
		var days []string
		for d, on := range s.Days {
			if on {
				days = append(days, strings.ToLower(time.Weekday(d).String()[:3]))
			}
		}
		f = append(f, fmt.Sprintf("schedule: {days: [%s], from: %q, to: %q, tz: %q}",
			strings.Join(days, ", "), clock(s.From), clock(s.To), s.Loc.String()))
	}
	return "{" + strings.Join(f, ", ") + "}"
}

func clock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

func rangeList(rs []PortRange) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = strconv.Quote(r.String())
	}
	return strings.Join(out, ", ")
}

func prefixList(ps []netip.Prefix) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = strconv.Quote(p.String())
	}
	return strings.Join(out, ", ")
}
