package main

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

type banStatus struct {
	Interface string    `json:"interface"`
	Source    string    `json:"source"`
	Until     time.Time `json:"until"`
	Remaining string    `json:"remaining"`
}

func newBansCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "bans [--output text|json]",
		Short: "List sources banned for exceeding their SYN rate",
		Long: `bans lists the sources (IPv4 addresses, IPv6 /64s, link-local IPv6 addresses)
that exceeded their SYN rate while ratelimit.syn.ban is set, and when each ban
ends. A banned source cannot start anything (SYNs, datagrams to UDP services,
ICMP requests are dropped); its established connections and the replies to
this host's own traffic still pass. Bans end on their own, in the data path;
'xdpguard unban' ends one early.`,
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
				set, err := maps.Open(filepath.Join(root, iface), false)
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
					out = append(out, banStatus{iface, b.Source.String(), wallNow.Add(left).UTC().Round(time.Second), left.Round(time.Second).String()})
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
			fmt.Fprintln(tw, "INTERFACE\tSOURCE\tUNTIL\tREMAINING")
			for _, b := range out {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", b.Interface, b.Source, b.Until.Format(time.RFC3339), b.Remaining)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newUnbanCmd() *cobra.Command {
	var ifaces []string
	cmd := &cobra.Command{
		Use:   "unban ADDR [--iface IF[,IF...]]",
		Short: "End the ban of a source early",
		Long: `unban lifts the ban of ADDR's source (for IPv6, its whole /64) on every
interface, or on the ones given. It changes state at once, with or without
the daemon running.`,
		Example: "  xdpguard unban 198.51.100.7\n  xdpguard unban 2001:db8:aa:bb::1 --iface eth1",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := netip.ParseAddr(args[0])
			if err != nil {
				return fmt.Errorf("%q is not an IP address", args[0])
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
				return errors.New("xdpguard is not attached to any interface in this network namespace: nothing is banned")
			}
			src := datapath.SrcKeyOf(addr).Prefix()
			lifted := 0
			for _, iface := range ifaces {
				set, err := maps.Open(filepath.Join(root, iface), true)
				if err != nil {
					return fmt.Errorf("%s: %w", iface, err)
				}
				ok, err := set.Unban(addr)
				set.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", iface, err)
				}
				if ok {
					lifted++
					fmt.Fprintf(cmd.OutOrStdout(), "unbanned %s on %s\n", src, iface)
				}
			}
			if lifted == 0 {
				return fmt.Errorf("%s is not banned on %s", src, strings.Join(ifaces, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&ifaces, "iface", nil, "interfaces (default: all with xdpguard)")
	return cmd
}
