package crowdsec

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// What CrowdSec 1.4.6's LAPI answered a startup pull (cut to two
// decisions each).
const lapiStartup = `{"deleted":[{"duration":"-17.010755ms","id":1,"origin":"cscli","scenario":"manual 'ban' from '3d1219c7c4c5404aaa1f6d2a48adfda4CoBAr1QPpHjfRibl'","scope":"Ip","type":"ban","value":"192.0.2.7"}],` +
	`"new":[{"duration":"58.909064704s","id":2,"origin":"cscli","scenario":"manual 'ban' from '3d1219c7c4c5404aaa1f6d2a48adfda4CoBAr1QPpHjfRibl'","scope":"Range","type":"ban","value":"198.51.100.0/24"},` +
	`{"duration":"1h59m58.909061468s","id":3,"origin":"cscli","scenario":"manual 'ban' from '3d1219c7c4c5404aaa1f6d2a48adfda4CoBAr1QPpHjfRibl'","scope":"Ip","type":"ban","value":"2001:db8::1"}]}`

func TestStreamDecodesTheLAPIsAnswer(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+" key="+r.Header.Get("X-Api-Key"))
		if r.URL.Query().Get("startup") == "true" {
			_, _ = w.Write([]byte(lapiStartup))
		} else {
			_, _ = w.Write([]byte(`{"deleted":null,"new":null}`))
		}
	}))
	defer srv.Close()
	c := &Client{URL: srv.URL + "/", APIKey: "k3y"}

	added, deleted, err := c.Stream(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	want := []Decision{
		{ID: 2, Origin: "cscli", Scope: "Range", Value: "198.51.100.0/24", Type: "ban",
			Scenario: "manual 'ban' from '3d1219c7c4c5404aaa1f6d2a48adfda4CoBAr1QPpHjfRibl'", Duration: 58909064704 * time.Nanosecond},
		{ID: 3, Origin: "cscli", Scope: "Ip", Value: "2001:db8::1", Type: "ban",
			Scenario: "manual 'ban' from '3d1219c7c4c5404aaa1f6d2a48adfda4CoBAr1QPpHjfRibl'", Duration: time.Hour + 59*time.Minute + 58909061468*time.Nanosecond},
	}
	if len(added) != len(want) || added[0] != want[0] || added[1] != want[1] {
		t.Errorf("new = %+v, want %+v", added, want)
	}
	if len(deleted) != 1 || deleted[0].ID != 1 || deleted[0].Value != "192.0.2.7" || deleted[0].Duration != -17010755*time.Nanosecond {
		t.Errorf("deleted = %+v", deleted)
	}

	added, deleted, err = c.Stream(context.Background(), false)
	if err != nil || added != nil || deleted != nil {
		t.Errorf("null lists: %v %v %v", added, deleted, err)
	}

	for _, base := range []string{srv.URL, srv.URL + "/"} {
		if _, _, err := (&Client{URL: base, APIKey: "k3y"}).Stream(context.Background(), false); err != nil {
			t.Errorf("URL %s: %v", base, err)
		}
	}
	if _, _, err := (&Client{URL: srv.URL + "/lapi/", APIKey: "k3y"}).Stream(context.Background(), false); err != nil {
		t.Error(err)
	}
	wantReqs := []string{
		"GET /v1/decisions/stream?startup=true&scopes=ip,range key=k3y",
		"GET /v1/decisions/stream?startup=false&scopes=ip,range key=k3y",
		"GET /v1/decisions/stream?startup=false&scopes=ip,range key=k3y",
		"GET /v1/decisions/stream?startup=false&scopes=ip,range key=k3y",
		"GET /lapi/v1/decisions/stream?startup=false&scopes=ip,range key=k3y",
	}
	if strings.Join(got, "\n") != strings.Join(wantReqs, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantReqs, "\n"))
	}
}

func TestStreamKeepsADecisionWithABadDurationForTheBouncerToSkip(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"new":[{"id":7,"scope":"Ip","value":"192.0.2.1","type":"ban","duration":"forever"},{"id":8,"scope":"Ip","value":"192.0.2.2","type":"ban"}]}`))
	}))
	defer srv.Close()
	added, _, err := (&Client{URL: srv.URL}).Stream(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(added) != 2 || added[0].durationErr == nil || added[1].durationErr == nil || added[0].Duration != 0 {
		t.Errorf("got %+v, want both with a duration error", added)
	}
}

func TestStreamErrorsSayWhatFailed(t *testing.T) {
	long := strings.Repeat("x", 10_000)
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		limit   int64
		cause   string
		want    []string
	}{
		{"wrong key", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"message":"access forbidden"}`))
		}, 0, causeAuth, []string{"GET http://", "/v1/decisions/stream?startup=true", "403 Forbidden", `access forbidden`}},
		{"server error, long body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(long))
		}, 0, causeStatus, []string{"500 Internal Server Error", `xxx"...`}},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("<html>proxy error</html>"))
		}, 0, causeResponse, []string{"not a decision stream", "<html>proxy error"}},
		{"null", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("null"))
		}, 0, causeResponse, []string{"not a decision stream", `"null"`}},
		{"truncated JSON", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"new":[{"id":1,`))
		}, 0, causeResponse, []string{"not a decision stream", "unexpected EOF"}},
		{"wrong shape", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"new":{"id":1}}`))
		}, 0, causeResponse, []string{"not a decision stream", "cannot unmarshal"}},
		{"too large", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"new":[` + strings.Repeat(`{"id":1,"scope":"Ip","value":"192.0.2.1","type":"ban","duration":"1h"},`, 100) + `{}]}`))
		}, 2 << 20 >> 10, causeResponse, []string{"larger than"}},
		{"connection dropped", func(w http.ResponseWriter, r *http.Request) {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		}, 0, causeUnreachable, []string{"crowdsec: Get"}},
		{"body cut short", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write([]byte(`{"new":[`))
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		}, 0, causeUnreachable, []string{"reading the response", "unexpected EOF"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.limit != 0 {
				old := maxResponse
				maxResponse = tc.limit
				defer func() { maxResponse = old }()
			}
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			_, _, err := (&Client{URL: srv.URL, APIKey: "secret-key"}).Stream(context.Background(), true)
			if err == nil {
				t.Fatal("no error")
			}
			var se *streamError
			if !errors.As(err, &se) || se.cause != tc.cause {
				t.Errorf("cause of %v: got %+v, want %s", err, se, tc.cause)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if len(err.Error()) > 600 {
				t.Errorf("error of %d bytes: the body is not bounded", len(err.Error()))
			}
			if strings.Contains(err.Error(), "secret-key") {
				t.Errorf("error %q shows the API key", err)
			}
		})
	}
}

func TestStreamStopsWithItsContext(t *testing.T) {
	entered := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-entered; cancel() }()
	_, _, err := (&Client{URL: srv.URL}).Stream(ctx, true)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

// A redirect is not followed: Go's client would carry X-Api-Key to the
// host it points to. The pull fails, naming the status.
func TestRedirectNotFollowed(t *testing.T) {
	var leaked string
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked = r.Header.Get("X-Api-Key")
		_, _ = w.Write([]byte(`{"deleted":null,"new":null}`))
	}))
	defer elsewhere.Close()
	lapi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusFound)
	}))
	defer lapi.Close()
	_, _, err := (&Client{URL: lapi.URL + "/", APIKey: "k3y"}).Stream(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), "302") {
		t.Errorf("a redirected pull: %v, want an error naming 302", err)
	}
	if leaked != "" {
		t.Errorf("the API key reached the redirect's target: %q", leaked)
	}
}
