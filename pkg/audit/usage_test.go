package audit

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// The daemon's record of rule hits, observation by observation, saved
// and loaded across a restart, and judged by the audit.
func TestUsageRecordObservesSavesAndFeedsTheAudit(t *testing.T) {
	day := 24 * time.Hour
	t0 := now.Add(-60 * day)
	path := filepath.Join(t.TempDir(), "rule-usage.json")
	u, err := LoadUsage(path)
	if err != nil || !u.Since.IsZero() {
		t.Fatalf("a missing record: %+v %v", u, err)
	}
	names := []string{"web", "partner", "old"}
	// First observation: the baseline; counters already there are of
	// unknown date, not hits.
	if !u.Observe(names, map[string]uint64{"web": 10, "partner": 0, "old": 5}, t0) {
		t.Fatal("the first observation changed nothing")
	}
	if !u.Since.Equal(t0) || !u.Rules["web"].LastHit.IsZero() {
		t.Fatalf("baseline: %+v %+v", u, u.Rules["web"])
	}
	// web counts on; partner never; old's counters are not read (its
	// rule is out of force): left as they were.
	if !u.Observe(names, map[string]uint64{"web": 12, "partner": 0}, t0.Add(day)) {
		t.Error("web's hit changed nothing")
	}
	if u.Observe(names, map[string]uint64{"web": 12, "partner": 0}, t0.Add(2*day)) {
		t.Error("no counter moved, yet the record changed")
	}
	if err := u.Save(path); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o", fi.Mode().Perm())
	}
	// A restart: the record is read back whole.
	v, err := LoadUsage(path)
	if err != nil || !reflect.DeepEqual(u.Usage(), v.Usage()) {
		t.Fatalf("reloaded %+v, want %+v (%v)", v.Usage(), u.Usage(), err)
	}
	// A table created afresh: web's counter drops to 3, still a hit;
	// partner's to 0 from 0, none. A new rule appears; old leaves the
	// policy and the record.
	names = []string{"web", "partner", "new"}
	v.Observe(names, map[string]uint64{"web": 3, "partner": 0, "new": 0}, t0.Add(20*day))
	if got := v.Rules["web"].LastHit; !got.Equal(t0.Add(20 * day)) {
		t.Errorf("web's last hit %v after its counter reset to 3", got)
	}
	if _, ok := v.Rules["old"]; ok {
		t.Error("a rule no longer in the policy is still recorded")
	}
	usage := v.Usage()
	if !usage.FirstSeen["new"].Equal(t0.Add(20*day)) || len(usage.FirstSeen) != 1 || usage.LastHit["partner"] != (time.Time{}) {
		t.Errorf("usage %+v", usage)
	}

	// Judged 60 days after the record began: partner counted nothing in
	// 60 days, web last 40 days ago, new exists since 40 days.
	doc := "tcp:\n  allow:\n    - {port: 8443, name: web}\n    - {port: 8444, from: [10.0.0.0/8], name: partner}\n    - {port: 8445, from: [10.0.0.0/8], name: new}\n" + limits
	in := input(t, doc, listener(TCP, 8443, "::", 0, ""), listener(TCP, 8444, "::", 0, ""), listener(TCP, 8445, "::", 0, ""))
	in.Usage = usage
	got := identities(Run(in))
	expect := []want{{kindUnusedRule, Low, "new"}, {kindUnusedRule, Low, "partner"}, {kindUnusedRule, Low, "web"}}
	if !reflect.DeepEqual(got, expect) {
		t.Errorf("findings %v, want %v", got, expect)
	}
	in.Thresholds.UnusedFor = 50 * day // new (40 days) and web (last hit 40 days ago) are not unused yet
	if got := identities(Run(in)); !reflect.DeepEqual(got, []want{{kindUnusedRule, Low, "partner"}}) {
		t.Errorf("with 50 days: %v", got)
	}
}

func TestLoadUsageRefuses(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{not json"), 0o600)
	if _, err := LoadUsage(bad); err == nil {
		t.Error("a damaged record was accepted")
	}
	if _, err := LoadUsage(dir); err == nil {
		t.Error("a directory was accepted")
	}
}
