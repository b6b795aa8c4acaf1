// Package crowdsec makes xdpguard a CrowdSec bouncer: a client of the Local
// API's decision stream (GET /v1/decisions/stream, authenticated by a
// bouncer's API key) and the loop that keeps a set of ban decisions in step
// with it, through LAPI restarts.
//
// The stream protocol, as the LAPI speaks it (checked against CrowdSec
// 1.4.6, Debian's):
//
//   - startup=true answers every live decision in "new" (and recently
//     expired or deleted ones in "deleted"); startup=false answers what
//     changed since this bouncer's previous pull, which the LAPI records on
//     its side. A delta lost in transit is lost for good: only a startup
//     pull resynchronises.
//   - Either list may be null. Each decision has "id", "origin", "scope"
//     ("Ip", "Range"; other scopes are filtered out by default),
//     "value", "type" ("ban", "captcha", ...), "scenario" and "duration",
//     the time left as Go prints a time.Duration ("3h59m58.909060857s"),
//     negative for a deleted or expired decision ("-17.010755ms").
//   - The LAPI sends one decision per value (newer ones: per scope, type
//     and value), the longest; deleting a decision while another still
//     covers the value sends nothing, and a deletion names the value, not
//     necessarily the id that was sent as new. So a bouncer keys its bans
//     by value, and a deletion may come twice.
package crowdsec

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Decision is one decision of the stream. Scope and Value are as the LAPI
// sends them from Client.Stream; the Bouncer hands apply canonical ones
// ("Ip" or "Range"; an address or a masked prefix, IPv4-mapped IPv6 as
// IPv4). Duration is the time left when it was pulled; negative or zero
// for an expired or deleted decision.
type Decision struct {
	ID       int64
	Origin   string
	Scope    string
	Value    string
	Type     string
	Scenario string
	Duration time.Duration

	durationErr error // "duration" was missing or not a Go duration
}

// Client pulls a LAPI's decision stream. URL is the LAPI's base address
// ("http://127.0.0.1:8080/"); APIKey a bouncer's key (`cscli bouncers
// add`). HTTP nil uses a client with a one-minute timeout.
type Client struct {
	URL    string
	APIKey string
	HTTP   *http.Client
}

// maxResponse bounds a stream response: a startup pull of a large
// blocklist is tens of MiB (about 200 bytes a decision); the response is
// decoded whole, a few times its size, and the unit's MemoryMax is 512 MiB.
// A variable so the tests can lower it.
var maxResponse int64 = 64 << 20

// snippetLen bounds how much of an error response's body an error quotes.
const snippetLen = 256

// defaultHTTP follows no redirect: Go's client would carry the X-Api-Key
// header to wherever a redirect points (it strips only Authorization and
// cookies), so a 3xx is an error naming its status.
var defaultHTTP = &http.Client{
	Timeout:       time.Minute,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Error causes, as Stats counts them.
const (
	causeUnreachable = "unreachable" // no HTTP answer: refused, reset, timed out
	causeAuth        = "auth"        // 401 or 403: a wrong or revoked API key
	causeStatus      = "status"      // any other answer than 200
	causeResponse    = "response"    // a 200 whose body is not a stream response
	causeApply       = "apply"       // apply refused the changes
)

// streamError is a failed pull with its cause.
type streamError struct {
	cause string
	err   error
}

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// wireDecision is a decision as the LAPI encodes it.
type wireDecision struct {
	ID       int64  `json:"id"`
	Origin   string `json:"origin"`
	Scope    string `json:"scope"`
	Value    string `json:"value"`
	Type     string `json:"type"`
	Scenario string `json:"scenario"`
	Duration string `json:"duration"`
}

type streamResponse struct {
	New     []wireDecision `json:"new"`
	Deleted []wireDecision `json:"deleted"`
}

// Stream pulls the decision stream once: every live decision if startup,
// else what changed since this bouncer's previous pull. A decision whose
// duration cannot be read is returned all the same (the Bouncer counts
// and skips it); an answer that is not a stream response is an error that
// names the request, the status and the start of the body.
func (c *Client) Stream(ctx context.Context, startup bool) (added, deleted []Decision, err error) {
	u, err := url.JoinPath(c.URL, "v1/decisions/stream")
	if err != nil {
		return nil, nil, &streamError{causeStatus, fmt.Errorf("crowdsec: LAPI url %q: %w", c.URL, err)}
	}
	// scopes=ip,range is the LAPI's default; said explicitly so that a LAPI
	// with another default sends nothing the bouncer would drop.
	u += fmt.Sprintf("?startup=%t&scopes=ip,range", startup)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, &streamError{causeStatus, fmt.Errorf("crowdsec: %w", err)}
	}
	req.Header.Set("X-Api-Key", c.APIKey)
	req.Header.Set("Accept", "application/json")
	// name/version, the form the LAPI expects of a bouncer (it warns on
	// anything else).
	req.Header.Set("User-Agent", "xdpguard-bouncer/v1")
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, &streamError{causeUnreachable, fmt.Errorf("crowdsec: %w", err)}
	}
	defer resp.Body.Close()
	what := "GET " + redact(req.URL)
	if resp.StatusCode != http.StatusOK {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, snippetLen+1))
		cause := causeStatus
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			cause = causeAuth
		}
		return nil, nil, &streamError{cause, fmt.Errorf("crowdsec: %s: %s: %s", what, resp.Status, quoteSnippet(snippet))}
	}
	body := &countingReader{r: io.LimitReader(resp.Body, maxResponse+1)}
	var r *streamResponse
	if err := json.NewDecoder(body).Decode(&r); err != nil {
		if body.n > maxResponse {
			return nil, nil, &streamError{causeResponse, fmt.Errorf("crowdsec: %s: response larger than %d MiB", what, maxResponse>>20)}
		}
		if body.err != nil {
			return nil, nil, &streamError{causeUnreachable, fmt.Errorf("crowdsec: %s: reading the response: %w", what, body.err)}
		}
		return nil, nil, &streamError{causeResponse, fmt.Errorf("crowdsec: %s: not a decision stream (%v): %s", what, err, quoteSnippet(body.head))}
	}
	if r == nil {
		return nil, nil, &streamError{causeResponse, fmt.Errorf("crowdsec: %s: not a decision stream: %s", what, quoteSnippet(body.head))}
	}
	return decode(r.New), decode(r.Deleted), nil
}

func decode(ws []wireDecision) []Decision {
	if len(ws) == 0 {
		return nil
	}
	ds := make([]Decision, len(ws))
	for i, w := range ws {
		d := Decision{ID: w.ID, Origin: w.Origin, Scope: w.Scope, Value: w.Value, Type: w.Type, Scenario: w.Scenario}
		d.Duration, d.durationErr = time.ParseDuration(w.Duration)
		if d.durationErr != nil {
			d.Duration = 0
		}
		ds[i] = d
	}
	return ds
}

// redact drops what a URL may carry that is secret (user info); the API
// key travels in a header and never appears.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// quoteSnippet quotes at most snippetLen bytes of a body, marking a cut.
func quoteSnippet(b []byte) string {
	if len(b) > snippetLen {
		return fmt.Sprintf("%q...", strings.ToValidUTF8(string(b[:snippetLen]), "?"))
	}
	return fmt.Sprintf("%q", strings.ToValidUTF8(string(b), "?"))
}

// countingReader counts the bytes read, keeps the first snippetLen+1 and
// the error of the connection if reading failed (a reset, a timeout, a
// body cut short), as opposed to a body that was read whole and is not
// JSON.
type countingReader struct {
	r    io.Reader
	n    int64
	head []byte
	err  error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if room := snippetLen + 1 - len(c.head); room > 0 {
		c.head = append(c.head, p[:min(n, room)]...)
	}
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}
