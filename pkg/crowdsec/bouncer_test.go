package crowdsec

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

var ctx = context.Background()

// expectCall checks the one apply call since the last check.
func expectCall(t *testing.T, rec *recorder, added, deleted string) {
	t.Helper()
	calls := rec.take()
	if len(calls) != 1 {
		t.Fatalf("apply called %d times (%+v), want once", len(calls), calls)
	}
	if got := show(calls[0].added); got != added {
		t.Errorf("added:\n got %s\nwant %s", got, added)
	}
	if got := show(calls[0].deleted); got != deleted {
		t.Errorf("deleted:\n got %s\nwant %s", got, deleted)
	}
}

func expectNoCall(t *testing.T, rec *recorder) {
	t.Helper()
	if calls := rec.take(); len(calls) != 0 {
		t.Fatalf("apply called with %+v, want no call", calls)
	}
}

func TestBouncerAppliesTheStartupSetThenDeltas(t *testing.T) {
	f := newFakeLAPI(t)
	b, rec, clock := newTestBouncer(t, f, 10*time.Second)
	f.ban("Ip", "192.0.2.7", "59m59.5s")
	f.ban("Range", "198.51.100.0/24", "3h59m58.123s")
	f.ban("Ip", "2001:db8::1", "1h")
	f.ban("ip", "192.0.2.50", "1m")                // CAPI's lists once sent "ip"
	f.ban("RANGE", "10.9.8.7/16", "1m")            // masked
	f.ban("Ip", "::ffff:203.0.113.9", "1m")        // IPv4-mapped: IPv4
	f.ban("Range", "::ffff:203.0.114.0/120", "1m") // IPv4-mapped: IPv4
	f.add("captcha", "Ip", "192.0.2.8", "1h")      // not a ban
	f.ban("Country", "FR", "1h")                   // not a scope we enforce
	f.ban("Ip", "not-an-address", "1h")            // invalid ones: counted, skipped
	f.ban("Ip", "192.0.2.0/24", "1h")
	f.ban("Range", "300.1.1.1/8", "1h")
	f.ban("Ip", "fe80::1%eth0", "1h")
	f.ban("Ip", "192.0.2.60", "forever")
	f.ban("Ip", "192.0.2.61", "-1s") // already over: not banned

	if d := b.step(ctx); d != 10*time.Second {
		t.Errorf("next pull in %v, want the interval", d)
	}
	expectCall(t, rec, "Ip 192.0.2.50 1m0s, Ip 192.0.2.7 59m59.5s, Ip 2001:db8::1 1h0m0s, Ip 203.0.113.9 1m0s, "+
		"Range 10.9.0.0/16 1m0s, Range 198.51.100.0/24 3h59m58.123s, Range 203.0.114.0/24 1m0s", "")
	s := b.Stats()
	if s.Decisions != 7 || s.Pulls != 1 || s.Resyncs != 1 || s.Invalid != 5 || s.Ignored != 2 || !s.LastSuccess.Equal(clock.now()) || s.LastError != "" {
		t.Errorf("stats %+v", s)
	}

	clock.advance(10 * time.Second)
	b.step(ctx) // nothing changed
	expectNoCall(t, rec)

	clock.advance(10 * time.Second)
	f.ban("Ip", "192.0.2.99", "4h")
	f.del("192.0.2.7")
	f.del("10.9.8.7/16") // deleted as the LAPI holds it, unmasked
	b.step(ctx)
	expectCall(t, rec, "Ip 192.0.2.99 4h0m0s", "Ip 192.0.2.7 59m59.5s, Range 10.9.0.0/16 1m0s")
	if got := f.pulled(); got != "SDD" {
		t.Errorf("pulls %s, want a startup pull then deltas", got)
	}
	if s := b.Stats(); s.Decisions != 6 || s.Pulls != 3 || s.Resyncs != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestBouncerResyncsAfterAnOutage(t *testing.T) {
	f := newFakeLAPI(t)
	b, rec, _ := newTestBouncer(t, f, 10*time.Second)
	f.ban("Ip", "192.0.2.1", "1h")
	f.ban("Ip", "192.0.2.2", "1h")
	b.step(ctx)
	expectCall(t, rec, "Ip 192.0.2.1 1h0m0s, Ip 192.0.2.2 1h0m0s", "")

	// The LAPI goes away; a deletion is made, and its delta is lost with
	// the answer that carried it.
	f.set(func(f *fakeLAPI) { f.down = true })
	f.del("192.0.2.1")
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		if d := b.step(ctx); d != want {
			t.Errorf("attempt %d: retry in %v, want %v", i+1, d, want)
		}
	}
	expectNoCall(t, rec)
	s := b.Stats()
	if s.Decisions != 2 || s.Errors[causeUnreachable] != 3 || s.Failing != 3 || !strings.Contains(s.LastError, "EOF") {
		t.Errorf("stats while down %+v: the decisions must be kept, the errors counted", s)
	}

	// Back, with one more decision: a startup pull brings both changes.
	f.ban("Range", "198.51.100.0/24", "1h")
	f.set(func(f *fakeLAPI) { f.down = false })
	if d := b.step(ctx); d != 10*time.Second {
		t.Errorf("after recovery next pull in %v, want the interval", d)
	}
	expectCall(t, rec, "Range 198.51.100.0/24 1h0m0s", "Ip 192.0.2.1 1h0m0s")
	if got := f.pulled(); got != "SS" {
		t.Errorf("pulls %s, want a startup pull after the outage", got)
	}
	s = b.Stats()
	if s.Decisions != 2 || s.Resyncs != 2 || s.Failing != 0 || s.Errors[causeUnreachable] != 3 {
		t.Errorf("stats after recovery %+v", s)
	}
	b.step(ctx)
	expectNoCall(t, rec)
	if got := f.pulled(); got != "SSD" {
		t.Errorf("pulls %s, want deltas again", got)
	}
}

func TestBouncerKeepsItsBansWhenTheLAPIRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(f *fakeLAPI)
		cause  string
		says   string
	}{
		{"wrong key", func(f *fakeLAPI) { f.key = "revoked" }, causeAuth, "403 Forbidden"},
		{"unavailable", func(f *fakeLAPI) { f.status, f.body = 503, "maintenance" }, causeStatus, `503 Service Unavailable: "maintenance"`},
		{"malformed", func(f *fakeLAPI) { f.script = []string{`{"new":[{"id":`} }, causeResponse, "not a decision stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeLAPI(t)
			b, rec, clock := newTestBouncer(t, f, 10*time.Second)
			f.ban("Ip", "192.0.2.1", "1h")
			b.step(ctx)
			rec.take()
			f.set(tc.break_)
			f.del("192.0.2.1")
			clock.advance(time.Minute)
			b.step(ctx)
			expectNoCall(t, rec)
			s := b.Stats()
			if s.Decisions != 1 || s.Errors[tc.cause] != 1 || !strings.Contains(s.LastError, tc.says) || !s.LastErrorAt.Equal(clock.now()) {
				t.Errorf("stats %+v: want the ban kept, one %s error saying %q", s, tc.cause, tc.says)
			}
			for c, n := range s.Errors {
				if c != tc.cause && n != 0 {
					t.Errorf("%d errors counted as %s", n, c)
				}
			}
			f.set(func(f *fakeLAPI) { f.key, f.status, f.body, f.script = fakeKey, 0, "", nil })
			b.step(ctx)
			expectCall(t, rec, "", "Ip 192.0.2.1 1h0m0s")
		})
	}
}

func TestBouncerOffersAFailedApplyAgain(t *testing.T) {
	f := newFakeLAPI(t)
	b, rec, _ := newTestBouncer(t, f, 10*time.Second)
	f.ban("Ip", "192.0.2.1", "1h")
	b.step(ctx)
	rec.take()

	f.ban("Ip", "192.0.2.2", "1h")
	f.del("192.0.2.1")
	rec.err = errors.New("ban map full")
	if d := b.step(ctx); d != time.Second {
		t.Errorf("retry in %v, want the first backoff", d)
	}
	expectCall(t, rec, "Ip 192.0.2.2 1h0m0s", "Ip 192.0.2.1 1h0m0s")
	s := b.Stats()
	if s.Errors[causeApply] != 1 || !strings.Contains(s.LastError, "ban map full") || s.Decisions != 1 || s.Pulls != 1 {
		t.Errorf("stats %+v: the failed changes must not count as made", s)
	}

	rec.err = nil
	b.step(ctx) // the delta was consumed: only a startup pull has it
	expectCall(t, rec, "Ip 192.0.2.2 1h0m0s", "Ip 192.0.2.1 1h0m0s")
	if got := f.pulled(); got != "SDS" {
		t.Errorf("pulls %s", got)
	}
	if s := b.Stats(); s.Decisions != 1 || s.Pulls != 2 || s.Failing != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestBouncerHoldsOneBanPerValue(t *testing.T) {
	f := newFakeLAPI(t)
	b, rec, clock := newTestBouncer(t, f, 10*time.Second)
	f.set(func(f *fakeLAPI) {
		f.script = []string{
			// The same value twice: the longer wins.
			`{"new":[{"id":5,"scope":"Ip","value":"192.0.2.9","type":"ban","duration":"5m"},{"id":6,"scope":"Ip","value":"192.0.2.9","type":"ban","duration":"10m"}]}`,
			// Sent again, its end unchanged: nothing to do.
			`{"new":[{"id":6,"scope":"Ip","value":"192.0.2.9","type":"ban","duration":"9m50.3s"}]}`,
			// Another decision became the longest: it replaces the end.
			`{"new":[{"id":7,"scope":"Ip","value":"192.0.2.9","type":"ban","duration":"2m"}]}`,
			// A deletion names a decision never sent: it still ends the
			// value's ban (the LAPI sends one per value).
			`{"deleted":[{"id":5,"scope":"Ip","value":"192.0.2.9","type":"ban","duration":"-1s"}]}`,
			// Deleted and added again within one interval: banned.
			`{"new":[{"id":8,"scope":"Ip","value":"192.0.2.10","type":"ban","duration":"1m"}]}`,
			`{"deleted":[{"id":8,"scope":"Ip","value":"192.0.2.10","type":"ban","duration":"-1s"}],"new":[{"id":9,"scope":"Ip","value":"192.0.2.10","type":"ban","duration":"3m"}]}`,
			// A deletion of something never held is nobody's business.
			`{"deleted":[{"id":99,"scope":"Ip","value":"192.0.2.99","type":"ban","duration":"-1s"}]}`,
		}
	})
	b.step(ctx)
	expectCall(t, rec, "Ip 192.0.2.9 10m0s", "")
	clock.advance(10 * time.Second)
	b.step(ctx)
	expectNoCall(t, rec)
	b.step(ctx)
	expectCall(t, rec, "Ip 192.0.2.9 2m0s", "")
	b.step(ctx)
	expectCall(t, rec, "", "Ip 192.0.2.9 2m0s")
	b.step(ctx)
	expectCall(t, rec, "Ip 192.0.2.10 1m0s", "")
	b.step(ctx)
	expectCall(t, rec, "Ip 192.0.2.10 3m0s", "")
	b.step(ctx)
	expectNoCall(t, rec)
	if s := b.Stats(); s.Decisions != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestBouncerEndsBansThatExpired(t *testing.T) {
	f := newFakeLAPI(t)
	b, rec, clock := newTestBouncer(t, f, 10*time.Second)
	f.ban("Ip", "192.0.2.1", "1m")
	f.ban("Ip", "192.0.2.2", "1h")
	b.step(ctx)
	rec.take()
	clock.advance(59 * time.Second)
	b.step(ctx)
	expectNoCall(t, rec)
	clock.advance(time.Second)
	b.step(ctx) // the LAPI has not said so yet
	expectCall(t, rec, "", "Ip 192.0.2.1 1m0s")
	f.del("192.0.2.1") // now it does
	b.step(ctx)
	expectNoCall(t, rec)
	if s := b.Stats(); s.Decisions != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestBouncerBacksOffExponentially(t *testing.T) {
	for _, tc := range []struct {
		interval time.Duration
		want     []time.Duration // after 1, 2, ... failures in a row
	}{
		{10 * time.Second, []time.Duration{1e9, 2e9, 4e9, 8e9, 16e9, 32e9, 60e9, 60e9}},
		{200 * time.Millisecond, []time.Duration{2e8, 4e8, 8e8, 16e8, 32e8, 64e8, 128e8, 256e8, 512e8, 60e9, 60e9}},
		{5 * time.Minute, []time.Duration{1e9, 2e9, 4e9, 8e9, 16e9, 32e9, 64e9, 128e9, 256e9, 300e9, 300e9}},
	} {
		b := NewBouncer(&Client{}, tc.interval, nil, nil)
		for i, want := range tc.want {
			if got := b.backoff(i + 1); got != want {
				t.Errorf("interval %v, %d failures: backoff %v, want %v", tc.interval, i+1, got, want)
			}
		}
		if got := b.backoff(1000); got != tc.want[len(tc.want)-1] {
			t.Errorf("interval %v, 1000 failures: backoff %v", tc.interval, got)
		}
	}
}

// Run, its waits recorded instead of waited: a startup pull, the LAPI down
// for a while, back, deltas at the interval.
func TestBouncerRunWaitsTheIntervalOrTheBackoff(t *testing.T) {
	f := newFakeLAPI(t)
	b, rec, clock := newTestBouncer(t, f, 10*time.Second)
	f.ban("Ip", "192.0.2.1", "1h")
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits []time.Duration
	b.sleep = func(c context.Context, d time.Duration) error {
		waits = append(waits, d)
		clock.advance(d)
		switch len(waits) {
		case 2:
			f.set(func(f *fakeLAPI) { f.down = true })
		case 6:
			f.set(func(f *fakeLAPI) { f.down = false })
		case 8:
			cancel()
		}
		return c.Err()
	}
	b.Run(runCtx)
	want := []time.Duration{10e9, 10e9, 1e9, 2e9, 4e9, 8e9, 10e9, 10e9}
	if len(waits) != len(want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
	if got := f.pulled(); got != "SDSD" {
		t.Errorf("pulls %s", got)
	}
	expectCall(t, rec, "Ip 192.0.2.1 1h0m0s", "")
	if s := b.Stats(); s.Errors[causeUnreachable] != 4 || s.Pulls != 4 || s.Resyncs != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestBouncerRunStopsWithItsContext(t *testing.T) {
	f := newFakeLAPI(t)
	b, _, _ := newTestBouncer(t, f, time.Hour)
	runCtx, cancel := context.WithCancel(context.Background())
	b.sleep = sleepCtx
	done := make(chan struct{})
	go func() { b.Run(runCtx); close(done) }()
	cancel()
	<-done // would hang on an hour's wait that ignores the context
}

func TestStatsIsACopy(t *testing.T) {
	b := NewBouncer(&Client{}, 0, nil, nil)
	s := b.Stats()
	for _, c := range causes {
		if _, ok := s.Errors[c]; !ok {
			t.Errorf("cause %s missing: metrics want every series from the start", c)
		}
	}
	s.Errors[causeAuth] = 7
	if b.Stats().Errors[causeAuth] != 0 {
		t.Error("Stats shares its map")
	}
	if b.interval != defaultInterval {
		t.Errorf("interval %v", b.interval)
	}
}

// A daemon restarted while a decision was deleted: the bans it finds in
// the kernel are held, and the first startup pull deletes the one the LAPI
// no longer has and re-adds the rest.
func TestBouncerHoldsTheBansOfAnEarlierRun(t *testing.T) {
	f := newFakeLAPI(t)
	b, rec, _ := newTestBouncer(t, f, 10*time.Second)
	f.ban("Ip", "192.0.2.7", "1h")
	b.Hold([]Decision{
		{Scope: "Ip", Value: "192.0.2.7", Type: "ban", Duration: 50 * time.Minute},
		{Scope: "Range", Value: "198.51.100.0/24", Type: "ban", Duration: time.Hour},
		{Scope: "Ip", Value: "192.0.2.8", Type: "ban", Duration: -time.Second}, // over: not held
	})
	if s := b.Stats(); s.Decisions != 2 {
		t.Fatalf("held %d decisions, want 2", s.Decisions)
	}
	b.step(ctx)
	expectCall(t, rec, "Ip 192.0.2.7 1h0m0s", "Range 198.51.100.0/24 1h0m0s")
	if s := b.Stats(); s.Decisions != 1 {
		t.Errorf("stats %+v", s)
	}
}
