//go:build xdpguard_testhooks

package loader

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Fault injection for the integration tests' daemon (built with
// -tags xdpguard_testhooks), never for the shipped binary.

// crashPoint kills the process at a stage of a policy switch when
// XDPGUARD_TEST_CRASH_AT names it: the crash tests prove that a daemon
// killed at any stage leaves one whole policy in force.
func crashPoint(stage string) {
	if os.Getenv("XDPGUARD_TEST_CRASH_AT") == stage {
		_ = unix.Kill(os.Getpid(), unix.SIGKILL)
		select {} // SIGKILL is not delivered synchronously everywhere
	}
}

// failSwitch refuses a switch on the interface XDPGUARD_TEST_FAIL_SWITCH
// names, to prove the daemon rolls the others back.
func failSwitch(iface string) error {
	if os.Getenv("XDPGUARD_TEST_FAIL_SWITCH") == iface {
		return fmt.Errorf("%s: switch refused (XDPGUARD_TEST_FAIL_SWITCH)", iface)
	}
	return nil
}

// forceClsact makes tc mode use a clsact filter even where tcx exists, when
// XDPGUARD_TEST_CLSACT is set: the path of kernels before 6.6, tested here.
func forceClsact() bool { return os.Getenv("XDPGUARD_TEST_CLSACT") != "" }
