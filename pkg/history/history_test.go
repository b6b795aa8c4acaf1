package history

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func open(t *testing.T, path string, opts Options) *Log {
	t.Helper()
	l, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestAppendAndRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	l := open(t, path, Options{})
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i := range 3 {
		if err := l.Append(Record{Time: t0.Add(time.Duration(i) * time.Hour), Kind: KindSwitch, Trigger: TriggerSIGHUP, Result: ResultApplied, Before: fmt.Sprint(i), After: fmt.Sprint(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	recs, skipped, err := Read(path, time.Time{})
	if err != nil || len(skipped) != 0 || len(recs) != 3 {
		t.Fatalf("Read: %d records, skipped %v, %v", len(recs), skipped, err)
	}
	for i, r := range recs {
		if r.Before != fmt.Sprint(i) || r.PID != os.Getpid() {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	recs, _, _ = Read(path, t0.Add(90*time.Minute))
	if len(recs) != 1 || recs[0].After != "3" {
		t.Errorf("since 10:90: %+v", recs)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 600", fi.Mode().Perm())
	}
	if recs, skipped, err := Read(filepath.Join(t.TempDir(), "none"), time.Time{}); err != nil || len(recs)+len(skipped) != 0 {
		t.Errorf("a missing log: %v %v %v", recs, skipped, err)
	}
}

// A crash mid-write leaves a torn last line: Read skips and reports it,
// and the next append does not glue its record to it.
func TestTornLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	l := open(t, path, Options{})
	if err := l.Append(Record{Kind: KindBan, Trigger: TriggerCLI, Result: ResultApplied, Source: "192.0.2.1/32"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"2026-12-02T10:00:00Z","kind":"switch","trig`) // cut short
	f.Close()

	recs, skipped, err := Read(path, time.Time{})
	if err != nil || len(recs) != 1 || len(skipped) != 1 || !skipped[0].Torn || skipped[0].Line != 2 {
		t.Fatalf("after a torn write: %d records, skipped %+v, %v", len(recs), skipped, err)
	}
	if !strings.Contains(skipped[0].String(), "torn") {
		t.Errorf("the report does not say torn: %s", skipped[0])
	}

	if err := l.Append(Record{Kind: KindUnban, Trigger: TriggerCLI, Result: ResultApplied, Source: "192.0.2.1/32"}); err != nil {
		t.Fatal(err)
	}
	recs, skipped, err = Read(path, time.Time{})
	if err != nil || len(recs) != 2 || recs[1].Kind != KindUnban || len(skipped) != 1 || skipped[0].Line != 2 {
		t.Fatalf("after the next append: %+v, skipped %+v, %v", recs, skipped, err)
	}
	// Damage that is not a torn write is reported as such.
	os.WriteFile(path, []byte("not json\n{\"kind\":\"\"}\n"), 0o600)
	_, skipped, _ = Read(path, time.Time{})
	if len(skipped) != 2 || skipped[0].Torn || skipped[1].Torn {
		t.Errorf("damaged lines: %+v", skipped)
	}
}

func TestRotationKeepsOrderAndRetentionDeletes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "history.jsonl")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	l := open(t, path, Options{MaxBytes: 600, Retention: 30 * 24 * time.Hour, Now: clock})
	const n = 70
	for i := range n {
		now = now.Add(24 * time.Hour)
		if err := l.Append(Record{Kind: KindSwitch, Trigger: TriggerTimer, Result: ResultApplied, Summary: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		// The rotated files' mtimes stand for when they were last written.
		for _, f := range rotated(path) {
			fi, _ := os.Stat(f)
			if fi.ModTime().After(now) {
				os.Chtimes(f, now, now)
			}
		}
	}
	files := rotated(path)
	if len(files) < 2 {
		t.Fatalf("%d rotated files, want rotation at 600 bytes", len(files))
	}
	recs, skipped, err := Read(path, time.Time{})
	if err != nil || len(skipped) != 0 {
		t.Fatal(err, skipped)
	}
	if len(recs) == n {
		t.Fatalf("all %d records kept: retention deleted nothing", n)
	}
	for i := 1; i < len(recs); i++ {
		if !recs[i].Time.After(recs[i-1].Time) {
			t.Fatalf("records out of order at %d: %v then %v", i, recs[i-1].Time, recs[i].Time)
		}
	}
	if recs[len(recs)-1].Summary != fmt.Sprint(n-1) {
		t.Errorf("the last record is %q", recs[len(recs)-1].Summary)
	}
	// Kept: everything written within the retention.
	oldest := now.Add(-30 * 24 * time.Hour)
	if recs[0].Time.After(oldest.Add(7 * 24 * time.Hour)) {
		t.Errorf("oldest kept %v: records within the retention (from %v) were deleted", recs[0].Time, oldest)
	}
	for _, f := range rotated(path) {
		fi, _ := os.Stat(f)
		if fi.ModTime().Before(oldest) {
			t.Errorf("%s (last written %v) outlived the retention", f, fi.ModTime())
		}
	}
}

// Appends from many writers at once (the daemon, and ban/unban processes)
// never interleave, and rotation under them loses nothing.
func TestConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	const writers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			// Each its own Log: its own lock and file descriptors, as a
			// separate process has.
			l, err := Open(path, Options{MaxBytes: 4096})
			if err != nil {
				errs <- err
				return
			}
			for i := range each {
				if err := l.Append(Record{Kind: KindBan, Trigger: TriggerCLI, Result: ResultApplied, Reason: strings.Repeat("x", 100), Source: fmt.Sprintf("%d/%d", w, i)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	recs, skipped, err := Read(path, time.Time{})
	if err != nil || len(skipped) != 0 {
		t.Fatalf("%v, skipped %v", err, skipped)
	}
	if len(recs) != writers*each {
		t.Fatalf("%d records, want %d", len(recs), writers*each)
	}
	next := map[string]int{}
	for i, r := range recs {
		if i > 0 && r.Time.Before(recs[i-1].Time) {
			t.Fatalf("record %d (%v) is older than the one before it (%v): stamped out of the lock", i, r.Time, recs[i-1].Time)
		}
		var w, i int
		fmt.Sscanf(r.Source, "%d/%d", &w, &i)
		if i != next[fmt.Sprint(w)] {
			t.Fatalf("writer %d: record %d after %d", w, i, next[fmt.Sprint(w)]-1)
		}
		next[fmt.Sprint(w)]++
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing", "history.jsonl"), Options{}); err == nil {
		t.Error("a missing directory was accepted (Open never creates directories)")
	}
	target := filepath.Join(dir, "target")
	os.WriteFile(target, nil, 0o600)
	link := filepath.Join(dir, "link.jsonl")
	os.Symlink(target, link)
	if _, err := Open(link, Options{}); err == nil {
		t.Error("a symbolic link was followed")
	}
	shared := filepath.Join(dir, "shared.jsonl")
	os.WriteFile(shared, nil, 0o600)
	os.Chmod(shared, 0o666)
	if _, err := Open(shared, Options{}); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("a file others may write: %v", err)
	}
}

func TestMaxFilesBoundsTheDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	l := open(t, path, Options{MaxBytes: 300, MaxFiles: 3})
	for i := range 30 {
		if err := l.Append(Record{Kind: KindBan, Trigger: TriggerCLI, Result: ResultApplied, Reason: strings.Repeat("x", 200), Source: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(rotated(path)); n != 3 {
		t.Errorf("%d rotated files, want 3", n)
	}
	recs, _, _ := Read(path, time.Time{})
	if len(recs) != 4 || recs[3].Source != "29" {
		t.Errorf("kept %d records, the last %q; want the 4 newest", len(recs), recs[len(recs)-1].Source)
	}
}

// A writer holding the lock for ever (stopped mid-append) costs another
// writer a bounded wait and an error, never a hang.
func TestLockHeldTooLong(t *testing.T) {
	defer func(w time.Duration) { lockWait = w }(lockWait)
	lockWait = 200 * time.Millisecond
	path := filepath.Join(t.TempDir(), "history.jsonl")
	l := open(t, path, Options{})
	held := make(chan struct{})
	release := make(chan struct{})
	go l.locked(func() error { close(held); <-release; return nil })
	<-held
	defer close(release)
	start := time.Now()
	err := l.Append(Record{Kind: KindBan, Trigger: TriggerCLI, Result: ResultApplied})
	if err == nil || !strings.Contains(err.Error(), "held by another writer") {
		t.Fatalf("Append under a held lock: %v", err)
	}
	if waited := time.Since(start); waited < lockWait {
		t.Errorf("gave up after %v, before %v", waited, lockWait)
	}
}
