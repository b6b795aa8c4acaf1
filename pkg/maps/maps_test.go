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

// Each origin holds its own end of a prefix's ban: none shortens another's,
// and an origin's lift never lifts another's, in either order and even
// where a wider prefix holds the address (the trie's lookup answers that
// one).
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
	ban := func(p netip.Prefix, until uint64, o datapath.BanOrigin, reason string, wantDecides bool) {
		t.Helper()
		if decides, err := s.Ban(p, until, o, reason); err != nil || decides != wantDecides {
			t.Fatalf("ban %s by %s: decides %v (want %v), %v", p, o, decides, wantDecides, err)
		}
	}
	lift := func(p netip.Prefix, o datapath.BanOrigin, want bool) {
		t.Helper()
		if lifted, err := s.Lift(p, o); err != nil || lifted != want {
			t.Fatalf("lift %s by %s: %v (want %v), %v", p, o, lifted, want, err)
		}
	}
	inForce := func(p netip.Prefix) (Ban, bool) {
		t.Helper()
		bans, _, err := s.Bans(0)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bans {
			if b.Source == p {
				return b, true
			}
		}
		return Ban{}, false
	}
	ban(wide, now+24*hour, datapath.BanCLI, "operator", true)
	// The /24 is not the /32's ban: the feed writes its own.
	ban(host, now+hour, datapath.BanCrowdSec, "ssh-bf", true)
	// The operator's day-long /24 is not shortened by a feed's hour, and
	// the feed's lift leaves it.
	ban(wide, now+hour, datapath.BanCrowdSec, "list", false)
	lift(wide, datapath.BanCrowdSec, true)
	if b, ok := inForce(wide); !ok || b.Until != now+24*hour || b.Origin != datapath.BanCLI || b.Holds(datapath.BanCrowdSec, now) {
		t.Errorf("after CrowdSec's lift, %s: %+v %v: want the operator's day", wide, b, ok)
	}
	lift(host, datapath.BanFail2ban, false)
	lift(host, datapath.BanCrowdSec, true)
	lift(host, datapath.BanCrowdSec, false)
	if _, ok := inForce(host); ok {
		t.Errorf("%s still banned after CrowdSec lifted its only ban", host)
	}
	// The reviewer's order: an operator's hour, then fail2ban's two
	// hours, then fail2ban's unban: the operator's hour stays.
	ban(host, now+hour, datapath.BanCLI, "operator", true)
	ban(host, now+2*hour, datapath.BanFail2ban, "sshd", true)
	if b, ok := inForce(host); !ok || b.Until != now+2*hour || b.Origin != datapath.BanFail2ban || b.Reason != "sshd" {
		t.Errorf("fail2ban's longer ban: %+v %v", b, ok)
	}
	lift(host, datapath.BanFail2ban, true)
	if b, ok := inForce(host); !ok || b.Until != now+hour || b.Origin != datapath.BanCLI || !b.Holds(datapath.BanCLI, now) {
		t.Errorf("after fail2ban's unban, %s: %+v %v: want the operator's hour", host, b, ok)
	}
	// The other order: a feed's short ban, then CrowdSec's long one, then
	// the first feed's unban: CrowdSec's stays.
	ban(host, now+3*hour, datapath.BanCrowdSec, "crowdsecurity/ssh-bf", true)
	ban(host, now+hour/2, datapath.BanFail2ban, "sshd", false)
	lift(host, datapath.BanFail2ban, true)
	lift(host, datapath.BanCLI, true)
	if b, ok := inForce(host); !ok || b.Until != now+3*hour || b.Origin != datapath.BanCrowdSec {
		t.Errorf("after the others' lifts, %s: %+v %v: want CrowdSec's", host, b, ok)
	}
	// An origin replaces its own ban whatever its end: shorter too.
	ban(host, now+hour, datapath.BanCrowdSec, "again", true)
	if b, _ := inForce(host); b.Until != now+hour {
		t.Errorf("CrowdSec shortening its own ban: until %d, want %d", b.Until, now+hour)
	}
	_, byOrigin, err := s.Bans(0)
	if err != nil || byOrigin[datapath.BanCLI] != 1 || byOrigin[datapath.BanCrowdSec] != 1 || byOrigin[datapath.BanFail2ban] != 0 {
		t.Errorf("bans by origin %v, %v", byOrigin, err)
	}
	if _, err := s.Ban(host, now+hour, datapath.BanLimit, "x"); err == nil {
		t.Error("a prefix ban with the limit's origin was written")
	}
}
