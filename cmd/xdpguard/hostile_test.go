package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test run this package's binary as `xdpguard` (the test
// binary re-executed with XDPGUARD_TEST_MAIN=1), to measure a whole command.
func TestMain(m *testing.M) {
	if os.Getenv("XDPGUARD_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Hostile policy files are refused quickly and in little memory, with a
// short message: nesting (80 KB of "[" once took 4.9 GB), an alias bomb
// (483 bytes once took 1.5 GB for 14 s and printed a 358 MB error), deep
// indentation, and a 1 MB value quoted back in an error. What is measured
// is the child's own CPU time and peak RSS, not the wall clock: a busy
// machine does not change them.
func TestHostilePolicyFilesRefusedCheaply(t *testing.T) {
	bomb := "tcp:\n  allow: &a [\"1\",\"1\",\"1\",\"1\",\"1\",\"1\",\"1\",\"1\",\"1\"]\n"
	for i, prev := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		next := string(rune('b' + i))
		bomb += "x" + next + ": &" + next + " [" + strings.Repeat("*"+prev+",", 8) + "*" + prev + "]\n"
	}
	var deep strings.Builder
	deep.WriteString("tcp:\n")
	for i := 1; i < 200; i++ {
		deep.WriteString(strings.Repeat(" ", i) + "k:\n")
	}
	files := map[string]string{
		"nested flow": "tcp:\n  allow: " + strings.Repeat("[", 40000) + "\n",
		"alias bomb":  bomb,
		"deep block":  deep.String(),
		"huge value":  "tcp:\n  allow: [\"" + strings.Repeat("A", 1<<20) + "\"]\n",
		"many errors": "tcp:\n  allow: [" + strings.Repeat("0, ", 20000) + "0]\n",
		"huge key":    "tcp:\n  " + strings.Repeat("k", 1<<20) + ": 1\n",
	}
	dir := t.TempDir()
	for name, doc := range files {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
			if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "check", "--policy", path)
			cmd.Env = append(os.Environ(), "XDPGUARD_TEST_MAIN=1")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if err == nil {
				t.Fatalf("accepted:\n%.300s", out.String())
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			rss := ru.Maxrss << 10 // KiB
			t.Logf("refused in %v of CPU, peak RSS %d MiB, %d bytes of output: %.160s", cpu, rss>>20, out.Len(), out.String())
			if cpu > time.Second || rss > 100<<20 {
				t.Errorf("refusing it took %v of CPU and %d MiB; want < 1 s and < 100 MiB", cpu, rss>>20)
			}
			if out.Len() > 64<<10 {
				t.Errorf("%d bytes of error output", out.Len())
			}
			if !strings.Contains(out.String(), path+":") {
				t.Errorf("the error does not name the file and line:\n%.300s", out.String())
			}
		})
	}
}
