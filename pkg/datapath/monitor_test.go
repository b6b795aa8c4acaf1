package datapath_test

import (
	"math/rand/v2"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
	"github.com/xdpguard/xdpguard/pkg/reference"
)

// In monitor mode every frame passes, and the counter that moves is the
// reference's reason: the normal one for a pass, the monitored one for
// what would have dropped.
func TestMonitorModePassesAndCounts(t *testing.T) {
	pol := mustPolicy(t, "mode: monitor\n"+diffPolicy)
	if !pol.Monitor {
		t.Fatal("policy not in monitor mode")
	}
	d := load(t, pol)
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 3000; i++ {
		frame := randomFrame(r)
		want := reference.Classify(frame, pol).Reason
		before, _ := maps.Of(d.Maps).Reasons()
		monBefore, _ := maps.Of(d.Maps).Monitored()
		ret, err := d.Program.Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatal(err)
		}
		if ret != xdpPass {
			t.Fatalf("monitor mode returned %d for a %s frame", ret, want.Name())
		}
		after, _ := maps.Of(d.Maps).Reasons()
		monAfter, _ := maps.Of(d.Maps).Monitored()
		counted := after
		base := before
		if want.Dropped() {
			counted, base = monAfter, monBefore
		}
		if counted[want]-base[want] != 1 || after.Total()+monAfter.Total() != before.Total()+monBefore.Total()+1 {
			t.Fatalf("%s frame not counted as exactly one %s", want.Name(), want.Name())
		}
	}
}

func TestMonitorModeBansNobody(t *testing.T) {
	d := load(t, mustPolicy(t, "mode: monitor\n"+banPolicy))
	got := map[uint32]int{}
	for i := 0; i < 5; i++ {
		ret, err := d.Program.Run(&ebpf.RunOptions{Data: srcFrame("192.0.2.7", 22)})
		if err != nil {
			t.Fatal(err)
		}
		got[ret]++
	}
	if got[xdpPass] != 5 {
		t.Fatalf("verdicts %v, want all passed", got)
	}
	mon, _ := maps.Of(d.Maps).Monitored()
	if mon[datapath.DropRateLimited] != 3 {
		t.Errorf("monitored rate_limited = %d, want 3 (5 SYNs, burst 2)", mon[datapath.DropRateLimited])
	}
	if bans, _ := bansOf(d); len(bans) != 0 {
		t.Errorf("monitor mode banned %v", bans)
	}
}
