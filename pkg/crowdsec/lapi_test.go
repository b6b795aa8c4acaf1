package crowdsec

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/crowdseclab"
)

// The protocol and the bouncer against a real LAPI: Debian's crowdsec,
// started by the test (internal/crowdseclab).
func TestRealLAPI(t *testing.T) {
	lapi := crowdseclab.Start(t)

	t.Run("stream", func(t *testing.T) {
		c := &Client{URL: lapi.URL, APIKey: lapi.AddBouncer(t, "xdpguard-stream")}
		if _, _, err := c.Stream(context.Background(), true); err != nil {
			t.Fatal(err)
		}
		lapi.Cscli(t, "decisions", "add", "--ip", "192.0.2.1", "--duration", "1m")
		lapi.Cscli(t, "decisions", "add", "--range", "198.51.100.0/24", "--duration", "2h")
		added, deleted, err := c.Stream(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		if len(added) != 2 || len(deleted) != 0 {
			t.Fatalf("delta %+v %+v, want the two decisions", added, deleted)
		}
		for _, d := range added {
			want := map[string]struct {
				scope string
				dur   time.Duration
			}{"192.0.2.1": {"Ip", time.Minute}, "198.51.100.0/24": {"Range", 2 * time.Hour}}[d.Value]
			if d.Scope != want.scope || d.Type != "ban" || d.Origin != "cscli" || d.ID == 0 ||
				d.Duration <= want.dur-30*time.Second || d.Duration > want.dur || d.durationErr != nil {
				t.Errorf("decision %+v, want scope %s and about %v left", d, want.scope, want.dur)
			}
		}
		lapi.Cscli(t, "decisions", "delete", "--ip", "192.0.2.1")
		lapi.Cscli(t, "decisions", "delete", "--range", "198.51.100.0/24")
		added, deleted, err = c.Stream(context.Background(), false)
		if err != nil || len(added) != 0 || len(deleted) != 2 {
			t.Fatalf("delta after deleting: %+v %+v %v", added, deleted, err)
		}
		for _, d := range deleted {
			if d.Duration >= 0 || d.durationErr != nil {
				t.Errorf("deleted %+v: want a negative duration", d)
			}
		}

		_, _, err = (&Client{URL: lapi.URL, APIKey: "not-a-key"}).Stream(context.Background(), true)
		var se *streamError
		if !errors.As(err, &se) || se.cause != causeAuth {
			t.Errorf("wrong key: %v, want an auth error", err)
		}
	})

	t.Run("bouncer", func(t *testing.T) {
		bans := &banTable{bans: map[string]Decision{}}
		c := &Client{URL: lapi.URL, APIKey: lapi.AddBouncer(t, "xdpguard-bouncer")}
		log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		b := NewBouncer(c, 200*time.Millisecond, bans.apply, log)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { b.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		waitFor(t, "the startup pull", func() bool { return b.Stats().Resyncs == 1 })

		lapi.Cscli(t, "decisions", "add", "--ip", "192.0.2.7", "--duration", "1m")
		lapi.Cscli(t, "decisions", "add", "--range", "198.51.100.0/24", "--duration", "1m")
		waitFor(t, "both bans", func() bool { return bans.has("Ip 192.0.2.7") && bans.has("Range 198.51.100.0/24") })
		for _, d := range bans.snapshot() {
			if d.Duration <= 30*time.Second || d.Duration > time.Minute {
				t.Errorf("ban %+v: want about 1m", d)
			}
		}

		lapi.Cscli(t, "decisions", "delete", "--ip", "192.0.2.7")
		waitFor(t, "the deletion", func() bool { return !bans.has("Ip 192.0.2.7") })
		if !bans.has("Range 198.51.100.0/24") {
			t.Fatal("the range went with the address")
		}

		before := b.Stats()
		lapi.Stop(t)
		waitFor(t, "errors while the LAPI is down", func() bool {
			s := b.Stats()
			return s.Errors[causeUnreachable] > before.Errors[causeUnreachable] && s.Failing > 0
		})
		if s := b.Stats(); s.Decisions != 1 || !bans.has("Range 198.51.100.0/24") {
			t.Fatalf("stats %+v, bans %v: the range must be kept while the LAPI is down", s, bans.snapshot())
		}
		lapi.Restart(t)
		waitFor(t, "the resync", func() bool { s := b.Stats(); return s.Resyncs > before.Resyncs && s.Failing == 0 })
		if s := b.Stats(); s.Decisions != 1 || !bans.has("Range 198.51.100.0/24") || bans.deletions() != 1 {
			t.Fatalf("stats %+v, bans %v, %d deletions: the resync must keep the range", s, bans.snapshot(), bans.deletions())
		}

		lapi.Cscli(t, "decisions", "add", "--ip", "2001:db8::7", "--duration", "2m")
		waitFor(t, "a ban after the restart", func() bool { return bans.has("Ip 2001:db8::7") })
		s := b.Stats()
		t.Logf("stats: %+v", s)
		if s.Decisions != 2 || s.Invalid != 0 || s.Errors[causeAuth]+s.Errors[causeStatus]+s.Errors[causeResponse]+s.Errors[causeApply] != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

// banTable is an apply that keeps the bans as a kernel would.
type banTable struct {
	mu      sync.Mutex
	bans    map[string]Decision
	deleted int
}

func (b *banTable) apply(added, deleted []Decision) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range deleted {
		delete(b.bans, key(d))
		b.deleted++
	}
	for _, d := range added {
		b.bans[key(d)] = d
	}
	return nil
}

func (b *banTable) has(k string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.bans[k]
	return ok
}

func (b *banTable) deletions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.deleted
}

func (b *banTable) snapshot() []Decision {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ds []Decision
	for _, d := range b.bans {
		ds = append(ds, d)
	}
	return ds
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
