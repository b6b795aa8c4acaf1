// Package maps is the only code that opens, reads and writes xdpguard's
// state maps: an interface's pins (Open) or a running generation's maps
// (Of). Readers are methods of the Set; Snapshot reads what metrics, stats,
// status and top show, each field or the reason it could not be read.
package maps

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// Set is one interface's state maps. Only the pinned ones are set
// (datapath.PinnedMaps); one that a pin directory of an older schema lacks
// stays nil, and its readers say so.
type Set struct {
	*datapath.Maps
	// Trace is the trace entry (datapath.TracePin), nil in a pin
	// directory that predates it.
	Trace *ebpf.Map
	// Dir is the pin directory (Open), Link the pinned link if any.
	Dir  string
	Link link.Link
	own  bool // Close closes the maps (Open), or they are borrowed (Of)
}

// errNotPinned: a map this xdpguard reads is not pinned there (pins of an
// older schema, before a daemon of this version adopts them).
var errNotPinned = errors.New("not pinned")

// Open opens the pins of an interface's directory, read-only unless
// writable. Nothing is created: a missing pin directory is an error, a
// missing map a nil field. A pin directory reached through a symlink is
// refused.
func Open(dir string, writable bool) (*Set, error) {
	if fi, err := os.Lstat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory (a symlink?): not opened", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, datapath.MetaPin)); err != nil {
		return nil, fmt.Errorf("no xdpguard pins in %s: %w", dir, err)
	}
	s := &Set{Maps: new(datapath.Maps), Dir: dir, own: true}
	pinned := map[string]bool{}
	for _, n := range datapath.PinnedMaps() {
		pinned[n] = true
	}
	opts := &ebpf.LoadPinOptions{ReadOnly: !writable}
	v := reflect.ValueOf(s.Maps).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("ebpf")
		if !pinned[name] {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), opts)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("open pinned %s: %w", name, err)
		}
		v.Field(i).Set(reflect.ValueOf(m))
	}
	if m, err := ebpf.LoadPinnedMap(filepath.Join(dir, datapath.TracePin), opts); err == nil {
		s.Trace = m
	} else if !errors.Is(err, os.ErrNotExist) {
		s.Close()
		return nil, fmt.Errorf("open pinned %s: %w", datapath.TracePin, err)
	}
	if l, err := link.LoadPinnedLink(filepath.Join(dir, datapath.LinkPin), nil); err == nil {
		s.Link = l
	}
	return s, nil
}

// Of is the Set of a loaded generation's maps: borrowed, valid while the
// generation is, and Close leaves them open.
func Of(m *datapath.Maps) *Set { return &Set{Maps: m} }

// Close releases what Open opened. Safe to call more than once.
func (s *Set) Close() error {
	var errs []error
	if s.own && s.Maps != nil {
		v := reflect.ValueOf(s.Maps).Elem()
		for i := range v.NumField() {
			if m, ok := v.Field(i).Interface().(*ebpf.Map); ok && m != nil {
				errs = append(errs, m.Close())
				v.Field(i).Set(reflect.Zero(v.Field(i).Type()))
			}
		}
	}
	if s.own && s.Trace != nil {
		errs = append(errs, s.Trace.Close())
		s.Trace = nil
	}
	if s.Link != nil {
		errs = append(errs, s.Link.Close())
		s.Link = nil
	}
	return errors.Join(errs...)
}

// need fails with errNotPinned when m is missing.
func need(m *ebpf.Map, name string) error {
	if m == nil {
		return fmt.Errorf("%s: %w", name, errNotPinned)
	}
	return nil
}

// perCPU sums the per-CPU values of key into a T with add; buf is reused
// between calls (one per reader, sized by the possible CPUs).
type perCPU[T any] struct{ buf []T }

func newPerCPU[T any]() (*perCPU[T], error) {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	return &perCPU[T]{buf: make([]T, cpus)}, nil
}

func (p *perCPU[T]) sum(m *ebpf.Map, key uint32, add func(*T, T)) (T, error) {
	var out T
	if err := m.Lookup(key, &p.buf); err != nil {
		return out, err
	}
	for _, v := range p.buf {
		add(&out, v)
	}
	return out, nil
}

// batchChunk bounds what one batch read holds: per-CPU tables take
// chunk*CPUs values (at 128 CPUs, 1024 port counters are 4 MiB).
const batchChunk = 1024

// eachBatch reads all of m in batches of batchChunk keys, calling fn with
// each batch's keys and values (values of per-CPU maps: per key, one per
// possible CPU, in a row).
func eachBatch[K, V any](m *ebpf.Map, perKey int, fn func(keys []K, vals []V)) error {
	keys := make([]K, batchChunk)
	vals := make([]V, batchChunk*perKey)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		fn(keys[:n], vals[:n*perKey])
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
