package failover_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llmfailover/failover"
)

// sseUpstream answers every request with a 200 event stream of body and
// counts the requests.
type sseUpstream struct {
	body  string
	calls atomic.Int64
}

func (u *sseUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	u.calls.Add(1)
	return sseAnswer(r, u.body), nil
}

const anthropicOK = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n" +
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n" +
	"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"

// A 200 stream whose first event is an error has sent the caller nothing:
// Transport classifies the event and fails over to the next member, whose
// stream the caller reads as it was sent. A stream whose first event is
// data passes through byte for byte, keep-alive comments included.
func TestTransportFirstEventFailsOver(t *testing.T) {
	for _, tc := range []struct {
		name, path, first, second, reason string
	}{
		{"anthropic overloaded", "/v1/messages",
			"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
			anthropicOK, "overloaded"},
		{"openrouter after keep-alives", "/v1/chat/completions",
			": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\n\ndata: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"error\":{\"code\":502,\"message\":\"Provider disconnected\"},\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}]}\n\n",
			": OPENROUTER PROCESSING\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n", "server"},
		{"gemini error chunk", "/v1beta/models/g:streamGenerateContent?alt=sse",
			"data: {\"error\": {\"code\": 429, \"message\": \"Resource has been exhausted (e.g. check quota).\", \"status\": \"RESOURCE_EXHAUSTED\"}}\r\n\r\n",
			"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi\"}]},\"finishReason\":\"STOP\"}]}\r\n\r\n", "rate_limit"},
		{"responses error event", "/v1/responses",
			"event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"The server had an error while processing your request.\"}\n\n",
			"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\"}}\n\n", "server"},
		{"finished with error before text", "/v1/chat/completions",
			"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"error\"}]}\n\n",
			"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n", "server"},
		{"chat error after a role-only chunk", "/v1/chat/completions",
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n" +
				"data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\"}}\n\n",
			"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n", "server"},
		{"responses failed after created", "/v1/responses",
			"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"status\":\"in_progress\"}}\n\n" +
				"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"rate_limit_exceeded\",\"message\":\"Rate limit reached\"}}}\n\n",
			"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\"}}\n\n", "rate_limit"},
		{"empty stream", "/v1/chat/completions", "",
			"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n", "network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := &sseUpstream{body: tc.first}, &sseUpstream{body: tc.second}
			var ev events
			p, err := failover.New([]failover.Member[failover.Upstream]{
				{Name: "a", Client: failover.Upstream{BaseURL: "https://a.example", Key: "a-key-123456", Transport: a}},
				{Name: "b", Priority: 1, Client: failover.Upstream{BaseURL: "https://b.example", Key: "b-key-123456", Transport: b}},
			}, failover.WithObserver(ev.observe), failover.WithCooldowns(exact()))
			require.NoError(t, err)
			resp := do(t, failover.NewTransport(p), http.MethodPost, "http://x"+tc.path, `{"model":"m","stream":true}`)
			got, err := readToEnd(resp.Body)
			_ = resp.Body.Close()
			require.ErrorIs(t, err, io.EOF)
			assert.Equal(t, tc.second, got, "the serving member's stream, as sent")
			assert.Equal(t, "b", resp.Header.Get("X-Failover-Member"))
			assert.Equal(t, [2]int64{1, 1}, [2]int64{a.calls.Load(), b.calls.Load()})
			assert.Equal(t, failover.Reason(tc.reason), statusOf(p, "a").Reason, "the event's classification")
		})
	}
	t.Run("data first passes through", func(t *testing.T) {
		body := ": keep-alive\n\n" + anthropicOK
		a := &sseUpstream{body: body}
		p, err := failover.New([]failover.Member[failover.Upstream]{{Name: "a", Client: failover.Upstream{BaseURL: "https://a.example", Key: "a-key-123456", Transport: a}}})
		require.NoError(t, err)
		resp := do(t, failover.NewTransport(p), http.MethodPost, "http://x/v1/messages", `{"model":"m","stream":true}`)
		got, err := readToEnd(resp.Body)
		_ = resp.Body.Close()
		require.ErrorIs(t, err, io.EOF)
		assert.Equal(t, body, got)
		assert.Equal(t, [3]uint64{1, 5, 1}, usageOf(t, p, "a"), "usage read from the replayed first event too")
	})
	t.Run("a first event past 64 KiB is not checked", func(t *testing.T) {
		body := "data: {\"choices\":[{\"delta\":{\"content\":\"" + strings.Repeat("x", 70<<10) + "\"}}]}\n\ndata: [DONE]\n\n"
		a := &sseUpstream{body: body}
		p, err := failover.New([]failover.Member[failover.Upstream]{{Name: "a", Client: failover.Upstream{BaseURL: "https://a.example", Key: "a-key-123456", Transport: a}}})
		require.NoError(t, err)
		resp := do(t, failover.NewTransport(p), http.MethodPost, "http://x/v1/chat/completions", `{"model":"m","stream":true}`)
		got, err := readToEnd(resp.Body)
		_ = resp.Body.Close()
		require.ErrorIs(t, err, io.EOF)
		assert.Equal(t, body, got)
	})
}

// When no member serves, the caller's SDK gets the last error event as
// the error response its provider would have sent: a 529 with Anthropic's
// error body for overloaded_error.
func TestTransportFirstEventLastAnswer(t *testing.T) {
	const event = `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`
	a := &sseUpstream{body: "event: error\ndata: " + event + "\n\n"}
	p, err := failover.New([]failover.Member[failover.Upstream]{{Name: "a", Client: failover.Upstream{BaseURL: "https://a.example", Key: "a-key-123456", Transport: a}}})
	require.NoError(t, err)
	resp := do(t, failover.NewTransport(p), http.MethodPost, "http://x/v1/messages", `{"model":"m","stream":true}`)
	defer resp.Body.Close()
	assert.Equal(t, 529, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.JSONEq(t, event, string(b))
	var parsed struct {
		Error struct{ Type string } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(b, &parsed))
	assert.Equal(t, "overloaded_error", parsed.Error.Type)
	assert.Equal(t, failover.ReasonOverloaded, statusOf(p, "a").Reason)
	assert.Equal(t, int64(1), a.calls.Load())
}

// dataEOFUpstream answers a 200 event stream whose last Read returns its
// bytes together with io.EOF, as net/http does when a chunked body's last
// chunk and its end arrive together.
type dataEOFUpstream struct {
	body  string
	calls atomic.Int64
}

func (u *dataEOFUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	u.calls.Add(1)
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}},
		Body: io.NopCloser(iotest.DataErrReader(strings.NewReader(u.body))), ContentLength: -1, Request: r}, nil
}

// A whole stream that arrives in one Read with io.EOF is read past its
// preamble (regression: only its first event was looked at, and a healthy
// stream failed as "ended before its first event"); a stream cut inside
// its first content event fails over.
func TestTransportFirstEventLastRead(t *testing.T) {
	cut := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel"
	for _, tc := range []struct {
		name, first string
		failsOver   bool
	}{
		{"whole stream in one read", anthropicOK, false},
		{"cut inside the first content event", cut, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := &dataEOFUpstream{body: tc.first}, &sseUpstream{body: anthropicOK}
			p, err := failover.New([]failover.Member[failover.Upstream]{
				{Name: "a", Client: failover.Upstream{BaseURL: "https://a.example", Key: "a-key-123456", Transport: a}},
				{Name: "b", Priority: 1, Client: failover.Upstream{BaseURL: "https://b.example", Key: "b-key-123456", Transport: b}},
			})
			require.NoError(t, err)
			resp := do(t, failover.NewTransport(p), http.MethodPost, "http://x/v1/messages", `{"model":"m","stream":true}`)
			got, err := readToEnd(resp.Body)
			_ = resp.Body.Close()
			require.ErrorIs(t, err, io.EOF)
			assert.Equal(t, anthropicOK, got)
			want := "a"
			if tc.failsOver {
				want = "b"
			}
			assert.Equal(t, want, resp.Header.Get("X-Failover-Member"))
		})
	}
}
