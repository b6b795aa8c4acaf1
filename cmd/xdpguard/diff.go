package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Exit status of `diff`, documented in its help.
const (
	exitChanged = 2 // the policies differ
)

// diffReport is `diff --output json`.
type diffReport struct {
	Old     string        `json:"old"`
	New     string        `json:"new"`
	At      time.Time     `json:"at"`
	Changed bool          `json:"changed"`
	Summary string        `json:"summary"`
	Change  policy.Change `json:"change"`
}

func newDiffCmd() *cobra.Command {
	var output, at string
	cmd := &cobra.Command{
		Use:   "diff OLD.yaml NEW.yaml [--output text|json] [--at RFC3339]",
		Short: "Show what changes from one policy file to another, without touching the kernel",
		Long: `diff validates two policy files the way 'check' does and prints what moving
from the first to the second changes, from what they mean rather than how they
are written (reordered rules, a range written as single ports, an address
written as a /32, renamed rules change nothing):

  ports opened or closed to all, TCP and UDP (no udp section: every UDP port)
  ports sources now reach or no longer reach through rules with from, for each
    prefix (a prefix's line holds for its sources but those of a longer
    prefix with its own line)
  ports a monitor-mode rule now names, or no longer
  timed rules (expires, schedule) added, removed or changed
  limits: ratelimit.syn (and its max_sources and ban), syn_total, icmp.echo
  settings: mode, allow_listening, deny_ports, listening_users, udp, replies,
    the crowdsec section (its address, key file and interval; never the key)
  sources denied and trusted, inline and from list files together: counts and
    the first entries added and removed
  list files added, removed, or giving another number of entries

Timed rules open what they open at --at (default now), as the daemon would
have them then. The ports local sockets listen on are not known offline:
allow_listening is shown as a setting, not as ports. Nor is the kernel's
ephemeral range: replies: auto is shown as a setting too.

Exit status: 0 when nothing changes; 2 when something does; 1 when a file
cannot be read or is not a valid policy (the error names the file, line and
field) or the command itself failed.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 2 {
				return fmt.Errorf("want two policy files, OLD.yaml NEW.yaml; got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			when := time.Now()
			if at != "" {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return fmt.Errorf("--at: %q: want a time like 2026-12-01T18:00:00Z", at)
				}
				when = t
			}
			from, errFrom := policy.Load(args[0])
			to, errTo := policy.Load(args[1])
			if err := errors.Join(errFrom, errTo); err != nil {
				return err
			}
			c := policy.Diff(from, to, when)
			w := cmd.OutOrStdout()
			if output == "json" {
				if err := writeJSON(w, diffReport{args[0], args[1], when, !c.Empty(), c.Summary(), c}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(w, "%s → %s at %s: %s\n", args[0], args[1], when.Format(time.RFC3339), c.Summary())
				for _, line := range c.Lines() {
					fmt.Fprintln(w, "  "+line)
				}
				if from.AllowListening || to.AllowListening {
					fmt.Fprintln(w, "note: allow_listening also opens the ports local sockets listen on, not known offline and not shown")
				}
			}
			if !c.Empty() {
				return exitCode(exitChanged)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&at, "at", "", "evaluate timed rules at this RFC 3339 time (default now)")
	return cmd
}
