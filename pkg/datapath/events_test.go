package datapath_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/events"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

// readEvents drains the ring buffer.
func readEvents(t *testing.T, d *datapath.Generation) []events.Event {
	t.Helper()
	rd, err := ringbuf.NewReader(d.XdpgEvents)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var out []events.Event
	for {
		rd.SetDeadline(time.Now().Add(50 * time.Millisecond))
		rec, err := rd.Read()
		if err != nil {
			return out
		}
		var raw datapath.Event
		if len(rec.RawSample) < binary.Size(raw) {
			t.Fatalf("short event: %d bytes", len(rec.RawSample))
		}
		if err := decodeEvent(rec.RawSample, &raw); err != nil {
			t.Fatal(err)
		}
		out = append(out, events.Decode("lab0", &raw, maps.Of(d.Maps).RuleNameAt, time.Unix(0, 0)))
	}
}

// Drops produce events within the budget; the rest is counted, not sent.
// Passes produce none.
func TestDropEventsBudgeted(t *testing.T) {
	d := load(t, mustPolicy(t, rulesPolicy))
	if err := maps.Of(d.Maps).SetEventBudget(1, 3); err != nil {
		t.Fatal(err)
	}
	run(t, d, srcFrame("192.0.2.1", 22)) // a pass: no event
	for i := 0; i < 10; i++ {
		run(t, d, srcFrame("198.51.100.9", 9999))
	}
	got := readEvents(t, d)
	if len(got) != 3 {
		t.Fatalf("%d events, want the burst of 3: %+v", len(got), got)
	}
	want := events.Event{Interface: "lab0", Reason: "port_not_allowed", Source: "198.51.100.9", Proto: "tcp", DPort: 9999, Rule: "tcp/closed"}
	e := got[0]
	e.Time = time.Time{}
	if e != want {
		t.Errorf("event %+v, want %+v", e, want)
	}
	h, err := maps.Of(d.Maps).Health()
	if err != nil {
		t.Fatal(err)
	}
	if h[datapath.HealthEventsOverBudget] != 7 || h[datapath.HealthEventsRingFull] != 0 {
		t.Errorf("health %v, want 7 over budget", h)
	}
}

// With events off (the default) nothing is sent or counted.
func TestDropEventsOffByDefault(t *testing.T) {
	d := load(t, mustPolicy(t, rulesPolicy))
	run(t, d, srcFrame("198.51.100.9", 9999))
	if got := readEvents(t, d); len(got) != 0 {
		t.Fatalf("events while off: %+v", got)
	}
	if h, _ := maps.Of(d.Maps).Health(); h[datapath.HealthEventsOverBudget] != 0 {
		t.Errorf("health %v", h)
	}
}

// A reader that falls behind loses events to a full ring, and the kernel
// counts them; the data path never blocks.
func TestDropEventsRingFull(t *testing.T) {
	d := load(t, mustPolicy(t, rulesPolicy))
	if err := maps.Of(d.Maps).SetEventBudget(100_000_000, 1_000_000_000); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Program.Run(&ebpf.RunOptions{Data: srcFrame("198.51.100.9", 9999), Repeat: 10000}); err != nil {
		t.Fatal(err)
	}
	h, _ := maps.Of(d.Maps).Health()
	n := len(readEvents(t, d))
	if h[datapath.HealthEventsRingFull] == 0 || uint64(n)+h[datapath.HealthEventsRingFull]+h[datapath.HealthEventsOverBudget] != 10000 {
		t.Errorf("%d events sent, health %v: want a full ring and every drop accounted for", n, h)
	}
}

func decodeEvent(b []byte, e *datapath.Event) error {
	_, err := binary.Decode(b, binary.NativeEndian, e)
	return err
}

// Each new source in the SYN limiter table is counted (the table's
// pressure); a known source is not.
func TestSourceInsertsCounted(t *testing.T) {
	d := load(t, mustPolicy(t, rulesPolicy))
	for _, src := range []string{"192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2", "192.0.2.1"} {
		run(t, d, srcFrame(src, 22))
	}
	h, err := maps.Of(d.Maps).Health()
	if err != nil {
		t.Fatal(err)
	}
	if h[datapath.HealthSourceInserts] != 3 { // 2001:db8::1 and ::2 share a /64
		t.Errorf("source inserts %d, want 3", h[datapath.HealthSourceInserts])
	}
}

// The limiter table counts each source's refused SYNs: what `top` ranks.
func TestRateLimitedSourcesCounted(t *testing.T) {
	d, _ := loadFrozen(t, mustPolicy(t, rulesPolicy)) // 1/s, burst 2
	for src, n := range map[string]int{"192.0.2.1": 6, "192.0.2.2": 4, "192.0.2.3": 2} {
		for i := 0; i < n; i++ {
			run(t, d, srcFrame(src, 22))
		}
	}
	got, err := maps.Of(d.Maps).Sources(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Source.String() != "192.0.2.1/32" || got[0].Drops != 4 || got[1].Drops != 2 {
		t.Errorf("sources %+v, want 192.0.2.1 with 4 drops, then 192.0.2.2 with 2 (192.0.2.3 stayed within its burst)", got)
	}
}
