package crowdsec

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Bouncer keeps the ban decisions of a LAPI: it pulls the stream every
// interval and hands apply what changed. Create it with NewBouncer, run it
// with Run (once), read it with Stats (from any goroutine).
type Bouncer struct {
	client   *Client
	interval time.Duration
	apply    func(added, deleted []Decision) error
	log      *slog.Logger

	// The clock and the wait between pulls; the tests replace them.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	// Run's own: the bans held (by Scope and canonical Value), whether the
	// next pull must be a startup pull, failed attempts in a row.
	held     map[string]held
	resync   bool
	failures int

	mu    sync.Mutex
	stats Stats
}

type held struct {
	d      Decision
	expiry time.Time
}

// Stats is what a Bouncer has done, for metrics and status.
type Stats struct {
	// Decisions is the ban decisions held: distinct addresses and ranges,
	// as of the last pull that succeeded (kept while the LAPI is away).
	Decisions int
	// Pulls counts pulls that succeeded and were applied; Resyncs those of
	// them that were startup pulls (the first, and the first after each
	// failure).
	Pulls   uint64
	Resyncs uint64
	// Errors counts failed attempts by cause, every cause present:
	// "unreachable" (no answer: refused, reset, timed out), "auth" (401 or
	// 403: the API key), "status" (another answer than 200), "response" (a
	// 200 that is not a decision stream, or over the size bound), "apply"
	// (apply refused the changes).
	Errors map[string]uint64
	// Failing is the failed attempts since the last success: 0 when in
	// step with the LAPI.
	Failing int
	// Invalid counts ban decisions of scope Ip or Range skipped for their
	// value (not an address, not a prefix, a zone) or their duration;
	// Ignored those of another type (captcha, ...) or scope (Country, ...).
	// Both count again at each startup pull.
	Invalid uint64
	Ignored uint64
	// LastSuccess is when the last pull that succeeded ended (zero before
	// the first); LastError and LastErrorAt the last failure ("" before
	// the first).
	LastSuccess time.Time
	LastError   string
	LastErrorAt time.Time
}

var causes = []string{causeUnreachable, causeAuth, causeStatus, causeResponse, causeApply}

const (
	// defaultInterval is CrowdSec's own bouncers' default.
	defaultInterval = 10 * time.Second
	// maxBackoff caps the wait between failed attempts (unless the
	// interval is longer: a failing LAPI is never tried less often than a
	// healthy one is pulled).
	maxBackoff = time.Minute
	// pullTimeout bounds a pull whatever the Client's HTTP timeout.
	pullTimeout = 2 * time.Minute
	// sameExpiry: a decision pulled again (a startup pull, or a delta the
	// LAPI sends twice) whose end moved less than this is not applied again.
	sameExpiry = time.Second
)

// NewBouncer makes a Bouncer that pulls c every interval (10s if not
// positive) and calls apply with the changes to the bans it holds, ban
// decisions of scope Ip and Range only:
//
//   - added: ban Value until Duration from now, replacing the end of any
//     ban of that value (a new value, or the LAPI's longest decision for a
//     held value changed);
//   - deleted: no decision is left on Value (deleted, expired, or absent
//     from a startup pull): remove its ban. Deleted decisions are as they
//     were added.
//
// apply is not called when nothing changed. If it returns an error, none of
// the changes count as made: the Bouncer backs off and resynchronises
// with a startup pull, offering them again, so apply must be idempotent.
// log nil logs nothing.
func NewBouncer(c *Client, interval time.Duration, apply func(added, deleted []Decision) error, log *slog.Logger) *Bouncer {
	if interval <= 0 {
		interval = defaultInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bouncer{
		client:   c,
		interval: interval,
		apply:    apply,
		log:      log,
		now:      time.Now,
		sleep:    sleepCtx,
		held:     map[string]held{},
		resync:   true,
		stats:    Stats{Errors: map[string]uint64{}},
	}
	for _, c := range causes {
		b.stats.Errors[c] = 0
	}
	return b
}

// Hold makes the Bouncer start from bans already in force, a previous
// run's kept in the kernel (Duration: the time they have left): the first
// startup pull deletes those the LAPI no longer holds (deleted while no
// bouncer ran) and re-adds the others. Call it before Run.
func (b *Bouncer) Hold(ds []Decision) {
	now := b.now()
	for _, d := range ds {
		if c, v := canonical(d, false); v == enforce && d.Duration > 0 {
			b.held[key(c)] = held{c, now.Add(c.Duration)}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.Decisions = len(b.held)
}

// Run pulls until ctx is done: a startup pull first, then deltas every
// interval. On a failure (the LAPI down or refusing, a bad answer, apply
// failing) it keeps the bans held, waits longer after each failure in a
// row (from the interval or 1s, whichever is shorter, doubling up to a
// minute), and resynchronises with a startup pull once the LAPI answers:
// what was deleted meanwhile is then deleted. Call it once.
func (b *Bouncer) Run(ctx context.Context) {
	for ctx.Err() == nil {
		d := b.step(ctx)
		if ctx.Err() != nil || b.sleep(ctx, d) != nil {
			return
		}
	}
}

// Stats is a copy of the Bouncer's counters.
func (b *Bouncer) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.stats
	s.Errors = make(map[string]uint64, len(b.stats.Errors))
	for k, v := range b.stats.Errors {
		s.Errors[k] = v
	}
	return s
}

// step pulls once and applies the changes; it returns the wait before the
// next pull.
func (b *Bouncer) step(ctx context.Context) time.Duration {
	startup := b.resync
	pctx, cancel := context.WithTimeout(ctx, pullTimeout)
	newDs, delDs, err := b.client.Stream(pctx, startup)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		return b.failed(err)
	}
	now := b.now()
	var nInvalid, nIgnored uint64
	keep := func(ds []Decision, needDuration bool) []Decision {
		out := ds[:0:0]
		for _, d := range ds {
			c, v := canonical(d, needDuration)
			switch v {
			case enforce:
				out = append(out, c)
			case invalid:
				nInvalid++
			case ignore:
				nIgnored++
			}
		}
		return out
	}
	newDs, delDs = keep(newDs, true), keep(delDs, false)

	// touched: the new state of each key that may change; nil removes it.
	touched := map[string]*held{}
	if startup {
		// The snapshot is the whole truth: what it lacks is gone.
		for k := range b.held {
			touched[k] = nil
		}
	}
	for _, d := range delDs {
		touched[key(d)] = nil
	}
	for _, d := range newDs {
		k := key(d)
		if d.Duration <= 0 {
			if !startup {
				touched[k] = nil
			}
			continue
		}
		h := &held{d, now.Add(d.Duration)}
		if o := touched[k]; o != nil && !h.expiry.After(o.expiry) {
			continue // the same value twice: the longer wins
		}
		touched[k] = h
	}
	for k, h := range b.held { // ended while nobody said so
		if _, ok := touched[k]; !ok && !h.expiry.After(now) {
			touched[k] = nil
		}
	}

	var added, deleted []Decision
	for k, h := range touched {
		o, had := b.held[k]
		switch {
		case h == nil && had:
			deleted = append(deleted, o.d)
		case h == nil:
			delete(touched, k)
		case had && o.d.ID == h.d.ID && absDuration(o.expiry.Sub(h.expiry)) < sameExpiry:
			delete(touched, k) // nothing new: keep the end first computed
		default:
			added = append(added, h.d)
		}
	}
	if len(added)+len(deleted) > 0 {
		byValue := func(a, b Decision) int { return cmp.Or(cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.Value, b.Value)) }
		slices.SortFunc(added, byValue)
		slices.SortFunc(deleted, byValue)
		if err := b.apply(added, deleted); err != nil {
			return b.failed(&streamError{causeApply, fmt.Errorf("crowdsec: applying %d new and %d deleted decisions: %w", len(added), len(deleted), err)})
		}
	}
	for k, h := range touched {
		if h == nil {
			delete(b.held, k)
		} else {
			b.held[k] = *h
		}
	}

	if b.failures > 0 {
		b.log.Info("crowdsec: in step with the LAPI again", "failed_attempts", b.failures, "decisions", len(b.held))
	}
	if len(added)+len(deleted) > 0 {
		b.log.Info("crowdsec: decisions applied", "startup", startup, "added", len(added), "deleted", len(deleted),
			"decisions", len(b.held), "invalid", nInvalid)
	} else {
		b.log.Debug("crowdsec: pulled, nothing changed", "startup", startup, "decisions", len(b.held), "invalid", nInvalid)
	}
	b.resync, b.failures = false, 0
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.Decisions = len(b.held)
	b.stats.Pulls++
	if startup {
		b.stats.Resyncs++
	}
	b.stats.Failing = 0
	b.stats.Invalid += nInvalid
	b.stats.Ignored += nIgnored
	b.stats.LastSuccess = now
	return b.interval
}

// failed counts a failed attempt, arms the resynchronisation and returns
// the backoff.
func (b *Bouncer) failed(err error) time.Duration {
	b.resync = true
	b.failures++
	cause := causeStatus
	var se *streamError
	if errors.As(err, &se) {
		cause = se.cause
	}
	wait := b.backoff(b.failures)
	b.log.Warn("crowdsec: pull failed, keeping the decisions held", "cause", cause, "err", err,
		"failed_attempts", b.failures, "retry_in", wait, "decisions", len(b.held))
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.Errors[cause]++
	b.stats.Failing = b.failures
	b.stats.LastError = err.Error()
	b.stats.LastErrorAt = b.now()
	return wait
}

// backoff is the wait after n failed attempts in a row.
func (b *Bouncer) backoff(n int) time.Duration {
	d, limit := min(b.interval, time.Second), max(b.interval, maxBackoff)
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

type verdict int

const (
	enforce verdict = iota
	invalid         // a ban of scope Ip or Range that cannot be enforced
	ignore          // not a ban, or another scope
)

// canonical checks a decision and puts its scope and value in canonical
// form: "Ip" with an address (IPv4-mapped IPv6 as IPv4), "Range" with a
// masked prefix (IPv4-mapped too).
func canonical(d Decision, needDuration bool) (Decision, verdict) {
	if !strings.EqualFold(d.Type, "ban") {
		return d, ignore
	}
	switch {
	case strings.EqualFold(d.Scope, "ip"):
		a, err := netip.ParseAddr(d.Value)
		if err != nil || a.Zone() != "" {
			return d, invalid
		}
		d.Scope, d.Value = "Ip", a.Unmap().String()
	case strings.EqualFold(d.Scope, "range"):
		p, err := netip.ParsePrefix(d.Value)
		if err != nil {
			return d, invalid
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		d.Scope, d.Value = "Range", p.Masked().String()
	default:
		return d, ignore
	}
	if needDuration && d.durationErr != nil {
		return d, invalid
	}
	d.Type = "ban"
	return d, enforce
}

func key(d Decision) string { return d.Scope + " " + d.Value }

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
