package metrics

import "github.com/prometheus/client_golang/prometheus"

// NewHistoryErrors is xdpguard_history_write_errors_total: the daemon's
// change-history records that could not be written (the change itself
// happened).
func NewHistoryErrors() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Name: "xdpguard_history_write_errors_total",
		Help: "Changes the daemon made but could not record in the change history (--audit-log): disk full, lock held, file refused.",
	})
}
