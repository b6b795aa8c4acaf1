package loader

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// TestBondAndVLANPlacement: on a bond over veths and on a VLAN
// sub-interface, xdpguard attaches where the docs say it works (auto: tc
// on both; native on the bond, which the kernel puts on its slaves'
// drivers) and refuses clearly where it cannot (native XDP on a slave of a
// bond that runs XDP, native on a VLAN sub-interface). This host's kernel
// has neither the bonding nor the 8021q module; the kernel matrix's guests
// load both.
func TestBondAndVLANPlacement(t *testing.T) {
	l := newDispatcherLab(t)
	bond, vlan, slave := "xgb"+l.iface[3:], l.iface+".7", l.iface
	for _, step := range [][]string{
		{"ip", "-n", l.ns, "link", "add", bond, "type", "bond", "mode", "active-backup"},
		{"ip", "-n", l.ns, "link", "set", slave, "down"},
		{"ip", "-n", l.ns, "link", "set", slave, "master", bond},
		{"ip", "-n", l.ns, "link", "set", bond, "up"},
		{"ip", "-n", l.ns, "link", "add", "link", l.iface + "p", "name", vlan, "type", "vlan", "id", "7"},
		{"ip", "-n", l.ns, "link", "set", vlan, "up"},
	} {
		if err := testutil.Run(step...); err != nil {
			if os.Getenv("XDPGUARD_KERNEL_MATRIX") == "" && strings.Contains(err.Error(), "Unknown device type") {
				t.Skipf("this kernel has no bonding or 8021q module (%v): the kernel matrix runs this test", err)
			}
			t.Fatal(err)
		}
	}
	pol := dispatcherPolicy(t, "22")
	attach := func(iface string, mode Mode) (Placement, error) {
		var p Placement
		var aerr error
		l.in(func() error {
			g, _, err := Attach(l.pinRoot, iface, mode, pol)
			if err != nil {
				aerr = err
				return nil
			}
			p = g.Placement
			return g.Close()
		})
		return p, aerr
	}
	detach := func(iface string) {
		l.in(func() error { return Detach(l.pinRoot, iface) })
	}
	attachedAs := func(iface string) string {
		var mode string
		l.in(func() error {
			idx, _, err := testutil.LinkOf(l.ns, iface)
			if err != nil {
				return err
			}
			mode, _, err = AttachMode(idx)
			return err
		})
		return mode
	}

	for _, c := range []struct {
		iface string
		mode  Mode
		want  Mode
	}{{bond, ModeAuto, modeTC}, {bond, ModeNative, ModeNative}, {vlan, ModeAuto, modeTC}} {
		p, err := attach(c.iface, c.mode)
		if err != nil {
			t.Fatalf("%s --mode %s: %v", c.iface, c.mode, err)
		}
		if p.Mode != c.want || attachedAs(c.iface) != string(c.want) {
			t.Fatalf("%s --mode %s: placed %s, the kernel reports %s; want %s", c.iface, c.mode, p.Mode, attachedAs(c.iface), c.want)
		}
		if c.iface == bond && c.mode == ModeNative {
			// The bond runs XDP on its slaves' behalf: the kernel keeps
			// them for it.
			if _, err := attach(slave, ModeNative); err == nil || !strings.Contains(err.Error(), "attach to "+bond) {
				t.Fatalf("native XDP on %s, a slave of bond %s running XDP: %v, want a refusal naming the bond", slave, bond, err)
			}
		}
		detach(c.iface)
		if m := attachedAs(c.iface); m != "none" {
			t.Fatalf("%s after detach runs %s", c.iface, m)
		}
	}
	// A slave is refused in every mode, whatever the bond runs.
	if _, err := attach(slave, ModeAuto); err == nil || !strings.Contains(err.Error(), "attach to "+bond) {
		t.Fatalf("auto on %s, a slave of bond %s: %v, want a refusal naming the bond", slave, bond, err)
	}
	_, err := attach(vlan, ModeNative)
	if err == nil || !strings.Contains(err.Error(), "--mode tc") {
		t.Fatalf("native on a VLAN sub-interface: %v, want a refusal naming --mode tc", err)
	}
	fmt.Fprintln(os.Stderr, "bond and VLAN placement as documented")
}

// TestInterfaceNameWithADot: VLAN sub-interfaces are named eth0.100, and
// bpffs refuses names with a dot: the pin directory maps the dot, and
// attach, listing and detach all find it.
func TestInterfaceNameWithADot(t *testing.T) {
	l := newDispatcherLab(t)
	dotted := "xd" + l.iface[3:] + ".7"
	if err := testutil.Run("ip", "-n", l.ns, "link", "add", dotted, "type", "veth", "peer", "name", dotted+"p"); err != nil {
		t.Fatal(err)
	}
	if err := testutil.Run("ip", "-n", l.ns, "link", "set", dotted, "up"); err != nil {
		t.Fatal(err)
	}
	l.in(func() error {
		g, _, err := Attach(l.pinRoot, dotted, ModeAuto, dispatcherPolicy(t, "22"))
		if err != nil {
			return err
		}
		g.Close()
		names, err := Interfaces(l.pinRoot)
		if err != nil || len(names) != 1 || names[0] != dotted {
			return fmt.Errorf("Interfaces = %v, %v; want [%s]", names, err, dotted)
		}
		return Detach(l.pinRoot, dotted)
	})
}
