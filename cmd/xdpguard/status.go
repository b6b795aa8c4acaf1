package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/crowdsec"
	"github.com/xdpguard/xdpguard/pkg/daemon"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/listening"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// ifaceStatus is one interface in `status` output (and its JSON form). A
// value that could not be read is absent (null), never zero; Problems says
// what went wrong, each thing on its own.
type ifaceStatus struct {
	Interface    string            `json:"interface"`
	Mode         string            `json:"mode"`
	ModeWhy      string            `json:"mode_why,omitempty"`
	ProgramID    uint32            `json:"program_id,omitempty"`
	Enforcing    bool              `json:"enforcing"`
	Generation   *uint64           `json:"generation"`
	Monitor      bool              `json:"monitor"`
	PolicyFile   string            `json:"policy_file,omitempty"`
	FileInForce  *bool             `json:"policy_file_in_force"`
	TimedRules   []string          `json:"timed_rules"`
	Monitored    map[string]uint64 `json:"monitored_drops"`
	PolicyDigest string            `json:"policy_digest,omitempty"`
	LoadedAt     *time.Time        `json:"loaded_at"`
	Packets      *uint64           `json:"packets"`
	Dropped      *uint64           `json:"dropped"`
	Reasons      map[string]uint64 `json:"reasons"`
	TopPorts     []portStatus      `json:"top_dropped_ports"`
	Rules        []maps.Rule       `json:"rules"`
	Sources      *int              `json:"ratelimit_sources"`
	SourcesCap   *uint32           `json:"ratelimit_sources_capacity"`
	// Protected are the sources no ban may hit (besides link-local
	// sources and sources.trust, always protected).
	Protected []protectedStatus `json:"protected_sources"`
	// Bans counts the bans in force by origin (limit, cli, crowdsec,
	// fail2ban).
	Bans map[string]int `json:"bans"`
	// CrowdSec is the daemon's CrowdSec bouncer, when it runs one.
	CrowdSec *crowdsec.Report `json:"crowdsec,omitempty"`
	SynProxy *synProxyStatus  `json:"synproxy,omitempty"`
	Problems []string         `json:"problems"`
}

type portStatus struct {
	Port            uint16 `json:"port"`
	NotAllowed      uint64 `json:"port_not_allowed"`
	RateLimited     uint64 `json:"rate_limited"`
	PortRateLimited uint64 `json:"port_rate_limited"`
	UDPNotAllowed   uint64 `json:"udp_port_not_allowed"`
}

type protectedStatus struct {
	Source string `json:"source"`
	Why    string `json:"why"`
}

// Exit status of `status`, documented in its help.
const (
	exitNotEnforcing = 3 // something asked about is not enforcing, or could not be read whole
)

func newStatusCmd() *cobra.Command {
	var (
		output string
		ifaces []string
		dir    string
	)
	cmd := &cobra.Command{
		Use:   "status [--iface IF[,IF...]] [--output text|json]",
		Short: "Show where the filter is attached, its policy and its counters",
		Long: `status reads the pinned state of every interface xdpguard filters in this
network namespace (or of those --iface names): attach mode, program id, policy
generation, digest and age, the daemon's policy file and whether it is what is
in force, which timed rules apply, counters, per-rule counts, top dropped
ports, limiter table fill, and the sources never banned. It works whether or
not the daemon is running. A value it could not read is shown as unread, never
as zero, and every problem is listed.

Exit status: 0 when every interface asked about is enforcing and its state was
read whole; 3 when one is not enforcing, has no pins, or could not be read
whole (or no interface is filtered at all); 1 when the command itself failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if err := checkInterfaceNames(ifaces); err != nil {
				return err
			}
			root, pinned, err := pinnedInterfaces(cmd)
			if errors.Is(err, loader.ErrNoBPFFS) && len(ifaces) == 0 {
				pinned, err = nil, nil // nothing pinned anywhere: said below
			}
			if err != nil {
				return err
			}
			if len(ifaces) == 0 {
				ifaces = pinned
			}
			out := []ifaceStatus{}
			healthy := len(ifaces) > 0
			for _, iface := range ifaces {
				s := readStatus(root, iface)
				readCrowdSec(&s, runtimeDir(dir))
				healthy = healthy && s.Enforcing && len(s.Problems) == 0
				out = append(out, s)
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				if err := writeJSON(w, out); err != nil {
					return err
				}
			} else if len(out) == 0 {
				fmt.Fprintln(w, "xdpguard is not attached to any interface in this network namespace")
			}
			if output == "text" {
				for _, s := range out {
					printStatus(w, s)
				}
			}
			if !healthy {
				return exitCode(exitNotEnforcing)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringSliceVar(&ifaces, "iface", nil, "interfaces to show (default: every one with xdpguard pins)")
	cmd.Flags().StringVar(&dir, "runtime-dir", "", "where the daemon reports its feeds' state: its --runtime-dir (default $RUNTIME_DIRECTORY, else /run/xdpguard)")
	return cmd
}

// readCrowdSec adds the daemon's CrowdSec report, if it writes one, and
// what is wrong with it.
func readCrowdSec(s *ifaceStatus, runtimeDir string) {
	r, err := crowdsec.ReadReport(filepath.Join(runtimeDir, daemon.CrowdSecReportName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return
	case err != nil:
		s.Problems = append(s.Problems, "crowdsec: "+err.Error())
		return
	}
	s.CrowdSec = &r
	s.Problems = append(s.Problems, r.Problems(time.Now())...)
}

func readStatus(root, iface string) ifaceStatus {
	s := ifaceStatus{Interface: iface, Mode: "none", Problems: []string{}, Protected: []protectedStatus{}}
	problem := func(format string, args ...any) { s.Problems = append(s.Problems, fmt.Sprintf(format, args...)) }
	set, err := maps.Open(datapath.PinDir(root, iface), false)
	if err != nil {
		problem("%v", err)
		return s
	}
	defer set.Close()
	snap := set.Snapshot(maps.SnapshotOptions{TopPorts: 10})
	s.Problems = append(s.Problems, snap.Problems...)
	if meta := snap.Meta; meta != nil {
		s.Generation = &meta.Generation
		s.Monitor = meta.Flags&datapath.MetaMonitor != 0
		s.PolicyFile = meta.Path()
		s.PolicyDigest = fmt.Sprintf("%x", meta.PolicyDigest[:6])
		at := time.Unix(0, int64(meta.LoadedUnixNs)).UTC()
		s.LoadedAt = &at
		readPolicyFile(&s, *meta, problem)
	}
	if r := snap.Reasons; r != nil {
		total, dropped := r.Total(), r.Dropped()
		s.Packets, s.Dropped = &total, &dropped
		s.Reasons = map[string]uint64{}
		for _, reason := range datapath.AllReasons() {
			s.Reasons[reasonKey(reason)] = r[reason]
		}
	}
	if mon := snap.Monitored; mon != nil {
		s.Monitored = map[string]uint64{}
		for _, reason := range datapath.AllReasons() {
			if reason.Dropped() && mon[reason] > 0 {
				s.Monitored[reason.Name()] = mon[reason]
			}
		}
	}
	for _, pd := range snap.Ports {
		s.TopPorts = append(s.TopPorts, portStatus{pd.Port, pd.NotAllowed, pd.RateLimited, pd.PortRateLimited, pd.UdpNotAllowed})
	}
	s.Rules = snap.Rules
	s.SynProxy = synProxyStatusOf(snap.SynProxy)
	for _, pr := range snap.Protected {
		s.Protected = append(s.Protected, protectedStatus{pr.Source.String(), pr.Why.String()})
	}
	if src := snap.Sources; src != nil {
		s.Sources, s.SourcesCap = &src.Entries, &src.Capacity
	}
	if snap.BansByOrigin != nil {
		s.Bans = map[string]int{}
		for _, o := range datapath.BanOrigins() {
			s.Bans[o.String()] = snap.BansByOrigin[o]
		}
	}
	readAttachment(&s, set, problem)
	return s
}

// readAttachment says whether the interface runs xdpguard's program.
func readAttachment(s *ifaceStatus, set *maps.Set, problem func(string, ...any)) {
	switch {
	case set.Link != nil:
		info, err := set.Link.Info()
		if err != nil {
			problem("pinned link: %v", err)
			return
		}
		s.ProgramID = uint32(info.Program)
	case loader.ClsactProgram(s.Interface) != 0: // a clsact filter (kernels without tcx)
		s.ProgramID = uint32(loader.ClsactProgram(s.Interface))
	default:
		problem("no pinned link: the filter is not attached")
		return
	}
	nl, err := net.InterfaceByName(s.Interface)
	if err != nil {
		problem("interface is gone: %v", err)
		return
	}
	mode, running, err := loader.Runs(nl.Index, s.ProgramID)
	if err != nil {
		problem("attach mode: %v", err)
		return
	}
	s.Mode = mode
	s.ModeWhy = loader.ModeWhy(s.Interface, mode, s.ProgramID)
	s.Enforcing = running
	if !s.Enforcing {
		_, attachedID, _ := loader.AttachMode(nl.Index)
		problem("interface runs program %d (%s), not xdpguard's %d", attachedID, mode, s.ProgramID)
	}
}

func reasonKey(r datapath.Reason) string {
	if r.Dropped() {
		return "drop_" + r.Name()
	}
	return "pass_" + r.Name()
}

// readPolicyFile evaluates the daemon's policy file now, as the daemon does:
// which timed rules apply, and whether the file is what is in force.
func readPolicyFile(s *ifaceStatus, meta datapath.Meta, problem func(string, ...any)) {
	if s.PolicyFile == "" {
		return
	}
	pol, err := policy.Load(s.PolicyFile)
	if err != nil {
		problem("policy file: %v", err)
		return
	}
	now := time.Now()
	inForce := inForceHere(pol, now).Digest() == meta.PolicyDigest
	s.FileInForce = &inForce
	s.TimedRules = pol.TimedRules(now)
	if !inForce {
		problem("the policy file differs from the policy in force: not reloaded yet, or refused (see the daemon's log)")
	}
}

// inForceHere is the policy the daemon would put in force here at now: its
// timed rules that apply, plus the listening ports under allow_listening
// (none if they cannot be listed).
func inForceHere(p *policy.Policy, now time.Time) *policy.Policy {
	var ports []uint16
	if p.AllowListening {
		ports, _ = listening.Ports(p.ListeningUIDs)
	}
	return p.InForce(now, ports)
}

func printStatus(w io.Writer, s ifaceStatus) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	unread := "(unread)"
	fmt.Fprintf(tw, "interface\t%s\n", s.Interface)
	fmt.Fprintf(tw, "enforcing\t%v (mode %s, program %d)\n", s.Enforcing, s.Mode, s.ProgramID)
	if s.ModeWhy != "" {
		fmt.Fprintf(tw, "mode\t%s: %s\n", s.Mode, s.ModeWhy)
	}
	for _, p := range s.Problems {
		fmt.Fprintf(tw, "problem\t%s\n", p)
	}
	if s.Generation != nil && s.LoadedAt != nil {
		age := time.Since(*s.LoadedAt).Round(time.Second)
		fmt.Fprintf(tw, "policy\tgeneration %d, digest %s, loaded %s (%s ago)\n", *s.Generation, s.PolicyDigest, s.LoadedAt.Format(time.RFC3339), age)
	} else {
		fmt.Fprintf(tw, "policy\t%s\n", unread)
	}
	if s.Monitor {
		fmt.Fprintf(tw, "mode\tMONITOR: nothing is dropped; would have dropped %v\n", s.Monitored)
	}
	if s.PolicyFile != "" {
		inForce := unread
		if s.FileInForce != nil {
			inForce = fmt.Sprint(*s.FileInForce)
		}
		fmt.Fprintf(tw, "policy file\t%s (in force: %s)\n", s.PolicyFile, inForce)
	}
	for _, r := range s.TimedRules {
		fmt.Fprintf(tw, "  %s\t\n", r)
	}
	if s.Packets != nil {
		fmt.Fprintf(tw, "packets\t%d seen, %d dropped\n", *s.Packets, *s.Dropped)
		for _, r := range datapath.AllReasons() {
			fmt.Fprintf(tw, "  %s\t%d\n", reasonKey(r), s.Reasons[reasonKey(r)])
		}
	} else {
		fmt.Fprintf(tw, "packets\t%s\n", unread)
	}
	fmt.Fprintf(tw, "rules\tpassed / dropped / monitored (would drop, passed)\n")
	for _, r := range s.Rules {
		fmt.Fprintf(tw, "  %s\t%d / %d / %d\n", r.Name, r.Passed, r.Dropped, r.Monitored)
	}
	if s.Sources != nil {
		fmt.Fprintf(tw, "rate limiter\t%d of %d sources tracked\n", *s.Sources, *s.SourcesCap)
	} else {
		fmt.Fprintf(tw, "rate limiter\t%s\n", unread)
	}
	for _, p := range s.TopPorts {
		fmt.Fprintf(tw, "  port %d\tnot allowed %d, rate limited %d, port rate limited %d, udp not allowed %d\n", p.Port, p.NotAllowed, p.RateLimited, p.PortRateLimited, p.UDPNotAllowed)
	}
	printSynProxyStatus(tw, s.SynProxy)
	if s.Bans != nil {
		var parts []string
		for _, o := range datapath.BanOrigins() {
			parts = append(parts, fmt.Sprintf("%s %d", o, s.Bans[o.String()]))
		}
		fmt.Fprintf(tw, "bans\t%s\n", strings.Join(parts, ", "))
	}
	if c := s.CrowdSec; c != nil {
		last := "never"
		if !c.LastSuccess.IsZero() {
			last = time.Since(c.LastSuccess).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "crowdsec\t%s: %d decisions held, %d pulls (last success %s), %d failing in a row\n", c.URL, c.Decisions, c.Pulls, last, c.Failing)
		if c.Refused+c.NotStored+c.Invalid > 0 {
			fmt.Fprintf(tw, "  not enforced\t%d too wide, %d over the table, %d invalid\n", c.Refused, c.NotStored, c.Invalid)
		}
	}
	fmt.Fprintf(tw, "never banned\tlink-local sources, sources.trust\n")
	for _, p := range s.Protected {
		fmt.Fprintf(tw, "  %s\t%s\n", p.Source, p.Why)
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// exitCode is an error that sets the process's exit status and prints
// nothing more (the command already said why).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// exitStatus is what main exits with for err.
func exitStatus(err error) (int, bool) {
	var e exitCode
	if errors.As(err, &e) {
		return int(e), true
	}
	return 1, false
}
