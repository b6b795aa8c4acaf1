package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"

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
	reg.MustRegister(d.events.Written, d.events.WriteErrors)
	ln, err := net.Listen("tcp", d.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	// A bounded number of scrapes at once, each bounded in time; the
	// collector itself serves one collection a second to all of them.
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, MaxRequestsInFlight: maxScrapes, Timeout: scrapeTimeout}))
	mux.HandleFunc("/readyz", d.serveReady)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	webConfig := d.cfg.MetricsWebConfig
	go func() {
		// exporter-toolkit serves TLS and basic auth from --metrics-web-config
		// (plain HTTP when it is empty).
		err := web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &webConfig}, d.log)
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server", "err", err)
		}
	}()
	return srv, nil
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
// HTTP by accident: a non-loopback address needs a web config (TLS or
// basic auth) or an explicit --metrics-insecure.
func checkMetricsAddr(addr, webConfig string, insecure bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	if webConfig != "" {
		if err := web.Validate(webConfig); err != nil {
			return fmt.Errorf("--metrics-web-config: %w", err)
		}
		return nil
	}
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" || insecure {
		return nil
	}
	return fmt.Errorf("--metrics-addr %s is reachable from other hosts: give --metrics-web-config FILE (TLS or basic auth, "+
		"the Prometheus exporter-toolkit format), or --metrics-insecure to serve plain HTTP anyway", addr)
}
