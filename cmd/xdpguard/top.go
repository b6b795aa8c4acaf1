package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/stats"
)

func newTopCmd() *cobra.Command {
	var s sampling
	cmd := &cobra.Command{
		Use:   "top [--interval 1s] [--limit 10] [--output text|json]",
		Short: "Show the sources being rate-limited or banned and the closed ports being hit",
		Long: `top refreshes, every --interval, the sources whose SYNs the per-source limit
refuses (IPv4 addresses, IPv6 /64s, most refused first, with the rate), the
banned sources with what they lose and the time their ban has left, and the
destination ports with the most drops. On a terminal it is a full-screen
view (q quits); piped, it prints one block per interval; --output json
prints one JSON object per interval. It reads pins only.`,
		Example: `  xdpguard top
  xdpguard top --count 1 --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := s.validate(); err != nil {
				return err
			}
			smp, err := newSampler(cmd, max(s.limit*sourcesPerLimit, 1000))
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if s.output == "text" && isTerminal(w) && isTerminal(cmd.InOrStdin()) {
				_, err := tea.NewProgram(&topModel{s: s, smp: smp}, tea.WithAltScreen(), tea.WithOutput(w), tea.WithInput(cmd.InOrStdin())).Run()
				return err
			}
			ctx, stop := interrupted()
			defer stop()
			return s.loop(ctx, smp, func(at time.Time, rates []stats.Rates) error {
				if s.output == "json" {
					return json.NewEncoder(w).Encode(jsonFrame{at.UTC(), s.interval.Seconds(), rates})
				}
				fmt.Fprint(w, renderTop(at, s.interval, rates))
				return nil
			})
		},
	}
	s.flags(cmd, "show at most this many sources, bans and ports")
	return cmd
}

// renderTop is the text of one refresh: the same on the full-screen view
// and in line mode.
func renderTop(at time.Time, interval time.Duration, rates []stats.Rates) string {
	var b strings.Builder
	fmt.Fprintf(&b, "xdpguard top  %s  (rates over %s)\n", at.Format("2006-01-02 15:04:05"), interval)
	for _, r := range rates {
		fmt.Fprintf(&b, "\n%s: %.0f dropped/s of %.0f packets/s\n", r.Interface, r.Dropped.Rate, r.Packets.Rate)
		table(&b, "RATE-LIMITED SOURCE\tREFUSED/S\tTOTAL\t", len(r.Sources), func(w io.Writer, i int) {
			s := r.Sources[i]
			fmt.Fprintf(w, "%s\t%.1f\t%d\t\n", s.Source, s.Drops.Rate, s.Drops.Total)
		})
		table(&b, "BANNED SOURCE\tDROPPED/S\tTOTAL\tBAN LEFT\t", len(r.Bans), func(w io.Writer, i int) {
			s := r.Bans[i]
			fmt.Fprintf(w, "%s\t%.1f\t%d\t%s\t\n", s.Source, s.Drops.Rate, s.Drops.Total, s.Left.Round(time.Second))
		})
		table(&b, "PORT\tDROPPED/S\tTOTAL\tNOT ALLOWED\tRATE LIMITED\tUDP NOT ALLOWED\t", len(r.Ports), func(w io.Writer, i int) {
			p := r.Ports[i]
			fmt.Fprintf(w, "%d\t%.1f\t%d\t%d\t%d\t%d\t\n", p.Port, p.Total.Rate, p.Total.Total, p.NotAllowed.Total, p.RateLimited.Total, p.UDP.Total)
		})
		if sp := r.SynProxy; sp != nil {
			b.WriteString("\n" + synProxyLine(sp) + "\n")
		}
	}
	return b.String()
}

func table(b *strings.Builder, header string, n int, row func(io.Writer, int)) {
	b.WriteString("\n")
	if n == 0 {
		fmt.Fprintf(b, "%s: none\n", strings.ToLower(strings.SplitN(header, "\t", 2)[0]))
		return
	}
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for i := 0; i < n; i++ {
		row(tw, i)
	}
	tw.Flush()
}

// topModel is the full-screen view: a sample every interval, q to quit.
type topModel struct {
	s    sampling
	smp  *sampler
	view string
	err  error
	n    int
}

type sampled struct {
	at    time.Time
	rates []stats.Rates
	err   error
}

func (m *topModel) sample() tea.Cmd {
	return tea.Tick(m.s.interval, func(time.Time) tea.Msg {
		at, rates, err := m.smp.next(m.s.limit)
		return sampled{at, rates, err}
	})
}

func (m *topModel) Init() tea.Cmd {
	m.view = "sampling..."
	return m.sample()
}

func (m *topModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		if k := msg.String(); k == "q" || k == "ctrl+c" || k == "esc" {
			return m, tea.Quit
		}
	case sampled:
		if msg.err != nil {
			m.err = msg.err
			return m, tea.Quit
		}
		m.view = renderTop(msg.at, m.s.interval, msg.rates) + "\nq: quit"
		if m.n++; m.s.count > 0 && m.n >= m.s.count {
			return m, tea.Quit
		}
		return m, m.sample()
	}
	return m, nil
}

func (m *topModel) View() string { return m.view }

// synProxyLine is the SYN proxy's rates on one line, for stats and top.
func synProxyLine(sp *stats.SynProxyRate) string {
	line := fmt.Sprintf("syn proxy: %.1f cookies/s (%d), ACKs valid %.1f/s (%d), invalid %.1f/s (%d), SYNs not answered %.1f/s (%d), proven sources' SYNs %.1f/s",
		sp.CookiesSent.Rate, sp.CookiesSent.Total, sp.ACKsValid.Rate, sp.ACKsValid.Total, sp.ACKsInvalid.Rate, sp.ACKsInvalid.Total,
		sp.NotAnswered.Rate, sp.NotAnswered.Total, sp.ProvenSYNs.Rate)
	if len(sp.Engaged) > 0 {
		ports := make([]string, len(sp.Engaged))
		for i, p := range sp.Engaged {
			ports[i] = strconv.Itoa(int(p))
		}
		line += "; auto engaged on " + strings.Join(ports, ", ")
	}
	return line
}
