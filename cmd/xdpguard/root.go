package main

import (
	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/loader"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "xdpguard",
		Short: "XDP firewall: only listed TCP ports accept new connections",
		Long: `xdpguard drops, in XDP, TCP SYNs to ports the policy does not list and SYNs
beyond each source's and each port's rate. Established traffic, replies to
this host's own connections, ARP and neighbour discovery pass; so do UDP and
ICMP unless the policy has a udp allow-list or an icmp limit.

The filter is pinned in bpffs: it keeps enforcing when the daemon stops or
dies, and a restarted daemon adopts it. 'xdpguard detach' removes it.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("bpffs", loader.DefaultBPFFS, "bpffs mount under which xdpguard pins its state (xdpguard/ inside it)")
	root.AddCommand(newRunCmd(), newCheckCmd(), newDiffCmd(), newAuditCmd(), newExplainCmd(), newStatusCmd(), newStatsCmd(), newTopCmd(), newBansCmd(), newBanCmd(), newUnbanCmd(), newHistoryCmd(), newTraceCmd(), newPreviewCmd(), newDetachCmd(), newVersionCmd(), newGenDocsCmd())
	return root
}

func bpffsFlag(cmd *cobra.Command) string {
	v, _ := cmd.Flags().GetString("bpffs")
	return v
}
