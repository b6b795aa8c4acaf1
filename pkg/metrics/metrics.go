// Package metrics exports xdpguard's BPF counters to Prometheus. The
// Collector reads the maps at scrape time, so what /metrics shows is what
// the kernel counted, and counters survive daemon restarts (they live in
// pinned maps).
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

// Target is one interface's maps and identity.
type Target struct {
	Iface string
	// Attached: the interface runs xdpguard's own program right now, in
	// XDP mode Mode ("none" when the interface is gone).
	Attached bool
	Mode     string
	Maps     *maps.Set
}

// Targets lends the current targets to fn. The maps must stay open until
// fn returns: a reload closes the previous generation's handles.
type Targets func(fn func([]Target))

// Collector reads every target's maps, at most once per cacheFor.
type Collector struct {
	targets  Targets
	topPorts int

	mu       sync.Mutex // one collection at a time
	cached   []prometheus.Metric
	cachedAt time.Time

	scrapeErrors prometheus.Counter

	packets, drops, passed, portDrops *prometheus.Desc
	monitored, monitorMode            *prometheus.Desc
	sources, sourcesCap, generation   *prometheus.Desc
	bans, rulePackets                 *prometheus.Desc
	eventsLost, sourceInserts         *prometheus.Desc
	sourcesLimited                    *prometheus.Desc
	bansRefused, contended, protected *prometheus.Desc
	loadedAt, attached                *prometheus.Desc
	synProxy                          synProxyDescs
}

// NewCollector exports the targets' counters. topPorts bounds the port
// label: only the ports with the most drops are exported, so a full port
// scan cannot create 65535 series.
func NewCollector(targets Targets, topPorts int) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("xdpguard_"+name, help, labels, nil)
	}
	return &Collector{
		targets:  targets,
		topPorts: topPorts,
		scrapeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xdpguard_scrape_errors_total", Help: "Map reads that failed during a scrape.",
		}),
		packets:        d("packets_total", "Packets the XDP program saw.", "interface"),
		drops:          d("drops_total", "Packets dropped, by reason.", "interface", "reason"),
		passed:         d("passed_total", "Packets passed, by reason.", "interface", "reason"),
		monitored:      d("monitored_drops_total", "Packets the policy would have dropped but passed because it is in monitor mode, by reason.", "interface", "reason"),
		monitorMode:    d("monitor_mode", "1 while the policy in force only monitors (mode: monitor).", "interface"),
		portDrops:      d("port_drops_total", "SYNs (and, under udp.allow, datagrams) dropped per destination port, for the ports with the most drops, by reason.", "interface", "port", "reason"),
		sources:        d("ratelimit_sources", "Sources in the per-source SYN limiter table.", "interface"),
		sourcesCap:     d("ratelimit_sources_capacity", "Size of the per-source SYN limiter table.", "interface"),
		bans:           d("banned_sources", "Sources (addresses, IPv6 /64s, prefixes) serving a ban, by who banned them: the SYN limit (limit), the CLI (cli), CrowdSec, fail2ban.", "interface", "origin"),
		eventsLost:     d("events_lost_total", "Drop events the data path did not send: over the events budget (over_budget) or the ring buffer full (ring_full).", "interface", "cause"),
		sourcesLimited: d("ratelimit_limited_sources", "Sources the per-source SYN limit refuses right now (their next SYN would be dropped).", "interface"),
		sourceInserts:  d("ratelimit_source_inserts_total", "Sources added to the per-source SYN limiter table; once it is full, each insert evicts the least recently used source.", "interface"),
		bansRefused:    d("bans_refused_total", "Bans the data path did not write: the source is protected (protected: link-local, an SSH peer, a gateway, a resolver) or the ban table is full (table_full; nothing is evicted).", "interface", "cause"),
		contended:      d("limiter_contended_total", "SYNs and ICMP requests admitted after 8 lost compare-and-swaps on their bucket (each loss is another CPU's take): a sign of extreme contention, never a false drop.", "interface"),
		protected:      d("protected_sources", "Sources the daemon protects from bans (SSH peers, default gateways, resolvers), besides link-local sources and sources.trust.", "interface"),
		rulePackets:    d("rule_packets_total", "Packets counted under each policy rule (its name, or one xdpguard gives), by verdict: passed, dropped, or monitored (would have dropped; passed in monitor mode).", "interface", "rule", "verdict"),
		generation:     d("policy_generation", "Policy generation in force (increments on every switch).", "interface"),
		loadedAt:       d("policy_loaded_timestamp_seconds", "When the policy in force was switched in.", "interface"),
		synProxy:       newSynProxyDescs(d),
		attached:       d("attached", "1 while xdpguard's own program is the one attached, 0 if none or another is; mode is the XDP mode in effect.", "interface", "mode"),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.scrapeErrors.Describe(ch)
	for _, d := range []*prometheus.Desc{c.packets, c.drops, c.passed, c.portDrops, c.sources, c.sourcesCap, c.bans, c.generation, c.loadedAt, c.attached, c.monitored, c.monitorMode, c.rulePackets, c.eventsLost, c.sourceInserts, c.sourcesLimited, c.bansRefused, c.contended, c.protected} {
		ch <- d
	}
	for _, d := range c.synProxy.all() {
		ch <- d
	}
}

// cacheFor is how long one collection serves scrapes: reading every map
// costs syscalls per counter and per CPU, and several Prometheus servers
// (or a busy dashboard) scraping at once must not multiply it.
const cacheFor = time.Second

// Collect implements prometheus.Collector. One collection at a time: a
// scrape that arrives while another collects waits for it and gets its
// result, as does every scrape within cacheFor of it.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.cached == nil || time.Since(c.cachedAt) > cacheFor {
		c.cached, c.cachedAt = c.collect(), time.Now()
	}
	cached := c.cached
	c.mu.Unlock()
	for _, m := range cached {
		ch <- m
	}
	c.scrapeErrors.Collect(ch)
}

// Invalidate makes the next scrape collect afresh (after a generation
// switch: the cached figures describe the old one).
func (c *Collector) Invalidate() {
	c.mu.Lock()
	c.cached = nil
	c.mu.Unlock()
}

func (c *Collector) collect() []prometheus.Metric {
	var mu sync.Mutex
	var out []prometheus.Metric
	c.targets(func(targets []Target) {
		var wg sync.WaitGroup
		for _, t := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ms := c.collectTarget(t)
				mu.Lock()
				out = append(out, ms...)
				mu.Unlock()
			}()
		}
		wg.Wait()
	})
	return out
}

func (c *Collector) collectTarget(t Target) []prometheus.Metric {
	var out []prometheus.Metric
	// Label values come from pins (rule names), which another root tool
	// may have written: a value Prometheus refuses (invalid UTF-8) is
	// counted as a scrape error, never a panic in the collector.
	emit := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels []string) {
		m, err := prometheus.NewConstMetric(d, t, v, labels...)
		if err != nil {
			c.scrapeErrors.Inc()
			return
		}
		out = append(out, m)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		emit(d, prometheus.CounterValue, float64(v), labels)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) { emit(d, prometheus.GaugeValue, v, labels) }
	snap := t.Maps.Snapshot(maps.SnapshotOptions{TopPorts: c.topPorts})
	for range snap.Problems {
		c.scrapeErrors.Inc()
	}
	if r := snap.Reasons; r != nil {
		counter(c.packets, r.Total(), t.Iface)
		for _, reason := range datapath.AllReasons() {
			d := c.passed
			if reason.Dropped() {
				d = c.drops
			}
			counter(d, r[reason], t.Iface, reason.Name())
		}
	}
	if mon := snap.Monitored; mon != nil {
		for _, r := range datapath.AllReasons() {
			if r.Dropped() {
				counter(c.monitored, mon[r], t.Iface, r.Name())
			}
		}
	}
	for _, p := range snap.Ports {
		port := strconv.Itoa(int(p.Port))
		counter(c.portDrops, p.NotAllowed, t.Iface, port, datapath.DropPortNotAllowed.Name())
		counter(c.portDrops, p.RateLimited, t.Iface, port, datapath.DropRateLimited.Name())
		counter(c.portDrops, p.PortRateLimited, t.Iface, port, datapath.DropPortRateLimited.Name())
		counter(c.portDrops, p.UdpNotAllowed, t.Iface, port, datapath.DropUDPPortNotAllowed.Name())
	}
	for _, r := range snap.Rules {
		counter(c.rulePackets, r.Passed, t.Iface, r.Name, "passed")
		counter(c.rulePackets, r.Dropped, t.Iface, r.Name, "dropped")
		counter(c.rulePackets, r.Monitored, t.Iface, r.Name, "monitored")
	}
	if h := snap.Health; h != nil {
		counter(c.eventsLost, h[datapath.HealthEventsOverBudget], t.Iface, "over_budget")
		counter(c.eventsLost, h[datapath.HealthEventsRingFull], t.Iface, "ring_full")
		counter(c.sourceInserts, h[datapath.HealthSourceInserts], t.Iface)
		counter(c.bansRefused, h[datapath.HealthBansProtected], t.Iface, "protected")
		counter(c.bansRefused, h[datapath.HealthBansNotStored], t.Iface, "table_full")
		counter(c.contended, h[datapath.HealthLimiterContended], t.Iface)
	}
	c.synProxy.collect(snap.SynProxy, t.Iface, counter, gauge)
	if snap.Protected != nil {
		gauge(c.protected, float64(len(snap.Protected)), t.Iface)
	}
	if src := snap.Sources; src != nil {
		gauge(c.sources, float64(src.Entries), t.Iface)
		gauge(c.sourcesLimited, float64(src.Limited), t.Iface)
		gauge(c.sourcesCap, float64(src.Capacity), t.Iface)
	}
	if snap.BansByOrigin != nil {
		for _, o := range datapath.BanOrigins() {
			gauge(c.bans, float64(snap.BansByOrigin[o]), t.Iface, o.String())
		}
	}
	if meta := snap.Meta; meta != nil {
		gauge(c.generation, float64(meta.Generation), t.Iface)
		gauge(c.monitorMode, float64(meta.Flags&datapath.MetaMonitor), t.Iface)
		gauge(c.loadedAt, float64(time.Unix(0, int64(meta.LoadedUnixNs)).UnixMilli())/1000, t.Iface)
	}
	attached := 0.0
	if t.Attached {
		attached = 1
	}
	gauge(c.attached, attached, t.Iface, t.Mode)
	return out
}

// Reloads counts policy reloads by result; LastReload records the last one.
type Reloads struct {
	Total      *prometheus.CounterVec
	LastOK     prometheus.Gauge
	LastReload prometheus.Gauge
}

// NewReloads creates the reload metrics.
func NewReloads() *Reloads {
	return &Reloads{
		Total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdpguard_policy_reloads_total", Help: "Policy reloads, by result (success, failure).",
		}, []string{"result"}),
		LastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xdpguard_policy_last_reload_success", Help: "1 if the last policy reload succeeded, 0 if it was refused.",
		}),
		LastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xdpguard_policy_last_reload_timestamp_seconds", Help: "When the last policy reload was attempted.",
		}),
	}
}

// Register adds the reload metrics to reg, with both results at zero.
func (r *Reloads) Register(reg prometheus.Registerer) {
	reg.MustRegister(r.Total, r.LastOK, r.LastReload)
	r.Total.WithLabelValues("success")
	r.Total.WithLabelValues("failure")
	r.LastOK.Set(1)
}

// Observe records one reload attempt.
func (r *Reloads) Observe(err error) {
	r.LastReload.SetToCurrentTime()
	if err != nil {
		r.Total.WithLabelValues("failure").Inc()
		r.LastOK.Set(0)
		return
	}
	r.Total.WithLabelValues("success").Inc()
	r.LastOK.Set(1)
}

// Events counts the drop events the daemon wrote, and those it could not
// write, per interface.
type Events struct {
	Written, WriteErrors *prometheus.CounterVec
}

// NewEvents creates the events metrics.
func NewEvents() *Events {
	return &Events{
		Written: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdpguard_events_written_total", Help: "Drop events written to the events log (--events).",
		}, []string{"interface"}),
		WriteErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdpguard_events_write_errors_total", Help: "Drop events lost because writing the events log failed (disk full, file gone); the log goes on.",
		}, []string{"interface"}),
	}
}
