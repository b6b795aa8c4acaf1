package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/stats"
)

// sampling are the flags `stats` and `top` share.
type sampling struct {
	output   string
	interval time.Duration
	count    int
	limit    int
}

func (s *sampling) flags(cmd *cobra.Command, limitHelp string) {
	f := cmd.Flags()
	f.StringVarP(&s.output, "output", "o", "text", "output format: text, or json (one object per line and interval)")
	f.DurationVar(&s.interval, "interval", time.Second, "time between samples; rates are per second over it")
	f.IntVar(&s.count, "count", 0, "stop after this many intervals (0: until interrupted)")
	f.IntVar(&s.limit, "limit", 10, limitHelp)
}

func (s *sampling) validate() error {
	if err := checkOutput(s.output); err != nil {
		return err
	}
	if s.interval < 100*time.Millisecond {
		return fmt.Errorf("--interval: %s is below 100ms", s.interval)
	}
	if s.count < 0 || s.limit < 1 {
		return errors.New("--count must be 0 or more and --limit at least 1")
	}
	return nil
}

// sampler takes samples of every pinned interface, one interval apart.
type sampler struct {
	root    string
	ifaces  []string
	sources int // how many of the most refused sources and bans to read
	prev    *stats.Sample
}

// sourcesPerLimit is how many more sources than it shows `top` reads: the
// rates of those near the cut need their previous counts.
const sourcesPerLimit = 4

func newSampler(cmd *cobra.Command, sources int) (*sampler, error) {
	root, ifaces, err := pinnedInterfaces(cmd)
	if err != nil {
		return nil, err
	}
	if len(ifaces) == 0 {
		return nil, errors.New("xdpguard is not attached to any interface in this network namespace")
	}
	s := &sampler{root: root, ifaces: ifaces, sources: sources}
	s.prev, err = stats.Take(root, ifaces, sources)
	return s, err
}

// next takes a sample and compares it with the previous one.
func (s *sampler) next(limit int) (time.Time, []stats.Rates, error) {
	cur, err := stats.Take(s.root, s.ifaces, s.sources)
	if err != nil {
		return time.Time{}, nil, err
	}
	rates := stats.Compare(s.prev, cur, limit)
	s.prev = cur
	return cur.Time, rates, nil
}

// isTerminal reports whether w is a terminal (refresh in place) rather than
// a pipe or file (one block per interval).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// interrupted is a context ended by Ctrl-C or SIGTERM.
func interrupted() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// sampleLoop calls show every interval until count or an interrupt.
func (s *sampling) loop(ctx context.Context, smp *sampler, show func(time.Time, []stats.Rates) error) error {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for n := 0; s.count == 0 || n < s.count; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		at, rates, err := smp.next(s.limit)
		if err != nil {
			return err
		}
		if err := show(at, rates); err != nil {
			return err
		}
	}
	return nil
}

type jsonFrame struct {
	Time       time.Time     `json:"time"`
	Interval   float64       `json:"interval_seconds"`
	Interfaces []stats.Rates `json:"interfaces"`
}

func newStatsCmd() *cobra.Command {
	var s sampling
	var watch bool
	cmd := &cobra.Command{
		Use:   "stats [--watch] [--interval 1s] [--output text|json]",
		Short: "Show packet rates and totals by reason and by destination port",
		Long: `stats samples the pinned counters twice, --interval apart, and prints for
each interface the packets per second and totals by verdict reason, and the
destination ports with the most drops. With --watch it goes on sampling,
redrawing in place on a terminal and printing one block per interval
otherwise; --output json prints one JSON object per interval, for scripts.
It reads pins only: it works whether or not the daemon runs.`,
		Example: `  xdpguard stats
  xdpguard stats --watch --interval 2s
  xdpguard stats --watch --output json | jq '.interfaces[0].dropped.per_second'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := s.validate(); err != nil {
				return err
			}
			if !watch && s.count == 0 {
				s.count = 1
			}
			smp, err := newSampler(cmd, 0)
			if err != nil {
				return err
			}
			ctx, stop := interrupted()
			defer stop()
			w := cmd.OutOrStdout()
			redraw := watch && isTerminal(w) && s.output == "text"
			return s.loop(ctx, smp, func(at time.Time, rates []stats.Rates) error {
				if s.output == "json" {
					return json.NewEncoder(w).Encode(jsonFrame{at.UTC(), s.interval.Seconds(), rates})
				}
				if redraw {
					fmt.Fprint(w, "\x1b[H\x1b[2J")
				}
				fmt.Fprintf(w, "%s  (rates over %s; Ctrl-C to stop)\n", at.Format("2006-01-02 15:04:05"), s.interval)
				for _, r := range rates {
					printRates(w, r)
				}
				return nil
			})
		},
	}
	s.flags(cmd, "show at most this many ports")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "keep sampling until interrupted (or --count)")
	return cmd
}

func printRates(w io.Writer, r stats.Rates) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "%s: %.0f packets/s (%d total), %.0f dropped/s (%d total)\n", r.Interface, r.Packets.Rate, r.Packets.Total, r.Dropped.Rate, r.Dropped.Total)
	fmt.Fprintln(tw, "verdict\treason\tper second\ttotal\t")
	row := func(verdict string, m map[string]stats.Counter) {
		for _, name := range sortedKeys(m) {
			if c := m[name]; c.Total > 0 {
				fmt.Fprintf(tw, "%s\t%s\t%.1f\t%d\t\n", verdict, name, c.Rate, c.Total)
			}
		}
	}
	row("drop", r.Drops)
	row("pass", r.Passes)
	row("monitored", r.Monitored)
	tw.Flush()
	if len(r.Ports) > 0 {
		fmt.Fprintln(tw, "port\tdropped/s\ttotal\tnot allowed\trate limited\tudp not allowed\t")
		for _, p := range r.Ports {
			fmt.Fprintf(tw, "%d\t%.1f\t%d\t%d\t%d\t%d\t\n", p.Port, p.Total.Rate, p.Total.Total, p.NotAllowed.Total, p.RateLimited.Total, p.UDP.Total)
		}
		tw.Flush()
	}
	if r.SynProxy != nil {
		fmt.Fprintln(w, synProxyLine(r.SynProxy))
	}
	fmt.Fprintln(w)
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
