package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/audit"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/listening"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// exitFindings: `audit --fail-on` found something at or above it.
const exitFindings = 4

// defaultPolicyPath is the Debian package's policy file.
const defaultPolicyPath = "/etc/xdpguard/policy.yaml"

type auditReport struct {
	Policy    string         `json:"policy"`
	At        time.Time      `json:"at"`
	Worst     audit.Severity `json:"worst"`
	Listeners bool           `json:"listeners_read"`
	// UsageSince is when the daemon's record of rule hits began (absent:
	// unused rules not judged, UsageMissing says why).
	UsageSince   *time.Time      `json:"usage_since,omitempty"`
	UsageMissing string          `json:"usage_missing,omitempty"`
	Findings     []audit.Finding `json:"findings"`
}

func newAuditCmd() *cobra.Command {
	var (
		output, failOn, policyPath string
		sensitive                  []string
		offline                    bool
		usagePath                  string
		unusedFor                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "audit [--policy FILE] [--fail-on low|medium|high] [--output text|json]",
		Short: "Judge the policy against this host: zombie ports, exposed databases, dead rules",
		Long: `audit judges a policy file against the host it protects and lists findings,
each with a severity and the YAML that fixes it: ports open to all with nothing
listening (zombie ports), listeners the policy closes, sensitive ports
(databases, caches, container and cluster APIs, remote desktops, file sharing;
ssh and the Kubernetes API are medium) open to the whole internet, wide public
ranges in sources.trust, rules in monitor mode, expired or never-applying
timed rules, rules shadowed by ports open to all, internet-open TCP ports with
no per-source SYN limit, and no udp section at all. docs/operations.md has the
checklist, with why each kind matters.

The policy is --policy, else the file the daemon runs (recorded in the pins),
else /etc/xdpguard/policy.yaml. The listening sockets are this network
namespace's (sock_diag, TCP and UDP, every owner): run it where the daemon
runs, or with --offline (in CI, away from the host) to judge the file alone,
claiming nothing from a socket's absence.

Rules that counted no packet for --unused-for (30 days) are unused_rule
findings, from the record the daemon keeps of each rule's last hit
(--rule-usage, default ` + audit.DefaultUsagePath + `: the daemon's
--rule-usage): a rule is judged only once the record has observed it that
long. Without a record (no daemon ran here, the file is not readable, or
--offline), unused rules are not judged, and the report says so.

--sensitive replaces the sensitive-port list (PROTO/PORT, comma-separated);
the built-in one: ` + sensitiveList() + `.

Exit status: 0, or 4 when --fail-on is given and a finding is at or above it;
1 when the audit itself failed.`,
		Example: "  xdpguard audit\n  xdpguard audit --policy candidate.yaml --offline --fail-on high\n  xdpguard audit --output json | jq '.findings[] | select(.severity == \"high\")'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			threshold := audit.None
			if failOn != "" {
				s, err := audit.ParseSeverity(failOn)
				if err != nil {
					return fmt.Errorf("--fail-on: %w", err)
				}
				threshold = s
			}
			if unusedFor < time.Hour {
				return fmt.Errorf("--unused-for: %s is under an hour", unusedFor)
			}
			in := audit.Input{Now: time.Now(), Thresholds: audit.Thresholds{UnusedFor: unusedFor}}
			if sensitive != nil {
				var err error
				if in.Sensitive, err = parseSensitive(sensitive); err != nil {
					return err
				}
			}
			if policyPath == "" {
				policyPath = daemonPolicyPath(cmd)
			}
			pol, err := policy.Load(policyPath)
			if err != nil {
				return err
			}
			in.Policy = pol
			if !offline {
				socks, tcpWhole, udpWhole, err := listening.Sockets()
				if err != nil {
					return fmt.Errorf("%w (--offline judges the file alone)", err)
				}
				for _, s := range socks {
					proto := audit.TCP
					if s.Proto == "udp" {
						proto = audit.UDP
					}
					in.Listeners = append(in.Listeners, audit.Listener{Proto: proto, Port: s.Port, Addr: s.Addr, UID: s.UID})
				}
				in.ListedTCP, in.ListedUDP = tcpWhole, udpWhole
				if r, err := datapath.EphemeralPorts(); err == nil {
					in.Ephemeral = r
				}
			}
			usage := ""
			if !offline && usagePath != "" {
				u, err := audit.LoadUsage(usagePath)
				switch {
				case err != nil:
					usage = err.Error()
				case u.Since.IsZero():
					usage = usagePath + " does not exist (the daemon has not run here with --rule-usage)"
				default:
					in.Usage = u.Usage()
				}
			}
			r := auditReport{Policy: pol.Path, At: in.Now.UTC().Round(time.Second), Listeners: !offline, Findings: audit.Run(in)}
			if !in.Usage.Since.IsZero() {
				since := in.Usage.Since.UTC().Round(time.Second)
				r.UsageSince = &since
			} else if !offline {
				r.UsageMissing = usage
			}
			if r.Findings == nil {
				r.Findings = []audit.Finding{}
			}
			r.Worst = audit.Worst(r.Findings)
			w := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false) // the fixes hold "<clients' CIDR>"
				if err := enc.Encode(r); err != nil {
					return err
				}
			} else {
				printAudit(w, r)
			}
			if threshold != audit.None && r.Worst >= threshold {
				return exitCode(exitFindings)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&failOn, "fail-on", "", "exit 4 when a finding is at least this severe: low, medium or high")
	cmd.Flags().StringVar(&policyPath, "policy", "", "policy file (default: the daemon's, else "+defaultPolicyPath+")")
	cmd.Flags().StringSliceVar(&sensitive, "sensitive", nil, "the sensitive ports, replacing the built-in list (tcp/6379,udp/161,...)")
	cmd.Flags().BoolVar(&offline, "offline", false, "judge the file alone: no listening sockets nor rule usage read")
	cmd.Flags().StringVar(&usagePath, "rule-usage", audit.DefaultUsagePath, "the daemon's record of each rule's last hit (run --rule-usage)")
	cmd.Flags().DurationVar(&unusedFor, "unused-for", 30*24*time.Hour, "a rule that counted nothing this long is unused")
	return cmd
}

// daemonPolicyPath is the policy file the pins record, when every
// interface here records the same one; else the package's default.
func daemonPolicyPath(cmd *cobra.Command) string {
	root, ifaces, err := pinnedInterfaces(cmd)
	if err != nil {
		return defaultPolicyPath
	}
	path := ""
	for _, iface := range ifaces {
		set, err := maps.Open(datapath.PinDir(root, iface), false)
		if err != nil {
			continue
		}
		meta, err := set.Meta()
		set.Close()
		if err != nil || meta.Path() == "" || (path != "" && meta.Path() != path) {
			return defaultPolicyPath
		}
		path = meta.Path()
	}
	if path == "" {
		return defaultPolicyPath
	}
	return path
}

// parseSensitive reads --sensitive: PROTO/PORT items.
func parseSensitive(items []string) ([]audit.SensitivePort, error) {
	out := []audit.SensitivePort{}
	for _, it := range items {
		proto, port, ok := strings.Cut(strings.TrimSpace(it), "/")
		n, err := strconv.ParseUint(port, 10, 16)
		if !ok || (proto != "tcp" && proto != "udp") || err != nil || n == 0 {
			return nil, fmt.Errorf("--sensitive: %q: want tcp/PORT or udp/PORT", it)
		}
		p := audit.TCP
		if proto == "udp" {
			p = audit.UDP
		}
		out = append(out, audit.SensitivePort{Proto: p, Port: uint16(n), Name: it, Severity: audit.High, Why: "listed by --sensitive"})
	}
	return out, nil
}

func printAudit(w io.Writer, r auditReport) {
	if len(r.Findings) == 0 {
		fmt.Fprintf(w, "%s: no findings\n", r.Policy)
	} else {
		fmt.Fprintf(w, "%s: %d findings, the worst %s\n", r.Policy, len(r.Findings), r.Worst)
	}
	for _, f := range r.Findings {
		fmt.Fprintf(w, "\n%-6s  %s  %s\n        %s\n", strings.ToUpper(f.Severity.String()), f.Kind, f.Subject, f.Message)
		for _, line := range strings.Split(f.Fix, "\n") {
			if line != "" {
				fmt.Fprintf(w, "        fix: %s\n", line)
			}
		}
	}
	if !r.Listeners {
		fmt.Fprintln(w, "\n(--offline: no listening socket read; zombie ports, closed listeners and unused rules not judged)")
	} else if r.UsageMissing != "" {
		fmt.Fprintf(w, "\n(unused rules not judged: %s)\n", r.UsageMissing)
	}
}

// sensitiveList is the built-in sensitive ports, for --help.
func sensitiveList() string {
	var out []string
	for _, p := range audit.DefaultSensitivePorts {
		out = append(out, fmt.Sprintf("%s/%d %s", p.Proto, p.Port, p.Name))
	}
	return strings.Join(out, ", ")
}
