package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpguard/xdpguard/pkg/audit"
)

// Audit is xdpguard_audit_findings: the daemon's audit of its policy
// against the host, by kind and severity. Every kind and severity is a
// series from the start (0 until found), so an alert tells "none" from
// "not measured".
type Audit struct {
	findings *prometheus.GaugeVec
}

var severities = []audit.Severity{audit.Low, audit.Medium, audit.High}

// NewAudit creates the audit's metric.
func NewAudit() *Audit {
	a := &Audit{findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "xdpguard_audit_findings",
		Help: "Findings of the audit of the policy against this host (xdpguard audit), by kind and severity; re-judged every minute and at each reload.",
	}, []string{"kind", "severity"})}
	a.Observe(nil)
	return a
}

// Register adds the metric to reg.
func (a *Audit) Register(reg prometheus.Registerer) { reg.MustRegister(a.findings) }

// Observe replaces the counts with those of fs.
func (a *Audit) Observe(fs []audit.Finding) {
	counts := map[[2]string]int{}
	for _, f := range fs {
		counts[[2]string{string(f.Kind), f.Severity.String()}]++
	}
	for _, k := range audit.Kinds {
		for _, s := range severities {
			a.findings.WithLabelValues(string(k), s.String()).Set(float64(counts[[2]string{string(k), s.String()}]))
		}
	}
}
