package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/explain"
	"github.com/xdpguard/xdpguard/pkg/loader"
)

func newExplainCmd() *cobra.Command {
	var (
		src, dst, proto, flags, iface, output string
		sport, dport, vlan                    uint16
		icmpType                              uint8
	)
	cmd := &cobra.Command{
		Use:   "explain --src ADDR --proto tcp|udp|icmp [--dport N] [flags]",
		Short: "Say what the filter in force does to a packet, and why, without sending it",
		Long: `explain builds the packet the flags describe (Ethernet, an optional 802.1Q
tag, IPv4 or IPv6, TCP, UDP, ICMP or ICMPv6) and has the program in force on
the interface judge it: the same compiled program, loaded again beside the
live one with the live policy (its .rodata) and source lists shared read-only,
and copies of the limiter buckets and bans the packet can reach. It is run
once with BPF_PROG_RUN. Nothing live changes: no counter, bucket, ban or drop
event; nothing is sent on the wire.

It prints the verdict (pass, drop, or would-drop: a drop that monitor mode or
a monitor-mode rule lets through; answered: a SYN the SYN proxy answers with a
cookie), the reason (the reason label of
xdpguard_packets_total), the rule whose counters the packet adds to (its
label, as in status and xdpguard_rule_packets_total), what the packet would
change had it arrived (a token taken, a ban written), and what applies to the
source now: deny and trust lists, protection, bans in force (with origin and
end), its SYN and ICMP buckets. A program loaded by another xdpguard version
is refused (its tag differs): run that version's explain.

A TCP packet is a SYN unless --flags says otherwise (--flags ack: established
traffic). ICMP is an echo request unless --icmp-type says otherwise (ICMPv6
for IPv6 addresses). Needs root (CAP_SYS_ADMIN, CAP_BPF: the program in force
is opened by its id). Exit status 0 when the packet was judged, whatever the
verdict; 1 on an error.`,
		Example: `  xdpguard explain --src 198.51.100.7 --proto tcp --dport 22
  xdpguard explain --src 2001:db8::5 --proto icmp --output json
  xdpguard explain --src 10.1.2.3 --proto udp --dport 53 --vlan 100 --iface eth1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			q := explain.Query{Proto: strings.ToLower(proto), Sport: sport, Dport: dport, VLAN: vlan, ICMPType: icmpType,
				ICMPTypeSet: cmd.Flags().Changed("icmp-type")}
			var err error
			if q.Src, err = netip.ParseAddr(src); err != nil {
				return fmt.Errorf("--src %q: not an IP address", src)
			}
			if dst != "" {
				if q.Dst, err = netip.ParseAddr(dst); err != nil {
					return fmt.Errorf("--dst %q: not an IP address", dst)
				}
			}
			if flags != "" {
				if q.Proto != "tcp" {
					return errors.New("--flags: only for --proto tcp")
				}
				if q.Flags, err = explain.ParseFlags(flags); err != nil {
					return fmt.Errorf("--flags: %w", err)
				}
			}
			if q.ICMPTypeSet && q.Proto != "icmp" {
				return errors.New("--icmp-type: only for --proto icmp")
			}
			if err := q.Validate(); err != nil {
				return err
			}
			if iface != "" {
				if err := checkInterfaceNames([]string{iface}); err != nil {
					return err
				}
			}
			root, ifaces, err := pinnedInterfaces(cmd)
			if err != nil {
				return err
			}
			switch {
			case iface != "" && !slices.Contains(ifaces, iface):
				return fmt.Errorf("--iface %s: xdpguard is not attached there (attached: %s)", iface, listOrNone(ifaces))
			case iface == "" && len(ifaces) == 1:
				iface = ifaces[0]
			case iface == "" && len(ifaces) == 0:
				return errors.New("xdpguard is attached to no interface in this network namespace")
			case iface == "":
				return fmt.Errorf("xdpguard is attached to %s: say which with --iface", strings.Join(ifaces, ", "))
			}
			res, err := explain.Explain(datapath.PinDir(root, iface), iface, q, loader.ClsactProgram(iface))
			if err != nil {
				return fmt.Errorf("%s: %w", iface, err)
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			printExplanation(cmd.OutOrStdout(), res)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&src, "src", "", "source address of the packet (IPv4 or IPv6)")
	f.StringVar(&dst, "dst", "", "destination address (default 192.0.2.1 or 2001:db8::1: the filter does not judge it)")
	f.StringVar(&proto, "proto", "", "tcp, udp or icmp (ICMPv6 for IPv6 addresses)")
	f.Uint16Var(&sport, "sport", 0, "source port (default 40000)")
	f.Uint16Var(&dport, "dport", 0, "destination port (tcp, udp)")
	f.StringVar(&flags, "flags", "", "TCP flags, e.g. syn, ack, syn,ack, fin,ack (default syn)")
	f.Uint8Var(&icmpType, "icmp-type", 0, "ICMP type (default 8, echo request; ICMPv6 128)")
	f.Uint16Var(&vlan, "vlan", 0, "an 802.1Q tag with this VLAN ID (1..4094)")
	f.StringVar(&iface, "iface", "", "interface whose filter judges (default: the only one attached)")
	f.StringVar(&output, "output", "text", "text or json")
	_ = cmd.MarkFlagRequired("src")
	_ = cmd.MarkFlagRequired("proto")
	return cmd
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func printExplanation(w io.Writer, r *explain.Result) {
	p := r.Packet
	switch p.Proto {
	case "tcp", "udp":
		fmt.Fprintf(w, "%s: %s %s:%d -> %s:%d", r.Interface, p.Proto, p.Src, p.Sport, p.Dst, p.Dport)
		if p.Flags != "" {
			fmt.Fprintf(w, " [%s]", p.Flags)
		}
	default:
		fmt.Fprintf(w, "%s: %s %s -> %s type %d", r.Interface, p.Proto, p.Src, p.Dst, *p.ICMPType)
	}
	if p.VLAN != 0 {
		fmt.Fprintf(w, " vlan %d", p.VLAN)
	}
	fmt.Fprintf(w, "\nverdict:  %s (%s)\n", r.Verdict, r.Reason)
	if r.Rule != "" {
		fmt.Fprintf(w, "rule:     %s (counted as %s)\n", r.Rule, r.RuleCounter)
	} else {
		fmt.Fprintln(w, "rule:     none (no rule counts this packet)")
	}
	for i, e := range r.Effects {
		label := "          "
		if i == 0 {
			label = "had it arrived, it "
		}
		fmt.Fprintf(w, "%s%s\n", label, e)
	}
	s := r.Source
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	fmt.Fprintf(w, "source %s (limiter and ban key %s):\n", p.Src, s.Key)
	prot := "no"
	if s.Protected != "" {
		prot = s.Protected
	}
	fmt.Fprintf(w, "  denied: %s  trusted: %s  never banned: %s\n", yes(s.Denied), yes(s.Trusted), prot)
	if len(s.Bans) == 0 {
		fmt.Fprintln(w, "  banned: no")
	}
	for _, b := range s.Bans {
		fmt.Fprintf(w, "  banned: %s until %s (%s left), origin %s, %d drops", b.Prefix, b.Until.Format(time.RFC3339), b.Remaining, b.Origin, b.Drops)
		if b.Reason != "" {
			fmt.Fprintf(w, ", reason %q", b.Reason)
		}
		fmt.Fprintln(w)
	}
	for _, b := range []struct {
		name string
		b    *explain.Bucket
	}{{"SYN", s.SYN}, {"ICMP", s.ICMP}} {
		if b.b == nil {
			continue
		}
		fmt.Fprintf(w, "  %s bucket: %d of %d tokens, %d refused", b.name, b.b.Tokens, b.b.Burst, b.b.Refused)
		if b.b.Tokens < b.b.Burst {
			fmt.Fprintf(w, ", full at %s", b.b.Full.Format(time.RFC3339))
		}
		fmt.Fprintln(w)
	}
	g := r.Generation
	mode := "enforce"
	if g.Monitor {
		mode = "monitor"
	}
	fmt.Fprintf(w, "judged by generation %d (%s, policy %.12s", g.Number, mode, g.PolicyDigest)
	if g.PolicyPath != "" {
		fmt.Fprintf(w, " from %s", g.PolicyPath)
	}
	fmt.Fprintf(w, ", loaded %s), program %d tag %s\n", g.Loaded.Format(time.RFC3339), g.ProgramID, g.ProgramTag)
}
