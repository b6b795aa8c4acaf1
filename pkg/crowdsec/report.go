package crowdsec

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Report is what a daemon publishes about its bouncer (a JSON file in its
// runtime directory) for `xdpguard status`, which runs apart from it.
type Report struct {
	URL      string        `json:"url"`
	Interval time.Duration `json:"interval_ns"`
	// Written is when the daemon wrote the report: one that is not renewed
	// (the daemon writes it every few seconds) is from a daemon gone.
	Written time.Time `json:"written"`

	Decisions   int               `json:"decisions"`
	Pulls       uint64            `json:"pulls"`
	Resyncs     uint64            `json:"resyncs"`
	Errors      map[string]uint64 `json:"errors"`
	Failing     int               `json:"failing"`
	Invalid     uint64            `json:"invalid"`
	Ignored     uint64            `json:"ignored"`
	LastSuccess time.Time         `json:"last_success"`
	LastError   string            `json:"last_error,omitempty"`
	LastErrorAt time.Time         `json:"last_error_at"`
	// Refused counts decisions the daemon would not enforce (a range wider
	// than it bans), NotStored those the full ban table could not hold.
	Refused   uint64 `json:"refused"`
	NotStored uint64 `json:"not_stored"`
}

// NewReport is a report of s, for the bouncer of url.
func NewReport(url string, interval time.Duration, s Stats, written time.Time) Report {
	return Report{URL: url, Interval: interval, Written: written,
		Decisions: s.Decisions, Pulls: s.Pulls, Resyncs: s.Resyncs, Errors: s.Errors, Failing: s.Failing,
		Invalid: s.Invalid, Ignored: s.Ignored, LastSuccess: s.LastSuccess, LastError: s.LastError, LastErrorAt: s.LastErrorAt}
}

// ReadReport reads a report a daemon wrote.
func ReadReport(path string) (Report, error) {
	var r Report
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Problems are what an operator must hear about the bouncer at now: pulls
// failing, or a report a running daemon would have renewed.
func (r Report) Problems(now time.Time) []string {
	var out []string
	if age := now.Sub(r.Written); age > staleReport {
		out = append(out, fmt.Sprintf("crowdsec: the bouncer's report is %s old: is the daemon running?", age.Round(time.Second)))
	}
	if r.Failing > 0 {
		out = append(out, fmt.Sprintf("crowdsec: %d failed pulls in a row from %s (%s); the bans held stay", r.Failing, r.URL, r.LastError))
	}
	return out
}

// staleReport: the daemon renews its report every 2 seconds.
const staleReport = 30 * time.Second
