package daemon

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/xdpguard/xdpguard/pkg/history"
	"github.com/xdpguard/xdpguard/pkg/metrics"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// What recordSwitch writes: the diff of an applied switch, a refusal and
// a rollback by their results, nothing for a reload that changed nothing,
// and a failure the daemon repeats by itself (the timer retrying) once,
// while an operator's repeated SIGHUP is recorded each time.
func TestRecordSwitch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	l, err := history.Open(path, history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := policy.Parse("a.yaml", []byte("tcp:\n  allow: [22]\n"))
	b, _ := policy.Parse("b.yaml", []byte("tcp:\n  allow: [22, 443]\n"))
	d := &daemon{cfg: Config{Ifaces: []string{"eth1"}, PolicyPath: "/etc/xdpguard/policy.yaml"}, log: slog.Default(), history: l, current: a,
		historyErrors: metrics.NewHistoryErrors()}
	now := time.Now()
	fail := errors.New("verifier said no")

	d.recordSwitch(history.TriggerFile, a, a, false, nil, now) // unchanged: nothing
	d.recordSwitch(history.TriggerTimer, a, b, false, fail, now)
	d.recordSwitch(history.TriggerTimer, a, b, false, fail, now) // the timer's retry
	d.recordSwitch(history.TriggerSIGHUP, a, b, false, &rolledBack{fail}, now)
	d.recordSwitch(history.TriggerSIGHUP, a, b, false, &rolledBack{fail}, now) // the operator's retry
	d.current = b
	d.recordSwitch(history.TriggerSIGHUP, a, nil, true, nil, now)
	d.current = a
	d.recordSwitch(history.TriggerTimer, b, a, false, fail, now) // after a success: recorded again

	recs, _, err := history.Read(path, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ trigger, result string }{
		{history.TriggerTimer, history.ResultRefused},
		{history.TriggerSIGHUP, history.ResultRolledBack},
		{history.TriggerSIGHUP, history.ResultRolledBack},
		{history.TriggerSIGHUP, history.ResultApplied},
		{history.TriggerTimer, history.ResultRefused},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(recs), len(want), recs)
	}
	for i, w := range want {
		if recs[i].Trigger != w.trigger || recs[i].Result != w.result {
			t.Errorf("record %d: %s %s, want %s %s", i, recs[i].Trigger, recs[i].Result, w.trigger, w.result)
		}
	}
	applied := recs[3]
	if applied.Before != digest(a) || applied.After != digest(b) || applied.Change == nil || len(applied.Change.Ports) != 1 ||
		applied.Change.Ports[0].String() != "tcp 443 opened to all" || applied.Interfaces[0] != "eth1" || applied.Policy == "" {
		t.Errorf("the applied switch: %+v", applied)
	}
	if r := recs[0]; r.Before != r.After || r.Error != fail.Error() || r.Change == nil {
		t.Errorf("the refused switch: %+v (want before = after, its why, the diff it would have made)", r)
	}

	// A record that cannot be written is counted (the change happened).
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil { // the log's path taken by a directory
		t.Fatal(err)
	}
	d.recordSwitch(history.TriggerSIGHUP, a, b, false, fail, now)
	var m dto.Metric
	if err := d.historyErrors.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 1 {
		t.Errorf("xdpguard_history_write_errors_total = %v after a failed append, want 1", n)
	}
}
