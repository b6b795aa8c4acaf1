package datapath_test

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// A feed bans an IPv6 address with its /64 (not a link-local one), never
// anything wider than /8 or /16, and IPv4 and prefixes as given.
func TestFeedBanPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.7/32":     "198.51.100.7/32",
		"10.0.0.0/8":          "10.0.0.0/8",
		"2001:db8:1:2::7/128": "2001:db8:1:2::/64",
		"2001:db8:1:2:8::/80": "2001:db8:1:2::/64",
		"2001:db8::/32":       "2001:db8::/32",
		"2001::/16":           "2001::/16",
		"fe80::1/128":         "fe80::1/128",
		"0.0.0.0/0":           "",
		"10.0.0.0/7":          "",
		"::/0":                "",
		"2000::/15":           "",
	} {
		got, err := datapath.FeedBanPrefix(netip.MustParsePrefix(in))
		switch {
		case want == "" && err == nil:
			t.Errorf("%s: %s, want refused", in, got)
		case want != "" && (err != nil || got.String() != want):
			t.Errorf("%s: %s (%v), want %s", in, got, err, want)
		}
	}
}

// A reason is cut at a character's boundary and holds no control
// character: what `bans` prints of a feed's text cannot break its columns
// or reach the terminal as an escape sequence.
func TestBanReasonIsPrintable(t *testing.T) {
	var b datapath.BanRange
	b.SetReason("f2b\tsshd\x1b[31m")
	if got := b.ReasonText(); got != "f2b sshd [31m" {
		t.Errorf("%q", got)
	}
	long := strings.Repeat("é", datapath.MaxBanReason) // 2 bytes each
	b.SetReason(long)
	got := b.ReasonText()
	if !utf8.ValidString(got) || len(got) > datapath.MaxBanReason || len(got) < datapath.MaxBanReason-1 {
		t.Errorf("%q: %d bytes, valid %v", got, len(got), utf8.ValidString(got))
	}
}
