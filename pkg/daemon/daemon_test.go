package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMetricsAddrNeedsProtectionBeyondLoopback(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(good, []byte("basic_auth_users:\n  prom: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("tls_server_config:\n  cert_file: /nonexistent\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr, web string
		insecure  bool
		want      string // "" for accepted
	}{
		{"127.0.0.1:9477", "", false, ""},
		{"[::1]:9477", "", false, ""},
		{"localhost:9477", "", false, ""},
		{"0.0.0.0:9477", "", false, "reachable from other hosts"},
		{":9477", "", false, "reachable from other hosts"},
		{"192.0.2.1:9477", "", false, "--metrics-web-config FILE"},
		{"0.0.0.0:9477", "", true, ""},
		{"0.0.0.0:9477", good, false, "credentials in clear"}, // basic auth without TLS
		{"0.0.0.0:9477", good, true, ""},
		{"0.0.0.0:9477", bad, false, "--metrics-web-config"},
		{"nonsense", "", false, "--metrics-addr"},
	} {
		err := checkMetricsAddr(c.addr, c.web, c.insecure)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s web=%q insecure=%v: %v, want %q", c.addr, c.web, c.insecure, err, c.want)
		}
	}
}
