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

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/pkg/loader"
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

// Decode converts a raw event; names resolves rule slots (may be nil).
func Decode(iface string, raw *loader.Event, names *ebpf.Map, bootWall time.Time) Event {
	e := Event{
		Time:       bootWall.Add(time.Duration(raw.KtimeNs)).UTC(),
		Interface:  iface,
		Reason:     loader.Reason(raw.Reason).Name(),
		Monitored:  raw.Flags&loader.EventMonitored != 0,
		DPort:      raw.Dport,
		Rule:       loader.RuleNameAt(names, raw.Rule),
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
// write, safe for several interfaces' readers at once. Reopen starts a new
// file after log rotation.
type Writer struct {
	path string
	mu   sync.Mutex
	w    io.Writer
	f    *os.File
}

// OpenWriter opens path for appending ("-" is stdout).
func OpenWriter(path string) (*Writer, error) {
	w := &Writer{path: path}
	if err := w.Reopen(); err != nil {
		return nil, err
	}
	return w, nil
}

// Reopen closes and reopens the file (a no-op for stdout).
func (w *Writer) Reopen() error {
	if w.path == "-" {
		w.mu.Lock()
		w.w = os.Stdout
		w.mu.Unlock()
		return nil
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("--events: %w", err)
	}
	w.mu.Lock()
	old := w.f
	w.f, w.w = f, f
	w.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// Write writes one event.
func (w *Writer) Write(e Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err = w.w.Write(append(b, '\n'))
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
	w.f = nil
	return err
}

// Stream reads iface's events until ctx is done and writes them; written
// is called once per event written. It holds its own handles on the maps,
// so reloads (which close the generation's handles) do not disturb it.
func Stream(ctx context.Context, iface string, ring, names *ebpf.Map, w *Writer, written func()) error {
	ring, err := ring.Clone()
	if err != nil {
		return fmt.Errorf("%s: events: %w", iface, err)
	}
	if names, err = names.Clone(); err != nil {
		ring.Close()
		return fmt.Errorf("%s: events: %w", iface, err)
	}
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
	var raw loader.Event
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
		if err := w.Write(Decode(iface, &raw, names, zero)); err != nil {
			return fmt.Errorf("%s: write event: %w", iface, err)
		}
		written()
	}
}
