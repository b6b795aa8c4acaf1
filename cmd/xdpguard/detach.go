package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/loader"
)

func newDetachCmd() *cobra.Command {
	var (
		ifaces []string
		all    bool
	)
	cmd := &cobra.Command{
		Use:   "detach (--iface IF[,IF...] | --all)",
		Short: "Remove the filter and its pinned state from interfaces",
		Long: `detach removes xdpguard from the interfaces: the XDP program is detached and
its pins (counters, limiter state) deleted. It refuses while 'xdpguard run'
manages the interface; stop the daemon first (the filter stays in place until
detach).`,
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
			var errs []error
			for _, iface := range ifaces {
				if err := loader.Detach(root, iface); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "detached %s\n", iface)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringSliceVar(&ifaces, "iface", nil, "interfaces to detach from")
	cmd.Flags().BoolVar(&all, "all", false, "detach from every interface with xdpguard pins in this network namespace")
	return cmd
}
