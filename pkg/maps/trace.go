package maps

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// errTraceBusy: another trace or preview is running on the interface.
var errTraceBusy = errors.New("another trace or preview is running")

// TraceEntry reads the trace entry (xdpg_trace): the one in progress, or the
// last one with its counters.
func (s *Set) TraceEntry() (datapath.TraceConfig, error) {
	var c datapath.TraceConfig
	if err := need(s.Trace, datapath.TracePin); err != nil {
		return c, err
	}
	if err := s.Trace.Lookup(uint32(0), &c); err != nil {
		return c, fmt.Errorf("read xdpg_trace: %w", err)
	}
	return c, nil
}

// StartTrace turns the trace on with c (its UntilNs on CLOCK_MONOTONIC),
// its counters and budget state zeroed. A trace of another session still
// running is not replaced: errTraceBusy, naming it.
func (s *Set) StartTrace(c datapath.TraceConfig) error {
	cur, err := s.TraceEntry()
	if err != nil {
		return err
	}
	if now := datapath.MonotonicNow(); cur.UntilNs > now && cur.Session != c.Session {
		return fmt.Errorf("%w (session %d, for %s more; it ends by itself)", errTraceBusy, cur.Session,
			time.Duration(cur.UntilNs-now).Round(time.Second))
	}
	c.Tat, c.Sent, c.OverBudget, c.RingFull = 0, 0, 0, 0
	if err := s.Trace.Put(uint32(0), &c); err != nil {
		return fmt.Errorf("start the trace: %w", err)
	}
	return nil
}

// StopTrace turns session's trace off and returns its last counters; a
// trace of another session is left alone.
func (s *Set) StopTrace(session uint32) (datapath.TraceConfig, error) {
	cur, err := s.TraceEntry()
	if err != nil || cur.Session != session {
		return cur, err
	}
	cur.UntilNs = 0
	if err := s.Trace.Put(uint32(0), &cur); err != nil {
		return cur, fmt.Errorf("stop the trace: %w", err)
	}
	return cur, nil
}

// TraceReader reads the trace samples (xdpg_trace_ring). The Set must be
// open writable.
func (s *Set) TraceReader() (*ringbuf.Reader, error) {
	if err := need(s.XdpgTraceRing, "xdpg_trace_ring"); err != nil {
		return nil, err
	}
	r, err := ringbuf.NewReader(s.XdpgTraceRing)
	if err != nil {
		return nil, fmt.Errorf("read xdpg_trace_ring: %w", err)
	}
	return r, nil
}
