package failover_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func upstreams(srv *failovertest.Server, keys ...string) []failover.Member[failover.Upstream] {
	ms := make([]failover.Member[failover.Upstream], len(keys))
	for i, k := range keys {
		ms[i] = failover.Member[failover.Upstream]{Name: "up-" + k, Client: failover.Upstream{
			BaseURL: "https://" + k + ".example.com/v1", Key: k, Transport: srv.HTTPClient().Transport}}
	}
	return ms
}

func post(t *testing.T, c *http.Client, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://failover.local/v1/chat/completions", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer caller-own-secret")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	require.NoError(t, err)
	return resp
}

// A plain net/http client through the transport: a 401 member, a 429 member
// with Retry-After, a healthy one.
func TestTransportFailsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script("revoked", failovertest.Unauthorized())
		srv.Script("limited", failovertest.RateLimited(30*time.Second))
		p, err := failover.New(upstreams(srv, "revoked", "limited", "good"))
		require.NoError(t, err)
		client := &http.Client{Transport: failover.NewTransport(p)}
		for range 10 {
			resp := post(t, client, `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`)
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			require.Equal(t, 200, resp.StatusCode, string(b))
		}
		assert.Equal(t, []int{1, 1, 10}, []int{srv.Calls("revoked"), srv.Calls("limited"), srv.Calls("good")})
		st := p.Status()
		assert.Equal(t, failover.ReasonAuth, st[0].Reason)
		assert.Equal(t, 30*time.Second, time.Until(st[1].Until))
		for _, r := range srv.Requests("") {
			assert.Equal(t, "/v1/chat/completions", r.Path)
			assert.NotEqual(t, "caller-own-secret", r.Key)
		}
	})
}

// A request error comes back as the upstream's response, unchanged, after one call.
func TestTransportBadRequestPassesThrough(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Script("a", failovertest.Error(400, "invalid_request_error", "context_length_exceeded", "too long"))
	p, err := failover.New(upstreams(srv, "a", "b"))
	require.NoError(t, err)
	resp := post(t, &http.Client{Transport: failover.NewTransport(p)}, `{"model":"m"}`)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, string(b), "context_length_exceeded")
	assert.Equal(t, 0, srv.Calls("b"))

	// Every member cooling: a 503 with Retry-After.
	srv.Script("a", failovertest.Error(429, "rate_limit_error", "", "slow down"))
	srv.Script("b", failovertest.Error(429, "rate_limit_error", "", "slow down"))
	resp = post(t, &http.Client{Transport: failover.NewTransport(p)}, `{"model":"m"}`)
	_ = resp.Body.Close()
	assert.Equal(t, 429, resp.StatusCode, "the last upstream's answer")
	resp = post(t, &http.Client{Transport: failover.NewTransport(p)}, `{"model":"m"}`)
	_ = resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
}

// A streamed response passes through chunk by chunk: the first chunk
// arrives before the upstream has finished, and the attempt timeout bounds
// only the wait for the first.
func TestTransportStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		r := failovertest.Stream("a", "b", "c")
		r.ChunkDelay = 400 * time.Millisecond // the first within the attempt, the others after it
		srv.Script("k", r)
		srv.Script("down", failovertest.Error(503, "server_error", "", "overloaded"))
		p, err := failover.New(upstreams(srv, "down", "k"), failover.WithAttemptTimeout(500*time.Millisecond))
		require.NoError(t, err)
		start := time.Now()
		resp := post(t, &http.Client{Transport: failover.NewTransport(p)}, `{"model":"m","stream":true}`)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var at []time.Duration
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: {") {
				at = append(at, time.Since(start))
			}
		}
		assert.Equal(t, []time.Duration{400 * time.Millisecond, 800 * time.Millisecond, 1200 * time.Millisecond}, at,
			"chunks arrive as sent, and outlive the attempt timeout once the first came")
	})
}

// A body larger than the replay limit is rejected before any upstream call.
func TestTransportBodyLimit(t *testing.T) {
	srv := failovertest.NewServer()
	p, err := failover.New(upstreams(srv, "a"))
	require.NoError(t, err)
	tr := failover.NewTransport(p)
	tr.MaxReplayBody = 10
	req, _ := http.NewRequest(http.MethodPost, "http://x/v1/chat/completions", io.NopCloser(bytes.NewReader(make([]byte, 11))))
	_, err = tr.RoundTrip(req)
	assert.ErrorIs(t, err, failover.ErrBodyTooLarge)
	assert.Equal(t, 0, srv.Calls("a"))

	// A request that can replay itself (GetBody) is not buffered: no limit.
	req, _ = http.NewRequest(http.MethodPost, "http://x/v1/chat/completions", bytes.NewReader([]byte(`{"model":"m","pad":"0123456789"}`)))
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, 1, srv.Calls("a"))
	assert.Equal(t, "m", srv.Requests("a")[0].Model)
}

// Credential isolation: each upstream gets its own credential, in its own
// scheme, never the caller's or another member's; model rewrite per member.
func TestTransportCredentialIsolation(t *testing.T) {
	srvA, srvB := failovertest.NewServer(), failovertest.NewServer()
	srvA.Script("key-a", failovertest.Error(500, "server_error", "", "boom"))
	var seenB []http.Header
	recB := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seenB = append(seenB, r.Header.Clone())
		assert.Empty(t, r.URL.Query().Get("key"))
		return srvB.HTTPClient().Transport.RoundTrip(r)
	})
	p, err := failover.New([]failover.Member[failover.Upstream]{
		{Name: "a", Client: failover.Upstream{BaseURL: "https://a.example/v1", Key: "key-a", Transport: srvA.HTTPClient().Transport}},
		{Name: "b", Model: "claude-x", Client: failover.Upstream{BaseURL: "https://b.example/v1", Key: "key-b", Auth: failover.AuthXAPIKey,
			Header: http.Header{"Anthropic-Version": {"2023-06-01"}}, Transport: recB}},
	})
	require.NoError(t, err)
	req, _ := http.NewRequest(http.MethodPost, "http://x/v1/chat/completions?key=caller-query-secret", strings.NewReader(`{"model":"gpt-4o","n":1}`))
	req.Header.Set("Authorization", "Bearer caller-own-secret")
	req.Header.Set("X-Api-Key", "caller-x-secret")
	resp, err := failover.NewTransport(p).RoundTrip(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Len(t, seenB, 1)
	h := seenB[0]
	assert.Empty(t, h.Get("Authorization"), "neither the caller's nor a's bearer")
	assert.Equal(t, "key-b", h.Get("X-Api-Key"))
	assert.Equal(t, "2023-06-01", h.Get("Anthropic-Version"))
	assert.Equal(t, "claude-x", srvB.Requests("key-b")[0].Model, "model rewritten")
	assert.Equal(t, "gpt-4o", srvA.Requests("key-a")[0].Model)
	for _, s := range p.Status() {
		assert.NotContains(t, s.LastError, "key-")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A bad BaseURL is the member's fault: the call moves on.
func TestTransportBadBaseURL(t *testing.T) {
	srv := failovertest.NewServer()
	ms := upstreams(srv, "a", "b")
	ms[0].Client.BaseURL = "not a url"
	p, err := failover.New(ms)
	require.NoError(t, err)
	resp := post(t, &http.Client{Transport: failover.NewTransport(p)}, `{}`)
	_ = resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, p.Status()[0].LastError, `BaseURL "not a url" is not an absolute URL`)
	assert.Equal(t, 1, srv.Calls("b"))
}
