package integration

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// The daemon as the Kubernetes DaemonSet runs it, where the node network is
// not trusted: metrics on the node's address with a web config of TLS and
// basic auth, and, as its bpffs, only a directory of the host's bpffs (the
// DaemonSet's hostPath /sys/fs/bpf/xdpguard, mounted at /sys/fs/bpf).
//
//   - A web config with basic auth and no TLS is refused at start: the
//     passwords would cross the network in clear.
//   - The daemon accepts a bpffs directory that is not the bpffs's root, and
//     pins in it, on the host's bpffs (so the filter outlives the pod).
//   - From another host, the kubelet's probe (HTTPS, the certificate not
//     verified, no credentials) gets /readyz's 200; /metrics needs the
//     password; plain HTTP gets nothing.
func TestReadyzForTheKubeletWithTLSAndBasicAuth(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022)
	l.WritePolicy(labPolicy)
	addr := net.JoinHostPort(l.SrvV4, "8080") // a port the policy opens

	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := "basic_auth_users:\n  prom: " + string(hash) + "\n"
	authOnly := filepath.Join(l.dir, "auth-only.yml")
	if err := os.WriteFile(authOnly, []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	// Refused at once; a daemon that starts instead is ended by the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.Server, xdpguardBin, "run", "--iface", l.SrvIf, "--policy", filepath.Join(l.dir, "policy.yaml"),
		"--metrics-addr", addr, "--metrics-web-config", authOnly)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "credentials in clear") {
		t.Fatalf("basic auth without TLS on %s was not refused at start: %v\n%s", addr, err, out)
	}

	writeTestCert(t, l.dir, net.ParseIP(l.SrvV4))
	webConfig := filepath.Join(l.dir, "web.yml")
	if err := os.WriteFile(webConfig, []byte("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"+users), 0o600); err != nil {
		t.Fatal(err)
	}

	// The pod's view of the bpffs: a directory of the host's bpffs (here
	// the shared one `ip netns exec` daemons use) bind-mounted at
	// /sys/fs/bpf in the daemon's mount namespace.
	hostDir := "/run/xdpguard/bpffs/k8s-" + testutil.UniqueID()
	if err := os.Mkdir(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	asPod := []string{"sh", "-c", `mount --bind "$0" /sys/fs/bpf && exec "$@"`, hostDir}
	t.Cleanup(func() { // after the daemon's end (cleanups run last first)
		out, err := exec.Command("ip", append([]string{"netns", "exec", l.Server}, append(asPod, xdpguardBin, "detach", "--all")...)...).CombinedOutput()
		if err != nil {
			t.Errorf("detach: %v\n%s", err, out)
		}
		_ = os.RemoveAll(hostDir)
	})
	l.Wrapper = asPod
	l.StartDaemon("--metrics-addr", addr, "--metrics-web-config", webConfig)

	link := filepath.Join(hostDir, "xdpguard", "netns-"+l.Server, l.SrvIf, "link")
	if _, err := os.Stat(link); err != nil {
		t.Errorf("the filter is not pinned in the host's bpffs directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/run/xdpguard/bpffs/xdpguard/netns-"+l.Server, l.SrvIf)); err == nil {
		t.Error("the daemon pinned at the bpffs root, not in the directory it was given")
	}

	get := func(scheme, path, user, pass string) (int, string) {
		t.Helper()
		var conn net.Conn
		l.InNS(l.Client, func() { conn, err = net.DialTimeout("tcp", addr, 5*time.Second) })
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if scheme == "https" {
			tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) // as the kubelet's HTTPS probe
			if err := tc.Handshake(); err != nil {
				t.Fatalf("TLS handshake: %v", err)
			}
			conn = tc
		}
		req, _ := http.NewRequest("GET", scheme+"://"+addr+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		if err := req.Write(conn); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("https", "/readyz", "", ""); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("the kubelet's probe of /readyz: HTTP %d %q, want 200 ok", code, body)
	}
	if code, _ := get("https", "/metrics", "", ""); code != 401 {
		t.Errorf("/metrics without credentials: HTTP %d, want 401", code)
	}
	if code, _ := get("https", "/metrics", "prom", "wrong"); code != 401 {
		t.Errorf("/metrics with a wrong password: HTTP %d, want 401", code)
	}
	if code, body := get("https", "/metrics", "prom", "s3cret"); code != 200 || !strings.Contains(body, "xdpguard_") {
		t.Errorf("/metrics with the password: HTTP %d, %d bytes", code, len(body))
	}
	if code, body := get("http", "/metrics", "prom", "s3cret"); code == 200 || strings.Contains(body, "xdpguard_") {
		t.Errorf("plain HTTP to the TLS port: HTTP %d, %.80q", code, body)
	}
}

// writeTestCert writes a self-signed certificate for ip, and its key, as
// cert.pem and key.pem in dir.
func writeTestCert(t *testing.T, dir string, ip net.IP) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xdpguard test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{ip}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{"cert.pem": {Type: "CERTIFICATE", Bytes: der}, "key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
