package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/cilium/ebpf"
)

// A carried pin is a pinned map whose layout the generation being loaded
// changes: the source table resized by a policy, or a map that an older pin
// schema laid out differently (schema 2's LRU ban table, its shorter health
// array). The generation gets a fresh, private map filled from the pinned
// one where the layouts allow; commit pins it in the old one's place, so
// counters, budgets and bans carry over an upgrade. What the old program
// writes between the copy and the switch is lost.
type carriedPin struct {
	name string
	old  *ebpf.Map
}

// MinSchemaVersion is the oldest pin schema this xdpguard adopts: pins of
// schema 2 are carried over (see carriedPin), older ones refused.
const MinSchemaVersion = 2

// changedPins opens the maps pinned in dir that spec cannot reuse and takes
// them out of the pinned load (spec is changed): each gets a fresh map.
// Maps not pinned yet are created and pinned by the load, as usual.
func changedPins(spec *ebpf.CollectionSpec, dir string) ([]carriedPin, error) {
	var out []carriedPin
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		old, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			closeCarried(out)
			return nil, fmt.Errorf("open pinned %s: %w", name, err)
		}
		if ms.Compatible(old) == nil {
			old.Close()
			continue
		}
		ms.Pinning = ebpf.PinNone
		out = append(out, carriedPin{name, old})
	}
	return out, nil
}

func closeCarried(cs []carriedPin) {
	for _, c := range cs {
		c.old.Close()
	}
}

// carryOver copies the old map's entries into the new one when their keys
// and values have the same size: arrays up to the shorter length, hashes
// until the new one is full. Other layout changes start empty.
func carryOver(old, dst *ebpf.Map) error {
	if old.KeySize() != dst.KeySize() || old.ValueSize() != dst.ValueSize() || old.KeySize() == 0 {
		return nil
	}
	keyType := reflect.ArrayOf(int(old.KeySize()), reflect.TypeFor[byte]())
	valType := reflect.ArrayOf(int(old.ValueSize()), reflect.TypeFor[byte]())
	newValue := func() reflect.Value { return reflect.New(valType) }
	if perCPU(old.Type()) {
		cpus, err := ebpf.PossibleCPU()
		if err != nil {
			return err
		}
		slice := reflect.MakeSlice(reflect.SliceOf(valType), cpus, cpus)
		newValue = func() reflect.Value {
			p := reflect.New(slice.Type())
			p.Elem().Set(reflect.MakeSlice(slice.Type(), cpus, cpus))
			return p
		}
	}
	put := func(k, v reflect.Value) error {
		if perCPU(old.Type()) {
			return dst.Put(k.Interface(), v.Elem().Interface())
		}
		return dst.Put(k.Interface(), v.Interface())
	}
	if isArray(old.Type()) {
		n := min(old.MaxEntries(), dst.MaxEntries())
		for i := uint32(0); i < n; i++ {
			k := reflect.New(keyType)
			*(*uint32)(k.UnsafePointer()) = i
			v := newValue()
			if err := old.Lookup(k.Interface(), v.Interface()); err != nil {
				return fmt.Errorf("read %d: %w", i, err)
			}
			if err := put(k, v); err != nil {
				return fmt.Errorf("write %d: %w", i, err)
			}
		}
		return nil
	}
	k, v := reflect.New(keyType), newValue()
	it := old.Iterate()
	for it.Next(k.Interface(), v.Interface()) {
		if err := put(k, v); err != nil {
			return nil // full: keep what fitted
		}
	}
	return it.Err()
}

func perCPU(t ebpf.MapType) bool {
	return t == ebpf.PerCPUArray || t == ebpf.PerCPUHash || t == ebpf.LRUCPUHash
}

func isArray(t ebpf.MapType) bool { return t == ebpf.Array || t == ebpf.PerCPUArray }
