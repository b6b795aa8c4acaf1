package events

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The log is capped: past MaxSize it rotates, keeping Keep old files, so
// the disk it takes is bounded whatever the budget lets through.
func TestWriterRotatesAtItsCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "drops.jsonl")
	w, err := OpenWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	w.MaxSize, w.Keep = 1000, 2
	for i := 0; i < 200; i++ {
		if err := w.Write(Event{Interface: "eth0", Reason: "port_not_allowed", Source: "192.0.2.1", DPort: uint16(i)}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	files, _ := filepath.Glob(path + "*")
	var total int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > w.MaxSize {
			t.Errorf("%s is %d bytes, over the cap of %d", f, fi.Size(), w.MaxSize)
		}
		total += fi.Size()
	}
	if len(files) != 3 || total > 3*w.MaxSize {
		t.Errorf("files %v (%d bytes), want the log and 2 rotated ones", files, total)
	}
	last, _ := os.ReadFile(path)
	if !strings.Contains(string(last), `"dport":199`) {
		t.Errorf("the newest event is not in the current file:\n%s", last)
	}
}

// A log path that is a symlink or not a regular file is refused, and a
// failed write does not end the log: a reopen resumes it.
func TestWriterRefusesUnsafePathsAndRecovers(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenWriter(link); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("a symlinked log: %v", err)
	}
	if _, err := OpenWriter(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory as the log: %v", err)
	}
	path := filepath.Join(dir, "drops.jsonl")
	w, err := OpenWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := w.Write(Event{Reason: "lost"}); err == nil {
		t.Error("write to a closed log succeeded")
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(Event{Reason: "after"}); err != nil {
		t.Errorf("write after reopen: %v", err)
	}
	w.Close()
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "after") || strings.Contains(string(b), "lost") {
		t.Errorf("log: %s", b)
	}
}
