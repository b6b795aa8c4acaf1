package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"

	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/metrics"
)

func (d *daemon) targets() []metrics.Target {
	var out []metrics.Target
	for _, g := range d.guards {
		st, err := g.State()
		if err != nil {
			continue
		}
		id, _ := g.ProgramID()
		mode, running, err := loader.Runs(g.Ifindex, uint32(id))
		if err != nil {
			mode = "none" // the interface is gone: nothing filters it
		}
		out = append(out, metrics.Target{Iface: g.Iface, Attached: running, Mode: mode, Maps: st})
	}
	return out
}

func (d *daemon) serveMetrics() (*http.Server, error) {
	d.collector = metrics.NewCollector(func(fn func([]metrics.Target)) {
		d.mu.RLock()
		defer d.mu.RUnlock()
		fn(d.targets())
	}, d.cfg.TopPorts)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		d.collector,
	)
	d.reloads.Register(reg)
	reg.MustRegister(d.events.Written, d.events.WriteErrors, metrics.NewCrowdSec(d.crowdSecReport), d.historyErrors)
	d.audit.Register(reg)
	mux := http.NewServeMux()
	// A bounded number of scrapes at once, each bounded in time; the
	// collector itself serves one collection a second to all of them.
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, MaxRequestsInFlight: maxScrapes, Timeout: scrapeTimeout}))
	mux.HandleFunc("/readyz", d.serveReady)
	srv, err := newMetricsServer(d.cfg.MetricsWebConfig, mux, http.HandlerFunc(d.serveReady), d.log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", d.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	d.log.Info("serving metrics", "address", ln.Addr().String(), "tls", srv.TLSConfig != nil, "web_config", d.cfg.MetricsWebConfig)
	go func() {
		if err := serveMetricsOn(srv, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server", "err", err)
		}
	}()
	return srv, nil
}

// newMetricsServer is the HTTP server of /metrics and /readyz (mux), with
// the --metrics-web-config file (exporter-toolkit's format) applied:
//
//   - tls_server_config: HTTPS, the certificate and key read again for each
//     connection (exporter-toolkit's ConfigToTLSConfig), so a renewed
//     certificate is served without a restart. HTTP/1.1 only: a few scrapes
//     gain nothing from HTTP/2, and it is less to bound.
//   - basic_auth_users: every path but /readyz needs a user's password
//     (bcrypt), the users read again for each request. /readyz answers
//     without credentials because the kubelet's probe cannot send any (a
//     probe's headers are in the pod spec, in clear); what it tells, whether
//     the filter is attached with a policy, is not secret.
//   - rate_limit: every request, /readyz too, takes a token before anything
//     else (a bcrypt comparison costs tens of milliseconds: unbounded, wrong
//     passwords would be a way to load the daemon); over the limit, 429.
//     Without one, defaultRateLimit applies.
//   - http_server_config.headers: set on every response.
//
// exporter-toolkit's own web.Serve cannot serve this: it puts basic auth in
// front of every path, /readyz included.
func newMetricsServer(webConfig string, mux, ready http.Handler, log *slog.Logger) (*http.Server, error) {
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
		// The server's own complaints (a failed TLS handshake) in the daemon's log format.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if webConfig == "" {
		return srv, nil
	}
	c, err := readWebConfig(webConfig)
	if err != nil {
		return nil, fmt.Errorf("--metrics-web-config: %w", err)
	}
	srv.Handler = &webGuard{path: webConfig, limiter: newRateLimiter(c.RateLimiterConfig), ready: ready, next: mux, log: log}
	if !c.TLSConfig.IsEnabled() {
		return srv, nil
	}
	tlsFor := func(c *web.Config) (*tls.Config, error) {
		tc, err := web.ConfigToTLSConfig(&c.TLSConfig)
		if err != nil {
			return nil, err
		}
		tc.NextProtos = []string{"http/1.1"}
		return tc, nil
	}
	if srv.TLSConfig, err = tlsFor(c); err != nil {
		return nil, fmt.Errorf("--metrics-web-config: %w", err)
	}
	srv.TLSConfig.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := readWebConfig(webConfig)
		if err != nil {
			return nil, err
		}
		return tlsFor(c) // a file that no longer has TLS fails the handshake
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	return srv, nil
}

// serveMetricsOn serves srv on ln, in TLS when it has a TLS configuration.
func serveMetricsOn(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}

// defaultRateLimit bounds the requests of a web config without rate_limit:
// 5 a second, bursts of 10. Prometheus (every 15 s, twice with an HA pair)
// and the kubelet's probe (every 5 s) need a fraction of it; wrong
// passwords at this rate cost at most a fraction of a CPU in bcrypt.
var defaultRateLimit = web.RateLimiterConfig{Interval: 200 * time.Millisecond, Burst: 10}

func newRateLimiter(c web.RateLimiterConfig) *rate.Limiter {
	if c.Interval == 0 {
		c = defaultRateLimit
	}
	return rate.NewLimiter(rate.Every(c.Interval), c.Burst)
}

// readWebConfig reads a web config as exporter-toolkit does: strictly, its
// defaults first, file paths relative to the file's directory.
func readWebConfig(path string) (*web.Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := &web.Config{
		TLSConfig:  web.TLSConfig{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13},
		HTTPConfig: web.HTTPConfig{HTTP2: true},
	}
	if err := yaml.UnmarshalStrict(raw, c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.TLSConfig.SetDirectory(filepath.Dir(path))
	return c, nil
}

// webGuard applies a web config's rate limit, headers and basic auth to
// each request (newMetricsServer says how).
type webGuard struct {
	path        string
	limiter     *rate.Limiter
	ready, next http.Handler
	log         *slog.Logger
	// bcryptMu runs one password comparison at a time: with the rate
	// limit, at most one CPU's worth however many clients try.
	bcryptMu sync.Mutex
}

// unknownUserHash is compared against for a user the config does not
// list, so that such a request costs the same as a wrong password: the
// time of a refusal does not tell which users exist. (exporter-toolkit's
// hash of "fakepassword"; an unknown user is refused whatever matches.)
const unknownUserHash = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"

func (g *webGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.limiter.Allow() {
		http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
		return
	}
	c, err := readWebConfig(g.path)
	if err != nil {
		g.log.Error("reading --metrics-web-config", "err", err)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	for k, v := range c.HTTPConfig.Header {
		w.Header().Set(k, v)
	}
	if r.URL.Path == "/readyz" {
		g.ready.ServeHTTP(w, r)
		return
	}
	if len(c.Users) > 0 && !g.authorized(c, r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="xdpguard"`)
		http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
		return
	}
	g.next.ServeHTTP(w, r)
}

func (g *webGuard) authorized(c *web.Config, r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	hash, known := c.Users[user]
	if !known {
		hash = unknownUserHash
	}
	g.bcryptMu.Lock()
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass))
	g.bcryptMu.Unlock()
	return known && err == nil
}

// serveReady answers 200 while a policy is loaded and every interface runs
// xdpguard's program, else 503 naming what is wrong: the readiness probe of
// the Kubernetes DaemonSet, and a check for load balancers and scripts.
func (d *daemon) serveReady(w http.ResponseWriter, _ *http.Request) {
	type iface struct {
		name    string
		index   int
		program uint32
	}
	var ifaces []iface
	d.mu.RLock()
	loaded := d.current != nil
	for _, g := range d.guards {
		id, _ := g.ProgramID() // 0 if unreadable: reported as not attached
		ifaces = append(ifaces, iface{g.Iface, g.Ifindex, uint32(id)})
	}
	d.mu.RUnlock()
	var problems []string
	if !loaded {
		problems = append(problems, "no policy loaded")
	}
	if len(ifaces) == 0 {
		problems = append(problems, "no interface attached")
	}
	for _, i := range ifaces {
		_, running, err := loader.Runs(i.index, i.program)
		switch {
		case err != nil:
			problems = append(problems, i.name+": interface gone")
		case !running:
			problems = append(problems, i.name+": xdpguard's program is not attached")
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(problems, "\n"))
		return
	}
	fmt.Fprintln(w, "ok")
}

// checkMetricsAddr refuses to expose the metrics beyond this host in plain
// HTTP by accident: a non-loopback address needs a web config with TLS
// (basic auth alone would send its passwords in clear), or an explicit
// --metrics-insecure.
func checkMetricsAddr(addr, webConfig string, insecure bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	ip := net.ParseIP(host)
	local := (ip != nil && ip.IsLoopback()) || host == "localhost"
	if webConfig == "" {
		if local || insecure {
			return nil
		}
		return fmt.Errorf("--metrics-addr %s is reachable from other hosts: give --metrics-web-config FILE (tls_server_config, "+
			"and basic_auth_users: the Prometheus exporter-toolkit format), or --metrics-insecure to serve plain HTTP anyway", addr)
	}
	if err := web.Validate(webConfig); err != nil {
		return fmt.Errorf("--metrics-web-config: %w", err)
	}
	c, err := readWebConfig(webConfig)
	if err != nil {
		return fmt.Errorf("--metrics-web-config: %w", err)
	}
	if rl := c.RateLimiterConfig; rl.Interval < 0 || (rl.Interval > 0 && rl.Burst < 1) {
		return fmt.Errorf("--metrics-web-config %s: rate_limit needs a positive interval and a burst of at least 1 (got %v, %d)", webConfig, rl.Interval, rl.Burst)
	}
	if c.TLSConfig.IsEnabled() || local || insecure {
		return nil
	}
	what := "the metrics would cross the network in clear"
	if len(c.Users) > 0 {
		what = "basic auth over plain HTTP sends the credentials in clear"
	}
	return fmt.Errorf("--metrics-addr %s is reachable from other hosts and --metrics-web-config %s has no tls_server_config: %s. "+
		"Add tls_server_config (cert_file, key_file), or --metrics-insecure to serve plain HTTP anyway", addr, webConfig, what)
}
