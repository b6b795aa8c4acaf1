package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/history"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

func newDetachCmd() *cobra.Command {
	var (
		ifaces   []string
		all      bool
		auditLog string
	)
	cmd := &cobra.Command{
		Use:   "detach (--iface IF[,IF...] | --all)",
		Short: "Remove the filter and its pinned state from interfaces",
		Long: `detach removes xdpguard from the interfaces: the XDP program is detached and
its pins (counters, limiter state) deleted. It refuses while 'xdpguard run'
manages the interface; stop the daemon first (the filter stays in place until
detach). Each detach is appended to the change history ('xdpguard history'),
with the user and the policy digest that was in force.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all == (len(ifaces) > 0) {
				return errors.New("give --iface or --all")
			}
			if err := checkInterfaceNames(ifaces); err != nil {
				return err
			}
			root, err := loader.ResolvePinRoot(bpffsFlag(cmd), false)
			if err != nil {
				return err
			}
			if all {
				if ifaces, err = loader.Interfaces(root); err != nil {
					return err
				}
			}
			if len(ifaces) == 0 {
				return nil
			}
			hist, err := cliHistory(cmd, auditLog)
			if err != nil {
				return err
			}
			rec := history.Record{Kind: history.KindDetach, Result: history.ResultApplied}
			var errs []error
			for _, iface := range ifaces {
				before := pinnedDigest(root, iface)
				if err := loader.Detach(root, iface); err != nil {
					errs = append(errs, err)
					continue
				}
				if rec.Before == "" {
					rec.Before = before
				}
				rec.Interfaces = append(rec.Interfaces, iface)
				fmt.Fprintf(cmd.OutOrStdout(), "detached %s\n", iface)
			}
			if len(errs) > 0 {
				rec.Result, rec.Error = history.ResultFailed, errors.Join(errs...).Error()
			}
			if len(rec.Interfaces) > 0 || len(errs) > 0 {
				errs = append(errs, recordCLI(hist, rec))
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringSliceVar(&ifaces, "iface", nil, "interfaces to detach from")
	cmd.Flags().BoolVar(&all, "all", false, "detach from every interface with xdpguard pins in this network namespace")
	addAuditLogFlag(cmd, &auditLog)
	return cmd
}

// pinnedDigest is the policy digest the pins of iface record ("" if none
// can be read), as the daemon's logs and status show it.
func pinnedDigest(root, iface string) string {
	set, err := maps.Open(datapath.PinDir(root, iface), false)
	if err != nil {
		return ""
	}
	defer set.Close()
	m, err := set.Meta()
	if err != nil || m.PolicyDigest == [32]byte{} {
		return ""
	}
	return fmt.Sprintf("%x", m.PolicyDigest[:6])
}
