package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

func newCheckCmd() *cobra.Command {
	var (
		path  string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "check --policy FILE",
		Short: "Validate a policy file without touching the kernel",
		Long: `check parses and validates a policy file the way 'run' does and prints what
it means. On errors it prints each with file, line, column and field, and exits
non-zero. Run from an SSH session, it also refuses a policy that would refuse
that session's port to its client, or deny its address; and syn_proxy on a
kernel without the helpers it needs, or on a port no local socket listens on
(--force overrides both).

Policy format:

  mode: enforce       # or monitor: count what would drop, drop nothing
  tcp:
    allow:                            # ports and inclusive ranges, open to all
      - 22
      - 9000-9002
      - port: 3306                    # open to some sources only
        from: [172.16.0.0/12]
      - ports: 30000-32767
        from: [10.0.0.0/8, "fd00::/8"]
      - port: 5432                    # mode: monitor: others pass, counted as the
        from: [10.0.0.0/8]            # rule's would-be drops
        mode: monitor
      - port: 443                     # SYN cookies answered by XDP (always, auto,
        syn_proxy: always             # off); needs a local listener (docs/synproxy.md)
      - port: 8080                    # named (the label of its counters; default
        name: test-team               # tcp/8080), temporary, scheduled (from optional)
        expires: 2026-12-01T18:00:00Z
        schedule: {days: [mon-fri], from: "09:00", to: "18:00", tz: Asia/Shanghai}
    # allow_empty: true               # required to accept an empty list
    # allow_listening: true           # also open every port a local socket listens on
    # deny_ports: [6379]              # ... except these
  ratelimit:
    syn:              # per source (IPv4 address, IPv6 /64); omit for none
      rate: 100       # SYNs per second
      burst: 200
      max_sources: 65536   # limiter table size (LRU)
    syn_total:        # per allowed port, all sources together; omit for none
      rate: 10000
      burst: 10000
  icmp:               # optional: limit echo requests (pings) per source
    echo: {rate: 10, burst: 20}
  udp:                # optional: filter UDP by destination port
    allow: [53]       # the same forms as tcp.allow
    replies: auto     # ephemeral range for replies: auto, none or "a-b"
  synproxy:           # with syn_proxy rules (defaults shown but auto_above)
    auto_above: 5000  # SYNs/s per port above which auto proxies
    auto_hold: 10s    # ... and for how long after the last second over it
    budget:           # SYN-ACKs sent; over it dropped and counted
      per_source: {rate: 200, burst: 400}
      total: {rate: 2000000, burst: 2000000}
  sources:            # CIDRs or addresses, IPv4 and IPv6
    deny: [203.0.113.0/24]   # every IP packet from these is dropped
    trust: [192.0.2.10]      # exempt from the SYN rate limits`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := policy.Load(path)
			if err != nil {
				return err
			}
			now := time.Now()
			// Judge lock-out by what would be in force here and now.
			eff := inForceHere(p, now)
			if !force {
				if err := eff.LockOut(os.Getenv("SSH_CONNECTION")); err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
			}
			spNotes, err := checkSynProxy(p)
			if err != nil && !force {
				return fmt.Errorf("%s: %w (--force accepts it)", path, err)
			}
			d := p.Digest()
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (digest %x)\n%s\n", path, d[:6], p.Summary())
			for _, line := range p.TimedRules(now) {
				fmt.Fprintln(cmd.OutOrStdout(), line)
			}
			for _, line := range spNotes {
				fmt.Fprintln(cmd.OutOrStdout(), line)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "policy", "", "policy file to check")
	cmd.Flags().BoolVar(&force, "force", false, "accept a policy that would refuse the SSH session running this command")
	_ = cmd.MarkFlagRequired("policy")
	return cmd
}
