// Package audit judges a policy against the host it runs on: what it opens
// that nothing serves, what it closes that something serves, what it opens
// to the whole internet that should not be, and what in it is dead. It is
// the findings engine of `xdpguard audit` and of the daemon's
// xdpguard_audit_findings{kind,severity}: pure Go over its Input (the
// policy, the time, the listening sockets, the rules' last hits), no
// kernel access.
//
// "Open to the whole internet" (internet-open below) means a port that
// any source reaches: a rule without from (tcp.allow, udp.allow, a timed
// rule without from), a rule whose from holds a wide public prefix (see
// wide_trust; 0.0.0.0/0 and ::/0 included), a rule in monitor mode (its
// from restricts nothing: other sources pass, counted as monitored), a
// port tcp.allow_listening opens because a socket listens on it, and,
// with no udp section, every UDP port something listens on. Findings
// judge the policy as enforced: a policy in monitor mode drops nothing at
// all, which is a finding of its own (monitor_mode). Timed rules count as
// openings from now on (a schedule that applies on Saturdays opens its
// port, whatever the day of the audit), except for zombie_port, which
// compares the sockets of now with the rules that apply now.
//
// # Checklist
//
// Each kind, its severity, and why:
//
//   - [ ] sensitive_port_open (high; medium for ssh and the Kubernetes API,
//     per SensitivePort.Severity): a port of the sensitive list
//     (DefaultSensitivePorts, overridable) is internet-open. Databases,
//     caches, container and cluster APIs, remote desktops and file sharing
//     are meant for private networks: most run with no authentication by
//     default or hand over the host, and the internet scans for them all
//     day. SSH and the Kubernetes API are often public on purpose, and
//     authenticate, so they are medium: still worth scoping to the
//     networks that administer the host. Fix: give the rule a from, or
//     remove it and bind the service to loopback. When every rule opening
//     it to all is a zombie (nothing listens on any port of the rule), the
//     zombie_port finding (high) says it instead: removing those rules
//     closes it.
//   - [ ] zombie_port (medium; high when the range holds a sensitive port;
//     low when only scoped sources reach it): a port range a rule opens now
//     has no listening socket outside loopback. An open port that nothing
//     serves only waits for whatever starts listening there next (a
//     debugging server, a container someone publishes). Fix: remove the
//     rule, or ignore it if the port is forwarded (DNAT) to a container or
//     a VM rather than served by this host. Needs the sockets of that
//     protocol (Input.ListedTCP, ListedUDP); a range any port of which is
//     listened on counts as served (ranges are often handed out
//     dynamically: passive FTP, mosh, NodePorts).
//   - [ ] closed_listener (low; medium when tcp.allow_listening is on and the
//     socket's owner is not in tcp.listening_users): a socket listens
//     outside loopback on a port no rule opens to anyone, not even at
//     times. Often the firewall doing its job, but a service nobody can
//     reach is either a mistake in the policy or a service that should
//     bind to loopback. Under allow_listening the operator asked for
//     listeners to be open, so one left closed because of its owner is
//     probably a surprise. Ports in tcp.deny_ports are closed on purpose
//     and not reported; UDP ports in the reply range are reachable.
//   - [ ] scope_bypassed (medium): tcp.allow_listening opens to all a port
//     that a rule with from means to scope, because a socket listens on
//     it: the listening ports are open to all, so the rule's from no
//     longer restricts anything. Fix: add the port to tcp.deny_ports.
//   - [ ] listening_unguarded (low): under tcp.allow_listening, sensitive
//     ports and ports of rules with from are missing from tcp.deny_ports:
//     the day a service of tcp.listening_users (root by default) listens
//     there, outside loopback, it is open to all. Fix: the deny_ports list
//     to write.
//   - [ ] unlimited_open_port (medium, once, listing the ports): TCP ports
//     are internet-open and ratelimit.syn is not set: any source can open
//     connections as fast as it can send SYNs, and nothing is ever banned.
//     UDP has no limiter, so it is not judged.
//   - [ ] udp_unfiltered (medium when UDP sockets listen outside loopback;
//     low when the UDP sockets are unknown): the policy has no udp section,
//     so xdpguard passes every datagram and every UDP service is reachable
//     from the whole internet. Fix: a udp section listing what to open.
//   - [ ] wide_trust (medium; high for 0.0.0.0/0 or ::/0): a sources.trust
//     entry (inline or from a trust list) is a public prefix shorter than
//     /16 (IPv4) or /32 (IPv6) (Thresholds): its sources meet no rate limit
//     and no ban, so trusting a wide range turns those protections off for
//     a large part of the internet. Ranges that are not globally reachable
//     (private, shared, loopback, link-local, documentation, reserved,
//     multicast: the IANA special-purpose registries) are not public.
//   - [ ] monitor_mode (medium): the policy is in monitor mode
//     (mode: monitor): nothing is dropped, every finding above is what
//     enforcing would fix. The documented first step of a rollout, not a
//     state to stay in. Fix: remove the mode line once the monitored drops
//     are only traffic to drop.
//   - [ ] monitor_rule (low): a rule in monitor mode drops nothing: its port
//     is open to all (and so judged by the other checks) until the mode is
//     removed.
//   - [ ] expired_rule (medium): a rule's expires has passed: it no longer
//     applies, and the file no longer validates (a policy may not hold an
//     expired rule), so `xdpguard check`, the next reload and the next
//     start all refuse it: no other change to the file takes effect until
//     the rule is removed. The daemon reports it for the policy in force
//     (a rule that expired while it ran); `xdpguard audit` of such a file
//     fails with the refusal itself, naming the rule's line.
//   - [ ] never_applies (low): a rule can never admit anything again: its
//     schedule has no window before it expires (or no window at all), or
//     every prefix of its from is inside sources.deny, which drops those
//     sources first.
//   - [ ] shadowed_rule (low): a rule with from (or a time condition) names
//     only ports already open to all: it opens nothing more, and its
//     counters never move (the rule open to all counts those packets).
//   - [ ] unused_rule (low): no packet was counted under a rule for
//     Thresholds.UnusedFor (30 days by default), and its counters were
//     observed at least that long (Usage): a rule nothing uses is a port
//     left open for nobody. Not claimed for a rule observed for less, nor
//     for a rule already reported as expired, never applying or shadowed.
//
// Findings come sorted (Run): severity, high first, then kind, then
// subject in natural order (tcp/22 before tcp/443).
package audit

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Severity ranks a finding. The zero Severity is none: what Worst returns
// for no findings, below every --fail-on threshold.
type Severity int

// Severities, lowest first; comparable with < and >=.
const (
	None Severity = iota
	Low
	Medium
	High
)

var severityNames = [...]string{None: "none", Low: "low", Medium: "medium", High: "high"}

func (s Severity) String() string {
	if s < None || s > High {
		return fmt.Sprintf("Severity(%d)", int(s))
	}
	return severityNames[s]
}

// MarshalText writes the name: findings read "severity": "high" in JSON.
func (s Severity) MarshalText() ([]byte, error) {
	if s < None || s > High {
		return nil, fmt.Errorf("audit: no severity %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a name MarshalText wrote ("none" included).
func (s *Severity) UnmarshalText(b []byte) error {
	if string(b) == "none" {
		*s = None
		return nil
	}
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSeverity reads low, medium or high (any case), as --fail-on takes.
func ParseSeverity(s string) (Severity, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "low":
		return Low, nil
	case "medium":
		return Medium, nil
	case "high":
		return High, nil
	}
	return None, fmt.Errorf("severity %q: want low, medium or high", s)
}

// Worst is the highest severity among fs; None when fs is empty. A CI job
// fails when Worst(fs) >= the --fail-on severity.
func Worst(fs []Finding) Severity {
	w := None
	for _, f := range fs {
		w = max(w, f.Severity)
	}
	return w
}

// Kind names what a finding is about; the names are stable (metric
// labels, JSON, scripts): the package comment lists them.
type Kind string

// The kinds of finding; see the package comment.
const (
	kindSensitivePortOpen  Kind = "sensitive_port_open"
	kindZombiePort         Kind = "zombie_port"
	kindClosedListener     Kind = "closed_listener"
	kindScopeBypassed      Kind = "scope_bypassed"
	kindListeningUnguarded Kind = "listening_unguarded"
	kindUnlimitedOpenPort  Kind = "unlimited_open_port"
	kindUDPUnfiltered      Kind = "udp_unfiltered"
	kindWideTrust          Kind = "wide_trust"
	kindMonitorMode        Kind = "monitor_mode"
	kindMonitorRule        Kind = "monitor_rule"
	kindExpiredRule        Kind = "expired_rule"
	kindNeverApplies       Kind = "never_applies"
	kindShadowedRule       Kind = "shadowed_rule"
	kindUnusedRule         Kind = "unused_rule"
)

// Kinds lists every kind, sorted: the daemon exports a series for each
// (zero included), so an alert can tell "none" from "not measured".
var Kinds = []Kind{
	kindClosedListener, kindExpiredRule, kindListeningUnguarded, kindMonitorMode, kindMonitorRule,
	kindNeverApplies, kindScopeBypassed, kindSensitivePortOpen, kindShadowedRule, kindUDPUnfiltered,
	kindUnlimitedOpenPort, kindUnusedRule, kindWideTrust, kindZombiePort,
}

// Finding is one thing the audit found.
type Finding struct {
	Kind     Kind     `json:"kind"`
	Severity Severity `json:"severity"`
	// Subject is what it is about: a port or range ("tcp/6379",
	// "udp/9000-9100", "tcp/80,443" for a finding listing ports), a rule
	// name, a prefix, or a policy key ("mode", "udp").
	Subject string `json:"subject"`
	Message string `json:"message"`
	// Fix says what to change, as the YAML to write.
	Fix string `json:"fix"`
}

// Proto is a transport protocol of a listening socket or sensitive port.
type Proto string

// The protocols a policy filters.
const (
	TCP Proto = "tcp"
	UDP Proto = "udp"
)

// Listener is a listening socket of the daemon's network namespace (for
// UDP: a bound, unconnected socket).
type Listener struct {
	Proto Proto  `json:"proto"`
	Port  uint16 `json:"port"`
	// Addr is the bound address: unspecified (0.0.0.0, ::) for all, or
	// one address. Loopback listeners (127.0.0.0/8, ::1, IPv4-mapped
	// loopback) cannot be reached from outside and are ignored; an
	// invalid (zero) Addr counts as all addresses.
	Addr netip.Addr `json:"addr"`
	UID  uint32     `json:"uid"`
	// Process is the owning process's name, "" when unknown (a kernel
	// socket: WireGuard, VXLAN).
	Process string `json:"process,omitempty"`
}

// Usage is what the daemon knows of when each rule last counted a packet.
type Usage struct {
	// Since is when the record of hits began; zero means there is no
	// record, and no unused_rule finding.
	Since time.Time
	// LastHit is when each rule name's counters last moved; a name not
	// in it (or zero) has not moved since Since (or since FirstSeen).
	LastHit map[string]time.Time
	// FirstSeen is when a rule name first appeared in a policy in force,
	// for names added after Since: a rule is only called unused after it
	// has existed for Thresholds.UnusedFor.
	FirstSeen map[string]time.Time
}

// Thresholds tune the checks; a zero field takes its default.
type Thresholds struct {
	// UnusedFor is how long a rule must count nothing to be unused
	// (default 30 days).
	UnusedFor time.Duration
	// WideIPv4Bits and WideIPv6Bits: a public prefix shorter than these
	// is wide (defaults 16 and 32: 0.0.0.0/15 is wide, a /16 is not).
	WideIPv4Bits, WideIPv6Bits int
}

// Defaults of Thresholds.
const (
	defaultUnusedFor    = 30 * 24 * time.Hour
	defaultWideIPv4Bits = 16
	defaultWideIPv6Bits = 32
)

// defaultEphemeral is Linux's default net.ipv4.ip_local_port_range.
var defaultEphemeral = policy.PortRange{First: 32768, Last: 60999}

// Input is what the audit judges.
type Input struct {
	// Policy is the policy file's policy, as loaded (not the policy in
	// force: timed rules are judged here, listening ports added here).
	Policy *policy.Policy
	// Now is the time of the audit; zero means time.Now().
	Now time.Time
	// Listeners are the listening sockets of the daemon's namespace.
	Listeners []Listener
	// ListedTCP and ListedUDP say Listeners holds every TCP (UDP)
	// listening socket. For a protocol not listed, no finding rests on a
	// socket's absence (zombie_port, udp_unfiltered's medium): an audit of
	// a policy file in CI, away from its host, lists none.
	ListedTCP, ListedUDP bool
	// Usage is the rules' last hits.
	Usage Usage
	// Ephemeral is the namespace's ip_local_port_range, where udp.replies:
	// auto passes datagrams; zero means Linux's default, 32768-60999.
	Ephemeral policy.PortRange
	// Sensitive is the sensitive-port list; nil means
	// DefaultSensitivePorts (an empty, non-nil list checks none).
	Sensitive []SensitivePort
	// Thresholds tune the checks.
	Thresholds Thresholds
}

// Run audits in and returns the findings, sorted: severity (high first),
// kind, subject (ports in numeric order), message. The same input always
// gives the same findings in the same order. A nil policy gives none.
func Run(in Input) []Finding {
	if in.Policy == nil {
		return nil
	}
	a := newAuditor(in)
	a.deadRules()
	a.shadowedRules()
	a.ops = a.openings() // without the dead and shadowed rules
	a.monitor()
	a.zombies()        // before sensitive: a zombie range covers its sensitive ports
	a.sensitivePorts() // before listening: its findings cover scope_bypassed's
	a.closedListeners()
	a.allowListening()
	a.unlimited()
	a.udpUnfiltered()
	a.wideTrust()
	a.unused()
	sortFindings(a.out)
	return a.out
}

func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(x, y Finding) int {
		if c := cmp.Compare(y.Severity, x.Severity); c != 0 {
			return c
		}
		if c := cmp.Compare(x.Kind, y.Kind); c != 0 {
			return c
		}
		if c := naturalCompare(x.Subject, y.Subject); c != 0 {
			return c
		}
		if c := cmp.Compare(x.Message, y.Message); c != 0 {
			return c
		}
		return cmp.Compare(x.Fix, y.Fix)
	})
}

// naturalCompare orders strings with their runs of digits compared as
// numbers: tcp/22 < tcp/443 < tcp/3306, 9.0.0.0/8 < 10.0.0.0/8.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := cmp.Compare(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			if c := cmp.Compare(da, db); c != 0 { // 007 after 7: total order
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func digits(s string) int {
	n := 0
	for n < len(s) && '0' <= s[n] && s[n] <= '9' {
		n++
	}
	return n
}
