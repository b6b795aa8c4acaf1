// Package events turns the data path's sampled drop events (a BPF ring
// buffer per interface) into JSON lines. The kernel enforces the budget:
// a flood costs the daemon and the disk at most the configured events per
// second, and the kernel counts what it left out (xdpg_health).
package events

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

// Event is one drop, as written to the log.
type Event struct {
	Time      time.Time `json:"time"`
	Interface string    `json:"interface"`
	Reason    string    `json:"reason"`
	// Monitored: the drop was let through (mode: monitor, or a rule's).
	Monitored bool   `json:"monitored,omitempty"`
	Source    string `json:"source,omitempty"`
	Proto     string `json:"proto,omitempty"`
	DPort     uint16 `json:"dport,omitempty"`
	Rule      string `json:"rule,omitempty"`
	// Generation is the policy generation that judged the packet.
	Generation uint32 `json:"generation,omitempty"`
}

// Decode converts a raw event; ruleName names rule slots.
func Decode(iface string, raw *datapath.Event, ruleName func(uint16) string, bootWall time.Time) Event {
	e := Event{
		Time:       bootWall.Add(time.Duration(raw.KtimeNs)).UTC(),
		Interface:  iface,
		Reason:     datapath.Reason(raw.Reason).Name(),
		Monitored:  raw.Flags&datapath.EventMonitored != 0,
		DPort:      raw.Dport,
		Rule:       ruleName(raw.Rule),
		Generation: raw.Generation,
	}
	if src := raw.Source(); src.IsValid() {
		e.Source = src.String()
		e.Proto = protoName(raw.Proto, raw.Family == 6)
	}
	return e
}

func protoName(p uint8, v6 bool) string {
	switch {
	case p == 6:
		return "tcp"
	case p == 17:
		return "udp"
	case p == 1 && !v6:
		return "icmp"
	case p == 58 && v6:
		return "icmpv6"
	}
	return strconv.Itoa(int(p))
}

// monotonicZero is the wall time at which CLOCK_MONOTONIC (the clock of
// bpf_ktime_get_coarse_ns) read zero.
func monotonicZero() time.Time {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return now
	}
	return now.Add(-time.Duration(ts.Nano()))
}

// Writer writes events as JSON lines to a file (or stdout), one line per
// write, safe for several interfaces' readers at once. The file is capped:
// past MaxSize it is rotated (path.1, path.2, ... up to Keep files), so a
// flood that the budget lets through for days cannot fill the disk.
// Reopen starts a new file after an external rotation (SIGHUP).
type Writer struct {
	path string
	// MaxSize and Keep bound the disk the log takes: at most
	// (Keep+1)*MaxSize bytes. 0 means no cap.
	MaxSize int64
	Keep    int
	mu      sync.Mutex
	w       io.Writer
	f       *os.File
	size    int64
}

// Defaults of the events log's cap.
const (
	defaultMaxSize = 64 << 20
	defaultKeep    = 3
)

// OpenWriter opens path for appending ("-" is stdout), capped at the
// defaults.
func OpenWriter(path string) (*Writer, error) {
	w := &Writer{path: path, MaxSize: defaultMaxSize, Keep: defaultKeep}
	if err := w.Reopen(); err != nil {
		return nil, err
	}
	return w, nil
}

// openLog opens path for appending as root may safely at a path an
// operator gave: never through a symlink (O_NOFOLLOW), and only a regular
// file (a FIFO planted there would block the daemon, a device would be
// written to).
func openLog(path string) (*os.File, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink == 0 && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("--events: %s is not a regular file", path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o640)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("--events: %s is a symlink: give the file itself", path)
		}
		return nil, fmt.Errorf("--events: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("--events: %s is not a regular file", path)
	}
	return f, nil
}

// Reopen closes and reopens the file (a no-op for stdout).
func (w *Writer) Reopen() error {
	if w.path == "-" {
		w.mu.Lock()
		w.w = os.Stdout
		w.mu.Unlock()
		return nil
	}
	f, err := openLog(w.path)
	if err != nil {
		return err
	}
	var size int64
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	w.mu.Lock()
	old := w.f
	w.f, w.w, w.size = f, f, size
	w.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// rotate moves path to path.1 (and path.1 to path.2, ...) and starts an
// empty file; the oldest beyond Keep is removed. Called with w.mu held.
func (w *Writer) rotate() error {
	if w.f == nil {
		return nil
	}
	w.f.Close()
	w.f, w.w = nil, io.Discard
	for i := w.Keep; i >= 1; i-- {
		from := w.path
		if i > 1 {
			from = w.path + "." + strconv.Itoa(i-1)
		}
		if err := os.Rename(from, w.path+"."+strconv.Itoa(i)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if w.Keep == 0 {
		_ = os.Remove(w.path)
	}
	f, err := openLog(w.path)
	if err != nil {
		return err
	}
	w.f, w.w, w.size = f, f, 0
	return nil
}

// Write writes one event, rotating first when the file would pass MaxSize.
func (w *Writer) Write(e Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil && w.MaxSize > 0 && w.size+int64(len(b)) > w.MaxSize {
		if err := w.rotate(); err != nil {
			return fmt.Errorf("rotate the events log: %w", err)
		}
	}
	if w.w == nil {
		return errors.New("the events log is closed")
	}
	n, err := w.w.Write(b)
	w.size += int64(n)
	return err
}

// Close closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f, w.w = nil, nil
	return err
}

// Stream reads iface's events until ctx is done and writes them; written
// is called once per event written, failed with each write error (a full
// disk, a log removed): a failed write loses that event and the reader
// goes on, so the log resumes when the cause goes away or a SIGHUP reopens
// it. It holds its own handles on the maps, so reloads (which close the
// generation's handles) do not disturb it.
func Stream(ctx context.Context, iface string, set *maps.Set, w *Writer, written func(), failed func(error)) error {
	ring, err := set.XdpgEvents.Clone()
	if err != nil {
		return fmt.Errorf("%s: events: %w", iface, err)
	}
	names, err := set.XdpgRuleNames.Clone()
	if err != nil {
		ring.Close()
		return fmt.Errorf("%s: events: %w", iface, err)
	}
	own := maps.Of(&datapath.Maps{XdpgRuleNames: names})
	defer names.Close()
	rd, err := ringbuf.NewReader(ring)
	ring.Close() // the reader holds its own reference
	if err != nil {
		return fmt.Errorf("%s: events: %w", iface, err)
	}
	stop := context.AfterFunc(ctx, func() { rd.Close() })
	defer stop()
	defer rd.Close()
	zero := monotonicZero()
	var raw datapath.Event
	for {
		rec, err := rd.Read()
		if errors.Is(err, ringbuf.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: events: %w", iface, err)
		}
		if _, err := binary.Decode(rec.RawSample, binary.NativeEndian, &raw); err != nil {
			continue
		}
		if err := w.Write(Decode(iface, &raw, own.RuleNameAt, zero)); err != nil {
			failed(err)
			continue
		}
		written()
	}
}
