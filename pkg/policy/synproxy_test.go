package policy

import (
	"strings"
	"testing"
)

// The syn_proxy contract: where it may appear, what it needs, and the
// errors that name the line and field.
func TestSynProxyPolicy(t *testing.T) {
	for _, c := range []struct {
		name, doc, err string
	}{
		{"udp rule", "tcp:\n  allow: [22]\nudp:\n  allow:\n    - {port: 53, syn_proxy: always}\n", "udp.allow[0].syn_proxy: SYN cookies are TCP's"},
		{"bad value", "tcp:\n  allow:\n    - {port: 443, syn_proxy: yes}\n", "tcp.allow[0].syn_proxy: yes: want always, auto or off"},
		{"auto without auto_above", "tcp:\n  allow:\n    - {port: 443, syn_proxy: auto}\n", "synproxy.auto_above: syn_proxy: auto needs"},
		{"auto_above without auto", "tcp:\n  allow:\n    - {port: 443, syn_proxy: always}\nsynproxy:\n  auto_above: 10\n", "synproxy.auto_above: only means something with a rule that has syn_proxy: auto"},
		{"section without rules", "tcp:\n  allow: [443]\nsynproxy:\n  budget:\n    total: {rate: 1, burst: 1}\n", "synproxy: only means something"},
		{"monitor rule", "tcp:\n  allow:\n    - {port: 443, from: [10.0.0.0/8], mode: monitor, syn_proxy: always}\n", "syn_proxy: a rule in mode: monitor"},
		{"hold out of range", "tcp:\n  allow:\n    - {port: 443, syn_proxy: auto}\nsynproxy:\n  auto_above: 10\n  auto_hold: 2h\n", "synproxy.auto_hold: 2h0m0s is out of range"},
		{"unknown key", "tcp:\n  allow: [443]\nsynproxy:\n  auto_abov: 10\n", "auto_abov"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("error %v, want one containing %q", err, c.err)
			}
			if err != nil && !strings.Contains(err.Error(), "p.yaml:") {
				t.Errorf("error %v does not name the file and line", err)
			}
		})
	}
}

func TestSynProxyPortsAndDefaults(t *testing.T) {
	p, err := Parse("p.yaml", []byte(`tcp:
  allow:
    - 22
    - {ports: 8000-8010, syn_proxy: auto}
    - {port: 8005, syn_proxy: always}
    - {port: 443, from: [10.0.0.0/8], syn_proxy: always}
synproxy:
  auto_above: 5000
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.SynProxyPorts(SynProxyAlways); len(got) != 2 || got[0] != (PortRange{443, 443}) || got[1] != (PortRange{8005, 8005}) {
		t.Errorf("always %v", got)
	}
	if got := p.SynProxyPorts(SynProxyAuto); len(got) != 2 || got[0] != (PortRange{8000, 8004}) || got[1] != (PortRange{8006, 8010}) {
		t.Errorf("auto %v: want 8000-8004, 8006-8010 (always wins 8005)", got)
	}
	sp := p.SynProxy
	if sp.AutoAbove != 5000 || sp.AutoHold != defaultAutoHold || sp.PerSource != defaultSynProxyPerSource || sp.Total != defaultSynProxyTotal {
		t.Errorf("section %+v", sp)
	}
	// Marshal keeps the meaning.
	q, err := Parse("m.yaml", p.Marshal())
	if err != nil {
		t.Fatalf("marshal: %v\n%s", err, p.Marshal())
	}
	if q.Digest() != p.Digest() {
		t.Errorf("digest changed through Marshal:\n%s", p.Marshal())
	}
	// The digest tells syn_proxy apart.
	r, _ := Parse("r.yaml", []byte("tcp:\n  allow: [22, 8000-8010, 443]\n"))
	if r.Digest() == p.Digest() {
		t.Error("a policy without syn_proxy has the same digest")
	}
}
