package policy

import (
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CrowdSec is the crowdsec section: the daemon is a bouncer of this Local
// API, its ban decisions kernel bans. It changes no generation: the daemon
// restarts its bouncer when the section changes.
type CrowdSec struct {
	// URL is the LAPI's base address ("http://127.0.0.1:8080/").
	URL string
	// APIKeyFile holds the bouncer's key (`cscli bouncers add`): absolute,
	// or relative to the policy file's directory (Load resolves it).
	APIKeyFile string
	// Interval is the time between pulls of the decision stream.
	Interval time.Duration
}

// Bounds of crowdsec.interval: CrowdSec's bouncers default to 10s.
const (
	defaultCrowdSecInterval = 10 * time.Second
	minCrowdSecInterval     = time.Second
	maxCrowdSecInterval     = time.Hour
	// maxAPIKeyFile bounds the key file read: a key is 32 bytes or so.
	maxAPIKeyFile = 4096
)

type rawCrowdSec struct {
	URL        *string `yaml:"url"`
	APIKeyFile *string `yaml:"api_key_file"`
	Interval   *string `yaml:"interval"`
}

func (v *validator) crowdSec(raw *rawCrowdSec) *CrowdSec {
	if raw == nil {
		return nil
	}
	c := &CrowdSec{Interval: defaultCrowdSecInterval}
	switch {
	case raw.URL == nil || *raw.URL == "":
		v.fail("$.crowdsec.url", "required: the Local API's address, like http://127.0.0.1:8080/")
	default:
		u, err := url.Parse(*raw.URL)
		switch {
		case err != nil:
			v.fail("$.crowdsec.url", "%q is not a URL", *raw.URL)
		case u.Scheme != "http" && u.Scheme != "https":
			v.fail("$.crowdsec.url", "%q: want an http:// or https:// address", *raw.URL)
		case u.Host == "":
			v.fail("$.crowdsec.url", "%q has no host", *raw.URL)
		case u.User != nil:
			v.fail("$.crowdsec.url", "%q carries user info: the API key goes in api_key_file", redactURL(u))
		case u.RawQuery != "" || u.Fragment != "":
			v.fail("$.crowdsec.url", "%q: a query or fragment has no place in the LAPI's address", *raw.URL)
		case u.Scheme == "http" && !loopbackHost(u.Hostname()):
			v.fail("$.crowdsec.url", "%q: the API key would cross the network in clear: use https:// for a Local API on another host", *raw.URL)
		default:
			c.URL = *raw.URL
		}
	}
	if raw.APIKeyFile == nil || strings.TrimSpace(*raw.APIKeyFile) == "" {
		v.fail("$.crowdsec.api_key_file", "required: the file holding the bouncer's API key (cscli bouncers add NAME -o raw > FILE)")
	} else {
		c.APIKeyFile = *raw.APIKeyFile
	}
	if raw.Interval != nil {
		d, err := time.ParseDuration(*raw.Interval)
		switch {
		case err != nil:
			v.fail("$.crowdsec.interval", "%q is not a duration (like 10s, 1m)", *raw.Interval)
		case d < minCrowdSecInterval || d > maxCrowdSecInterval:
			v.fail("$.crowdsec.interval", "%s is out of range [%s, %s]", d, minCrowdSecInterval, maxCrowdSecInterval)
		default:
			c.Interval = d
		}
	}
	return c
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// resolve makes APIKeyFile absolute, relative to the policy file's dir.
func (c *CrowdSec) resolve(dir string) {
	if c != nil && !filepath.IsAbs(c.APIKeyFile) {
		c.APIKeyFile = filepath.Join(dir, c.APIKeyFile)
	}
}

// APIKey reads the bouncer's key from APIKeyFile: a regular file no other
// user can read (the key lets its holder read every decision), its one
// line trimmed.
func (c *CrowdSec) APIKey() (string, error) {
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("crowdsec.api_key_file: %s: %s", c.APIKeyFile, fmt.Sprintf(format, args...))
	}
	// O_NONBLOCK: a FIFO is refused below rather than waited on.
	f, err := os.OpenFile(c.APIKeyFile, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fail("%v", unwrapPath(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fail("%v", err)
	}
	switch {
	case !st.Mode().IsRegular():
		return fail("not a regular file")
	case st.Mode().Perm()&0o004 != 0:
		return fail("mode %#o lets every user read the key: chmod o-r", st.Mode().Perm())
	}
	if err := checkTrusted(st); err != nil {
		return fail("%v", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxAPIKeyFile+1))
	if err != nil {
		return fail("%v", err)
	}
	if len(b) > maxAPIKeyFile {
		return fail("larger than %d bytes: not an API key", maxAPIKeyFile)
	}
	key := strings.TrimSpace(string(b))
	switch {
	case key == "":
		return fail("empty")
	case strings.ContainsAny(key, "\r\n\t "):
		return fail("more than one word: the file holds the key alone")
	}
	return key, nil
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// yaml is the section as written in a policy file.
func (c *CrowdSec) yaml() string {
	return fmt.Sprintf("crowdsec:\n  url: %s\n  api_key_file: %s\n  interval: %s\n",
		strconv.Quote(c.URL), strconv.Quote(c.APIKeyFile), c.Interval)
}

// loopbackHost: a URL host that names this host's loopback.
func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}
