package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCrowdSecSection(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	doc := "tcp:\n  allow: [22]\ncrowdsec:\n  url: http://127.0.0.1:8080/\n  api_key_file: keys/bouncer.key\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c := p.CrowdSec
	if c == nil || c.URL != "http://127.0.0.1:8080/" || c.APIKeyFile != filepath.Join(dir, "keys/bouncer.key") || c.Interval != 10*time.Second {
		t.Fatalf("crowdsec %+v: want the URL, the key file beside the policy, 10s", c)
	}
	again, err := Parse("again", p.Marshal())
	if err != nil || *again.CrowdSec != *c {
		t.Errorf("written back: %v, %+v\n%s", err, again.CrowdSec, p.Marshal())
	}

	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		content string
		mode    os.FileMode
		want    string // "" for the key
	}{
		{"  0123abcd\n", 0o600, ""},
		{"0123abcd", 0o644, "lets every user read the key: chmod o-r"},
		{"", 0o600, "empty"},
		{"a b\n", 0o600, "more than one word"},
		{strings.Repeat("k", 5000), 0o600, "larger than 4096 bytes"},
	} {
		kf := filepath.Join(dir, "keys", "bouncer.key")
		os.Remove(kf)
		if err := os.WriteFile(kf, []byte(tc.content), tc.mode); err != nil {
			t.Fatal(err)
		}
		key, err := c.APIKey()
		switch {
		case tc.want == "" && (err != nil || key != "0123abcd"):
			t.Errorf("key %q: %q, %v", tc.content, key, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), kf)):
			t.Errorf("key %q mode %o: %v, want an error naming %s: %s", tc.content, tc.mode, err, kf, tc.want)
		}
	}
	os.Remove(filepath.Join(dir, "keys", "bouncer.key"))
	if _, err := c.APIKey(); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing key file: %v", err)
	}
}

func TestCrowdSecErrors(t *testing.T) {
	const head = "tcp:\n  allow: [22]\ncrowdsec:\n"
	for _, tc := range []struct{ doc, at, field, msg string }{
		{head + "  api_key_file: k\n", "3:1", "crowdsec.url", "required"},
		{head + "  url: ftp://x/\n  api_key_file: k\n", "4:3", "crowdsec.url", "want an http:// or https:// address"},
		{head + "  url: http://user:secret@x/\n  api_key_file: k\n", "4:3", "crowdsec.url", "carries user info"},
		{head + "  url: http:///v1\n  api_key_file: k\n", "4:3", "crowdsec.url", "has no host"},
		{head + "  url: http://x/\n", "3:1", "crowdsec.api_key_file", "required"},
		{head + "  url: http://lapi.example/\n  api_key_file: k\n", "4:3", "crowdsec.url", "would cross the network in clear: use https://"},
		{head + "  url: http://10.0.0.5:8080/\n  api_key_file: k\n", "4:3", "crowdsec.url", "would cross the network in clear"},
		{head + "  url: https://x/\n  api_key_file: k\n  interval: 100ms\n", "6:3", "crowdsec.interval", "100ms is out of range [1s, 1h0m0s]"},
		{head + "  url: http://localhost:8080/\n  api_key_file: k\n  interval: often\n", "6:3", "crowdsec.interval", "is not a duration"},
		{head + "  url: http://[::1]:8080/\n  api_key_file: k\n  key: abc\n", "6:3", "crowdsec.key", "unknown field"},
	} {
		_, err := Parse("p.yaml", []byte(tc.doc))
		want := "p.yaml:" + tc.at
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: %v, want %s: %s: %s", tc.doc, err, want, tc.field, tc.msg)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the error quotes the password: %v", err)
		}
	}
}
