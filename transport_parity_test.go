package failover_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeUp is an in-memory upstream: it records each request (path, query,
// headers, body) and answers with answer.
type fakeUp struct {
	calls  atomic.Int32
	seen   []*http.Request
	bodies []string
	answer func(r *http.Request) *http.Response
}

func (f *fakeUp) RoundTrip(r *http.Request) (*http.Response, error) {
	f.calls.Add(1)
	var b []byte
	if r.Body != nil {
		b, _ = io.ReadAll(r.Body)
	}
	f.seen = append(f.seen, r)
	f.bodies = append(f.bodies, string(b))
	return f.answer(r), nil
}

func (f *fakeUp) n() int { return int(f.calls.Load()) }

// answer is a response with status, headers as pairs and body.
func answer(r *http.Request, status int, body string, kv ...string) *http.Response {
	h := http.Header{"Content-Type": {"application/json"}}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: r}
}

// sseAnswer is a 200 event stream of body.
func sseAnswer(r *http.Request, body string) *http.Response {
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: -1, Request: r}
}

func do(t *testing.T, tr http.RoundTripper, method, url, body string, kv ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	return resp
}

const geminiExhausted = `{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED",
 "details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}`

const geminiStream = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"}}]}\r\n\r\n" +
	"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo\"}],\"role\":\"model\"},\"finishReason\": \"STOP\"}],\"usageMetadata\":{\"totalTokenCount\":9}}\r\n\r\n"

// Gemini through Transport, with base URLs with and without /v1beta: the
// path reaches the upstream unchanged, the key goes in x-goog-api-key, a
// RESOURCE_EXHAUSTED key is skipped for its retryDelay, and a streamed
// call (alt=sse) ends cleanly with its finishReason chunk.
func TestTransportGemini(t *testing.T) {
	for _, base := range []string{"https://generativelanguage.googleapis.com", "https://generativelanguage.googleapis.com/v1beta"} {
		t.Run(base, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				spent := &fakeUp{answer: func(r *http.Request) *http.Response { return answer(r, 429, geminiExhausted) }}
				good := &fakeUp{answer: func(r *http.Request) *http.Response {
					if strings.HasSuffix(r.URL.Path, ":streamGenerateContent") {
						return sseAnswer(r, geminiStream)
					}
					return answer(r, 200, `{"candidates":[{"content":{"parts":[{"text":"Hello"}]},"finishReason":"STOP"}]}`)
				}}
				p, err := failover.New([]failover.Member[failover.Upstream]{
					{Name: "gemini-spent", Client: failover.Upstream{BaseURL: base, Key: "AIzaSpentKey-0000000000000000000", Auth: failover.AuthGoogKey, Transport: spent}},
					{Name: "gemini-good", Model: "gemini-2.5-pro", Client: failover.Upstream{BaseURL: base, Key: "AIzaGoodKey-00000000000000000000", Auth: failover.AuthGoogKey, Transport: good}},
				})
				require.NoError(t, err)
				tr := failover.NewTransport(p)
				body := `{"model":"gemini-2.5-flash","contents":[{"role":"user","parts":[{"text":"Hi"}]}]}`

				resp := do(t, tr, http.MethodPost, "http://failover.local/v1beta/models/gemini-2.5-flash:generateContent", body,
					"x-goog-api-key", "caller-own-key")
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				assert.Equal(t, 200, resp.StatusCode, string(b))
				assert.Equal(t, "gemini-good", resp.Header.Get("X-Failover-Member"))
				assert.Equal(t, 37*time.Second, time.Until(p.Status()[0].Until), "retryDelay honoured")
				assert.Equal(t, failover.ReasonRateLimit, p.Status()[0].Reason)

				resp = do(t, tr, http.MethodPost, "http://failover.local/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", body)
				got, err := readToEnd(resp.Body)
				_ = resp.Body.Close()
				assert.Equal(t, io.EOF, err, "a stream with its finishReason chunk ends cleanly")
				assert.Contains(t, got, `"finishReason": "STOP"`)
				assert.Equal(t, "gemini-good", resp.Header.Get("X-Failover-Member"))

				assert.Equal(t, []int{1, 2}, []int{spent.n(), good.n()}, "the spent key rests: one call")
				require.Len(t, good.seen, 2)
				assert.Equal(t, "/v1beta/models/gemini-2.5-flash:generateContent", spent.seen[0].URL.Path)
				assert.Equal(t, "/v1beta/models/gemini-2.5-pro:generateContent", good.seen[0].URL.Path, "the member's Model in the path")
				assert.Equal(t, "/v1beta/models/gemini-2.5-pro:streamGenerateContent", good.seen[1].URL.Path)
				assert.Equal(t, "sse", good.seen[1].URL.Query().Get("alt"))
				for i, r := range good.seen {
					assert.Equal(t, "AIzaGoodKey-00000000000000000000", r.Header.Get("X-Goog-Api-Key"))
					assert.Contains(t, good.bodies[i], `"model":"gemini-2.5-pro"`)
				}
				assert.Equal(t, "AIzaSpentKey-0000000000000000000", spent.seen[0].Header.Get("X-Goog-Api-Key"))
			})
		})
	}
}

const anthropicStream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"role\":\"assistant\",\"content\":[]}}\n\n" +
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi \\\"type\\\":\\\"message_stop\\\"\"}}\n\n" +
	"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n"

// Anthropic through Transport: /v1/messages with x-api-key and
// anthropic-version, a revoked key skipped, a streamed call that ends with
// message_stop.
func TestTransportAnthropic(t *testing.T) {
	for _, base := range []string{"https://api.anthropic.com", "https://api.anthropic.com/v1"} {
		t.Run(base, func(t *testing.T) {
			revoked := &fakeUp{answer: func(r *http.Request) *http.Response {
				return answer(r, 401, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`)
			}}
			good := &fakeUp{answer: func(r *http.Request) *http.Response {
				if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
					return sseAnswer(r, anthropicStream+"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
				}
				return answer(r, 200, `{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Hi"}]}`)
			}}
			version := http.Header{"Anthropic-Version": {"2023-06-01"}}
			p, err := failover.New([]failover.Member[failover.Upstream]{
				{Name: "claude-revoked", Client: failover.Upstream{BaseURL: base, Key: "sk-ant-revoked-000000000000", Auth: failover.AuthXAPIKey, Header: version, Transport: revoked}},
				{Name: "claude-good", Client: failover.Upstream{BaseURL: base, Key: "sk-ant-good-00000000000000", Auth: failover.AuthXAPIKey, Header: version, Transport: good}},
			})
			require.NoError(t, err)
			tr := failover.NewTransport(p)
			body := `{"model":"claude-sonnet-4-5","max_tokens":256,"system":"Be brief.","messages":[{"role":"user","content":"Hi"}]}`
			resp := do(t, tr, http.MethodPost, "http://failover.local/v1/messages", body, "x-api-key", "caller-own-key")
			_ = resp.Body.Close()
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "claude-good", resp.Header.Get("X-Failover-Member"))

			resp = do(t, tr, http.MethodPost, "http://failover.local/v1/messages", body, "Accept", "text/event-stream")
			got, err := readToEnd(resp.Body)
			_ = resp.Body.Close()
			assert.Equal(t, io.EOF, err)
			assert.Contains(t, got, "message_stop")

			assert.Equal(t, []int{1, 2}, []int{revoked.n(), good.n()})
			assert.Equal(t, failover.ReasonAuth, p.Status()[0].Reason)
			for _, r := range append(revoked.seen, good.seen...) {
				assert.Equal(t, "/v1/messages", r.URL.Path)
				assert.Equal(t, "2023-06-01", r.Header.Get("Anthropic-Version"))
				assert.Empty(t, r.Header.Get("Authorization"))
				assert.NotEqual(t, "caller-own-key", r.Header.Get("X-Api-Key"))
			}
			assert.Equal(t, "sk-ant-good-00000000000000", good.seen[0].Header.Get("X-Api-Key"))
		})
	}
}

// A 5,000-token body skips a 1,000-token member (ContextTokens) and a
// member whose TPM it exceeds, with no upstream call; the large member
// serves. The same for an Anthropic and a Gemini body, and for a body that
// replays itself (GetBody) as for one that is buffered.
func TestTransportTokenLimits(t *testing.T) {
	text := strings.Repeat("word ", 4000) // 20,000 bytes: 5,000 tokens
	for _, tc := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"` + text + `"}]}`},
		{"/v1/completions", `{"model":"m","prompt":"` + text + `"}`},
		{"/v1/responses", `{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"` + text + `"}]}]}`},
		{"/v1/embeddings", `{"model":"m","input":["` + text + `"]}`},
		{"/v1/messages", `{"model":"m","max_tokens":100,"system":[{"type":"text","text":"` + text + `"}],"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1beta/models/m:generateContent", `{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"systemInstruction":{"parts":[{"text":"` + text + `"}]}}`},
	} {
		for _, getBody := range []bool{true, false} {
			small := &fakeUp{answer: func(r *http.Request) *http.Response { return answer(r, 200, `{}`) }}
			tpm := &fakeUp{answer: func(r *http.Request) *http.Response { return answer(r, 200, `{}`) }}
			large := &fakeUp{answer: func(r *http.Request) *http.Response { return answer(r, 200, `{}`) }}
			p, err := failover.New([]failover.Member[failover.Upstream]{
				{Name: "small", Limits: failover.Limits{ContextTokens: 1000}, Client: failover.Upstream{BaseURL: "https://s.example/v1", Key: "small-key", Transport: small}},
				{Name: "tpm", Limits: failover.Limits{TPM: 4000}, Client: failover.Upstream{BaseURL: "https://t.example/v1", Key: "tpm-key", Transport: tpm}},
				{Name: "large", Limits: failover.Limits{ContextTokens: 200000}, Client: failover.Upstream{BaseURL: "https://l.example/v1", Key: "large-key", Transport: large}},
			})
			require.NoError(t, err)
			var rd io.Reader = strings.NewReader(tc.body)
			if !getBody {
				rd = io.MultiReader(rd) // no GetBody: buffered
			}
			req, err := http.NewRequest(http.MethodPost, "http://failover.local"+tc.path, rd)
			require.NoError(t, err)
			resp, err := failover.NewTransport(p).RoundTrip(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "large", resp.Header.Get("X-Failover-Member"), tc.path)
			assert.Equal(t, []int{0, 0, 1}, []int{small.n(), tpm.n(), large.n()}, "%s getBody=%v: calls per member", tc.path, getBody)
			require.Len(t, large.bodies, 1)
			assert.Equal(t, tc.body, large.bodies[0], "the body arrives whole")
			st := p.Status()
			assert.Equal(t, uint64(1), st[0].Limited, "%s: small skipped", tc.path)
			assert.Equal(t, uint64(1), st[1].Limited, "%s: tpm skipped", tc.path)
		}
	}
	// A small body goes to the first member.
	small := &fakeUp{answer: func(r *http.Request) *http.Response { return answer(r, 200, `{}`) }}
	p, err := failover.New([]failover.Member[failover.Upstream]{
		{Name: "small", Limits: failover.Limits{ContextTokens: 1000, RPD: 1}, Client: failover.Upstream{BaseURL: "https://s.example/v1", Key: "small-key", Transport: small}}})
	require.NoError(t, err)
	resp := do(t, failover.NewTransport(p), http.MethodPost, "http://x/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`)
	_ = resp.Body.Close()
	assert.Equal(t, "small", resp.Header.Get("X-Failover-Member"))
	// RPD: the second call of the day finds it spent, with no upstream call.
	resp = do(t, failover.NewTransport(p), http.MethodPost, "http://x/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`)
	_ = resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, 1, small.n())
}

// A success whose headers say the member's requests are spent rests the
// member until the reset: the next call goes elsewhere with no 429 spent,
// and after the reset the member serves again. Anthropic's headers too.
func TestTransportRestsSpentMember(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers func(now time.Time) []string
	}{
		{"openai", func(time.Time) []string {
			return []string{"X-Ratelimit-Remaining-Requests", "0", "X-Ratelimit-Reset-Requests", "20s"}
		}},
		{"anthropic", func(now time.Time) []string {
			return []string{"Anthropic-Ratelimit-Requests-Remaining", "0", "Anthropic-Ratelimit-Requests-Reset", now.Add(20 * time.Second).UTC().Format(time.RFC3339)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := &fakeUp{answer: func(r *http.Request) *http.Response {
					return answer(r, 200, `{}`, tc.headers(time.Now())...)
				}}
				b := &fakeUp{answer: func(r *http.Request) *http.Response { return answer(r, 200, `{}`) }}
				p, err := failover.New([]failover.Member[failover.Upstream]{
					{Name: "a", Client: failover.Upstream{BaseURL: "https://a.example/v1", Key: "a-key-0000", Transport: a}},
					{Name: "b", Priority: 1, Client: failover.Upstream{BaseURL: "https://b.example/v1", Key: "b-key-0000", Transport: b}},
				})
				require.NoError(t, err)
				tr := failover.NewTransport(p)
				served := func() string {
					resp := do(t, tr, http.MethodPost, "http://x/v1/chat/completions", `{"messages":[]}`)
					_ = resp.Body.Close()
					require.Equal(t, 200, resp.StatusCode)
					return resp.Header.Get("X-Failover-Member")
				}
				assert.Equal(t, "a", served(), "the call that spends the limit is served")
				st := p.Status()[0]
				assert.Equal(t, failover.CoolingDown, st.State)
				assert.Equal(t, failover.ReasonRateLimit, st.Reason)
				assert.Equal(t, 20*time.Second, time.Until(st.Until))
				assert.Equal(t, 0, st.ConsecutiveFailures, "a rest is no failure")
				assert.Equal(t, "b", served())
				assert.Equal(t, "b", served())
				time.Sleep(20 * time.Second)
				assert.Equal(t, "a", served(), "after the reset")
				assert.Equal(t, []int{2, 2}, []int{a.n(), b.n()})
			})
		})
	}
}

// Each protocol's stream: complete, it reads to a clean io.EOF; cut before
// its end event, to io.ErrUnexpectedEOF. Text that looks like an end event
// inside a chunk's string does not end the stream.
func TestTransportStreamEnds(t *testing.T) {
	chat := "data: {\"choices\":[{\"delta\":{\"content\":\"data: [DONE]\"}}]}\n\n"
	responses := "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"status\":\"in_progress\"}}\n\n" +
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"say \\\"type\\\":\\\"response.completed\\\"\"}\n\n"
	for _, tc := range []struct {
		name, path, body, end string
		accept                string
	}{
		{"chat", "/v1/chat/completions", chat, "data: [DONE]\n\n", ""},
		{"completions", "/v1/completions", "data: {\"choices\":[{\"text\":\"x\"}]}\n\n", "data: [DONE]\n\n", ""},
		{"responses event line", "/v1/responses", responses, "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\"}}\n\n", ""},
		{"responses data only", "/v1/responses", responses, "data: {\"type\": \"response.completed\",\"response\":{}}\n\n", ""},
		{"responses incomplete", "/v1/responses", responses, "data: {\"type\":\"response.incomplete\"}\n\n", ""},
		{"anthropic", "/v1/messages", anthropicStream, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", ""},
		{"anthropic data only", "/v1/messages", anthropicStream, "data: {\"type\":\"message_stop\"}", ""},
		{"gemini", "/v1beta/models/m:streamGenerateContent?alt=sse", "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\\\"finishReason\\\": \\\"STOP\\\"\"}]}}]}\r\n\r\n",
			"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"!\"}]},\"finishReason\":\"MAX_TOKENS\"}]}\r\n\r\n", ""},
		{"gemini blocked", "/v1beta/models/m:streamGenerateContent?alt=sse", "", "data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"}}\n\n", ""},
	} {
		for _, complete := range []bool{true, false} {
			body := tc.body
			if complete {
				body += tc.end
			}
			up := &fakeUp{answer: func(r *http.Request) *http.Response { return sseAnswer(r, body) }}
			p, err := failover.New([]failover.Member[failover.Upstream]{{Name: "m", Client: failover.Upstream{
				BaseURL: "https://m.example", Key: "m-key-0000", Transport: up}}})
			require.NoError(t, err)
			if body == "" { // nothing came: no stream to hand on, the attempt failed (and would fail over)
				req, err := http.NewRequest(http.MethodPost, "http://x"+tc.path, strings.NewReader(`{"model":"m","stream":true}`))
				require.NoError(t, err)
				_, err = failover.NewTransport(p).RoundTrip(req)
				assert.ErrorIs(t, err, io.ErrUnexpectedEOF, tc.name)
				continue
			}
			resp := do(t, failover.NewTransport(p), http.MethodPost, "http://x"+tc.path, `{"model":"m","stream":true}`)
			got, err := readToEnd(resp.Body)
			_ = resp.Body.Close()
			assert.Equal(t, body, got, "%s: the stream passes through", tc.name)
			want := io.ErrUnexpectedEOF
			if complete {
				want = io.EOF
			}
			assert.Truef(t, errors.Is(err, want), "%s complete=%v: read ended with %v, want %v", tc.name, complete, err, want)
		}
	}
	// A non-streaming answer on the same paths is not checked.
	up := &fakeUp{answer: func(r *http.Request) *http.Response { return answer(r, 200, `{"type":"message"}`) }}
	p, err := failover.New([]failover.Member[failover.Upstream]{{Name: "m", Client: failover.Upstream{BaseURL: "https://m.example", Key: "k", Transport: up}}})
	require.NoError(t, err)
	for _, path := range []string{"/v1/messages", "/v1/responses", "/v1beta/models/m:generateContent"} {
		resp := do(t, failover.NewTransport(p), http.MethodPost, "http://x"+path, `{"model":"m"}`)
		_, err := readToEnd(resp.Body)
		assert.Equal(t, io.EOF, err, path)
	}
}

// Every response Transport returns names the member that served it in
// X-Failover-Member: a success, a request error passed through, the last
// upstream's answer when every member failed. The pool's own 503 (no
// member could be tried) has no such header. Secrets stay out of every
// header: canary keys of odd shapes, echoed by the upstreams.
func TestTransportMemberHeader(t *testing.T) {
	const keyA, keyB = "canary~A.1/+=x:y" + "zzzz", "Canary B!#$%&'*+-.^_`|~9"
	echo := func(status int) func(r *http.Request) *http.Response {
		return func(r *http.Request) *http.Response {
			k := r.Header.Get("Authorization")
			return answer(r, status, `{"error":{"message":"bad key `+k+`"}}`, "X-Echo", k, "X-Failover-Member", "spoofed")
		}
	}
	a := &fakeUp{answer: echo(500)}
	b := &fakeUp{answer: echo(400)}
	p, err := failover.New([]failover.Member[failover.Upstream]{
		{Name: "a", Client: failover.Upstream{BaseURL: "https://a.example/v1", Key: keyA, Transport: a}},
		{Name: "b", Client: failover.Upstream{BaseURL: "https://b.example/v1", Key: keyB, Transport: b}},
	})
	require.NoError(t, err)
	tr := failover.NewTransport(p)
	check := func(resp *http.Response, status int, member string) {
		t.Helper()
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		assert.Equal(t, status, resp.StatusCode)
		assert.Equal(t, member, resp.Header.Get("X-Failover-Member"))
		if member == "" {
			assert.NotContains(t, resp.Header, "X-Failover-Member")
		}
		for k, vs := range resp.Header {
			for _, v := range vs {
				assert.NotContains(t, v, keyA, k)
				assert.NotContains(t, v, keyB, k)
			}
		}
		assert.NotContains(t, string(body), keyA)
		assert.NotContains(t, string(body), keyB)
	}
	// a fails (500), b answers a request error: passed through, from b.
	check(do(t, tr, http.MethodPost, "http://x/v1/chat/completions", `{}`), 400, "b")
	assert.Equal(t, "Bearer "+keyB, b.seen[0].Header.Get("Authorization"), "b gets its own key, never a's")
	// b succeeds: its success is named.
	b.answer = func(r *http.Request) *http.Response { return answer(r, 200, `{}`) }
	check(do(t, tr, http.MethodPost, "http://x/v1/chat/completions", `{}`), 200, "b")
	// every member fails, rate limited: the last upstream's answer, named.
	limited := func(r *http.Request) *http.Response {
		return answer(r, 429, `{"error":{"message":"slow down"}}`, "Retry-After", "30", "X-Echo", r.Header.Get("Authorization"))
	}
	a.answer, b.answer = limited, limited
	require.NoError(t, p.Enable("a"))
	check(do(t, tr, http.MethodPost, "http://x/v1/chat/completions", `{}`), 429, "b")
	// every member cooling: the pool's own 503, no member.
	calls := a.n() + b.n()
	check(do(t, tr, http.MethodPost, "http://x/v1/chat/completions", `{}`), 503, "")
	assert.Equal(t, calls, a.n()+b.n(), "no upstream call")
}
