package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/listening"
	"github.com/xdpguard/xdpguard/pkg/policy"
	"github.com/xdpguard/xdpguard/pkg/protect"
	"github.com/xdpguard/xdpguard/pkg/trace"
)

type previewReport struct {
	Policy   string          `json:"policy"`
	Current  string          `json:"current"`
	For      string          `json:"for"`
	Warnings []trace.Warning `json:"warnings"`
	Notes    []string        `json:"notes"`
	trace.Report
	Counts []trace.Counts `json:"counts"`
}

// inForce is pol as the daemon would compile it now (timed rules, and the
// listening ports under allow_listening).
func inForce(pol *policy.Policy) (*policy.Policy, error) {
	var ports []uint16
	if pol.AllowListening {
		var err error
		if ports, err = listening.Ports(pol.ListeningUIDs); err != nil {
			return nil, err
		}
	}
	return pol.InForce(time.Now(), ports), nil
}

func newPreviewCmd() *cobra.Command {
	var (
		file, output string
		dur          time.Duration
		rate, burst  uint64
		ifaces       []string
	)
	cmd := &cobra.Command{
		Use:   "preview --policy NEW.yaml [--for 60s] [--output text|json]",
		Short: "Show what a candidate policy would do to the live traffic, before switching",
		Long: `preview samples, for --for, the TCP SYNs and UDP datagrams arriving on the
interfaces xdpguard filters, and judges each under the candidate policy
--policy: it reports the traffic that passes today and the candidate would
drop ("cut"), and the traffic dropped today that it would let through
("opened"), with sample counts, the top sources and ports, and the flows
(source, protocol, port, today's reason, the candidate's). Nothing switches;
the daemon is not involved.

First, before sampling, it judges the clients of the SSH sessions established
now (TCP port 22, read with sock_diag) and the sources the daemon never bans
(SSH peers, default gateways, resolvers) under the candidate, and prints a
WARNING for each the candidate would cut or refuse.

What is exact and what is sampled: today's verdict of each sample is the
loaded program's own, for that packet. The candidate's verdict is the
reference model's (pkg/reference, which the data path's differential test
holds to the program): ports, scoped and timed rules, deny lists, monitor
mode, exactly; not its limits and bans, which depend on the buckets of the
moment. Samples a limit or a ban dropped today are counted apart and not
compared. Each sample is also judged under the current policy file by the
model; "model disagrees" counts where that differs from the kernel (the file
changed since it was loaded). Which packets are judged is sampled: only SYNs
and datagrams (what starts something: established traffic is never cut by
port rules, only by a deny list), within the budget below, so the counts are
samples, not packets; a flow that sends nothing while the preview runs is not
seen.

` + traceBudget + `

It needs root. One trace or preview runs at a time per interface.

Exit status: 0 when the preview ran, 1 on an error (a candidate that does not
load: its file, line and field).`,
		Example: "  xdpguard preview --policy /etc/xdpguard/policy.yaml.new\n  xdpguard preview --policy new.yaml --for 5m --output json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if file == "" {
				return errors.New("--policy: required (the candidate policy file)")
			}
			if err := checkTraceFlags(dur, rate, burst); err != nil {
				return err
			}
			cand, err := policy.Load(file)
			if err != nil {
				return err
			}
			if cand, err = inForce(cand); err != nil {
				return err
			}
			list, closeAll, err := openTraceIfaces(cmd, ifaces)
			if err != nil {
				return err
			}
			defer closeAll()
			meta, err := list[0].Set.Meta()
			if err != nil {
				return fmt.Errorf("%s: read the generation in force: %w", list[0].Name, err)
			}
			if meta.Path() == "" {
				return fmt.Errorf("%s: the generation in force records no policy file", list[0].Name)
			}
			cur, err := policy.Load(meta.Path())
			if err != nil {
				return fmt.Errorf("the policy in force: %w", err)
			}
			if cur, err = inForce(cur); err != nil {
				return err
			}
			rep := previewReport{Policy: file, Current: meta.Path(), For: dur.String(), Notes: []string{}}
			if cur.Digest() != meta.PolicyDigest {
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s changed since it was loaded: today's verdicts are the kernel's, but the model's check of them uses the file", meta.Path()))
			}
			for _, i := range list[1:] {
				if m, err := i.Set.Meta(); err == nil && m.PolicyDigest != meta.PolicyDigest {
					rep.Notes = append(rep.Notes, fmt.Sprintf("%s has another policy in force than %s", i.Name, list[0].Name))
				}
			}
			sessions, err := listening.Established(22)
			if err != nil {
				rep.Notes = append(rep.Notes, fmt.Sprintf("SSH sessions not checked: %v", err))
			}
			protected, err := protect.ThisHost(os.Getenv("SSH_CONNECTION")).Discover()
			if err != nil {
				rep.Notes = append(rep.Notes, fmt.Sprintf("protected sources: %v", err))
			}
			rep.Warnings = trace.Warnings(cand, sessions, protected)
			w := cmd.OutOrStdout()
			// First and loudly, before any sampling: on stderr in every
			// format, and on stdout in text.
			for _, wn := range rep.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: %s\n", wn.What)
				if output == "text" {
					fmt.Fprintf(w, "WARNING: %s\n", wn.What)
				}
			}
			if output == "text" {
				for _, n := range rep.Notes {
					fmt.Fprintf(w, "note: %s\n", n)
				}
				fmt.Fprintf(w, "sampling SYNs and datagrams for %s: today (%s) against %s\n", dur, meta.Path(), file)
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			pv := trace.NewPreview(cur, cand, protected)
			counts, runErr := trace.Run(ctx, list, trace.Options{Kinds: datapath.TraceSYN | datapath.TraceUDP,
				For: dur, Rate: rate, Burst: burst}, pv.Add)
			rep.Report, rep.Counts = pv.Report(), counts
			if output == "json" {
				if err := writeJSON(w, rep); err != nil {
					return err
				}
				return runErr
			}
			printPreview(w, rep)
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "policy", "", "the candidate policy file (required)")
	f.DurationVar(&dur, "for", time.Minute, "how long to sample (1s to 1h)")
	f.Uint64Var(&rate, "rate", 1000, "samples per second per interface (1 to 10000)")
	f.Uint64Var(&burst, "burst", 2000, "samples in a burst")
	f.StringSliceVar(&ifaces, "iface", nil, "interfaces (default: all with xdpguard)")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printPreview(w io.Writer, r previewReport) {
	fmt.Fprintf(w, "%d samples: %d compared, %d limited or banned today (not compared), %d where the model disagrees with the kernel\n",
		r.Samples, r.Compared, r.LimitedToday, r.ModelDisagrees)
	for _, c := range r.Counts {
		if c.OverBudget+c.RingFull > 0 {
			fmt.Fprintf(w, "%s: %d SYNs and datagrams not sampled (budget %d, ring %d)\n", c.Interface, c.OverBudget+c.RingFull, c.OverBudget, c.RingFull)
		}
	}
	side := func(title string, c trace.Change) {
		if c.Samples == 0 {
			fmt.Fprintf(w, "%s: nothing sampled\n", title)
			return
		}
		fmt.Fprintf(w, "%s: %d samples\n", title, c.Samples)
		for _, f := range c.Flows {
			rule := f.Rule
			if rule == "" {
				rule = "-"
			}
			fmt.Fprintf(w, "  %-40s %s/%d  %d samples  today %s, candidate %s (rule %s)\n", f.Source, f.Proto, f.Port, f.Samples, f.Today, f.Candidate, rule)
		}
		fmt.Fprint(w, "  top sources:")
		for _, s := range c.TopSources {
			fmt.Fprintf(w, " %s (%d)", s.Key, s.Samples)
		}
		fmt.Fprint(w, "\n  top ports:")
		for _, s := range c.TopPorts {
			fmt.Fprintf(w, " %s (%d)", s.Key, s.Samples)
		}
		fmt.Fprintln(w)
	}
	side("passes today, the candidate drops", r.Cut)
	side("dropped today, the candidate passes", r.Opened)
}
