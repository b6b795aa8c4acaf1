// Package testutil holds helpers for privileged tests.
package testutil

import (
	"os"
	"testing"
)

// RequirePrivileged skips a test that needs root (BPF, netns), or fails it
// under CI=true, where every privileged test must run.
func RequirePrivileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (BPF, network namespaces) and CI=true forbids skipping it")
	}
	t.Skip("needs root (BPF, network namespaces); run `make test` as root")
}

// Require fails (or, outside CI, skips) the test when err is set: for
// prerequisites such as a tool that must be installed.
func Require(t testing.TB, err error, what string) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s: %v (CI=true forbids skipping)", what, err)
	}
	t.Skipf("%s: %v", what, err)
}
