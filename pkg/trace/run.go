package trace

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Iface is an interface whose pins a trace runs on (a Set opened writable).
type Iface struct {
	Name string
	Set  *maps.Set
}

// Options say what a trace samples, how much, and for how long.
type Options struct {
	// Source: the sources matched (invalid: every IPv4 and IPv6 source).
	Source netip.Prefix
	// Port: the destination port matched, 0 for any.
	Port uint16
	// Kinds: datapath.TraceAll, or TraceSYN and/or TraceUDP.
	Kinds uint8
	// For: how long it runs; the data path stops sampling by itself then,
	// whatever happens to this process.
	For time.Duration
	// Rate and Burst: the budget, samples per second per interface.
	Rate, Burst uint64
}

// Counts are what each interface's data path sampled and left out.
type Counts struct {
	Interface  string `json:"interface"`
	Sent       uint64 `json:"sent"`
	OverBudget uint64 `json:"over_budget"`
	RingFull   uint64 `json:"ring_full"`
}

// sampleSize is the size of struct xdpg_trace_sample.
const sampleSize = int(unsafe.Sizeof(datapath.TraceSample{}))

// Run samples the packets matching o on every interface until o.For has
// passed or ctx ends, calling each for every sample, in arrival order per
// interface (calls are serialised). The trace is turned off on every
// interface before Run returns, on every path; if this process dies, the
// data path turns it off at o.For. Another trace running is refused
// (refused).
func Run(ctx context.Context, ifaces []Iface, o Options, each func(Packet)) ([]Counts, error) {
	if o.For <= 0 {
		return nil, errors.New("the trace needs a duration")
	}
	var sb [4]byte
	if _, err := rand.Read(sb[:]); err != nil {
		return nil, err
	}
	session := binary.LittleEndian.Uint32(sb[:]) | 1
	start := datapath.MonotonicNow()
	cfg := datapath.TraceConfig{UntilNs: start + uint64(o.For), Session: session, Port: o.Port, Kinds: o.Kinds}
	g := (&policy.Limit{Rate: max(o.Rate, 1), Burst: max(o.Burst, 1)}).GCRA()
	cfg.IntervalNs, cfg.LimitNs = g.IntervalNs, g.LimitNs
	cfg.SetSource(o.Source)

	wallAt, monoAt := time.Now(), start
	wall := func(k uint64) time.Time { return wallAt.Add(time.Duration(int64(k) - int64(monoAt))) }

	var (
		readers []*ringbuf.Reader
		started []Iface
		errs    []error
		mu      sync.Mutex // errs, and the calls of each
	)
	stop := func() []Counts {
		var out []Counts
		for _, r := range readers {
			r.Close()
		}
		for _, i := range started {
			c, err := i.Set.StopTrace(session)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", i.Name, err))
				mu.Unlock()
			}
			out = append(out, Counts{i.Name, c.Sent, c.OverBudget, c.RingFull})
		}
		return out
	}
	// Started before its reader is opened: a trace refused (another runs)
	// never reads, so never takes, the running one's samples.
	for _, i := range ifaces {
		if err := i.Set.StartTrace(cfg); err != nil {
			stop()
			return nil, fmt.Errorf("%s: %w%s", i.Name, err, hint(err))
		}
		started = append(started, i)
		r, err := i.Set.TraceReader()
		if err != nil {
			stop()
			return nil, fmt.Errorf("%s: %w%s", i.Name, err, hint(err))
		}
		readers = append(readers, r)
	}

	ctx, cancel := context.WithTimeout(ctx, o.For)
	defer cancel()
	var wg sync.WaitGroup
	for n, r := range readers {
		i := started[n]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rec ringbuf.Record
			for {
				if err := r.ReadInto(&rec); err != nil {
					if !errors.Is(err, os.ErrClosed) {
						mu.Lock()
						errs = append(errs, fmt.Errorf("%s: read samples: %w", i.Name, err))
						mu.Unlock()
					}
					return
				}
				if len(rec.RawSample) < sampleSize {
					continue
				}
				var s datapath.TraceSample
				copy(unsafe.Slice((*byte)(unsafe.Pointer(&s)), sampleSize), rec.RawSample)
				if s.Session != session || s.KtimeNs+uint64(10*time.Millisecond) < start {
					continue // a trace before ours, or another's
				}
				p := decode(&s, i.Name, wall, i.Set.RuleNameAt)
				mu.Lock()
				each(p)
				mu.Unlock()
			}
		}()
	}
	<-ctx.Done()
	counts := stop()
	wg.Wait()
	return counts, errors.Join(errs...)
}

// hint says why a pin may be missing.
func hint(err error) string {
	if strings.Contains(err.Error(), "not pinned") {
		return " (pins of an older xdpguard: restart the daemon with this version)"
	}
	return ""
}
