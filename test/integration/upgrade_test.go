package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/loader"
)

// upgradeFrom is the xdpguard commit the upgrade test starts from: one
// with pin schema 2, the oldest this xdpguard adopts (datapath.MinSchemaVersion).
// Schema 3 changed the ban table (LRU to plain hash) and grew the health
// counters: the upgrade carries both over. Move it when MinSchemaVersion
// moves (an upgrade from an older schema is refused by design, see
// TestSchemaVersion and docs/reliability.md).
const upgradeFrom = "b61dfbf"

// buildRevision builds cmd/xdpguard as it was at rev (git archive: no
// worktree left behind) and returns the binary.
func buildRevision(t *testing.T, rev string) string {
	t.Helper()
	dir := t.TempDir()
	if exec.Command("git", "-C", "../..", "cat-file", "-e", rev+"^{commit}").Run() != nil {
		// A shallow clone: fetch the history from where it came from.
		_ = exec.Command("git", "-C", "../..", "fetch", "--quiet", "--unshallow").Run()
	}
	archive := exec.Command("bash", "-c", "set -o pipefail; git -C ../.. archive --format=tar "+rev+" | tar -x -C "+dir)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("the upgrade test needs the git history (commit %s): %v\n%s", rev, err, out)
	}
	bin := filepath.Join(dir, "xdpguard-"+rev)
	build := exec.Command("go", "build", "-o", bin, "./cmd/xdpguard")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build xdpguard %s: %v\n%s", rev, err, out)
	}
	return bin
}

// pinDir is where the daemon pins the lab interface's state.
func pinDir(l *Lab) string {
	return filepath.Join("/run/xdpguard/bpffs/xdpguard/netns-"+l.Server, l.SrvIf)
}

// pinnedLinkID is the ID of the XDP link the daemon pinned for the lab's
// interface: the same ID before and after means it was never detached.
func pinnedLinkID(t *testing.T, l *Lab) link.ID {
	t.Helper()
	path := filepath.Join(pinDir(l), "link")
	lk, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		t.Fatalf("pinned link: %v", err)
	}
	defer lk.Close()
	info, err := lk.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

// attachedProgram is the ID of the XDP program on the lab's interface.
func attachedProgram(t *testing.T, l *Lab) uint32 {
	t.Helper()
	var id uint32
	var err error
	l.InNS(l.Server, func() {
		var idx int
		if idx, err = netIfindex(l.SrvIf); err == nil {
			_, id, err = loader.AttachMode(idx)
		}
	})
	if err != nil || id == 0 {
		t.Fatalf("no XDP program on %s: %v", l.SrvIf, err)
	}
	return id
}

// A newer binary takes over from an older one: it adopts the pinned link and
// swaps the program in with link.Update (the link, and so the filter, is
// never detached), keeps the counters, and enforces the file.
func TestUpgradeFromPreviousBinary(t *testing.T) {
	old := buildRevision(t, upgradeFrom)
	l := NewLab(t)
	l.Listen(8080, 7777)
	l.WritePolicy(labPolicy + "ratelimit:\n  syn:\n    rate: 5\n    burst: 5\n    ban: 1h\n")
	d := l.StartDaemonBinary(old)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered", 8080: "open"})
	// A ban under the old binary (its ban table is an LRU map), which the
	// upgrade must carry into the new plain-hash table.
	offender := strings.Replace(l.CliV4, "198.18.", "198.19.", 1)
	tx := l.RawSender()
	for i := 0; i < 50; i++ {
		if err := tx.Send(l.synFrame(offender, l.SrvV4, 8080, uint16(20000+i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the old binary banning the offender", 10*time.Second, func() bool {
		out, _ := execCombined("ip", "netns", "exec", l.Server, old, "bans")
		return strings.Contains(out, offender+"/32")
	})
	before := Metric(d.Scrape(), "xdpguard_drops_total", `reason="port_not_allowed"`)
	linkBefore := pinnedLinkID(t, l)
	progBefore := attachedProgram(t, l)
	d.Stop()
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered"}) // between the two: still filtered

	d2 := l.StartDaemon()
	expectAdopted(t, d2, before, 1) // the probe of 7777 between the two daemons
	if after := pinnedLinkID(t, l); after != linkBefore {
		t.Errorf("link %d replaced by %d: the upgrade detached the filter", linkBefore, after)
	}
	if progAfter := attachedProgram(t, l); progAfter == progBefore {
		t.Errorf("the interface still runs the old program (%d)", progAfter)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered", 8080: "open"})
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{7777: "filtered", 8080: "open"})
	if !bannedSources(t, l)[offender+"/32"] {
		t.Errorf("the ban did not survive the upgrade: %v", bannedSources(t, l))
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir(l), "xdpg_bans"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Type() != ebpf.Hash {
		t.Errorf("the pinned ban table is a %s after the upgrade, want a plain hash", m.Type())
	}
	var meta datapath.Meta
	if g, err := ebpf.LoadPinnedMap(filepath.Join(pinDir(l), "xdpg_generation"), nil); err == nil {
		_ = g.Lookup(uint32(0), &meta)
		g.Close()
	}
	if meta.SchemaVersion != datapath.SchemaVersion {
		t.Errorf("pins record schema %d after the upgrade, want %d", meta.SchemaVersion, datapath.SchemaVersion)
	}
}

// Pins written by an xdpguard of another schema version are refused with
// the command that clears them, and the filter in place keeps enforcing.
func TestIncompatiblePinsRefused(t *testing.T) {
	l, d := startLab(t, labPolicy)
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered", 8080: "open"})
	d.Stop()
	// Pretend a future xdpguard wrote the pins.
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir(l), "xdpg_generation"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var meta datapath.Meta
	if err := m.Lookup(uint32(0), &meta); err != nil {
		t.Fatal(err)
	}
	meta.SchemaVersion = datapath.SchemaVersion + 1
	if err := m.Put(uint32(0), &meta); err != nil {
		t.Fatal(err)
	}
	out, err := runIn(l, "run", "--iface", l.SrvIf, "--policy", l.dir+"/policy.yaml", "--metrics-addr", "")
	want := fmt.Sprintf("have schema version %d, this xdpguard uses %d", datapath.SchemaVersion+1, datapath.SchemaVersion)
	if err == nil || !strings.Contains(out, want) || !strings.Contains(out, "xdpguard detach") {
		t.Fatalf("start over pins of another schema: %v\n%s", err, out)
	}
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{7777: "filtered", 8080: "open"})
}
