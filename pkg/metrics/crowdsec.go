package metrics

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpguard/xdpguard/pkg/crowdsec"
)

// CrowdSec exports the daemon's CrowdSec bouncer. report gives its state,
// false when none runs (then nothing is exported). Counters start again
// from zero when a reload replaces the bouncer.
type CrowdSec struct {
	report                                     func() (crowdsec.Report, bool)
	decisions, pulls, resyncs, errors, failing *prometheus.Desc
	skipped, lastSuccess                       *prometheus.Desc
}

// NewCrowdSec creates the bouncer's metrics.
func NewCrowdSec(report func() (crowdsec.Report, bool)) *CrowdSec {
	return &CrowdSec{
		report: report,
		decisions: prometheus.NewDesc("xdpguard_crowdsec_decisions",
			"CrowdSec ban decisions held (addresses and ranges), as of the last pull that succeeded.", nil, nil),
		pulls: prometheus.NewDesc("xdpguard_crowdsec_pulls_total",
			"Pulls of the LAPI's decision stream that succeeded.", nil, nil),
		resyncs: prometheus.NewDesc("xdpguard_crowdsec_resyncs_total",
			"Pulls that were startup pulls (the first, and the first after each failure).", nil, nil),
		errors: prometheus.NewDesc("xdpguard_crowdsec_errors_total",
			"Failed pulls by cause: unreachable, auth (the API key), status, response, apply.", []string{"cause"}, nil),
		failing: prometheus.NewDesc("xdpguard_crowdsec_failing",
			"Failed pulls in a row (0 when in step with the LAPI; the bans held stay meanwhile).", nil, nil),
		skipped: prometheus.NewDesc("xdpguard_crowdsec_decisions_skipped_total",
			"Decisions not enforced: invalid (value or duration), ignored (not a ban, another scope), too_wide (a range wider than feeds may ban), table_full.", []string{"why"}, nil),
		lastSuccess: prometheus.NewDesc("xdpguard_crowdsec_last_success_timestamp_seconds",
			"When the last pull that succeeded ended (0 before the first).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *CrowdSec) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.decisions, c.pulls, c.resyncs, c.errors, c.failing, c.skipped, c.lastSuccess} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *CrowdSec) Collect(ch chan<- prometheus.Metric) {
	r, ok := c.report()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.decisions, prometheus.GaugeValue, float64(r.Decisions))
	ch <- prometheus.MustNewConstMetric(c.pulls, prometheus.CounterValue, float64(r.Pulls))
	ch <- prometheus.MustNewConstMetric(c.resyncs, prometheus.CounterValue, float64(r.Resyncs))
	causes := make([]string, 0, len(r.Errors))
	for cause := range r.Errors {
		causes = append(causes, cause)
	}
	sort.Strings(causes)
	for _, cause := range causes {
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(r.Errors[cause]), cause)
	}
	ch <- prometheus.MustNewConstMetric(c.failing, prometheus.GaugeValue, float64(r.Failing))
	for why, n := range map[string]uint64{"invalid": r.Invalid, "ignored": r.Ignored, "too_wide": r.Refused, "table_full": r.NotStored} {
		ch <- prometheus.MustNewConstMetric(c.skipped, prometheus.CounterValue, float64(n), why)
	}
	var last float64
	if !r.LastSuccess.IsZero() {
		last = float64(r.LastSuccess.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, last)
}
