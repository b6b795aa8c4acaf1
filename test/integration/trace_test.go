package integration

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// traceEntry reads the pinned trace entry (xdpg_trace) of the lab's server.
func traceEntry(t *testing.T, l *Lab) datapath.TraceConfig {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir(l), "xdpg_trace"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var c datapath.TraceConfig
	if err := m.Lookup(uint32(0), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// tracePacket is the part of a `trace --output json` line the tests read.
type tracePacket struct {
	Src, Dst, Proto, Flags, Verdict, Reason, Rule, Interface string
	Sport, Dport                                             uint16
}

// startTrace runs `xdpguard trace` in the server namespace and sends each
// JSON line it prints on the channel, which closes when it exits.
func startTrace(t *testing.T, l *Lab, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.Server, xdpguardBin, "trace", "--output", "json"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return cmd, lines
}

// `xdpguard trace` over veth: a real client's SYN to an open port and to a
// closed one, each with its verdict, reason and rule; another source's
// packets are not shown; Ctrl-C ends it with the data path's sampling off;
// a trace killed with SIGKILL leaves sampling on only until its end, which
// the data path enforces by itself.
func TestTraceShowsClientSYNs(t *testing.T) {
	l, _ := startLab(t, labPolicy)
	cmd, lines := startTrace(t, l, "--src", l.CliV4, "--for", "2m")

	// Drive connects (one source traced, one not) until the trace has shown
	// both SYNs of the traced one.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			l.ConnectTimeout(l.CliV4, l.SrvV4, 8022, 200*time.Millisecond)
			l.ConnectTimeout(l.CliV4, l.SrvV4, 7777, 200*time.Millisecond)
			l.ConnectTimeout(l.CliV4b, l.SrvV4, 8022, 200*time.Millisecond)
		}
	}()
	var open, closed bool
	var all []string
	deadline := time.After(30 * time.Second)
	for !open || !closed {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("trace exited early:\n%s", strings.Join(all, "\n"))
			}
			all = append(all, line)
			var p tracePacket
			if err := json.Unmarshal([]byte(line), &p); err != nil {
				t.Fatalf("trace line %q: %v", line, err)
			}
			if p.Src != l.CliV4 {
				t.Errorf("trace --src %s showed a packet from %s: %s", l.CliV4, p.Src, line)
			}
			if p.Interface != l.SrvIf || p.Dst != l.SrvV4 || p.Proto != "tcp" || p.Sport == 0 {
				t.Errorf("trace line without its interface or 5-tuple: %s", line)
			}
			switch {
			case p.Flags == "SYN" && p.Dport == 8022:
				open = true
				if p.Verdict != "pass" || p.Reason != "syn_allowed" || p.Rule != "tcp/8022" {
					t.Errorf("SYN to the open port: %s, want pass, syn_allowed, rule tcp/8022", line)
				}
			case p.Flags == "SYN" && p.Dport == 7777:
				closed = true
				if p.Verdict != "drop" || p.Reason != "port_not_allowed" || p.Rule != "tcp/closed" {
					t.Errorf("SYN to the closed port: %s, want drop, port_not_allowed, rule tcp/closed", line)
				}
			}
		case <-deadline:
			t.Fatalf("after 30s of connects the trace showed no SYN to 8022 and 7777 (open %v, closed %v):\n%s", open, closed, strings.Join(all, "\n"))
		}
	}
	close(stop)
	wg.Wait()
	if c := traceEntry(t, l); c.UntilNs == 0 {
		t.Errorf("sampling is off while the trace runs: %+v", c)
	}
	// One trace at a time: a second is refused, and the first goes on.
	if out, err := execCombined("ip", "netns", "exec", l.Server, xdpguardBin, "trace", "--src", l.CliV4b, "--for", "1s"); err == nil ||
		!strings.Contains(out, "another trace or preview is running") {
		t.Errorf("a second trace: %v\n%s", err, out)
	}
	if c := traceEntry(t, l); c.UntilNs == 0 || c.Mask[3] == 0 {
		t.Errorf("the refused trace touched the running one: %+v", c)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var counts string
	for line := range lines {
		if strings.Contains(line, `"counts"`) {
			counts = line
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("trace after Ctrl-C: %v", err)
	}
	if !strings.Contains(counts, `"sent"`) {
		t.Errorf("trace printed no counts at its end")
	}
	if c := traceEntry(t, l); c.UntilNs != 0 {
		t.Errorf("sampling still on after Ctrl-C: %+v", c)
	}

	// A trace that dies: sampling stays on until its --for, then the data
	// path turns it off on the next packet, with nobody to clear it.
	cmd, _ = startTrace(t, l, "--src", l.CliV4, "--for", "2s")
	waitFor(t, "the trace to start", 20*time.Second, func() bool { return traceEntry(t, l).UntilNs != 0 })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if traceEntry(t, l).UntilNs == 0 {
		t.Fatal("sampling off before its end: nothing shows the data path ends it itself")
	}
	waitFor(t, "the data path to end a dead trace", 20*time.Second, func() bool {
		l.ConnectTimeout(l.CliV4b, l.SrvV4, 7777, 100*time.Millisecond)
		return traceEntry(t, l).UntilNs == 0
	})
}
