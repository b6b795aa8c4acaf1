package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/trace"
)

// Bounds of a trace's or a preview's length and budget.
const (
	maxTraceFor  = time.Hour
	maxTraceRate = 10000
)

// traceBudget is the help text of the budget flags, shared with preview.
const traceBudget = `The samples are budgeted like drop events: --rate per second per interface,
with a burst of --burst. What a flood of matching packets sends beyond it is
not shown but counted, and the counts are printed at the end (over_budget; and
ring_full, when this command did not read the samples fast enough).`

// openTraceIfaces opens the pins of the interfaces named (all with xdpguard
// when none), writable: the trace entry is written there.
func openTraceIfaces(cmd *cobra.Command, names []string) ([]trace.Iface, func(), error) {
	if err := checkInterfaceNames(names); err != nil {
		return nil, nil, err
	}
	root, err := loader.ResolvePinRoot(bpffsFlag(cmd), false)
	if err != nil {
		return nil, nil, err
	}
	if len(names) == 0 {
		if names, err = loader.Interfaces(root); err != nil {
			return nil, nil, err
		}
	}
	if len(names) == 0 {
		return nil, nil, errors.New("xdpguard is not attached to any interface in this network namespace: nothing to trace")
	}
	var out []trace.Iface
	closeAll := func() {
		for _, i := range out {
			i.Set.Close()
		}
	}
	for _, n := range names {
		set, err := maps.Open(datapath.PinDir(root, n), true)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("%s: %w", n, err)
		}
		out = append(out, trace.Iface{Name: n, Set: set})
	}
	return out, closeAll, nil
}

// checkTraceFlags checks the length and budget of a trace or preview.
func checkTraceFlags(dur time.Duration, rate, burst uint64) error {
	if dur < time.Second || dur > maxTraceFor {
		return fmt.Errorf("--for: %s is out of range [1s, %s]", dur, maxTraceFor)
	}
	if rate < 1 || rate > maxTraceRate {
		return fmt.Errorf("--rate: %d is out of range [1, %d]", rate, maxTraceRate)
	}
	if burst < 1 || burst > 100*maxTraceRate {
		return fmt.Errorf("--burst: %d is out of range [1, %d]", burst, 100*maxTraceRate)
	}
	return nil
}

// signalContext ends on SIGINT or SIGTERM, so the trace is turned off.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func newTraceCmd() *cobra.Command {
	var (
		src, output string
		port        uint16
		dur         time.Duration
		rate, burst uint64
		ifaces      []string
	)
	cmd := &cobra.Command{
		Use:   "trace --src CIDR [--port N] [--for 30s] [--output text|json]",
		Short: "Show the live verdicts of the packets from some sources, one line each",
		Long: `trace shows what the filter does to the packets from --src (an address or a
CIDR, IPv4 or IPv6), optionally only those to destination port --port: one
line per packet with its time, interface, protocol, source and destination
address and port, TCP flags (or ICMP type, VLAN tags), verdict (pass, drop,
or would-drop under monitor mode), reason and the rule that decided (its
counter label). It runs for --for and ends by itself; Ctrl-C ends it early.
With --output json each packet is one JSON object per line, then the counts.

What is exact and what is sampled: every line is a packet the loaded program
judged, with the verdict, reason and rule that program gave it; nothing is
judged again. Which packets are shown is sampled: the budget below, and
nothing before the trace starts. Packets are seen on ingress only, as XDP
sees them (this host's replies are not shown).

` + traceBudget + `

It needs root (it writes the filter into xdpguard's pins: the kernel, not the
daemon, samples the packets). When no trace runs, the data path pays one
load and one branch per packet; while one runs, about 10 ns a packet more
(docs/trace.md). The trace is turned off when this
command ends, and by the data path itself at --for if this command is killed.
One trace or preview runs at a time per interface; another is refused.

Exit status: 0 when the trace ran its course or was interrupted, 1 on an
error.`,
		Example: "  xdpguard trace --src 198.51.100.7\n  xdpguard trace --src 10.0.0.0/8 --port 22 --for 2m\n  xdpguard trace --src 2001:db8::/32 --output json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if src == "" {
				return errors.New("--src: required (an address or a CIDR; 0.0.0.0/0 or ::/0 for all of a family)")
			}
			p, err := parseSource(src)
			if err != nil {
				return fmt.Errorf("--src: %w", err)
			}
			if err := checkTraceFlags(dur, rate, burst); err != nil {
				return err
			}
			list, closeAll, err := openTraceIfaces(cmd, ifaces)
			if err != nil {
				return err
			}
			defer closeAll()
			ctx, cancel := signalContext(cmd)
			defer cancel()
			w := cmd.OutOrStdout()
			enc := json.NewEncoder(w)
			if output == "text" {
				what := p.String()
				if port != 0 {
					what += fmt.Sprintf(" to port %d", port)
				}
				fmt.Fprintf(w, "tracing packets from %s for %s (at most %d a second, burst %d, per interface)\n", what, dur, rate, burst)
			}
			counts, err := trace.Run(ctx, list, trace.Options{Source: p, Port: port, Kinds: datapath.TraceAll,
				For: dur, Rate: rate, Burst: burst}, func(pk trace.Packet) {
				if output == "json" {
					_ = enc.Encode(pk)
					return
				}
				fmt.Fprintln(w, pk.Line())
			})
			if counts != nil {
				printCounts(cmd, output, counts)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&src, "src", "", "the sources traced: an address or a CIDR (required)")
	f.Uint16Var(&port, "port", 0, "only packets to this destination port (0: any)")
	f.DurationVar(&dur, "for", 30*time.Second, "how long the trace runs (1s to 1h)")
	f.Uint64Var(&rate, "rate", 100, "samples per second per interface (1 to 10000)")
	f.Uint64Var(&burst, "burst", 200, "samples in a burst")
	f.StringSliceVar(&ifaces, "iface", nil, "interfaces (default: all with xdpguard)")
	f.StringVarP(&output, "output", "o", "text", "output format: text (a line per packet) or json (an object per line)")
	return cmd
}

// printCounts ends a trace or preview: what was sampled and left out.
func printCounts(cmd *cobra.Command, output string, counts []trace.Counts) {
	w := cmd.OutOrStdout()
	if output == "json" {
		_ = json.NewEncoder(w).Encode(struct {
			Counts []trace.Counts `json:"counts"`
		}{counts})
		return
	}
	for _, c := range counts {
		fmt.Fprintf(w, "%s: %d sampled, %d left out over the budget, %d left out with the ring full\n",
			c.Interface, c.Sent, c.OverBudget, c.RingFull)
	}
}
