package failover_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readToEnd reads body until an error and returns what it read and the
// error that ended it (io.EOF included).
func readToEnd(body io.Reader) (string, error) {
	var sb strings.Builder
	buf := make([]byte, 7) // small reads: [DONE] may be split across them
	for {
		n, err := body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			return sb.String(), err
		}
	}
}

// A 2xx event stream on a completion path that ends without "data: [DONE]"
// reads as io.ErrUnexpectedEOF; with it, io.EOF. Anthropic's /messages
// expects its own end event, message_stop (see TestTransportStreamEnds).
func TestTransportStreamWithoutDone(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for _, c := range []string{"a", "b"} {
			_, _ = io.WriteString(w, "data: "+failovertest.Chunk("m", c)+"\n\n")
			w.(http.Flusher).Flush()
		}
		if r.Header.Get("X-Test-Done") != "" {
			_, _ = io.WriteString(w, "data: [DONE]\n\n")
		}
	}))
	t.Cleanup(srv.Close)
	rt := &http.Transport{}
	t.Cleanup(rt.CloseIdleConnections)
	p, err := failover.New([]failover.Member[failover.Upstream]{
		{Name: "a", Client: failover.Upstream{BaseURL: srv.URL + "/v1", Key: "k", Transport: rt}},
	}, failover.WithAttemptTimeout(5*time.Second))
	require.NoError(t, err)
	client := &http.Client{Transport: failover.NewTransport(p)}

	for _, tc := range []struct {
		path string
		done bool
		want error
	}{
		{"/v1/chat/completions", false, io.ErrUnexpectedEOF},
		{"/v1/chat/completions", true, io.EOF},
		{"/v1/completions", false, io.ErrUnexpectedEOF},
		{"/v1/messages", false, io.ErrUnexpectedEOF},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://failover.local"+tc.path, strings.NewReader(`{"model":"m","stream":true}`))
		require.NoError(t, err)
		if tc.done {
			req.Header.Set("X-Test-Done", "1")
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		got, err := readToEnd(resp.Body)
		assert.NoError(t, resp.Body.Close())
		cancel()
		assert.Equal(t, 2, strings.Count(got, "data: {"), "%s: both chunks arrive", tc.path)
		assert.Truef(t, errors.Is(err, tc.want), "%s done=%v: read ended with %v, want %v", tc.path, tc.done, err, tc.want)
	}
}
