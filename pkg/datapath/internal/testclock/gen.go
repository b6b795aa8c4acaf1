// Package testclock is the xdpguard program built with -DXDPG_TEST_CLOCK:
// its clocks read a map the test sets, so limiters and bans can be driven
// with explicit timestamps. Only tests import it; the shipped binary never
// links it (TestReleaseBuildHasNoTestHooks).
package testclock

import "github.com/cilium/ebpf"

// Generated and committed like pkg/datapath's object (`make generate`).
//go:generate go tool bpf2go -target bpfel -type xdpg_test_clock xdpguardTestClock ../../../../bpf/xdpguard.c -- -I../../../../bpf -DXDPG_TEST_CLOCK

// Clock is what the test sets: the program's precise and coarse clocks.
type Clock = xdpguardTestClockXdpgTestClock

// MapName is the map holding Clock.
const MapName = xdpguardTestClockMapXdpgTestNow

// Spec is the test build of the program.
func Spec() (*ebpf.CollectionSpec, error) { return loadXdpguardTestClock() }
