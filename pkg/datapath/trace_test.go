package datapath_test

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/xdpguard/xdpguard/internal/testpkt"
	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// samples drains the trace ring of d.
func samples(t *testing.T, r *ringbuf.Reader) []datapath.TraceSample {
	t.Helper()
	var out []datapath.TraceSample
	r.SetDeadline(time.Now())
	for {
		rec, err := r.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var s datapath.TraceSample
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&s)), unsafe.Sizeof(s)), rec.RawSample)
		out = append(out, s)
	}
}

func setTrace(t *testing.T, d *datapath.Generation, c datapath.TraceConfig) {
	t.Helper()
	if err := d.Trace.Put(uint32(0), &c); err != nil {
		t.Fatal(err)
	}
}

func getTrace(t *testing.T, d *datapath.Generation) datapath.TraceConfig {
	t.Helper()
	var c datapath.TraceConfig
	if err := d.Trace.Lookup(uint32(0), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// The data path's sampling through BPF_PROG_RUN: off, nothing is sampled;
// on, exactly the packets of the source prefix and port (of both paths:
// the fast path's ACK and closed-port SYN, the general path's allowed SYN,
// IPv6, UDP) with the program's own verdict, reason, rule and the frame's
// bytes; a preview's kinds leave out what starts nothing; the budget counts
// what it leaves out; an entry past its end is cleared by the program. The
// verdicts are the same with sampling on.
func TestTraceSamplesThroughProgRun(t *testing.T) {
	d := load(t, mustPolicy(t, "tcp:\n  allow: [22]\nudp:\n  allow: [53]\n"))
	r, err := ringbuf.NewReader(d.XdpgTraceRing)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	ack := with(testpkt.NewSYN("192.0.2.7", "198.51.100.1", 22), func(f *testpkt.Frame) { f.Flags = testpkt.ACK })
	udp := with(testpkt.NewSYN("192.0.2.7", "198.51.100.1", 53), func(f *testpkt.Frame) { f.Proto = testpkt.ProtoUDP })
	frames := []struct {
		name   string
		frame  []byte
		match  bool // from 192.0.2.0/24
		reason datapath.Reason
		passed bool
	}{
		{"SYN to an open port", testpkt.NewSYN("192.0.2.7", "198.51.100.1", 22).Bytes(), true, datapath.PassSYNAllowed, true},
		{"SYN to a closed port (fast path)", testpkt.NewSYN("192.0.2.7", "198.51.100.1", 23).Bytes(), true, datapath.DropPortNotAllowed, false},
		{"ACK (fast path)", ack.Bytes(), true, datapath.PassNotSYN, true},
		{"UDP to an open port", udp.Bytes(), true, datapath.PassUDPAllowed, true},
		{"another IPv4 source", testpkt.NewSYN("192.0.3.7", "198.51.100.1", 22).Bytes(), false, datapath.PassSYNAllowed, true},
		{"IPv6", testpkt.NewSYN("2001:db8::7", "2001:db8:1::1", 22).Bytes(), false, datapath.PassSYNAllowed, true},
	}
	verdicts := func() (out []uint32) {
		for _, f := range frames {
			ret, _ := run(t, d, f.frame)
			out = append(out, ret)
		}
		return out
	}
	off := verdicts()
	if s := samples(t, r); len(s) != 0 {
		t.Fatalf("sampling off: %d samples", len(s))
	}

	on := datapath.TraceConfig{UntilNs: datapath.MonotonicNow() + uint64(time.Hour), Session: 7, Kinds: datapath.TraceAll,
		IntervalNs: 1, LimitNs: 1 << 40}
	on.SetSource(netip.MustParsePrefix("192.0.2.0/24"))
	setTrace(t, d, on)
	if got := verdicts(); !equal(got, off) {
		t.Errorf("verdicts with sampling on %v, off %v", got, off)
	}
	got := samples(t, r)
	i := 0
	for _, f := range frames {
		if !f.match {
			continue
		}
		if i >= len(got) {
			t.Errorf("%s: not sampled", f.name)
			continue
		}
		s := got[i]
		i++
		if datapath.Reason(s.Reason) != f.reason || (s.Passed == 1) != f.passed || s.Session != 7 ||
			s.FrameLen != uint32(len(f.frame)) || !bytes.Equal(s.Frame(), f.frame) {
			t.Errorf("%s: sample reason %s passed %d session %d len %d, want %s %v, the frame", f.name,
				datapath.Reason(s.Reason).Name(), s.Passed, s.Session, s.FrameLen, f.reason.Name(), f.passed)
		}
		if want := map[datapath.Reason]bool{datapath.DropPortNotAllowed: true}[f.reason]; want && s.Rule != 0 {
			t.Errorf("%s: rule slot %d, want tcp/closed's", f.name, s.Rule)
		}
	}
	if len(got) != i {
		t.Errorf("%d samples, want %d (the matching frames only)", len(got), i)
	}
	if c := getTrace(t, d); c.Sent != uint64(i) || c.OverBudget != 0 {
		t.Errorf("counters: sent %d, over budget %d; want %d, 0", c.Sent, c.OverBudget, i)
	}

	// A preview: SYNs and datagrams only, port 22 only.
	pv := on
	pv.Kinds, pv.Port = datapath.TraceSYN|datapath.TraceUDP, 22
	setTrace(t, d, pv)
	verdicts()
	if got := samples(t, r); len(got) != 1 || datapath.Reason(got[0].Reason) != datapath.PassSYNAllowed {
		t.Errorf("a preview of port 22 sampled %d packets, want the one SYN to 22", len(got))
	}

	// An IPv6 prefix: only the IPv6 frame.
	six := on
	six.SetSource(netip.MustParsePrefix("2001:db8::/32"))
	setTrace(t, d, six)
	verdicts()
	if got := samples(t, r); len(got) != 1 || datapath.Reason(got[0].Reason) != datapath.PassSYNAllowed || !bytes.Equal(got[0].Frame(), frames[5].frame) {
		t.Errorf("2001:db8::/32 sampled %d packets, want the IPv6 SYN", len(got))
	}

	// A budget of one sample: the rest are counted.
	b := on
	b.IntervalNs, b.LimitNs = uint64(time.Hour), uint64(time.Hour) // a burst of one
	setTrace(t, d, b)
	verdicts()
	if got, c := samples(t, r), getTrace(t, d); len(got) != 1 || c.OverBudget != 3 {
		t.Errorf("a budget of 1: %d samples, %d over budget; want 1, 3", len(got), c.OverBudget)
	}

	// Past its end: no sample, and the program turns it off.
	end := on
	end.UntilNs = 1
	setTrace(t, d, end)
	verdicts()
	if got, c := samples(t, r), getTrace(t, d); len(got) != 0 || c.UntilNs != 0 {
		t.Errorf("a trace past its end: %d samples, until %d; want none, 0", len(got), c.UntilNs)
	}
}

func equal(a, b []uint32) bool {
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
