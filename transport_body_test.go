package failover_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// trickle is an error body that yields one byte a second, for left bytes,
// until its request's context ends (as http.Transport's bodies do).
type trickle struct {
	ctx  context.Context
	left int
}

func (b *trickle) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	select {
	case <-time.After(time.Second):
	case <-b.ctx.Done():
		return 0, b.ctx.Err()
	}
	p[0] = ' '
	b.left--
	return 1, nil
}

func (b *trickle) Close() error { return nil }

// countingRT answers every request with answer and counts the calls.
func countingRT(n *atomic.Int32, answer func(r *http.Request) *http.Response) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		n.Add(1)
		return answer(r), nil
	})
}

// The attempt timeout covers the error body: a 500 whose body trickles a
// byte a second for an hour ends its attempt at exactly the attempt
// timeout, as a timeout, and the next member serves.
func TestTransportAttemptTimeoutCoversErrorBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var slowCalls, goodCalls atomic.Int32
		slow := countingRT(&slowCalls, func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 500, Header: http.Header{"Content-Type": {"application/json"}},
				Body: &trickle{ctx: r.Context(), left: 3600}, ContentLength: -1, Request: r}
		})
		good := countingRT(&goodCalls, func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(strings.NewReader(`{"ok":true}`)), ContentLength: -1, Request: r}
		})
		p, err := failover.New([]failover.Member[failover.Upstream]{
			{Name: "slow", Client: failover.Upstream{BaseURL: "https://slow.example/v1", Key: "slow-key", Transport: slow}},
			{Name: "good", Client: failover.Upstream{BaseURL: "https://good.example/v1", Key: "good-key", Transport: good}},
		}, failover.WithAttemptTimeout(500*time.Millisecond))
		require.NoError(t, err)
		start := time.Now()
		resp := post(t, &http.Client{Transport: failover.NewTransport(p)}, `{"model":"m"}`)
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		assert.Equal(t, 500*time.Millisecond, time.Since(start), "the call ends at the attempt timeout")
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, `{"ok":true}`, string(b))
		assert.Equal(t, []int32{1, 1}, []int32{slowCalls.Load(), goodCalls.Load()})
		st := p.Status()[0]
		assert.Equal(t, failover.ReasonTimeout, st.Reason)
		assert.Contains(t, st.LastError, "failover: attempt: ")
	})
}

// The same on a real loopback connection: the server sends 500 headers,
// flushes, then trickles a byte a second for 30 s. The healthy member
// serves after about the attempt timeout, not after the trickle.
func TestTransportTrickledErrorBodyLoopback(t *testing.T) {
	done := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		w.(http.Flusher).Flush()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for range 30 {
			select {
			case <-tick.C:
				_, _ = w.Write([]byte(" "))
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			case <-done:
				return
			}
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(done) }) // runs first: Close waits for the handler
	srv := failovertest.NewServer()
	goodURL := srv.Start()
	t.Cleanup(srv.Close)
	rt := &http.Transport{}
	t.Cleanup(rt.CloseIdleConnections)
	p, err := failover.New([]failover.Member[failover.Upstream]{
		{Name: "slow", Client: failover.Upstream{BaseURL: slow.URL + "/v1", Key: "slow-key", Transport: rt}},
		{Name: "good", Client: failover.Upstream{BaseURL: goodURL, Key: "good-key", Transport: rt}},
	}, failover.WithAttemptTimeout(200*time.Millisecond))
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // bounds the test
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://failover.local/v1/chat/completions", strings.NewReader(`{"model":"m"}`))
	require.NoError(t, err)
	start := time.Now()
	resp, err := (&http.Client{Transport: failover.NewTransport(p)}).Do(req)
	elapsed := time.Since(start)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	t.Logf("trickled 500 body: the healthy member served after %v", elapsed)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Less(t, elapsed, 5*time.Second, "well before the 30 s trickle ends")
	assert.Equal(t, 1, srv.Calls("good-key"))
	assert.Equal(t, failover.ReasonTimeout, p.Status()[0].Reason)
}

// A connection reset in the middle of an error body: the partial answer is
// classified from its status, the call fails over, nothing panics.
func TestTransportErrorBodyReset(t *testing.T) {
	headers := make(chan struct{}) // the client has read the headers
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		_, _ = buf.WriteString("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"error\":{\"mess")
		_ = buf.Flush()
		select {
		case <-headers:
		case <-time.After(5 * time.Second):
		}
		_ = conn.(*net.TCPConn).SetLinger(0) // close with a RST
		_ = conn.Close()
	}))
	t.Cleanup(slow.Close)
	srv := failovertest.NewServer()
	goodURL := srv.Start()
	t.Cleanup(srv.Close)
	rt := &http.Transport{}
	t.Cleanup(rt.CloseIdleConnections)
	var once atomic.Bool
	signal := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(r)
		if once.CompareAndSwap(false, true) {
			close(headers)
		}
		return resp, err
	})
	p, err := failover.New([]failover.Member[failover.Upstream]{
		{Name: "slow", Client: failover.Upstream{BaseURL: slow.URL + "/v1", Key: "slow-key", Transport: signal}},
		{Name: "good", Client: failover.Upstream{BaseURL: goodURL, Key: "good-key", Transport: rt}},
	}, failover.WithAttemptTimeout(5*time.Second))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://failover.local/v1/chat/completions", strings.NewReader(`{"model":"m"}`))
	require.NoError(t, err)
	resp, err := (&http.Client{Transport: failover.NewTransport(p)}).Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, 1, srv.Calls("good-key"))
	st := p.Status()[0]
	assert.Equal(t, failover.ReasonServer, st.Reason, st.LastError)
	assert.Contains(t, st.LastError, "upstream answered 500")
}
