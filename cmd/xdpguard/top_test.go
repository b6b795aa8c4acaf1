package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/xdpguard/xdpguard/pkg/stats"
)

func TestTopViewShowsBansAndQuits(t *testing.T) {
	m := &topModel{s: sampling{interval: time.Second, count: 0}}
	m.Init()
	rates := []stats.Rates{{
		Interface: "eth1",
		Bans:      []stats.BanRate{{Source: netip.MustParsePrefix("2001:db8::/64"), Drops: stats.Counter{Total: 70, Rate: 12}, Left: 42 * time.Second}},
		Ports:     []stats.PortRate{{Port: 23, Total: stats.Counter{Total: 9, Rate: 3}, NotAllowed: stats.Counter{Total: 9}}},
	}}
	if _, cmd := m.Update(sampled{at: time.Unix(0, 0), rates: rates}); cmd == nil {
		t.Fatal("no next sample scheduled")
	}
	view := m.View()
	for _, want := range []string{"BANNED SOURCE", "2001:db8::/64", "12.0", "42s", "rate-limited source: none", "23  "} {
		if !strings.Contains(view, want) {
			t.Errorf("view lacks %q:\n%s", want, view)
		}
	}
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")})
	if cmd == nil || cmd() != tea.Quit() {
		t.Error("q does not quit")
	}
}
