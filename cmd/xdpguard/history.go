package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/history"
)

// auditLogEnv overrides the audit log's default path for every command
// (run, ban, unban, history): set it where the daemon runs with
// --audit-log elsewhere, so the CLI's bans land in the same log.
const auditLogEnv = "XDPGUARD_AUDIT_LOG"

// defaultAuditLog is $XDPGUARD_AUDIT_LOG, else history.DefaultPath.
func defaultAuditLog() string {
	if p := os.Getenv(auditLogEnv); p != "" {
		return p
	}
	return history.DefaultPath
}

func addAuditLogFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "audit-log", defaultAuditLog(), "the change history (JSON lines) to record in; $"+auditLogEnv+" sets the default")
}

// cliHistory opens the audit log a CLI command records its change in.
// When the log is the default one and its directory does not exist (no
// daemon ever ran here under its unit), the change is made unrecorded,
// with a note; any other problem refuses the command before it changes
// anything.
func cliHistory(cmd *cobra.Command, path string) (*history.Log, error) {
	if path == "" {
		return nil, nil
	}
	l, err := history.Open(path, history.Options{})
	if err == nil {
		return l, nil
	}
	if !cmd.Flags().Changed("audit-log") && os.Getenv(auditLogEnv) == "" {
		if _, serr := os.Stat(filepath.Dir(path)); errors.Is(serr, os.ErrNotExist) {
			fmt.Fprintf(cmd.ErrOrStderr(), "note: %s does not exist: this change is not recorded in a history (--audit-log)\n", filepath.Dir(path))
			return nil, nil
		}
	}
	return nil, err
}

// cliUser is who runs this command: the user sudo was run by, else the
// name of our uid.
func cliUser() (string, *int) {
	uid := os.Getuid()
	if u := os.Getenv("SUDO_USER"); u != "" {
		return u, &uid
	}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username, &uid
	}
	return "uid " + strconv.Itoa(uid), &uid
}

// recordCLI appends r, made by this command, to l (nil: no history kept).
func recordCLI(l *history.Log, r history.Record) error {
	if l == nil {
		return nil
	}
	r.Trigger = history.TriggerCLI
	r.User, r.UID = cliUser()
	if err := l.Append(r); err != nil {
		return fmt.Errorf("the %s is in force but was not recorded in the history: %w", r.Kind, err)
	}
	return nil
}

// historyReport is `history --output json`.
type historyReport struct {
	Log     string            `json:"log"`
	Since   *time.Time        `json:"since,omitempty"`
	Records []history.Record  `json:"records"`
	Skipped []history.Skipped `json:"skipped"`
}

func newHistoryCmd() *cobra.Command {
	var (
		output string
		since  string
		path   string
	)
	cmd := &cobra.Command{
		Use:   "history [--since 24h] [--output text|json] [--audit-log FILE]",
		Short: "Show the change history: every policy switch, refused switch and ban, who and why",
		Long: `history reads the audit log the daemon and the ban and unban commands append
to (--audit-log, default /var/lib/xdpguard/history.jsonl, or
$XDPGUARD_AUDIT_LOG) and its rotated files, oldest first. Each record holds
its time, its kind (start, switch, ban, unban, detach), its trigger (start, file,
sighup, timer, listening, cli, crowdsec), the user where known (the CLI's
user; sudo's caller), the policy digests before and after, the rule-level
diff (ports opened and closed, sources added and removed, limits changed;
as 'xdpguard diff' shows them) and the result: applied, refused (with why:
the policy in force stayed) or rolled_back (a switch failed on one
interface and the others were put back).

A line that is not a whole record (the last one, torn by a crash mid-write,
or damage) is skipped and reported on stderr (in the JSON under skipped).
Reading changes nothing. The state directory is root's (0700): run it as
root, or give a readable copy with --audit-log.

Exit status: 0, also when lines were skipped or there is no log yet; 1 when
the log cannot be read.`,
		Example: "  xdpguard history\n  xdpguard history --since 30d\n  xdpguard history --since 2026-12-01T00:00:00Z --output json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			recs, skipped, err := history.Read(path, from)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				rep := historyReport{Log: path, Records: recs, Skipped: skipped}
				if !from.IsZero() {
					rep.Since = &from
				}
				if rep.Records == nil {
					rep.Records = []history.Record{}
				}
				if rep.Skipped == nil {
					rep.Skipped = []history.Skipped{}
				}
				return writeJSON(w, rep)
			}
			for _, s := range skipped {
				fmt.Fprintf(cmd.ErrOrStderr(), "skipped %s\n", s)
			}
			if len(recs) == 0 {
				fmt.Fprintf(w, "no changes recorded in %s\n", path)
				return nil
			}
			for _, r := range recs {
				writeRecord(w, r)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&since, "since", "", "only the changes of this last while (24h, 90m, 30d) or from this RFC 3339 time on (default all)")
	addAuditLogFlag(cmd, &path)
	return cmd
}

// parseSince reads --since: a duration back from now (Go's, or whole
// days: 30d), or an RFC 3339 time; "" is the beginning.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return time.Time{}, fmt.Errorf("--since: %q: want a duration (24h, 30d) or an RFC 3339 time", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return time.Time{}, fmt.Errorf("--since: %q: want a duration (24h, 30d) or an RFC 3339 time", s)
		}
	}
	if d <= 0 {
		return time.Time{}, fmt.Errorf("--since: %q is not a positive duration", s)
	}
	return now.Add(-d), nil
}

// writeRecord prints one record: a line, then its diff's lines.
func writeRecord(w io.Writer, r history.Record) {
	parts := []string{r.Time.Local().Format(time.RFC3339), r.Kind, r.Trigger}
	if r.User != "" {
		parts = append(parts, "by "+r.User)
	}
	parts = append(parts, r.Result)
	switch r.Kind {
	case history.KindStart, history.KindSwitch, history.KindDetach:
		before := r.Before
		if before == "" {
			before = "-"
		}
		after := r.After
		if r.Kind == history.KindDetach {
			after = "none (on " + strings.Join(r.Interfaces, ",") + ")"
		}
		parts = append(parts, before+" → "+after)
	default:
		what := r.Source
		if r.Count > 1 {
			what = fmt.Sprintf("%d sources (%s ...)", r.Count, strings.Join(r.Examples, ", "))
		}
		parts = append(parts, what)
		if r.Origin != "" {
			parts = append(parts, "origin "+r.Origin)
		}
		if r.Until != nil {
			parts = append(parts, "until "+r.Until.Local().Format(time.RFC3339))
		}
		if len(r.Interfaces) > 0 {
			parts = append(parts, "on "+strings.Join(r.Interfaces, ","))
		}
		if r.Reason != "" {
			parts = append(parts, fmt.Sprintf("%q", r.Reason))
		}
	}
	if r.Summary != "" && r.Kind != history.KindStart {
		parts = append(parts, r.Summary)
	}
	fmt.Fprintln(w, strings.Join(parts, "  "))
	if r.Error != "" {
		fmt.Fprintln(w, "    why: "+r.Error)
	}
	if r.Change != nil {
		for _, l := range r.Change.Lines() {
			fmt.Fprintln(w, "    "+l)
		}
	}
}
