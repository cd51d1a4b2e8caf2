package failovertest_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// do sends one request to srv in memory and returns the status, headers and body.
func do(t *testing.T, srv *failovertest.Server, method, url string, header http.Header, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	require.NoError(t, err)
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := srv.HTTPClient().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

// sse splits a stream into its events: the event name ("" for none) and data.
func sse(t *testing.T, body string) (names, data []string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(body))
	name := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			names, data = append(names, name), append(data, strings.TrimPrefix(line, "data: "))
			name = ""
		}
	}
	return names, data
}

const anthropicURL = failovertest.BaseURL + "/messages"

func TestAnthropicDefaults(t *testing.T) {
	srv := failovertest.NewServer()
	h := http.Header{"X-Api-Key": {"ak"}, "Anthropic-Version": {"2023-06-01"}}

	status, _, body := do(t, srv, "POST", anthropicURL, h, `{"model":"claude-x","max_tokens":9,"messages":[]}`)
	require.Equal(t, 200, status)
	var msg struct {
		Type, Model string
		Content     []struct{ Type, Text string }
		StopReason  string `json:"stop_reason"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &msg))
	assert.Equal(t, "message", msg.Type)
	assert.Equal(t, "claude-x", msg.Model)
	assert.Equal(t, "ok", msg.Content[0].Text)
	assert.Equal(t, "end_turn", msg.StopReason)

	status, hdr, body := do(t, srv, "POST", anthropicURL, h, `{"model":"claude-x","stream":true}`)
	require.Equal(t, 200, status)
	assert.Equal(t, "text/event-stream", hdr.Get("Content-Type"))
	names, _ := sse(t, body)
	assert.Equal(t, []string{"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}, names)
	assert.NotContains(t, body, "[DONE]", "Anthropic streams have no [DONE]")

	reqs := srv.Requests("ak")
	require.Len(t, reqs, 2)
	assert.Equal(t, "/v1/messages", reqs[0].Path)
	assert.True(t, reqs[1].Stream)
}

func TestAnthropicScripts(t *testing.T) {
	srv := failovertest.NewServer()
	cut := failovertest.AnthropicStream("a", "b")
	cut.NoDone = true
	srv.Script("ak", failovertest.AnthropicRateLimited(20*time.Second), failovertest.AnthropicOverloaded(),
		failovertest.AnthropicUnauthorized(), cut,
		failovertest.Response{Chunks: append(failovertest.AnthropicEvents("m", "x")[:3], failovertest.AnthropicErrorEvent("overloaded_error", "Overloaded"))})
	h := http.Header{"X-Api-Key": {"ak"}}

	status, hdr, body := do(t, srv, "POST", anthropicURL, h, `{"model":"m"}`)
	assert.Equal(t, 429, status)
	assert.Equal(t, "20", hdr.Get("Retry-After"))
	assert.Equal(t, "0", hdr.Get("Anthropic-Ratelimit-Requests-Remaining"))
	reset, err := time.Parse(time.RFC3339, hdr.Get("Anthropic-Ratelimit-Requests-Reset"))
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(20*time.Second), reset, 2*time.Second)
	assert.JSONEq(t, `{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization of 50 requests per minute."},"request_id":"req_failovertest"}`, body)

	status, _, body = do(t, srv, "POST", anthropicURL, h, `{"model":"m"}`)
	assert.Equal(t, 529, status)
	assert.Contains(t, body, `"overloaded_error"`)

	status, _, body = do(t, srv, "POST", anthropicURL, h, `{"model":"m"}`)
	assert.Equal(t, 401, status)
	assert.Contains(t, body, `"authentication_error"`)

	_, _, body = do(t, srv, "POST", anthropicURL, h, `{"model":"m","stream":true}`)
	names, _ := sse(t, body)
	assert.Equal(t, "message_delta", names[len(names)-1], "NoDone leaves message_stop out")

	_, _, body = do(t, srv, "POST", anthropicURL, h, `{"model":"m","stream":true}`)
	names, data := sse(t, body)
	assert.Equal(t, "error", names[len(names)-1])
	assert.JSONEq(t, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, data[len(data)-1])
}

const geminiURL = "http://failovertest.invalid/v1beta/models/gemini-x"

func TestGeminiDefaults(t *testing.T) {
	srv := failovertest.NewServer()
	status, _, body := do(t, srv, "POST", geminiURL+":generateContent", http.Header{"X-Goog-Api-Key": {"gk"}}, `{"contents":[]}`)
	require.Equal(t, 200, status)
	var r struct {
		Candidates []struct {
			Content struct {
				Role  string
				Parts []struct{ Text string }
			}
			FinishReason string
		}
		UsageMetadata struct{ TotalTokenCount int }
		ModelVersion  string
	}
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	assert.Equal(t, "ok", r.Candidates[0].Content.Parts[0].Text)
	assert.Equal(t, "model", r.Candidates[0].Content.Role)
	assert.Equal(t, "STOP", r.Candidates[0].FinishReason)
	assert.Positive(t, r.UsageMetadata.TotalTokenCount)
	assert.Equal(t, "gemini-x", r.ModelVersion)

	status, hdr, body := do(t, srv, "POST", geminiURL+":streamGenerateContent?alt=sse&key=qk", nil, `{"contents":[]}`)
	require.Equal(t, 200, status)
	assert.Equal(t, "text/event-stream", hdr.Get("Content-Type"))
	assert.Contains(t, body, "\r\n\r\n", "Gemini separates events with CRLF")
	assert.NotContains(t, body, "[DONE]")
	_, data := sse(t, body)
	require.Len(t, data, 1)
	assert.Contains(t, data[0], `"finishReason":"STOP"`)

	g, q := srv.Requests("gk"), srv.Requests("qk")
	require.Len(t, g, 1)
	require.Len(t, q, 1, "the ?key= query parameter is a key")
	assert.Equal(t, "gemini-x", g[0].Model, "the model comes from the path")
	assert.False(t, g[0].Stream)
	assert.True(t, q[0].Stream)
	assert.Equal(t, "/v1beta/models/gemini-x:streamGenerateContent", q[0].Path)
}

func TestGeminiScripts(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Script("gk", failovertest.GeminiRateLimited(1500*time.Millisecond), failovertest.GeminiUnauthorized(),
		failovertest.GeminiOverloaded(), failovertest.GeminiStream("a", "b", "c"))
	h := http.Header{"X-Goog-Api-Key": {"gk"}}

	status, _, body := do(t, srv, "POST", geminiURL+":generateContent", h, `{}`)
	assert.Equal(t, 429, status)
	var e struct {
		Error struct {
			Code            int
			Status, Message string
			Details         []map[string]any
		}
	}
	require.NoError(t, json.Unmarshal([]byte(body), &e))
	assert.Equal(t, 429, e.Error.Code)
	assert.Equal(t, "RESOURCE_EXHAUSTED", e.Error.Status)
	assert.Equal(t, "1.5s", e.Error.Details[len(e.Error.Details)-1]["retryDelay"])

	status, _, body = do(t, srv, "POST", geminiURL+":generateContent", h, `{}`)
	assert.Equal(t, 400, status)
	assert.Contains(t, body, `"API_KEY_INVALID"`)

	status, _, body = do(t, srv, "POST", geminiURL+":generateContent", h, `{}`)
	assert.Equal(t, 503, status)
	assert.Contains(t, body, `"UNAVAILABLE"`)

	_, _, body = do(t, srv, "POST", geminiURL+":streamGenerateContent?alt=sse", h, `{}`)
	_, data := sse(t, body)
	require.Len(t, data, 3)
	assert.NotContains(t, data[0], "finishReason")
	assert.Contains(t, data[2], `"finishReason":"STOP"`)
}

// A key's Limit answers in the protocol of the call.
func TestLimitSpeaksTheProtocol(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Limit("k", 1)
	_, _, _ = do(t, srv, "POST", anthropicURL, http.Header{"X-Api-Key": {"k"}}, `{"model":"m"}`)
	status, _, body := do(t, srv, "POST", anthropicURL, http.Header{"X-Api-Key": {"k"}}, `{"model":"m"}`)
	assert.Equal(t, 429, status)
	assert.Contains(t, body, `"rate_limit_error"`)
	status, _, body = do(t, srv, "POST", geminiURL+":generateContent", http.Header{"X-Goog-Api-Key": {"k"}}, `{}`)
	assert.Equal(t, 429, status)
	assert.Contains(t, body, `"RESOURCE_EXHAUSTED"`)
	assert.Equal(t, 2, srv.Limited("k"))
}

// The library classifies each protocol's errors as the provider means them,
// with the retry hints they carry.
func TestProtocolErrorsClassify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		resp   failovertest.Response
		url    string
		auth   failover.Auth
		reason failover.Reason
		hint   time.Duration
	}{
		{"anthropic 429", failovertest.AnthropicRateLimited(30 * time.Second), anthropicURL, failover.AuthXAPIKey, failover.ReasonRateLimit, 30 * time.Second},
		{"anthropic 529", failovertest.AnthropicOverloaded(), anthropicURL, failover.AuthXAPIKey, failover.ReasonOverloaded, 0},
		{"anthropic 401", failovertest.AnthropicUnauthorized(), anthropicURL, failover.AuthXAPIKey, failover.ReasonAuth, 0},
		{"gemini 429", failovertest.GeminiRateLimited(40 * time.Second), geminiURL + ":generateContent", failover.AuthGoogKey, failover.ReasonRateLimit, 40 * time.Second},
		{"gemini 400 API_KEY_INVALID", failovertest.GeminiUnauthorized(), geminiURL + ":generateContent", failover.AuthGoogKey, failover.ReasonAuth, 0},
		{"gemini 503", failovertest.GeminiOverloaded(), geminiURL + ":generateContent", failover.AuthGoogKey, failover.ReasonOverloaded, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := failovertest.NewServer()
			srv.Script("k", tc.resp)
			var seen error
			pool, err := failover.New([]failover.Member[failover.Upstream]{{Name: "m", Client: failover.Upstream{
				BaseURL: "http://failovertest.invalid", Key: "k", Auth: tc.auth, Transport: srv.HTTPClient().Transport}}},
				failover.WithObserver(func(e failover.Event) {
					if e.Kind == failover.EventAttemptFailed {
						seen = e.Err
					}
				}))
			require.NoError(t, err)
			req, err := http.NewRequestWithContext(t.Context(), "POST", tc.url, strings.NewReader(`{"model":"m"}`))
			require.NoError(t, err)
			resp, err := failover.NewTransport(pool).RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Error(t, seen)
			var he *failover.HTTPError
			require.True(t, errors.As(seen, &he), fmt.Sprintf("%T", seen))
			v := failover.Classify(seen)
			assert.Equal(t, tc.reason, v.Reason)
			if tc.hint > 0 {
				assert.InDelta(t, tc.hint.Seconds(), v.RetryAfter.Seconds(), 1)
			}
		})
	}
}

// The same server answers Anthropic's and Gemini's paths in their own shapes.
func ExampleServer_protocols() {
	srv := failovertest.NewServer()
	srv.Script("sk-ant", failovertest.AnthropicRateLimited(20*time.Second))
	srv.Script("AIza", failovertest.GeminiOK("hi from Gemini"))
	client := srv.HTTPClient()

	req, _ := http.NewRequest("POST", "http://any-host/v1/messages", strings.NewReader(`{"model":"claude-sonnet-4-5"}`))
	req.Header.Set("x-api-key", "sk-ant")
	resp, _ := client.Do(req)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("Retry-After"), string(body))

	req, _ = http.NewRequest("POST", "http://any-host/v1beta/models/gemini-2.5-flash:generateContent?key=AIza", strings.NewReader(`{}`))
	resp, _ = client.Do(req)
	var r struct {
		Candidates []struct {
			Content struct{ Parts []struct{ Text string } }
		}
	}
	_ = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, r.Candidates[0].Content.Parts[0].Text, srv.Requests("AIza")[0].Model)
	// Output:
	// 429 20 {"error":{"message":"This request would exceed the rate limit for your organization of 50 requests per minute.","type":"rate_limit_error"},"request_id":"req_failovertest","type":"error"}
	// 200 hi from Gemini gemini-2.5-flash
}
