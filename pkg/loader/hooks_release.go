//go:build !xdpguard_testhooks

package loader

// Release builds have no fault injection: these compile to nothing
// (TestReleaseBuildHasNoTestHooks checks the shipped binary).
func crashPoint(string) {}

func failSwitch(string) error { return nil }

func forceClsact() bool { return false }
