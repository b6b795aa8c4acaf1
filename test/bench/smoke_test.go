package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// The harness runs end to end with tiny counts: CI keeps it from rotting.
// No thresholds: figures from a smoke run mean nothing.
func TestBenchHarnessSmoke(t *testing.T) {
	testutil.RequirePrivileged(t)
	dir := t.TempDir()
	out, plot := filepath.Join(dir, "benchmarks.md"), filepath.Join(dir, "benchmarks.png")
	if err := os.WriteFile(out, []byte("# hand-written part\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := options{Smoke: true, Out: out, Plot: plot, Log: t.Logf}
	res, err := runBench(o)
	if err != nil {
		t.Fatal(err)
	}
	// The blocklist section measured every figure of every round, on the
	// whole smoke list.
	bl := res.Blocklist
	if err := bl.complete(); err != nil {
		t.Error(err)
	}
	if entries, rounds := blocklistPlan(o); bl.Entries != entries || bl.Rounds != rounds {
		t.Errorf("blocklist: %d entries x %d rounds, want %d x %d", bl.Entries, bl.Rounds, entries, rounds)
	}
	report, _ := os.ReadFile(out)
	for _, want := range []string{"# hand-written part", beginMarker, "| (a) | trivial XDP_DROP", "| (r) |", "| (f) |", "| (b0) |", "| (e) |", "| (s) |", "| (sr) |", "| (k1m) |", "| (v6) |", "| (q) |", "paired by round", "security group: SYN from a denied source", "swap of 65,536 ports",
		"### 4. Blocklist", "| " + blCheck + " |", "| " + blStart + " |", "| " + blReload + " |", "| " + blIpset + " |", "| " + blNft + " |",
		"20,000-entry deny list loads", "`xdpg_deny_hosts`", endMarker} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if st, err := os.Stat(plot); err != nil || st.Size() < 1000 {
		t.Errorf("plot: %v", err)
	}
}
