package main

import (
	"fmt"
	"net"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/listening"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// ifaceStatus is one interface in `status` output (and its JSON form).
type ifaceStatus struct {
	Interface    string            `json:"interface"`
	Mode         string            `json:"mode"`
	ProgramID    uint32            `json:"program_id"`
	Enforcing    bool              `json:"enforcing"`
	Generation   uint64            `json:"generation"`
	Monitor      bool              `json:"monitor"`
	PolicyFile   string            `json:"policy_file"`
	FileInForce  bool              `json:"policy_file_in_force"`
	TimedRules   []string          `json:"timed_rules"`
	Monitored    map[string]uint64 `json:"monitored_drops"`
	PolicyDigest string            `json:"policy_digest"`
	LoadedAt     time.Time         `json:"loaded_at"`
	Packets      uint64            `json:"packets"`
	Dropped      uint64            `json:"dropped"`
	Reasons      map[string]uint64 `json:"reasons"`
	TopPorts     []portStatus      `json:"top_dropped_ports"`
	Rules        []maps.Rule       `json:"rules"`
	Sources      int               `json:"ratelimit_sources"`
	SourcesCap   uint32            `json:"ratelimit_sources_capacity"`
	// Protected are the sources no ban may hit (besides link-local
	// sources and sources.trust, always protected).
	Protected []protectedStatus `json:"protected_sources"`
	Problem   string            `json:"problem,omitempty"`
}

type protectedStatus struct {
	Source string `json:"source"`
	Why    string `json:"why"`
}

type portStatus struct {
	Port            uint16 `json:"port"`
	NotAllowed      uint64 `json:"port_not_allowed"`
	RateLimited     uint64 `json:"rate_limited"`
	PortRateLimited uint64 `json:"port_rate_limited"`
	UDPNotAllowed   uint64 `json:"udp_port_not_allowed"`
}

func newStatusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status [--output text|json]",
		Short: "Show where the filter is attached, its policy and its counters",
		Long: `status reads the pinned state of every interface xdpguard filters in this
network namespace: attach mode, program id, policy generation, digest and
age, and counters. It works whether or not the daemon is running.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			root, ifaces, err := pinnedInterfaces(cmd)
			if err != nil {
				return err
			}
			var out []ifaceStatus
			for _, iface := range ifaces {
				out = append(out, readStatus(root, iface))
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				if out == nil {
					out = []ifaceStatus{}
				}
				return writeJSON(w, out)
			}
			if len(out) == 0 {
				fmt.Fprintln(w, "xdpguard is not attached to any interface in this network namespace")
				return nil
			}
			for _, s := range out {
				printStatus(w, s)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func readStatus(root, iface string) ifaceStatus {
	s := ifaceStatus{Interface: iface, Reasons: map[string]uint64{}, Monitored: map[string]uint64{}}
	p, err := loader.OpenPinned(root, iface, false)
	if err != nil {
		s.Problem = err.Error()
		return s
	}
	defer p.Close()
	if meta, err := loader.ReadMeta(p.Generation); err == nil {
		s.Generation = meta.Generation
		s.Monitor = meta.Flags&loader.MetaMonitor != 0
		s.PolicyFile = meta.Path()
		readPolicyFile(&s, meta)
		s.PolicyDigest = fmt.Sprintf("%x", meta.PolicyDigest[:6])
		s.LoadedAt = time.Unix(0, int64(meta.LoadedUnixNs)).UTC()
	}
	if r, err := maps.ReadReasons(p.Stats); err == nil {
		s.Packets, s.Dropped = r.Total(), r.Dropped()
		for _, reason := range loader.AllReasons() {
			key := reason.Name()
			if reason.Dropped() {
				key = "drop_" + key
			} else {
				key = "pass_" + key
			}
			s.Reasons[key] = r[reason]
		}
	}
	if mon, err := maps.ReadMonitored(p.Stats); err == nil {
		for _, reason := range loader.AllReasons() {
			if reason.Dropped() && mon[reason] > 0 {
				s.Monitored[reason.Name()] = mon[reason]
			}
		}
	}
	if ports, err := maps.ReadPortDrops(p.PortDrops); err == nil {
		for i, pd := range ports {
			if i == 10 {
				break
			}
			s.TopPorts = append(s.TopPorts, portStatus{pd.Port, pd.NotAllowed, pd.RateLimited, pd.PortRateLimited, pd.UdpNotAllowed})
		}
	}
	if rules, err := maps.ReadRules(p.RuleNames, p.RuleStats); err == nil {
		s.Rules = rules
	}
	s.Protected = []protectedStatus{}
	if prot, err := loader.ReadProtected(p.Protected); err == nil {
		for _, pr := range prot {
			s.Protected = append(s.Protected, protectedStatus{pr.Source.String(), pr.Why.String()})
		}
	}
	s.Sources, _ = maps.CountEntries(p.SrcBuckets)
	s.SourcesCap = p.SrcBuckets.MaxEntries()

	s.Mode = "none"
	if p.Link == nil {
		s.Problem = "no pinned link: the filter is not attached"
		return s
	}
	info, err := p.Link.Info()
	if err != nil {
		s.Problem = err.Error()
		return s
	}
	s.ProgramID = uint32(info.Program)
	nl, err := net.InterfaceByName(iface)
	if err != nil {
		s.Problem = "interface is gone: " + err.Error()
		return s
	}
	mode, attachedID, err := loader.AttachMode(nl.Index)
	if err != nil {
		s.Problem = err.Error()
		return s
	}
	s.Mode = mode
	s.Enforcing = attachedID == s.ProgramID && mode != "none"
	if !s.Enforcing {
		s.Problem = fmt.Sprintf("interface runs XDP program %d, not xdpguard's %d", attachedID, s.ProgramID)
	}
	return s
}

// readPolicyFile evaluates the daemon's policy file now, as the daemon does:
// which timed rules apply, and whether the file is what is in force.
func readPolicyFile(s *ifaceStatus, meta loader.Meta) {
	if s.PolicyFile == "" {
		return
	}
	pol, err := policy.Load(s.PolicyFile)
	if err != nil {
		s.Problem = "policy file: " + err.Error()
		return
	}
	now := time.Now()
	s.FileInForce = listening.InForce(pol, now).Digest() == meta.PolicyDigest
	s.TimedRules = pol.TimedRules(now)
	if !s.FileInForce {
		s.Problem = "the policy file differs from the policy in force: not reloaded yet, or refused (see the daemon's log)"
	}
}

func printStatus(w interface{ Write([]byte) (int, error) }, s ifaceStatus) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "interface\t%s\n", s.Interface)
	fmt.Fprintf(tw, "enforcing\t%v (mode %s, program %d)\n", s.Enforcing, s.Mode, s.ProgramID)
	if s.Problem != "" {
		fmt.Fprintf(tw, "problem\t%s\n", s.Problem)
	}
	age := time.Since(s.LoadedAt).Round(time.Second)
	fmt.Fprintf(tw, "policy\tgeneration %d, digest %s, loaded %s (%s ago)\n", s.Generation, s.PolicyDigest, s.LoadedAt.Format(time.RFC3339), age)
	if s.Monitor {
		fmt.Fprintf(tw, "mode\tMONITOR: nothing is dropped; would have dropped %v\n", s.Monitored)
	}
	if s.PolicyFile != "" {
		fmt.Fprintf(tw, "policy file\t%s (in force: %v)\n", s.PolicyFile, s.FileInForce)
	}
	for _, r := range s.TimedRules {
		fmt.Fprintf(tw, "  %s\t\n", r)
	}
	fmt.Fprintf(tw, "packets\t%d seen, %d dropped\n", s.Packets, s.Dropped)
	for _, r := range loader.AllReasons() {
		key := "pass_" + r.Name()
		if r.Dropped() {
			key = "drop_" + r.Name()
		}
		fmt.Fprintf(tw, "  %s\t%d\n", key, s.Reasons[key])
	}
	fmt.Fprintf(tw, "rules\tpassed / dropped / monitored (would drop, passed)\n")
	for _, r := range s.Rules {
		fmt.Fprintf(tw, "  %s\t%d / %d / %d\n", r.Name, r.Passed, r.Dropped, r.Monitored)
	}
	fmt.Fprintf(tw, "rate limiter\t%d of %d sources tracked\n", s.Sources, s.SourcesCap)
	fmt.Fprintf(tw, "never banned\tlink-local sources, sources.trust\n")
	for _, p := range s.Protected {
		fmt.Fprintf(tw, "  %s\t%s\n", p.Source, p.Why)
	}
	for _, p := range s.TopPorts {
		fmt.Fprintf(tw, "  port %d\tnot allowed %d, rate limited %d, port rate limited %d, udp not allowed %d\n", p.Port, p.NotAllowed, p.RateLimited, p.PortRateLimited, p.UDPNotAllowed)
	}
	tw.Flush()
	fmt.Fprintln(w)
}
