package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The shipped binary has no test hooks: no fault injection (crash points, a
// refused switch), no test build of the program. Built both ways, only the
// one with -tags xdpguard_testhooks holds the hooks' names, so this test
// can tell.
func TestReleaseBuildHasNoTestHooks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary twice")
	}
	dir := t.TempDir()
	build := func(name string, tags ...string) []byte {
		out := filepath.Join(dir, name)
		args := append([]string{"build", "-o", out}, tags...)
		cmd := exec.Command("go", append(args, ".")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %v: %v\n%s", tags, err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hooks := [][]byte{[]byte("XDPGUARD_TEST_CRASH_AT"), []byte("XDPGUARD_TEST_FAIL_SWITCH"), []byte("datapath/internal/testclock")}
	release := build("release")
	for _, h := range hooks {
		if bytes.Contains(release, h) {
			t.Errorf("the release binary contains %q", h)
		}
	}
	tested := build("testhooks", "-tags", "xdpguard_testhooks")
	for _, h := range hooks[:2] {
		if !bytes.Contains(tested, h) {
			t.Errorf("the test-hooks binary lacks %q: this test could not tell", h)
		}
	}
}
