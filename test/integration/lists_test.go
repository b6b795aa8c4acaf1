package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeAtomic replaces path as config managers do: a new file renamed
// over it.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// sources.deny_lists over veth: a netset file's sources are dropped; a
// change to the file (not the policy) reloads it; a bad line is refused
// naming the file and line, the previous lists staying in force; fixing
// the list reloads again.
func TestDenyListsOverVeth(t *testing.T) {
	l := NewLab(t)
	l.Listen(8022, 8080)
	lists := t.TempDir() // another directory than the policy's
	list := filepath.Join(lists, "drop.netset")
	writeAtomic(t, list, "# a feed\n"+l.CliV4b+" ; listed\n")
	l.WritePolicy(labPolicy + "sources:\n  deny_lists: [" + list + "]\n")
	d := l.StartDaemon()
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8022: "filtered"})
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "open"})
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{8022: "open"})

	d.Mark()
	writeAtomic(t, list, "# a feed\n"+l.CliV4b+"\n"+l.CliV6+"/128\n")
	d.WaitLog("policy reloaded")
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{8022: "filtered"})
	expectPorts(t, l, l.CliV6b, l.SrvV6, map[int]string{8022: "open"})

	d.Mark()
	writeAtomic(t, list, l.CliV4b+"\n"+l.CliV6+"/64\n")
	out := d.WaitLogWithin("policy reload refused.*", 20*time.Second)
	if !strings.Contains(out, list+":2:1") || !strings.Contains(out, "host bits set") {
		t.Errorf("the refusal does not name the list's line 2:\n%s", out)
	}
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{8022: "filtered"}) // the previous lists stay

	d.Mark()
	writeAtomic(t, list, l.CliV4b+"\n")
	d.WaitLog("policy reloaded")
	expectPorts(t, l, l.CliV6, l.SrvV6, map[int]string{8022: "open"})
	expectPorts(t, l, l.CliV4b, l.SrvV4, map[int]string{8022: "filtered"})

	// A list that is a symbolic link reloads when its target changes.
	target := filepath.Join(t.TempDir(), "real.netset")
	writeAtomic(t, target, l.CliV4b+"\n")
	link := filepath.Join(lists, "linked.netset")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	d.Mark()
	l.WritePolicy(labPolicy + "sources:\n  deny_lists: [" + link + "]\n")
	d.WaitLog("policy (reloaded|unchanged)")
	d.Mark()
	writeAtomic(t, target, l.CliV4b+"\n"+l.CliV4+"\n")
	d.WaitLog("policy reloaded")
	expectPorts(t, l, l.CliV4, l.SrvV4, map[int]string{8022: "filtered"})
}
