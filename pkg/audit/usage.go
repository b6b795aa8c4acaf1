package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// DefaultUsagePath is where the daemon keeps each rule's last hit: beside
// the change history, in the unit's StateDirectory.
const DefaultUsagePath = "/var/lib/xdpguard/rule-usage.json"

// maxUsageFile bounds what LoadUsage reads: a record per rule name, and a
// policy has at most 1,024 rule slots.
const maxUsageFile = 4 << 20

// UsageRecord is the state file the daemon keeps from the per-rule
// counters, across restarts: when the record began, and for each rule
// name of the policy when it first appeared and when its counters last
// moved. Usage turns it into the audit's input.
type UsageRecord struct {
	Since time.Time             `json:"since"`
	Rules map[string]*RuleUsage `json:"rules"`
}

// RuleUsage is one rule name's record.
type RuleUsage struct {
	FirstSeen time.Time `json:"first_seen"`
	// LastHit is when an observation found its counters moved (zero:
	// never, since FirstSeen).
	LastHit time.Time `json:"last_hit,omitzero"`
	// Count is passed + dropped + monitored, summed over interfaces, at
	// the last observation.
	Count uint64 `json:"count"`
}

// LoadUsage reads the record at path; a missing file is an empty record
// (Since zero), any other problem an error.
func LoadUsage(path string) (*UsageRecord, error) {
	u := &UsageRecord{Rules: map[string]*RuleUsage{}}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return u, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() || fi.Size() > maxUsageFile {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", path, maxUsageFile)
	}
	if err := json.NewDecoder(f).Decode(u); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if u.Rules == nil {
		u.Rules = map[string]*RuleUsage{}
	}
	for n, r := range u.Rules {
		if r == nil {
			delete(u.Rules, n)
		}
	}
	return u, nil
}

// Observe records the counters read at now: counts holds each rule
// name's passed + dropped + monitored (names with no counters read are
// left as they were), names the policy's rule names (others are dropped
// from the record). A name's counters moving is a hit; a name first seen
// starts from its counters then (what it counted before is of unknown
// date). A counter that went down (a table created afresh) is a hit if it
// is not zero. It reports whether the record changed.
func (u *UsageRecord) Observe(names []string, counts map[string]uint64, now time.Time) bool {
	changed := false
	if u.Since.IsZero() {
		u.Since, changed = now, true
	}
	keep := map[string]bool{}
	for _, n := range names {
		keep[n] = true
		c, read := counts[n]
		r := u.Rules[n]
		switch {
		case r == nil:
			u.Rules[n] = &RuleUsage{FirstSeen: now, Count: c}
			changed = true
		case !read || c == r.Count:
		default:
			if c > 0 { // moved up, or counting again after a reset
				r.LastHit = now
			}
			r.Count, changed = c, true
		}
	}
	for n := range u.Rules {
		if !keep[n] {
			delete(u.Rules, n)
			changed = true
		}
	}
	return changed
}

// Usage is the record as the audit's input.
func (u *UsageRecord) Usage() Usage {
	out := Usage{Since: u.Since, LastHit: map[string]time.Time{}, FirstSeen: map[string]time.Time{}}
	for n, r := range u.Rules {
		if !r.LastHit.IsZero() {
			out.LastHit[n] = r.LastHit
		}
		if r.FirstSeen.After(u.Since) {
			out.FirstSeen[n] = r.FirstSeen
		}
	}
	return out
}

// Save writes the record to path atomically and durably (a temporary file
// beside it, fsync, rename), 0600.
func (u *UsageRecord) Save(path string) error {
	b, err := json.MarshalIndent(u, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // gone after the rename
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// RuleNames are the names of p's allow rules (TCP and UDP, open to all and
// scoped), each once, in file order: what a UsageRecord keeps.
func RuleNames(p *policy.Policy) []string {
	var out []string
	seen := map[string]bool{}
	for _, rs := range [][]policy.Rule{p.Open, p.Scoped} {
		for _, r := range rs {
			if !seen[r.Name] {
				seen[r.Name] = true
				out = append(out, r.Name)
			}
		}
	}
	return out
}
