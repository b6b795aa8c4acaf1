package policy

import (
	"container/heap"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"
)

// Names of the rules every policy has implicitly, in the data path's fixed
// counter slots (bpf/types.h enum xdpg_rule_slot, in this order).
const (
	RuleTCPClosed    = "tcp/closed"    // SYNs to ports no rule opens to the source
	RuleUDPClosed    = "udp/closed"    // datagrams to ports udp.allow does not open
	RuleUDPReplies   = "udp/replies"   // datagrams to the ephemeral range (replies)
	RuleSourcesDeny  = "sources/deny"  // every packet from sources.deny
	RuleTCPListening = "tcp/listening" // SYNs to ports opened by allow_listening only
)

// ImplicitRules lists the implicit rules in slot order.
var ImplicitRules = []string{RuleTCPClosed, RuleUDPClosed, RuleUDPReplies, RuleSourcesDeny, RuleTCPListening}

// maxRules bounds the distinct rule names of a policy. The data path has
// room for twice as many (plus the implicit ones), so a reload can bring
// an entirely new set while the old one still counts.
const maxRules = 500

// maxRuleName bounds an operator's rule name, in bytes.
const maxRuleName = 63

// RuleRange is a port range counted under a rule.
type RuleRange struct {
	Ports PortRange
	Rule  string
}

func (r RuleRange) String() string { return r.Ports.String() + "=" + r.Rule }

// defaultRuleName names a rule the operator did not name, from what it
// says: "tcp/22", "udp/5353 from 10.0.0.0/8", "tcp/3306 from 172.16.0.0/12 +1"
// (and one more prefix). The slash keeps these apart from operators' names.
func defaultRuleName(r Rule) string {
	proto := "tcp"
	if r.Proto == ProtoUDP {
		proto = "udp"
	}
	s := proto + "/" + r.Ports.String()
	if len(r.From) > 0 {
		s += " from " + r.From[0].String()
		if len(r.From) > 1 {
			s += fmt.Sprintf(" +%d", len(r.From)-1)
		}
	}
	return s
}

// checkRuleName accepts what reads well as a Prometheus label value and on
// a terminal: printable, no slash (reserved for default and implicit names).
func checkRuleName(name string) error {
	switch {
	case name == "":
		return errors.New("want a non-empty string")
	case len(name) > maxRuleName:
		return fmt.Errorf("%d bytes; at most %d", len(name), maxRuleName)
	case strings.Contains(name, "/"):
		return fmt.Errorf("%q: a name may not contain / (kept for the names xdpguard gives)", name)
	case strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return fmt.Errorf("%q: only printable characters", name)
	}
	return nil
}

// firstWins resolves overlapping ranges: each port is counted under the
// first rule (in the order given) that names it. The result is sorted,
// disjoint, and adjacent ranges of one rule are joined. A sweep over the
// range ends with a heap of the open rules by position: O(n log n), so a
// policy listing every port one by one stays fast.
func firstWins(in []RuleRange) []RuleRange {
	type edge struct {
		at    uint32
		rule  int
		start bool
	}
	edges := make([]edge, 0, 2*len(in))
	for i, r := range in {
		edges = append(edges, edge{uint32(r.Ports.First), i, true}, edge{uint32(r.Ports.Last) + 1, i, false})
	}
	sort.Slice(edges, func(i, j int) bool { return edges[i].at < edges[j].at })
	open := &intHeap{}
	ended := make([]bool, len(in))
	var out []RuleRange
	for i := 0; i < len(edges); {
		at := edges[i].at
		for ; i < len(edges) && edges[i].at == at; i++ {
			if edges[i].start {
				heap.Push(open, edges[i].rule)
			} else {
				ended[edges[i].rule] = true
			}
		}
		for open.Len() > 0 && ended[(*open)[0]] {
			heap.Pop(open)
		}
		if open.Len() == 0 || i == len(edges) {
			continue
		}
		lo, hi, rule := at, edges[i].at-1, in[(*open)[0]].Rule
		if n := len(out); n > 0 && out[n-1].Rule == rule && uint32(out[n-1].Ports.Last)+1 == lo {
			out[n-1].Ports.Last = uint16(hi)
		} else {
			out = append(out, RuleRange{PortRange{uint16(lo), uint16(hi)}, rule})
		}
	}
	return out
}

// intHeap is a min-heap of rule positions.
type intHeap []int

func (h intHeap) Len() int           { return len(h) }
func (h intHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h intHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *intHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *intHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// OpenRules says which rule each port open to all is counted under, for TCP
// and UDP: the first open rule in the file naming it; TCP ports open only
// because a socket listens on them count under tcp/listening.
func (p *Policy) OpenRules() [2][]RuleRange {
	var in [2][]RuleRange
	for _, r := range p.Open {
		i := protoIndex(r.Proto)
		in[i] = append(in[i], RuleRange{r.Ports, r.Name})
	}
	for _, r := range p.AllowTCP {
		in[0] = append(in[0], RuleRange{r, RuleTCPListening}) // last: only what no rule names
	}
	return [2][]RuleRange{firstWins(in[0]), firstWins(in[1])}
}

// RuleNames lists the policy's rules: the implicit ones, then every rule
// name in file order (TCP, then UDP), each once.
func (p *Policy) RuleNames() []string {
	names := slices.Clone(ImplicitRules)
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	all := append(slices.Clone(p.Open), p.Scoped...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].Proto < all[j].Proto })
	for _, r := range all {
		if !seen[r.Name] {
			seen[r.Name] = true
			names = append(names, r.Name)
		}
	}
	return names
}
