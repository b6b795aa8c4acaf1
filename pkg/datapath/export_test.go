package datapath

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/pkg/datapath/internal/testclock"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// TestClock is the clock of the test build of the program: what
// bpf_ktime_get_ns and bpf_ktime_get_coarse_ns return until set again.
type TestClock struct{ m *ebpf.Map }

// Set makes the program's precise clock read precise ns and its coarse
// clock coarse ns.
func (c *TestClock) Set(precise, coarse uint64) error {
	return c.m.Put(uint32(0), testclock.Clock{Precise: precise, Coarse: coarse})
}

// LoadDetachedTestClock is LoadDetached with the program built with
// -DXDPG_TEST_CLOCK: its clocks read the returned TestClock.
func LoadDetachedTestClock(pol *policy.Policy) (*Generation, *TestClock, error) {
	spec, err := testclock.Spec()
	if err != nil {
		return nil, nil, fmt.Errorf("parse the test-clock object: %w", err)
	}
	ms := spec.Maps[testclock.MapName]
	ms.Pinning = ebpf.PinNone
	m, err := ebpf.NewMap(ms)
	if err != nil {
		return nil, nil, err
	}
	gen, err := Load(pol, Options{spec: spec, extra: map[string]*ebpf.Map{testclock.MapName: m}})
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	gen.extra = append(gen.extra, m)
	return gen, &TestClock{m}, nil
}

// NeedsPreciseClock is needsPreciseClock, for the tests that choose clocks.
var NeedsPreciseClock = needsPreciseClock

// LoadDetachedHook is LoadDetached for the program of hook h.
func LoadDetachedHook(pol *policy.Policy, h Hook) (*Generation, error) {
	return Load(pol, Options{Hook: h})
}
