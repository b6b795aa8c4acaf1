package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/pkg/history"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                     {},
		"24h":                  now.Add(-24 * time.Hour),
		"30d":                  now.AddDate(0, 0, -30),
		"90m":                  now.Add(-90 * time.Minute),
		"2026-11-01T00:00:00Z": time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1h", "0s", "xd", "yesterday", "1.5d"} {
		if _, err := parseSince(bad, now); err == nil || !strings.Contains(err.Error(), "--since") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// history prints what the log holds, oldest first, with the diff and the
// refusal's why; a torn line is reported on stderr; JSON holds the same.
func TestHistoryCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	l, err := history.Open(path, history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	from, _ := policy.Parse("a.yaml", []byte("tcp:\n  allow: [22]\n"))
	to, _ := policy.Parse("b.yaml", []byte("tcp:\n  allow: [22, 443]\n"))
	c := policy.Diff(from, to, time.Now())
	t0 := time.Now().Add(-48 * time.Hour)
	for _, r := range []history.Record{
		{Time: t0, Kind: history.KindSwitch, Trigger: history.TriggerFile, Result: history.ResultApplied, Before: "aaaaaaaaaaaa", After: "bbbbbbbbbbbb", Summary: c.Summary(), Change: &c},
		{Time: t0.Add(time.Hour), Kind: history.KindSwitch, Trigger: history.TriggerSIGHUP, Result: history.ResultRefused, Before: "bbbbbbbbbbbb", After: "bbbbbbbbbbbb", Error: "policy.yaml:2:5: bad"},
		{Time: time.Now().Add(-time.Hour), Kind: history.KindBan, Trigger: history.TriggerCLI, User: "alice", Result: history.ResultApplied, Source: "192.0.2.7/32", Origin: "fail2ban"},
	} {
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026`)
	f.Close()

	var out, errOut bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"history", "--audit-log", path})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"switch  file  applied  aaaaaaaaaaaa → bbbbbbbbbbbb", "tcp 443 opened to all", "refused", "why: policy.yaml:2:5: bad", "ban  cli  by alice  applied  192.0.2.7/32  origin fail2ban"} {
		if !strings.Contains(text, want) {
			t.Errorf("history lacks %q:\n%s", want, text)
		}
	}
	if strings.Index(text, "aaaaaaaaaaaa →") > strings.Index(text, "alice") {
		t.Errorf("not oldest first:\n%s", text)
	}
	if !strings.Contains(errOut.String(), "history.jsonl:4: a torn write") {
		t.Errorf("the torn line is not reported: %q", errOut.String())
	}

	out.Reset()
	cmd = newRootCmd()
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"history", "--audit-log", path, "--since", "24h", "--output", "json"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var rep historyReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Records) != 1 || rep.Records[0].User != "alice" || len(rep.Skipped) != 1 || rep.Since == nil {
		t.Errorf("--since 24h --output json: %+v", rep)
	}
}
