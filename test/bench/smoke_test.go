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
	if err := runBench(o); err != nil {
		t.Fatal(err)
	}
	report, _ := os.ReadFile(out)
	for _, want := range []string{"# hand-written part", beginMarker, "| (a) | trivial XDP_DROP", "| (r) |", "| (b0) |", "| (e) |", "Paired by round", "swap of 65,536 ports", endMarker} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if st, err := os.Stat(plot); err != nil || st.Size() < 1000 {
		t.Errorf("plot: %v", err)
	}
}
