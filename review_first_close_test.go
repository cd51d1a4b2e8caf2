package failover_test

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llmfailover/failover"
)

type trackedBody struct {
	io.Reader
	stall  <-chan struct{}
	closed *atomic.Bool
}

func (b trackedBody) Read(p []byte) (int, error) {
	if b.stall != nil {
		<-b.stall
		return 0, io.ErrUnexpectedEOF
	}
	return b.Reader.Read(p)
}
func (b trackedBody) Close() error { b.closed.Store(true); return nil }

// Probe (passes today): the upstream body is closed on the error-event and
// the stalled-first-event paths of the first-event check.
func TestReviewFirstEventClosesBody(t *testing.T) {
	for _, stall := range []bool{false, true} {
		var closed atomic.Bool
		a := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			b := trackedBody{Reader: strings.NewReader("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n"), closed: &closed}
			if stall {
				b.stall = r.Context().Done()
			}
			return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: b, Request: r}, nil
		})
		ok := &sseUpstream{body: anthropicOK}
		p, err := failover.New([]failover.Member[failover.Upstream]{
			{Name: "a", Client: failover.Upstream{BaseURL: "https://a.example", Key: "a-key-123456", Transport: a}},
			{Name: "b", Priority: 1, Client: failover.Upstream{BaseURL: "https://b.example", Key: "b-key-123456", Transport: ok}},
		}, failover.WithAttemptTimeout(50*time.Millisecond))
		require.NoError(t, err)
		resp := do(t, failover.NewTransport(p), http.MethodPost, "http://x/v1/messages", `{"model":"m","stream":true}`)
		_, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		assert.Equal(t, "b", resp.Header.Get("X-Failover-Member"), "stall=%v", stall)
		assert.True(t, closed.Load(), "stall=%v: a's body closed", stall)
		want := failover.ReasonOverloaded
		if stall {
			want = failover.ReasonTimeout
		}
		assert.Equal(t, want, statusOf(p, "a").Reason, "stall=%v", stall)
	}
}
