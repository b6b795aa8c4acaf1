package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// check refuses syn_proxy on a port no local socket listens on (a port
// forwarded elsewhere has none), names NodePorts in their range, and
// accepts it, with notes on what run will set, once a listener is there.
func TestCheckSynProxyNeedsALocalListener(t *testing.T) {
	testutil.RequirePrivileged(t) // the helper probe loads BPF
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	write := func(doc string) string {
		p := filepath.Join(dir, "p.yaml")
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	_, err = execute(t, "check", "--policy", write("tcp:\n  allow:\n    - 22\n    - {port: 31999, syn_proxy: always}\n"))
	if err == nil || !strings.Contains(err.Error(), "no local socket listens there") || !strings.Contains(err.Error(), "NodePort") {
		t.Errorf("syn_proxy on a port nobody listens on: %v", err)
	}
	out, err := execute(t, "check", "--policy", write("tcp:\n  allow:\n    - 22\n    - {port: "+itoa(port)+", syn_proxy: always}\n"))
	if err != nil {
		t.Fatalf("syn_proxy on a listening port: %v", err)
	}
	if !strings.Contains(out, "syn proxy always") {
		t.Errorf("summary does not show the proxy:\n%s", out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
