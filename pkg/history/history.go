// Package history is the change history: every generation switch and every
// ban or unban, appended as one JSON object a line to an audit log that the
// daemon and the CLI's separate processes (ban, unban; fail2ban calls them)
// write together. Pure Go: it needs no kernel, and a reader needs only the
// Record type.
//
// Durability: each record is one write(2) of a whole line to a file opened
// O_APPEND, under an exclusive flock of a lock file beside it (so a
// rotation and an append from another process never interleave), then
// fsync. A crash mid-write leaves at most one torn last line: the next
// append terminates it first, so it never swallows the next record, and
// Read skips it and reports it.
//
// Rotation: when the file reaches MaxBytes the next append renames it to
// FILE.<UTC time> (names that sort by time) and starts a new one; rotated
// files whose last write is older than Retention, and the oldest beyond
// MaxFiles, are deleted at each append and at Open.
package history

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// DefaultPath is where the daemon and the CLI keep the history unless told
// otherwise: the systemd unit's StateDirectory, a hostPath in the
// DaemonSet.
const DefaultPath = "/var/lib/xdpguard/history.jsonl"

// Defaults of Options.
const (
	DefaultMaxBytes  = 16 << 20
	DefaultRetention = 180 * 24 * time.Hour
	DefaultMaxFiles  = 64 // rotated files kept at most: 1 GiB at the default size
	// maxLine bounds what Read accepts as one record: the writer's records
	// are far smaller (a diff lists examples, not whole source lists).
	maxLine = 4 << 20
)

// Kinds of record.
const (
	KindStart  = "start"  // the daemon started (attached or adopted)
	KindSwitch = "switch" // a generation switch, or a refused or rolled back one
	KindBan    = "ban"
	KindUnban  = "unban"
	KindDetach = "detach" // xdpguard detach removed the filter
)

// Triggers: what caused a record.
const (
	TriggerStart     = "start"
	TriggerFile      = "file"      // the policy file or a list file changed
	TriggerSIGHUP    = "sighup"    // systemctl reload, kill -HUP
	TriggerTimer     = "timer"     // a timed rule started or ended
	TriggerListening = "listening" // allow_listening: sockets came or went
	TriggerCLI       = "cli"       // xdpguard ban/unban (--origin says who asked)
	TriggerCrowdSec  = "crowdsec"  // the daemon's CrowdSec bouncer
)

// Results.
const (
	ResultApplied    = "applied"
	ResultRefused    = "refused"     // the policy in force stays; Error says why
	ResultRolledBack = "rolled_back" // a switch failed on an interface; every interface is back on Before
	ResultFailed     = "failed"      // a ban or unban that did not complete
)

// Record is one line of the log.
type Record struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Trigger string    `json:"trigger"`
	// User is who asked, where known: the CLI's user (SUDO_USER when run
	// through sudo, else the name of its uid); empty for what the daemon
	// does on its own (the trigger says what).
	User   string `json:"user,omitempty"`
	UID    *int   `json:"uid,omitempty"`
	PID    int    `json:"pid"`
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
	// Before and After are the digests (12 hex digits, as logs and status
	// show them) of the policy in force before and after; After is Before
	// when the change was refused or rolled back.
	Before     string   `json:"before,omitempty"`
	After      string   `json:"after,omitempty"`
	Interfaces []string `json:"interfaces,omitempty"`
	Policy     string   `json:"policy,omitempty"` // the policy file
	// Summary is the change in one line (or, at start, the policy's).
	Summary string `json:"summary,omitempty"`
	// Change is the rule-level diff of a switch (policy.Diff of the
	// policies in force): ports opened and closed, sources added and
	// removed, limits changed. A refused switch has the diff it would have
	// made when the new file could be read.
	Change *policy.Change `json:"change,omitempty"`
	// Ban and unban: the source (an address or a CIDR), the ban's origin
	// (cli, crowdsec, fail2ban), its reason and end.
	Source string     `json:"source,omitempty"`
	Origin string     `json:"origin,omitempty"`
	Reason string     `json:"reason,omitempty"`
	Until  *time.Time `json:"until,omitempty"`
	// Count and Examples stand for a batch (a feed's decisions): how many
	// sources, and the first few.
	Count    int      `json:"count,omitempty"`
	Examples []string `json:"examples,omitempty"`
}

// Options of a Log.
type Options struct {
	MaxBytes  int64         // rotate at this size; 0: DefaultMaxBytes
	Retention time.Duration // delete rotated files older; 0: DefaultRetention
	MaxFiles  int           // keep at most this many rotated files; 0: DefaultMaxFiles
	Now       func() time.Time
}

// Log appends records to path.
type Log struct {
	path string
	opts Options
}

// Open checks that the log at path can be written (its directory exists,
// neither it nor its lock file is a symbolic link or another user's), and
// deletes rotated files past their retention. It creates the log file if
// missing; it never creates directories.
func Open(path string, opts Options) (*Log, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.MaxFiles <= 0 {
		opts.MaxFiles = DefaultMaxFiles
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if path == "" {
		return nil, errors.New("no audit log path")
	}
	l := &Log{path: filepath.Clean(path), opts: opts}
	if fi, err := os.Stat(filepath.Dir(l.path)); err != nil {
		return nil, fmt.Errorf("audit log %s: %w", l.path, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("audit log %s: %s is not a directory", l.path, filepath.Dir(l.path))
	}
	err := l.locked(func() error {
		f, err := l.openFile()
		if err != nil {
			return err
		}
		f.Close()
		return l.prune()
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Append writes r as one line, durably: it returns once the line is on
// disk (fsync), after rotating the file if it is full. A zero Time is
// stamped under the lock, so that records stamped so are in time order in
// the file whichever process wrote them.
func (l *Log) Append(r Record) error {
	if r.PID == 0 {
		r.PID = os.Getpid()
	}
	return l.locked(func() error {
		if r.Time.IsZero() {
			r.Time = l.opts.Now()
		}
		r.Time = r.Time.UTC()
		line, err := json.Marshal(r)
		if err != nil {
			return err
		}
		line = append(line, '\n')
		f, err := l.openFile()
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if fi.Size() >= l.opts.MaxBytes {
			f.Close()
			if err := l.rotate(); err != nil {
				return err
			}
			if f, err = l.openFile(); err != nil {
				return err
			}
			defer f.Close()
		} else if fi.Size() > 0 {
			// A crash mid-write left a torn line: end it, so this
			// record starts a line of its own.
			last := make([]byte, 1)
			if _, err := f.ReadAt(last, fi.Size()-1); err != nil {
				return err
			}
			if last[0] != '\n' {
				line = append([]byte{'\n'}, line...)
			}
		}
		if _, err := f.Write(line); err != nil {
			return fmt.Errorf("audit log %s: %w", l.path, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("audit log %s: fsync: %w", l.path, err)
		}
		return l.prune() // appends are rare: retention holds to the day
	})
}

// openFile opens the log for appending and reading (ReadAt of its last
// byte), creating it 0600; never through a symbolic link.
func (l *Log) openFile() (*os.File, error) {
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", l.path, err)
	}
	if err := checkOwner(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log %s: %w", l.path, err)
	}
	return f, nil
}

// checkOwner refuses a file another user owns, or others may write: its
// records could not be trusted.
func checkOwner(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if int(st.Uid) != os.Geteuid() && st.Uid != 0 {
		return fmt.Errorf("owned by uid %d, not by us (uid %d) or root", st.Uid, os.Geteuid())
	}
	if st.Mode&0o022 != 0 {
		return fmt.Errorf("writable by others (mode %o)", st.Mode&0o777)
	}
	return nil
}

// locked runs fn holding the exclusive lock on FILE.lock, which every
// writer takes: appends and rotations of all processes are serialised.
func (l *Log) locked(fn func() error) error {
	lf, err := os.OpenFile(l.path+".lock", os.O_RDONLY|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("audit log lock: %w", err)
	}
	if err := checkOwner(lf); err != nil {
		lf.Close()
		return fmt.Errorf("audit log lock %s: %w", lf.Name(), err)
	}
	// A blocking flock (the kernel queues the waiters: no writer starves
	// under contention), waited for at most lockWait: a writer stopped
	// while holding the lock (a ban process under SIGSTOP) must not hang
	// the daemon's loop. Given up, the waiting goroutine closes the file
	// (releasing the lock if it ever got it).
	got := make(chan error, 1)
	go func() {
		var err error
		for {
			if err = unix.Flock(int(lf.Fd()), unix.LOCK_EX); !errors.Is(err, unix.EINTR) {
				break
			}
		}
		got <- err
	}()
	timer := time.NewTimer(lockWait)
	defer timer.Stop()
	select {
	case err := <-got:
		defer lf.Close() // releases the lock
		if err != nil {
			return fmt.Errorf("audit log lock: %w", err)
		}
		return fn()
	case <-timer.C:
		go func() { <-got; lf.Close() }()
		return fmt.Errorf("audit log lock %s: held by another writer for %s", lf.Name(), lockWait)
	}
}

// lockWait bounds the wait for another writer's lock (a variable for the
// test).
var lockWait = 5 * time.Second

// rotatedSuffix names rotated files: FILE.20261202T150405.000000000Z sorts
// by time.
const rotatedSuffix = "20060102T150405.000000000Z"

// rotate renames the full log aside; the next open creates a new one.
// Called under the lock.
func (l *Log) rotate() error {
	to := l.path + "." + l.opts.Now().UTC().Format(rotatedSuffix)
	if err := os.Rename(l.path, to); err != nil {
		return fmt.Errorf("audit log rotate: %w", err)
	}
	return syncDir(filepath.Dir(l.path))
}

// prune deletes rotated files whose last write is older than the
// retention, and the oldest beyond MaxFiles (the disk a runaway writer can
// fill is bounded). The current file is never deleted.
func (l *Log) prune() error {
	old := l.opts.Now().Add(-l.opts.Retention)
	removed := false
	files := rotated(l.path)
	for i, f := range files {
		fi, err := os.Lstat(f)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if fi.ModTime().Before(old) || i < len(files)-l.opts.MaxFiles {
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("audit log retention: %w", err)
			}
			removed = true
		}
	}
	if removed {
		return syncDir(filepath.Dir(l.path))
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// rotated lists the rotated files of path, oldest first.
func rotated(path string) []string {
	matches, _ := filepath.Glob(globEscape(path) + ".*")
	var out []string
	for _, m := range matches {
		suffix := strings.TrimPrefix(m, path+".")
		if _, err := time.Parse(rotatedSuffix, suffix); err == nil {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Skipped is a line Read could not take as a record: a torn write (the
// last line of a file after a crash) or damage.
type Skipped struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Why  string `json:"why"`
	// Torn: the line has no newline at its end (a write cut short), or was
	// terminated by the next append.
	Torn bool `json:"torn"`
}

func (s Skipped) String() string {
	return fmt.Sprintf("%s:%d: %s", s.File, s.Line, s.Why)
}

// Read returns the records of the log at path and its rotated files, in
// the order they were written, from since on (zero: all), and the lines
// it skipped. A missing log is no records, not an error.
func Read(path string, since time.Time) ([]Record, []Skipped, error) {
	path = filepath.Clean(path)
	var recs []Record
	var skipped []Skipped
	for _, f := range append(rotated(path), path) {
		r, s, err := readFile(f, since)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		recs, skipped = append(recs, r...), append(skipped, s...)
	}
	return recs, skipped, nil
}

func readFile(path string, since time.Time) ([]Record, []Skipped, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var recs []Record
	var skipped []Skipped
	br := bufio.NewReader(f)
	for n := 1; ; n++ {
		line, tooLong, err := readLine(br)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		eof := errors.Is(err, io.EOF)
		if eof && len(line) == 0 && !tooLong {
			return recs, skipped, nil
		}
		complete := !eof // ended by its newline
		body := bytes.TrimSuffix(line, []byte{'\n'})
		var r Record
		switch {
		case tooLong:
			skipped = append(skipped, Skipped{path, n, fmt.Sprintf("longer than %d bytes", maxLine), false})
		case len(bytes.TrimSpace(body)) == 0:
		default:
			if jerr := json.Unmarshal(body, &r); jerr != nil || r.Kind == "" || r.Time.IsZero() {
				why := "not a record"
				if jerr != nil {
					why = "not JSON: " + jerr.Error()
				}
				torn := !complete || jerr != nil && bytes.HasPrefix(body, []byte("{")) && !bytes.HasSuffix(body, []byte("}"))
				if torn {
					why = "a torn write (the record was cut short, e.g. by a crash): " + why
				}
				skipped = append(skipped, Skipped{path, n, why, torn})
			} else if !r.Time.Before(since) {
				recs = append(recs, r)
			}
		}
		if eof {
			return recs, skipped, nil
		}
	}
}

// readLine reads one line (with its newline unless at EOF); a line longer
// than maxLine is consumed and reported as tooLong.
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > maxLine {
			tooLong = true
			line = line[:0]
		} else if !tooLong {
			line = append(line, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if tooLong {
			return nil, true, err
		}
		return line, false, err
	}
}
