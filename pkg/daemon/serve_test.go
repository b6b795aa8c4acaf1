package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/crypto/bcrypt"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key as
// cert.pem and key.pem in dir, and returns the certificate's serial.
func writeCert(t *testing.T, dir string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "xdpguard test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
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
	// Written beside and renamed: a handshake never reads half a file.
	for name, block := range map[string]*pem.Block{"cert.pem": {Type: "CERTIFICATE", Bytes: der}, "key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(filepath.Join(dir, name+".tmp"), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"key.pem", "cert.pem"} {
		if err := os.Rename(filepath.Join(dir, name+".tmp"), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func hashOf(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// A web config without TLS on an address other hosts reach is refused at
// start, saying why: basic auth over plain HTTP sends its passwords in
// clear. --metrics-insecure knowingly allows it; loopback needs no TLS.
func TestMetricsWebConfigNeedsTLSBeyondLoopback(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir, 1)
	users := "basic_auth_users:\n  prom: " + hashOf(t, "s3cret") + "\n"
	authOnly := writeFile(t, filepath.Join(dir, "auth.yml"), users)
	tlsAuth := writeFile(t, filepath.Join(dir, "tls.yml"), "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"+users)
	tlsOnly := writeFile(t, filepath.Join(dir, "tlsonly.yml"), "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n")
	limitOnly := writeFile(t, filepath.Join(dir, "limit.yml"), "rate_limit:\n  interval: 1s\n  burst: 5\n")
	badLimit := writeFile(t, filepath.Join(dir, "badlimit.yml"), "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nrate_limit:\n  interval: 1s\n  burst: 0\n")
	for _, c := range []struct {
		addr, web string
		insecure  bool
		want      []string // nil: accepted
	}{
		{"0.0.0.0:9477", authOnly, false, []string{"credentials in clear", "tls_server_config", "--metrics-insecure"}},
		{"192.0.2.1:9477", authOnly, false, []string{"reachable from other hosts", "credentials in clear"}},
		{"[2001:db8::1]:9477", authOnly, false, []string{"credentials in clear"}},
		{":9477", limitOnly, false, []string{"in clear", "tls_server_config"}},
		{"0.0.0.0:9477", authOnly, true, nil},
		{"127.0.0.1:9477", authOnly, false, nil},
		{"localhost:9477", authOnly, false, nil},
		{"0.0.0.0:9477", tlsAuth, false, nil},
		{"192.0.2.1:9477", tlsOnly, false, nil},
		{"0.0.0.0:9477", badLimit, false, []string{"rate_limit", "burst"}},
	} {
		err := checkMetricsAddr(c.addr, c.web, c.insecure)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s %s insecure=%v: refused: %v", c.addr, filepath.Base(c.web), c.insecure, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s %s insecure=%v: accepted, want refused", c.addr, filepath.Base(c.web), c.insecure)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s %s: %q does not say %q", c.addr, filepath.Base(c.web), err, w)
			}
		}
	}
	// And Run refuses it before touching anything.
	cfg := Config{Ifaces: []string{"eth0"}, PolicyPath: "p.yaml", Mode: "auto", TopPorts: 1, MetricsAddr: "0.0.0.0:9477", MetricsWebConfig: authOnly}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "credentials in clear") {
		t.Errorf("Validate: %v", err)
	}
}

// serveTest serves a web config over a real socket on 127.0.0.1: /metrics
// and /readyz, each answering its name.
func serveTest(t *testing.T, webConfig string) (addr string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "metrics\n") })
	ready := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("/readyz", ready)
	srv, err := newMetricsServer(webConfig, mux, ready, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serveMetricsOn(srv, ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

type reply struct {
	code  int
	body  string
	proto string
	resp  *http.Response
}

// get is one request on a fresh connection, TLS unverified (as the
// kubelet's HTTPS probe), HTTP/2 offered.
func get(t *testing.T, url, user, pass string) reply {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true, ForceAttemptHTTP2: true,
	}}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(b), resp.Proto, resp}
}

// With TLS and basic auth: /readyz answers the kubelet's probe, which has
// no credentials; everything else needs them; plain HTTP gets nothing; the
// certificate is read again for new connections; HTTP/1.1 only; the
// configured headers are set.
func TestMetricsWebConfigReadyzWithoutAuth(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir, 1)
	cfgPath := writeFile(t, filepath.Join(dir, "web.yml"), "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"+
		"basic_auth_users:\n  prom: "+hashOf(t, "s3cret")+"\n"+
		"http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"+
		"rate_limit:\n  interval: 1ms\n  burst: 1000\n")
	base := "https://" + serveTest(t, cfgPath)

	if r := get(t, base+"/readyz", "", ""); r.code != 200 || r.body != "ok\n" {
		t.Errorf("/readyz without credentials: %d %q, want 200 ok", r.code, r.body)
	} else if r.resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("/readyz lacks the configured header: %v", r.resp.Header)
	}
	for _, c := range []struct {
		path, user, pass string
		code             int
	}{
		{"/metrics", "", "", 401},
		{"/metrics", "prom", "wrong", 401},
		{"/metrics", "nobody", "fakepassword", 401}, // the unknown-user hash's password
		{"/metrics", "prom", "s3cret", 200},
		{"/readyz/../metrics", "", "", 401}, // only /readyz itself is open
		{"/readyz/", "", "", 401},
		{"/", "", "", 401},
	} {
		r := get(t, base+c.path, c.user, c.pass)
		if r.code != c.code {
			t.Errorf("%s as %q/%q: %d %q, want %d", c.path, c.user, c.pass, r.code, r.body, c.code)
		}
		if r.code == 401 && strings.Contains(r.body, "metrics") {
			t.Errorf("%s: a refusal showed the metrics: %q", c.path, r.body)
		}
		if r.proto != "HTTP/1.1" {
			t.Errorf("%s: %s, want HTTP/1.1", c.path, r.proto)
		}
	}
	// Plain HTTP on the TLS port gets no metrics.
	if r := get(t, "http"+strings.TrimPrefix(base, "https")+"/metrics", "prom", "s3cret"); r.code != 400 {
		t.Errorf("plain HTTP to the TLS port: %d %q, want 400", r.code, r.body)
	}
	// A renewed certificate is served to the next connection.
	serial := func() int64 { return get(t, base+"/readyz", "", "").resp.TLS.PeerCertificates[0].SerialNumber.Int64() }
	if s := serial(); s != 1 {
		t.Fatalf("serial %d, want 1", s)
	}
	writeCert(t, dir, 2)
	if s := serial(); s != 2 {
		t.Errorf("after renewal, serial %d, want 2", s)
	}
}

// rate_limit bounds every request, /readyz and refusals included, before
// any password is checked; a web config without one gets the default.
func TestMetricsWebConfigRateLimit(t *testing.T) {
	dir := t.TempDir()
	users := "basic_auth_users:\n  prom: " + hashOf(t, "s3cret") + "\n"
	limited := writeFile(t, filepath.Join(dir, "limited.yml"), users+"rate_limit:\n  interval: 1h\n  burst: 3\n")
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "metrics\n") })
	ready := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	srv, err := newMetricsServer(limited, mux, ready, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if srv.TLSConfig != nil {
		t.Error("TLS without tls_server_config")
	}
	do := func(path, user, pass string) int {
		req := httptest.NewRequest("GET", path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		rec := httptest.NewRecorder()
		srv.Handler.ServeHTTP(rec, req)
		return rec.Code
	}
	got := []int{do("/metrics", "prom", "wrong"), do("/readyz", "", ""), do("/metrics", "prom", "s3cret"), do("/metrics", "prom", "s3cret"), do("/readyz", "", "")}
	if want := []int{401, 200, 200, 429, 429}; !equalInts(got, want) {
		t.Errorf("codes %v, want %v (a burst of 3, then nothing for an hour)", got, want)
	}

	l := newRateLimiter(readConfigT(t, writeFile(t, filepath.Join(dir, "nolimit.yml"), users)).RateLimiterConfig)
	if l.Limit() != 5 || l.Burst() != 10 {
		t.Errorf("default rate limit %v/s burst %d, want 5/s burst 10", l.Limit(), l.Burst())
	}
}

func readConfigT(t *testing.T, path string) *web.Config {
	t.Helper()
	c, err := readWebConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
