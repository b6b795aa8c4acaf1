// Package testclock is the xdpguard program built with -DXDPG_TEST_CLOCK:
// its clocks read a map the test sets, so limiters and bans can be driven
// with explicit timestamps. Only tests import it; the shipped binary never
// links it (TestReleaseBuildHasNoTestHooks).
package testclock

// Generated and committed like pkg/loader's object (`make generate`).
//go:generate go tool bpf2go -target bpfel -type xdpg_test_clock XdpguardTestClock ../../../../bpf/xdpguard.c -- -I../../../../bpf -DXDPG_TEST_CLOCK
