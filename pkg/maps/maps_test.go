package maps

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// The bounded heap keeps exactly the n greatest, in order, whatever the
// order they come in.
func TestBoundedKeepsTheGreatest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 100; round++ {
		var all []int
		n := r.IntN(20)
		b := newBounded(n, func(a, b int) bool { return a < b })
		for i := 0; i < r.IntN(200); i++ {
			x := r.IntN(1000)
			all = append(all, x)
			b.add(x)
		}
		slices.Sort(all)
		slices.Reverse(all)
		if n > 0 && len(all) > n {
			all = all[:n]
		}
		if got := b.sorted(); !slices.Equal(got, all) && !(len(got) == 0 && len(all) == 0) {
			t.Fatalf("n=%d: kept %v, want %v", n, got, all)
		}
	}
}

// Pins of an older schema lack maps this xdpguard reads: Open still opens
// what is there, the readers of what is missing say so, and a snapshot
// lists each missing piece instead of showing zeros.
func TestOpenToleratesMissingMaps(t *testing.T) {
	testutil.RequirePrivileged(t)
	fs := t.TempDir()
	if err := unix.Mount("bpf", fs, "bpf", 0, "mode=0700"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(fs, unix.MNT_DETACH)
	pol, err := policy.Parse("p", []byte("tcp:\n  allow: [22]\n"))
	if err != nil {
		t.Fatal(err)
	}
	gen, err := datapath.LoadDetached(pol)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	dir := filepath.Join(fs, "eth0")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]*ebpf.Map{"xdpg_generation": gen.XdpgGeneration, "xdpg_stats": gen.XdpgStats} {
		if err := m.Pin(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Reasons(); err != nil {
		t.Errorf("counters that are pinned: %v", err)
	}
	if _, err := s.Protected(); !errors.Is(err, errNotPinned) {
		t.Errorf("a map that is not pinned: %v, want errNotPinned", err)
	}
	snap := s.Snapshot(SnapshotOptions{})
	if snap.Reasons == nil || snap.Health != nil || snap.BansByOrigin != nil {
		t.Errorf("snapshot: reasons %v, health %v, bans %v", snap.Reasons, snap.Health, snap.BansByOrigin)
	}
	if !strings.Contains(strings.Join(snap.Problems, "\n"), "xdpg_protected: not pinned") {
		t.Errorf("problems: %v", snap.Problems)
	}
	if _, err := Open(filepath.Join(fs, "eth1"), false); err == nil {
		t.Error("opened a directory with no pins")
	}
}

// A feed's ban never shortens another origin's and its deletion never
// lifts another origin's, even where a wider prefix holds the address
// (the trie's lookup answers that one).
func TestFeedBansLeaveOtherOrigins(t *testing.T) {
	testutil.RequirePrivileged(t)
	pol, err := policy.Parse("p", []byte("tcp:\n  allow: [22]\n"))
	if err != nil {
		t.Fatal(err)
	}
	gen, err := datapath.LoadDetached(pol)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	s := Of(gen.Maps)
	wide, host := netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("198.51.100.7/32")
	now := datapath.MonotonicNow()
	hour := uint64(time.Hour)
	if err := s.Ban(wide, now+24*hour, datapath.BanCLI, "operator"); err != nil {
		t.Fatal(err)
	}
	// The /24 is not the /32's ban: the feed writes its own.
	if wrote, err := s.BanFromFeed(host, now+hour, datapath.BanCrowdSec, "ssh-bf"); err != nil || !wrote {
		t.Fatalf("feed ban of %s under an operator's %s: wrote %v, %v", host, wide, wrote, err)
	}
	// The operator's day-long /24 is not shortened by a feed's hour.
	if wrote, err := s.BanFromFeed(wide, now+hour, datapath.BanCrowdSec, "list"); err != nil || wrote {
		t.Errorf("feed ban over a longer operator ban: wrote %v, %v", wrote, err)
	}
	// A feed's deletion lifts its own ban only.
	if lifted, err := s.Lift(wide, datapath.BanCrowdSec); err != nil || lifted {
		t.Errorf("feed lifting the operator's ban: %v, %v", lifted, err)
	}
	if lifted, err := s.Lift(host, datapath.BanFail2ban); err != nil || lifted {
		t.Errorf("fail2ban lifting CrowdSec's ban: %v, %v", lifted, err)
	}
	if lifted, err := s.Lift(host, datapath.BanCrowdSec); err != nil || !lifted {
		t.Errorf("CrowdSec lifting its ban: %v, %v", lifted, err)
	}
	if lifted, err := s.Lift(host, datapath.BanCrowdSec); err != nil || lifted {
		t.Errorf("lifting it twice: %v, %v", lifted, err)
	}
	bans, byOrigin, err := s.Bans(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(bans) != 1 || bans[0].Source != wide || bans[0].Origin != datapath.BanCLI || bans[0].Reason != "operator" || byOrigin[datapath.BanCLI] != 1 {
		t.Errorf("bans %+v, by origin %v: want the operator's %s alone", bans, byOrigin, wide)
	}
	// A feed replaces its own ban whatever its end.
	if _, err := s.BanFromFeed(host, now+2*hour, datapath.BanFail2ban, "sshd"); err != nil {
		t.Fatal(err)
	}
	if wrote, err := s.BanFromFeed(host, now+hour, datapath.BanFail2ban, "sshd"); err != nil || !wrote {
		t.Errorf("a feed shortening its own ban: wrote %v, %v", wrote, err)
	}
}
