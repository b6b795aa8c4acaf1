package crowdsec

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeLAPI answers /v1/decisions/stream as a LAPI does: a startup pull
// gets every live decision, a delta what changed since the last pull
// (consumed by that pull, whether or not its answer arrives).
type fakeLAPI struct {
	srv   *httptest.Server
	clock *fakeClock // the LAPI's and the bouncer's

	mu         sync.Mutex
	key        string
	nextID     int64
	live       []wireDecision
	until      map[int64]time.Time // of live decisions with a duration
	pendingNew []wireDecision
	pendingDel []wireDecision
	down       bool     // consume the pull, then drop the connection
	status     int      // answer this status with body instead
	body       string   //
	script     []string // bodies to answer next (200), one per pull
	pulls      []bool   // the startup flag of every pull answered
}

const fakeKey = "0123456789abcdef"

func newFakeLAPI(t *testing.T) *fakeLAPI {
	f := &fakeLAPI{key: fakeKey, until: map[int64]time.Time{},
		clock: &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeLAPI) client() *Client { return &Client{URL: f.srv.URL + "/", APIKey: fakeKey} }

func (f *fakeLAPI) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path != "/v1/decisions/stream" || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("X-Api-Key") != f.key {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"message":"access forbidden"}`))
		return
	}
	startup := r.URL.Query().Get("startup") == "true"
	resp := streamResponse{New: f.pendingNew, Deleted: f.pendingDel}
	if startup {
		resp = streamResponse{New: slices.Clone(f.live)}
	}
	f.pendingNew, f.pendingDel = nil, nil
	for i, d := range resp.New { // the time left, now
		if until, ok := f.until[d.ID]; ok {
			resp.New[i].Duration = until.Sub(f.clock.now()).String()
		}
	}
	if f.down {
		// (Go's transport may send the GET again on a fresh connection.)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	f.pulls = append(f.pulls, startup)
	switch {
	case f.status != 0:
		w.WriteHeader(f.status)
		_, _ = w.Write([]byte(f.body))
		return
	case len(f.script) > 0:
		_, _ = w.Write([]byte(f.script[0]))
		f.script = f.script[1:]
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(resp)
}

// add makes a live decision (duration as the LAPI prints it).
func (f *fakeLAPI) add(typ, scope, value, duration string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	d := wireDecision{ID: f.nextID, Origin: "cscli", Scope: scope, Value: value, Type: typ,
		Scenario: "manual '" + typ + "' from 'test'", Duration: duration}
	if dur, err := time.ParseDuration(duration); err == nil {
		f.until[d.ID] = f.clock.now().Add(dur)
	}
	f.live = append(f.live, d)
	f.pendingNew = append(f.pendingNew, d)
}

func (f *fakeLAPI) ban(scope, value, duration string) { f.add("ban", scope, value, duration) }

// del deletes the live decisions on value.
func (f *fakeLAPI) del(value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.live = slices.DeleteFunc(f.live, func(d wireDecision) bool {
		if d.Value == value {
			d.Duration = "-17.010755ms"
			f.pendingDel = append(f.pendingDel, d)
			return true
		}
		return false
	})
}

func (f *fakeLAPI) set(fn func(f *fakeLAPI)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// pulled returns the startup flags of the pulls so far as "SDD...".
func (f *fakeLAPI) pulled() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, s := range f.pulls {
		if s {
			b.WriteByte('S')
		} else {
			b.WriteByte('D')
		}
	}
	return b.String()
}

// recorder is an apply that records its calls and fails while err is set.
type recorder struct {
	mu    sync.Mutex
	calls []call
	err   error
}

type call struct{ added, deleted []Decision }

func (r *recorder) apply(added, deleted []Decision) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{slices.Clone(added), slices.Clone(deleted)})
	return r.err
}

// take returns the calls since the last take.
func (r *recorder) take() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// fakeClock is a settable clock (read by the fake's handlers too).
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestBouncer is a Bouncer on f with a fake clock and a recorder; its
// steps are driven by the test (b.step), or Run with b.sleep replaced.
func newTestBouncer(t *testing.T, f *fakeLAPI, interval time.Duration) (*Bouncer, *recorder, *fakeClock) {
	rec := &recorder{}
	clock := f.clock
	b := NewBouncer(f.client(), interval, rec.apply, nil)
	b.now = clock.now
	b.sleep = func(context.Context, time.Duration) error { panic("sleep: drive the bouncer with step") }
	return b, rec, clock
}

// show is a decision list as "Scope Value duration", in order.
func show(ds []Decision) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.Scope+" "+d.Value+" "+d.Duration.String())
	}
	return strings.Join(s, ", ")
}
