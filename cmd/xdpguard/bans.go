package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/history"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

type banStatus struct {
	Interface string    `json:"interface"`
	Source    string    `json:"source"`
	Origin    string    `json:"origin"`
	Reason    string    `json:"reason,omitempty"`
	Until     time.Time `json:"until"`
	Remaining string    `json:"remaining"`
	Drops     uint64    `json:"drops"`
}

func newBansCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "bans [--output text|json]",
		Short: "List the banned sources, who banned them, why and until when",
		Long: `bans lists the sources serving a ban on each interface: addresses and
prefixes banned by 'xdpguard ban', CrowdSec or fail2ban (origin cli, crowdsec,
fail2ban, with their reason), and the sources the data path banned for
exceeding their SYN rate under ratelimit.syn.ban (origin limit: IPv4
addresses, IPv6 /64s, link-local IPv6 addresses). A banned source cannot start
anything (SYNs, datagrams to UDP services, ICMP requests are dropped); its
established connections and the replies to this host's own traffic still
pass. Bans end on their own, in the data path; 'xdpguard unban' ends one
early.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			root, ifaces, err := pinnedInterfaces(cmd)
			if err != nil {
				return err
			}
			out := []banStatus{}
			wallNow, monoNow := time.Now(), datapath.MonotonicNow()
			for _, iface := range ifaces {
				set, err := maps.Open(datapath.PinDir(root, iface), false)
				if err != nil {
					return fmt.Errorf("%s: %w", iface, err)
				}
				bans, _, err := set.Bans(0)
				set.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", iface, err)
				}
				for _, b := range bans {
					left := time.Duration(b.Until - monoNow)
					out = append(out, banStatus{iface, b.Source.String(), b.Origin.String(), b.Reason,
						wallNow.Add(left).UTC().Round(time.Second), left.Round(time.Second).String(), b.Drops})
				}
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				return writeJSON(w, out)
			}
			if len(out) == 0 {
				fmt.Fprintln(w, "no sources are banned")
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "INTERFACE\tSOURCE\tORIGIN\tUNTIL\tREMAINING\tDROPS\tREASON")
			for _, b := range out {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", b.Interface, b.Source, b.Origin, b.Until.Format(time.RFC3339), b.Remaining, b.Drops, b.Reason)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// parseSource reads an address (as a /32 or /128) or a CIDR.
func parseSource(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if !p.IsValid() || p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set: write %s", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or a CIDR", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Bounds of a manual ban's length.
const (
	minBanFor = time.Second
	maxBanFor = 10 * 365 * 24 * time.Hour
)

func newBanCmd() *cobra.Command {
	var (
		ifaces   []string
		dur      time.Duration
		reason   string
		origin   string
		auditLog string
	)
	cmd := &cobra.Command{
		Use:   "ban ADDR|CIDR [--for 1h] [--reason TEXT] [--iface IF[,IF...]]",
		Short: "Ban an address or a prefix: it cannot start anything until the ban ends",
		Long: `ban bans ADDR (an IPv4 or IPv6 address) or CIDR on every interface xdpguard
filters, or on the ones given, for --for: its SYNs, datagrams to UDP services
(under a policy with a udp section; without one, UDP is not filtered) and ICMP
requests are dropped in the data path; its established connections and the
replies to this host's own traffic still pass. The ban is pinned
kernel state: it acts at once, survives daemon restarts and reloads, and ends
on its own. 'xdpguard bans' lists it, 'xdpguard unban' lifts it.

Some sources are never banned: link-local addresses, the peers of this host's
SSH sessions, its default gateways and resolvers (what the daemon protects;
'xdpguard status' lists them). Banning one is refused; a prefix that holds
one is banned with that source exempt, in the data path, for as long as it is
protected.

--origin records who asks (fail2ban's and CrowdSec's integrations set it).
Each origin holds its own ban of a prefix: the prefix stays banned until the
latest of them, a later ban from the same origin replaces that origin's, and
an unban --origin lifts only that origin's. A feed (any origin but cli) may not
ban wider than /8 (IPv4) or /16 (IPv6), and an IPv6 address it bans is banned
with its /64, as the data path keys sources.

Each ban is appended to the change history ('xdpguard history'), with the
user who ran the command (sudo's caller) and its origin; a log that cannot be
written refuses the ban before anything changes.`,
		Example: "  xdpguard ban 198.51.100.7 --for 1h --reason 'brute force'\n  xdpguard ban 203.0.113.0/24 --for 24h\n  xdpguard ban 2001:db8:bad::/48 --iface eth1",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := parseSource(args[0])
			if err != nil {
				return err
			}
			if dur < minBanFor || dur > maxBanFor {
				return fmt.Errorf("--for: %s is out of range [%s, %s]", dur, minBanFor, maxBanFor)
			}
			o, ok := datapath.ParseBanOrigin(origin)
			if !ok || o == datapath.BanLimit {
				return fmt.Errorf("--origin: %q: want cli, crowdsec or fail2ban", origin)
			}
			if o != datapath.BanCLI {
				if p, err = datapath.FeedBanPrefix(p); err != nil {
					return fmt.Errorf("--origin %s: %w", origin, err)
				}
			}
			if err := checkInterfaceNames(ifaces); err != nil {
				return err
			}
			root, err := loader.ResolvePinRoot(bpffsFlag(cmd), false)
			if err != nil {
				return err
			}
			if len(ifaces) == 0 {
				if ifaces, err = loader.Interfaces(root); err != nil {
					return err
				}
			}
			if len(ifaces) == 0 {
				return errors.New("xdpguard is not attached to any interface in this network namespace: nothing to ban on")
			}
			hist, err := cliHistory(cmd, auditLog)
			if err != nil {
				return err
			}
			wallUntil := time.Now().Add(dur).UTC().Round(time.Second)
			rec := history.Record{Kind: history.KindBan, Source: p.String(), Origin: o.String(), Reason: reason, Until: &wallUntil, Result: history.ResultApplied}
			until := datapath.MonotonicNow() + uint64(dur)
			for _, iface := range ifaces {
				set, err := maps.Open(datapath.PinDir(root, iface), true)
				if err != nil {
					return recordFailed(hist, rec, fmt.Errorf("%s: %w", iface, err))
				}
				exempt, decides, err := banOn(set, p, until, o, reason)
				set.Close()
				if err != nil {
					return recordFailed(hist, rec, fmt.Errorf("%s: %w", iface, err))
				}
				rec.Interfaces = append(rec.Interfaces, iface)
				if decides {
					fmt.Fprintf(cmd.OutOrStdout(), "banned %s on %s for %s\n", p, iface, dur)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "banned %s on %s for %s (%s); a longer ban of it by another origin stays in force\n", p, iface, dur, o)
				}
				for _, e := range exempt {
					fmt.Fprintf(cmd.ErrOrStderr(), "note: %s stays exempt on %s\n", e, iface)
				}
			}
			return recordCLI(hist, rec)
		},
	}
	cmd.Flags().StringSliceVar(&ifaces, "iface", nil, "interfaces (default: all with xdpguard)")
	cmd.Flags().DurationVar(&dur, "for", time.Hour, "how long the ban lasts (1s to 10 years)")
	cmd.Flags().StringVar(&reason, "reason", "", fmt.Sprintf("why, shown by 'xdpguard bans' (%d bytes kept; control characters become spaces)", datapath.MaxBanReason))
	cmd.Flags().StringVar(&origin, "origin", "cli", "who bans: cli, crowdsec or fail2ban")
	addAuditLogFlag(cmd, &auditLog)
	return cmd
}

// banOn bans p in set. A prefix inside a source that is never banned is
// refused; one holding such sources is banned, and exempt names them.
// decides is false when another origin's ban of p outlasts this one.
func banOn(set *maps.Set, p netip.Prefix, until uint64, o datapath.BanOrigin, reason string) (exempt []string, decides bool, err error) {
	for _, ll := range []netip.Prefix{netip.MustParsePrefix("fe80::/10"), netip.MustParsePrefix("169.254.0.0/16")} {
		switch {
		case ll.Bits() <= p.Bits() && ll.Contains(p.Addr()):
			return nil, false, fmt.Errorf("%s is link-local, which is never banned", p)
		case ll.Overlaps(p):
			exempt = append(exempt, ll.String()+" (link-local)")
		}
	}
	prot, err := set.Protected()
	if err != nil {
		prot = nil // pins of an older schema: nothing recorded
	}
	for _, pr := range prot {
		switch {
		case pr.Source.Bits() <= p.Bits() && pr.Source.Contains(p.Addr()):
			return nil, false, fmt.Errorf("%s is protected (%s: %s), which is never banned", p, pr.Source, pr.Why)
		case pr.Source.Overlaps(p):
			exempt = append(exempt, pr.Source.String()+" ("+pr.Why.String()+")")
		}
	}
	// Each origin keeps its own end: none shortens or lifts another's.
	decides, err = set.Ban(p, until, o, reason)
	return exempt, decides, err
}

func newUnbanCmd() *cobra.Command {
	var (
		ifaces   []string
		origin   string
		auditLog string
	)
	cmd := &cobra.Command{
		Use:   "unban ADDR|CIDR [--iface IF[,IF...]] [--origin ORIGIN]",
		Short: "End a ban early",
		Long: `unban lifts the bans of ADDR or CIDR on every interface, or on the ones given:
for an address, the ban the SYN limit gave its source (for IPv6, its whole /64)
and a ban of the address itself; for a CIDR, the ban of exactly that prefix.
It changes state at once, with or without the daemon running.

With --origin (what fail2ban's action passes), it lifts only the ban of
exactly ADDR or CIDR that origin wrote, never an operator's or the SYN
limit's, and a ban already gone is not an error.

Each unban that lifts something is appended to the change history
('xdpguard history'), as ban does.`,
		Example: "  xdpguard unban 198.51.100.7\n  xdpguard unban 203.0.113.0/24\n  xdpguard unban 2001:db8:aa:bb::1 --iface eth1",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := parseSource(args[0])
			if err != nil {
				return err
			}
			if err := checkInterfaceNames(ifaces); err != nil {
				return err
			}
			var only datapath.BanOrigin
			if origin != "" {
				o, ok := datapath.ParseBanOrigin(origin)
				if !ok || o == datapath.BanLimit {
					return fmt.Errorf("--origin: %q: want cli, crowdsec or fail2ban", origin)
				}
				only = o
				if o != datapath.BanCLI {
					if p, err = datapath.FeedBanPrefix(p); err != nil {
						return fmt.Errorf("--origin %s: %w", origin, err)
					}
				}
			}
			root, err := loader.ResolvePinRoot(bpffsFlag(cmd), false)
			if err != nil {
				return err
			}
			if len(ifaces) == 0 {
				if ifaces, err = loader.Interfaces(root); err != nil {
					return err
				}
			}
			if len(ifaces) == 0 {
				return errors.New("xdpguard is not attached to any interface in this network namespace: nothing is banned")
			}
			hist, err := cliHistory(cmd, auditLog)
			if err != nil {
				return err
			}
			shown := p.String()
			if p.IsSingleIP() && origin == "" {
				shown = datapath.SrcKeyOf(p.Addr()).Prefix().String()
			}
			rec := history.Record{Kind: history.KindUnban, Source: shown, Origin: origin, Result: history.ResultApplied}
			lifted := 0
			for _, iface := range ifaces {
				set, err := maps.Open(datapath.PinDir(root, iface), true)
				if err != nil {
					return recordFailed(hist, rec, fmt.Errorf("%s: %w", iface, err))
				}
				var ok bool
				if origin != "" {
					ok, err = set.Lift(p, only)
				} else {
					ok, err = set.Unban(p)
				}
				set.Close()
				if err != nil {
					return recordFailed(hist, rec, fmt.Errorf("%s: %w", iface, err))
				}
				if ok {
					lifted++
					rec.Interfaces = append(rec.Interfaces, iface)
					fmt.Fprintf(cmd.OutOrStdout(), "unbanned %s on %s\n", shown, iface)
				}
			}
			switch {
			case lifted > 0:
				return recordCLI(hist, rec)
			case origin != "":
				fmt.Fprintf(cmd.OutOrStdout(), "%s holds no ban from %s on %s\n", p, origin, strings.Join(ifaces, ", "))
			default:
				return fmt.Errorf("%s is not banned on %s", shown, strings.Join(ifaces, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&ifaces, "iface", nil, "interfaces (default: all with xdpguard)")
	cmd.Flags().StringVar(&origin, "origin", "", "lift only the ban this origin wrote (cli, crowdsec, fail2ban)")
	addAuditLogFlag(cmd, &auditLog)
	return cmd
}

// recordFailed records a ban or unban that failed part-way (on the
// interfaces rec lists it took effect) and returns err.
func recordFailed(l *history.Log, rec history.Record, err error) error {
	rec.Result, rec.Error = history.ResultFailed, err.Error()
	return errors.Join(err, recordCLI(l, rec))
}
