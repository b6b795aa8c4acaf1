package policy

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// Netset files as FireHOL and Spamhaus write them: comments of both kinds,
// blank lines, CRLF ends, addresses and CIDRs of both families; several
// lists and the inline entries make one union, nothing inside another.
func TestListFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "firehol.netset"), `#
# firehol_level1
#
1.0.0.0/24
2.56.192.0/22
198.51.100.7
`, 0o644)
	writeFile(t, filepath.Join(dir, "drop.txt"), "; Spamhaus DROP List\r\n2.56.192.0/24 ; SBL1\r\n\r\n203.0.113.0/24 ; SBL2\r\n2001:db8:bad::/48\r\n", 0o644)
	writeFile(t, filepath.Join(dir, "office.txt"), "192.0.2.0/28   # the office\n", 0o644)
	path := filepath.Join(dir, "policy.yaml")
	writeFile(t, path, `tcp:
  allow: [22]
sources:
  deny: [1.0.0.5, 100.64.0.0/10]
  deny_lists: [firehol.netset, drop.txt]
  trust_lists: [office.txt]
`, 0o644)
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "[1.0.0.0/24 2.56.192.0/22 100.64.0.0/10 198.51.100.7/32 203.0.113.0/24 2001:db8:bad::/48]"
	if got := fmt.Sprint(p.Deny); got != want {
		t.Errorf("denied %s\nwant   %s", got, want)
	}
	if fmt.Sprint(p.Trust) != "[192.0.2.0/28]" || fmt.Sprint(p.DenyInline) != "[1.0.0.5/32 100.64.0.0/10]" {
		t.Errorf("trusted %v, inline %v", p.Trust, p.DenyInline)
	}
	if fmt.Sprint(p.DenyLists) != fmt.Sprintf("[{firehol.netset 3 %s/firehol.netset} {drop.txt 3 %[1]s/drop.txt}]", dir) {
		t.Errorf("lists %v", p.DenyLists)
	}
	if got := fmt.Sprint(ListFilesOf(path)); got != fmt.Sprint(p.ListFiles()) || len(p.ListFiles()) != 3 {
		t.Errorf("list files read leniently %s, by the policy %v", got, p.ListFiles())
	}
	for addr, want := range map[string]bool{"2.56.195.1": true, "2.56.196.1": false, "2001:db8:bad:1::1": true, "198.51.100.8": false} {
		if inSorted(p.Deny, netip.MustParseAddr(addr)) != want {
			t.Errorf("%s denied: want %v", addr, want)
		}
	}

	// Written back: the list files, not their entries.
	out := string(p.Marshal())
	if !strings.Contains(out, `deny_lists: ["firehol.netset", "drop.txt"]`) || strings.Contains(out, "203.0.113.0") {
		t.Errorf("marshalled:\n%s", out)
	}
	again, err := Parse(filepath.Join(dir, "again.yaml"), []byte(out))
	if err != nil || again.Digest() != p.Digest() {
		t.Errorf("round trip: %v", err)
	}

	// A list's content is part of the policy's meaning.
	writeFile(t, filepath.Join(dir, "drop.txt"), "203.0.113.0/24\n", 0o644)
	changed, err := Load(path)
	if err != nil || changed.Digest() == p.Digest() {
		t.Errorf("a list changed, the digest did not (%v)", err)
	}
}

// Every bad line is an error naming the list file and its line; a list
// others may write, a missing one, a trusted source inside a denied one,
// each name their file.
func TestListFileErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bad.netset"), "1.2.3.0/24\n10.0.0.1/8\nnot-an-address\n\n::ffff:1.2.3.4\n", 0o644)
	writeFile(t, filepath.Join(dir, "open.netset"), "1.2.3.0/24\n", 0o666)
	writeFile(t, filepath.Join(dir, "deny.netset"), "# deny\n10.0.0.0/8\n", 0o644)
	writeFile(t, filepath.Join(dir, "trust.netset"), "192.0.2.1\n\n10.1.2.0/24\n", 0o644)
	fifo := filepath.Join(dir, "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sources string
		want    []string
	}{
		{"deny_lists: [bad.netset]", []string{
			filepath.Join(dir, "bad.netset") + ":2:1: sources.deny_lists[0]: \"10.0.0.1/8\" has host bits set: did you mean 10.0.0.0/8?",
			filepath.Join(dir, "bad.netset") + ":3:1: sources.deny_lists[0]: \"not-an-address\" is not an address or CIDR",
			filepath.Join(dir, "bad.netset") + ":5:1: sources.deny_lists[0]: \"::ffff:1.2.3.4\" is an IPv4-mapped IPv6 address",
		}},
		{"deny_lists: [open.netset]", []string{"sources.deny_lists[0]: " + filepath.Join(dir, "open.netset") + ": mode 0666 lets others write it"}},
		{"trust_lists: [missing.netset]", []string{"sources.trust_lists[0]: open " + filepath.Join(dir, "missing.netset") + ": no such file"}},
		{"deny_lists: [fifo]", []string{"not a regular file"}},
		{"deny_lists: [deny.netset, deny.netset]", []string{"sources.deny_lists[1]: deny.netset is listed twice"}},
		{"deny_lists: [deny.netset]\n  trust_lists: [trust.netset]", []string{
			filepath.Join(dir, "trust.netset") + ":3:1: sources.trust_lists: 10.1.2.0/24 overlaps denied 10.0.0.0/8 (" + filepath.Join(dir, "deny.netset") + ":2)"}},
		{"deny_lists: [deny.netset]\n  trust: [10.9.0.0/16]", []string{"sources.trust: 10.9.0.0/16 overlaps denied 10.0.0.0/8 (" + filepath.Join(dir, "deny.netset") + ":2)"}},
	} {
		path := filepath.Join(dir, "policy.yaml")
		writeFile(t, path, "tcp:\n  allow: [22]\nsources:\n  "+tc.sources+"\n", 0o644)
		_, err := Load(path)
		if err == nil {
			t.Errorf("%s: loaded", tc.sources)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s:\n%v\nwant %s", tc.sources, err, w)
			}
		}
	}
}

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o644) }
