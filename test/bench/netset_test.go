package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// The synthetic list is what it claims: the mix asked for, sorted, no
// entry inside or next to another, so xdpguard keeps every entry; the
// changed version differs in a few entries and keeps the count.
func TestNetset(t *testing.T) {
	const n = 50_000
	s, err := genNetset(n, 1)
	if err != nil {
		t.Fatal(err)
	}
	if s.entries() != n || len(s.v6) != n/100 || len(s.bumped) != netsetChanges {
		t.Fatalf("%d entries (%d IPv6, %d changed), want %d (%d, %d)", s.entries(), len(s.v6), len(s.bumped), n, n/100, netsetChanges)
	}
	count := map[string]int{}
	for _, p := range s.v4 {
		switch b := p.Bits(); {
		case b == 32:
			count["/32"]++
		case b == 24:
			count["/24"]++
		case b < 24 && b >= 16:
			count["/16-/23"]++
		case b > 24 && b < 32:
			count["/25-/31"]++
		default:
			t.Fatalf("%s: out of the mix", p)
		}
	}
	want := map[string]int{"/32": n * 80 / 100, "/24": n * mixC / 100, "/16-/23": n * mixWide / 100, "/25-/31": n * mixSmall / 100}
	for k, w := range want {
		if count[k] != w {
			t.Errorf("%s: %d, want %d", k, count[k], w)
		}
	}
	for _, list := range [][]netip.Prefix{s.v4, s.v6} {
		for i := 1; i < len(list); i++ {
			a, b := list[i-1], list[i]
			if !lastAddr(a).Next().Less(b.Addr()) {
				t.Fatalf("%s then %s: not sorted and apart", a, b)
			}
		}
	}

	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	for path, data := range map[string][]byte{
		pol:                              []byte("tcp:\n  allow: [22]\nsources:\n  deny_lists: [a.netset, b.netset]\n"),
		filepath.Join(dir, "a.netset"):   s.text(false),
		filepath.Join(dir, "b.netset"):   []byte("# empty\n"),
		filepath.Join(dir, "changed"):    s.text(true),
		filepath.Join(dir, "policy2"):    []byte("sources:\n  deny_lists: [changed]\ntcp:\n  allow: [22]\n"),
		filepath.Join(dir, "ipset.test"): s.ipsetRestore("x"),
	} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := policy.Load(pol)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Deny) != n {
		t.Errorf("xdpguard keeps %d of %d entries", len(p.Deny), n)
	}
	p2, err := policy.Load(filepath.Join(dir, "policy2"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.Deny) != n || p2.Digest() == p.Digest() {
		t.Errorf("changed list: %d entries, digest changed %v", len(p2.Deny), p2.Digest() != p.Digest())
	}
	diff := 0
	for i := range p.Deny {
		if p.Deny[i] != p2.Deny[i] {
			diff++
		}
	}
	if diff != netsetChanges {
		t.Errorf("changed list differs in %d entries, want %d", diff, netsetChanges)
	}
	if lines := strings.Count(string(s.ipsetRestore("x")), "\nadd x "); lines != len(s.v4) {
		t.Errorf("ipset input: %d adds, want %d", lines, len(s.v4))
	}
	if elems := strings.Count(string(s.nftTable("x")), ",\n") + 1; elems != len(s.v4) {
		t.Errorf("nft input: %d elements, want %d", elems, len(s.v4))
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().AsSlice()
	for i := p.Bits(); i < len(a)*8; i++ {
		a[i/8] |= 1 << (7 - i%8)
	}
	last, _ := netip.AddrFromSlice(a)
	return last
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 20000: "20,000", 1000000: "1,000,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
