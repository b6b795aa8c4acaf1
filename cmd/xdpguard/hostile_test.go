package main

import (
	"bytes"
	"fmt"
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

// A large valid policy checks in time that grows as n log n: 40,000 from
// entries on one rule (the scoped-rule flattening once tested every prefix
// against every rule's every prefix: 2.6 s at 20k, 9.9 s at 40k) and as
// many trust entries beside 40,000 denied ones. CPU time, not wall clock.
func TestLargePolicyChecksQuickly(t *testing.T) {
	var from, deny, trust []string
	for i := 0; i < 40000; i++ {
		from = append(from, fmt.Sprintf(`"10.%d.%d.0/24"`, i>>8, i&0xff))
		deny = append(deny, fmt.Sprintf(`"172.%d.%d.0/24"`, 16+i/256, i%256))
		trust = append(trust, fmt.Sprintf(`"2001:db8:%x::/48"`, i))
	}
	doc := "tcp:\n  allow:\n    - 22\n    - port: 3306\n      from: [" + strings.Join(from, ", ") + "]\n" +
		"sources:\n  deny: [" + strings.Join(deny, ", ") + "]\n  trust: [" + strings.Join(trust, ", ") + "]\n"
	path := filepath.Join(t.TempDir(), "large.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "check", "--policy", path)
	cmd.Env = append(os.Environ(), "XDPGUARD_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok (digest") {
		t.Fatalf("check: %v\n%.500s", err, out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	t.Logf("%d KB checked in %v of CPU, peak RSS %d MiB", len(doc)>>10, cpu, ru.Maxrss>>10)
	if cpu > 10*time.Second {
		t.Errorf("checking took %v of CPU; quadratic work is back", cpu)
	}
}
