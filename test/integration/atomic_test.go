package integration

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/loader"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// Policy switches are atomic under load, over 300 switches (CI's share of
// the time budget; XDPGUARD_SWITCHES=1000 for a longer run) between A
// (8022, 7777) and B (8022, 9000): a client connecting to 8022 over and
// over never fails, and every SYN to 7777 or 9000 that is dropped was
// dropped by a generation whose policy closes that port. Each drop event
// carries the generation that judged the packet: generation 1 is A, then
// they alternate, so 7777 may drop only under even generations and 9000
// only under odd ones. A mixed state (a program of one policy with the
// other's port set) would show as a drop under the wrong parity.
func TestAtomicSwitchUnderLoad(t *testing.T) {
	switches := 300
	if n, err := strconv.Atoi(os.Getenv("XDPGUARD_SWITCHES")); err == nil {
		switches = n
	}
	l := NewLab(t)
	l.Listen(8022, 7777, 9000)
	polA, _ := policy.Parse("a", []byte("tcp:\n  allow: [8022, 7777]\n"))
	polB, _ := policy.Parse("b", []byte("tcp:\n  allow: [8022, 9000]\n"))
	pinRoot := "/run/xdpguard/bpffs/atomic-" + l.Server
	var g *loader.Guard
	var err error
	l.InNS(l.Server, func() { g, _, err = loader.Attach(pinRoot, l.SrvIf, loader.ModeNative, polA) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Close()
		l.InNS(l.Server, func() { _ = loader.Detach(pinRoot, l.SrvIf) })
	})
	st, err := g.State()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetEventBudget(100000, 100000); err != nil {
		t.Fatal(err)
	}
	ring, err := st.XdpgEvents.Clone() // outlives the generation's handles
	if err != nil {
		t.Fatal(err)
	}
	rd, err := ringbuf.NewReader(ring)
	ring.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()

	type seen struct {
		port uint16
		gen  uint32
	}
	var events []seen
	var readers sync.WaitGroup
	readers.Add(1)
	drained := make(chan struct{}) // the reader saw a marker sent after all the traffic
	markerSrc := netip.MustParseAddr(l.CliV4)
	go func() {
		defer readers.Done()
		var raw datapath.Event
		marked := false
		for {
			rec, err := rd.Read()
			if err != nil {
				return
			}
			if _, err := binary.Decode(rec.RawSample, binary.NativeEndian, &raw); err == nil {
				if raw.Source() == markerSrc { // the client's address: it only ever connects to 8022, which both open
					if !marked {
						marked = true
						close(drained)
					}
				}
				events = append(events, seen{raw.Dport, raw.Generation})
			}
		}
	}()

	stop := make(chan struct{})
	var work sync.WaitGroup
	var connects, failures, streamed atomic.Int64
	var firstFailure atomic.Value // error
	work.Add(2)
	go func() { // the legitimate client, on the port both policies open
		defer work.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var c net.Conn
			var err error
			l.InNS(l.Client, func() {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(l.CliV4)}, Timeout: 2 * time.Second}
				c, err = d.Dial("tcp", net.JoinHostPort(l.SrvV4, "8022"))
			})
			connects.Add(1)
			if err != nil {
				if failures.Add(1) == 1 {
					firstFailure.Store(fmt.Errorf("%s: %w", time.Now().Format("15:04:05.000"), err))
				}
				continue
			}
			// Closed with a reset: a FIN would leave the port in
			// TIME_WAIT for 60 s, and a client faster than 470
			// connects/s would run out of ephemeral ports (bind, with
			// the source address set, never reuses a TIME_WAIT port).
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
			time.Sleep(time.Millisecond) // pace: the switches need the CPUs too
		}
	}()
	tx := l.RawSender()
	go func() { // a stream of SYNs to the ports only one policy opens
		defer work.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			port := uint16(7777)
			if i%2 == 1 {
				port = 9000
			}
			_ = tx.Send(l.synFrame(l.CliV4b, l.SrvV4, port, uint16(10000+i%50000)))
			streamed.Add(1)
			time.Sleep(100 * time.Microsecond)
		}
	}()

	// Each generation stays in force until the stream has sent a SYN to
	// each port under it, however the switches and the stream share the
	// CPUs; and the switching goes on until the client has connected 100
	// times across it.
	var overtime time.Time // when the switches asked for were done
	n := 0
	for ; n < switches || connects.Load() < 100; n++ {
		if n == switches {
			overtime = time.Now()
		}
		if n > switches && time.Since(overtime) > 2*time.Minute {
			t.Fatalf("2 min after %d switches, only %d connects and %d SYNs streamed", switches, connects.Load(), streamed.Load())
		}
		next := polB
		if n%2 == 1 {
			next = polA
		}
		if err := g.Apply(next); err != nil {
			t.Fatalf("switch %d: %v", n, err)
		}
		for want := streamed.Load() + 2; streamed.Load() < want; {
			time.Sleep(50 * time.Microsecond)
		}
	}
	close(stop)
	work.Wait()
	// Frames are judged in the order sent (one veth queue), and so are
	// their events written: once the event of a SYN sent after all the
	// traffic is read, every earlier one is. Of the two marker SYNs, the
	// one to the port the last policy closes is dropped.
	for deadline := time.Now().Add(10 * time.Second); ; {
		for _, port := range []uint16{7777, 9000} {
			if err := tx.Send(l.synFrame(l.CliV4, l.SrvV4, port, 9)); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-drained:
		case <-time.After(500 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
			t.Fatal("no drop event of the marker SYNs after 10s")
		}
		break
	}
	rd.Close()
	readers.Wait()

	dropped8022 := 0
	for _, e := range events {
		if e.port == 8022 {
			dropped8022++
		}
	}
	if failures.Load() != 0 || connects.Load() < 100 {
		t.Errorf("%d of %d connections to the port both policies open failed (%d SYNs to it dropped by the filter); the first: %v",
			failures.Load(), connects.Load(), dropped8022, firstFailure.Load())
	}
	wrong, gens := 0, map[uint16]map[uint32]bool{7777: {}, 9000: {}}
	for _, e := range events {
		closedUnderB := e.gen%2 == 0
		// A SYN to 8022 dropped is wrong under any generation (the
		// client's retransmission would hide it from the connects).
		if (e.port == 7777 && !closedUnderB) || (e.port == 9000 && closedUnderB) || e.port == 8022 {
			wrong++
		}
		if gens[e.port] != nil {
			gens[e.port][e.gen] = true
		}
	}
	t.Logf("%d switches, %d connects, %d drop events over %d and %d generations", n, connects.Load(), len(events), len(gens[7777]), len(gens[9000]))
	if wrong > 0 {
		t.Errorf("%d SYNs dropped by a generation whose policy opens their port", wrong)
	}
	if len(gens[7777]) < switches/10 || len(gens[9000]) < switches/10 {
		t.Errorf("drops seen under %d and %d generations: the stream did not cover the switches", len(gens[7777]), len(gens[9000]))
	}
}
