// Package testutil holds helpers for privileged tests.
package testutil

import (
	"os"
	"strings"
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

// DocBlock is the text a doc holds between <!-- NAME: ... --> and
// <!-- NAME end -->: the parts of docs that tests hold to the code.
func DocBlock(t testing.TB, path, name string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "<!-- "+name+":")
	j := strings.Index(s, "<!-- "+name+" end -->")
	if i < 0 || j < i {
		t.Fatalf("%s has no %q block", path, name)
	}
	s = s[i:j]
	return s[strings.Index(s, "-->")+3:]
}
