package failover_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/llmfailover/failover"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// usageUpstream answers every request with status and body (an event
// stream when body starts with "data:" or "event:") and counts them.
type usageUpstream struct {
	status int
	body   func(path string) string
	calls  atomic.Int64
}

func (u *usageUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	u.calls.Add(1)
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	b := u.body(r.URL.Path)
	h := http.Header{"Content-Type": {"application/json"}}
	if strings.HasPrefix(b, "data:") || strings.HasPrefix(b, "event:") {
		h.Set("Content-Type", "text/event-stream")
	}
	return &http.Response{StatusCode: u.status, Header: h, Body: io.NopCloser(strings.NewReader(b)), Request: r}, nil
}

const unauthorized = `{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}`

// usageOf returns the served calls and tokens of member name.
func usageOf[C any](t *testing.T, p *failover.Pool[C], name string) [3]uint64 {
	t.Helper()
	for _, s := range p.Status() {
		if s.Name == name {
			return [3]uint64{s.Served, s.PromptTokens, s.CompletionTokens}
		}
	}
	t.Fatalf("no member %q", name)
	return [3]uint64{}
}

// The text of a chat answer names a usage: only the real one counts.
const chatJSON = `{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"see \"usage\":{\"prompt_tokens\":999}"},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":3}}}`

func openAIUsagePool(t *testing.T, good *usageUpstream) (*failover.OpenAI, *usageUpstream) {
	t.Helper()
	bad := &usageUpstream{status: http.StatusUnauthorized, body: func(string) string { return unauthorized }}
	member := func(name string, rt http.RoundTripper) failover.Member[*openai.Client] {
		cfg := openai.DefaultConfig("sk-" + name + "-key")
		cfg.BaseURL = "http://" + name + ".test/v1"
		cfg.HTTPClient = &http.Client{Transport: rt}
		m := failover.OpenAIMember(name, cfg)
		return m
	}
	bm, gm := member("free", bad), member("paid", good)
	gm.Priority = 1
	p, err := failover.New([]failover.Member[*openai.Client]{bm, gm})
	require.NoError(t, err)
	return failover.NewOpenAI(p), bad
}

// A chat, an embedding, a chat stream with include_usage, a completion
// stream read raw and a Responses call add the tokens the provider
// reported to the member that served (the paid one, after the free key's
// 401), and nothing to the member that failed.
func TestUsageOpenAI(t *testing.T) {
	good := &usageUpstream{status: http.StatusOK, body: func(path string) string {
		switch {
		case strings.HasSuffix(path, "/embeddings"):
			return `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"e","usage":{"prompt_tokens":5,"total_tokens":5}}`
		case strings.HasSuffix(path, "/responses"):
			return `{"id":"r1","object":"response","status":"completed","output":[],"usage":{"input_tokens":13,"input_tokens_details":{"cached_tokens":2},"output_tokens":17,"output_tokens_details":{"reasoning_tokens":4},"total_tokens":30},"metadata":{}}`
		}
		return chatJSON
	}}
	o, bad := openAIUsagePool(t, good)
	ctx := context.Background()
	req := openai.ChatCompletionRequest{Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}}

	_, err := o.CreateChatCompletion(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, [3]uint64{1, 11, 7}, usageOf(t, o.Pool(), "paid"))
	assert.Equal(t, [3]uint64{}, usageOf(t, o.Pool(), "free"))
	assert.Equal(t, int64(1), bad.calls.Load())
	require.NoError(t, o.Pool().Enable("free")) // the 401 disabled it: let it fail again

	_, err = o.CreateEmbeddings(ctx, openai.EmbeddingRequestStrings{Input: []string{"a"}, Model: "e"})
	require.NoError(t, err)
	assert.Equal(t, [3]uint64{2, 16, 7}, usageOf(t, o.Pool(), "paid"))
	require.NoError(t, o.Pool().Enable("free"))

	_, err = o.CreateResponse(ctx, openai.CreateResponseRequest{Model: "m", Input: "hi"})
	require.NoError(t, err)
	assert.Equal(t, [3]uint64{3, 29, 24}, usageOf(t, o.Pool(), "paid"))
	require.NoError(t, o.Pool().Enable("free"))

	good.body = func(path string) string {
		if strings.HasSuffix(path, "/completions") && !strings.HasSuffix(path, "/chat/completions") {
			return `data: {"id":"t","object":"text_completion","choices":[{"text":"a","index":0}]}` + "\n\n" +
				`data: {"id":"t","object":"text_completion","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}` + "\n\ndata: [DONE]\n\n"
		}
		return `data: {"id":"s","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"hel"}}],"usage":null}` + "\n\n" +
			`data: {"id":"s","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}],"usage":null}` + "\n\n" +
			`data: {"id":"s","object":"chat.completion.chunk","model":"m","choices":[],"usage":{"prompt_tokens":21,"completion_tokens":2,"total_tokens":23}}` + "\n\n" +
			"data: [DONE]\n\n"
	}
	sreq := req
	sreq.Stream, sreq.StreamOptions = true, &openai.StreamOptions{IncludeUsage: true}
	s, err := o.CreateChatCompletionStream(ctx, sreq)
	require.NoError(t, err)
	assert.Equal(t, "paid", s.Member())
	for {
		if _, err = s.Recv(); err != nil {
			break
		}
	}
	require.ErrorIs(t, err, io.EOF)
	require.NoError(t, s.Close())
	assert.Equal(t, [3]uint64{4, 50, 26}, usageOf(t, o.Pool(), "paid"))
	require.NoError(t, o.Pool().Enable("free"))

	cs, err := o.CreateCompletionStream(ctx, openai.CompletionRequest{Model: "m", Prompt: "hi", Stream: true})
	require.NoError(t, err)
	for {
		if _, err = cs.RecvRaw(); err != nil {
			break
		}
	}
	require.ErrorIs(t, err, io.EOF)
	require.NoError(t, cs.Close())
	assert.Equal(t, [3]uint64{5, 52, 27}, usageOf(t, o.Pool(), "paid"))
	assert.Equal(t, [3]uint64{}, usageOf(t, o.Pool(), "free"))
	assert.Equal(t, int64(5), bad.calls.Load(), "every call tried the free key first")
	assert.Equal(t, int64(5), good.calls.Load())
}

// A call that no member serves adds nothing anywhere.
func TestUsageFailedCall(t *testing.T) {
	fail := &usageUpstream{status: http.StatusInternalServerError, body: func(string) string {
		return `{"error":{"message":"boom","type":"server_error"},"usage":{"prompt_tokens":4,"completion_tokens":4}}`
	}}
	o, bad := openAIUsagePool(t, fail)
	_, err := o.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}})
	require.Error(t, err)
	assert.Equal(t, int64(1), bad.calls.Load())
	assert.Positive(t, fail.calls.Load())
	for _, s := range o.Pool().Status() {
		assert.Zero(t, s.Served, s.Name)
		assert.Zero(t, s.PromptTokens, s.Name)
		assert.Zero(t, s.CompletionTokens, s.Name)
	}
}

// Through Transport: an OpenAI JSON answer (pretty-printed), an Anthropic
// message, an Anthropic stream (message_start's input, message_delta's
// cumulative output), a Gemini answer and a Gemini stream (the last
// chunk's counts) add the provider's tokens to the member that served,
// after the first member's 401, and nothing to that member.
func TestUsageTransport(t *testing.T) {
	const anthropicStream = "event: message_start\n" +
		`data: {"type":"message_start","message":{"id":"m1","type":"message","role":"assistant","content":[],"usage":{"input_tokens":25,"cache_read_input_tokens":0,"output_tokens":1}}}` + "\n\n" +
		"event: content_block_delta\n" +
		`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\"usage\":{\"output_tokens\":99}"}}` + "\n\n" +
		"event: message_delta\n" +
		`data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}` + "\n\n" +
		"event: message_stop\n" + `data: {"type":"message_stop"}` + "\n\n"
	const geminiStream = `data: {"candidates":[{"content":{"parts":[{"text":"a"}],"role":"model"}}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":1,"totalTokenCount":9}}` + "\r\n\r\n" +
		`data: {"candidates":[{"content":{"parts":[{"text":"b"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":6,"thoughtsTokenCount":2,"totalTokenCount":16,"promptTokensDetails":[{"modality":"TEXT","tokenCount":8}]}}` + "\r\n\r\n"
	for _, tc := range []struct {
		name, path, req, body string
		want                  [2]uint64
	}{
		{"openai", "/v1/chat/completions", `{"model":"m"}`, "{\n  \"id\": \"c\",\n  \"choices\": [],\n  \"usage\": {\n    \"prompt_tokens\": 11,\n    \"completion_tokens\": 7\n  }\n}\n", [2]uint64{11, 7}},
		{"anthropic", "/v1/messages", `{"model":"m"}`, `{"id":"m1","type":"message","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":12,"output_tokens":6}}`, [2]uint64{12, 6}},
		{"anthropic stream", "/v1/messages", `{"model":"m","stream":true}`, anthropicStream, [2]uint64{25, 15}},
		{"gemini", "/v1beta/models/g:generateContent", `{}`, "{\n  \"candidates\": [{\"finishReason\": \"STOP\"}],\n  \"usageMetadata\": {\n    \"promptTokenCount\": 4,\n    \"candidatesTokenCount\": 3,\n    \"totalTokenCount\": 7\n  },\n  \"modelVersion\": \"g\"\n}\n", [2]uint64{4, 3}},
		{"gemini stream", "/v1beta/models/g:streamGenerateContent", `{}`, geminiStream, [2]uint64{8, 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := &usageUpstream{status: http.StatusUnauthorized, body: func(string) string { return unauthorized }}
			good := &usageUpstream{status: http.StatusOK, body: func(string) string { return tc.body }}
			p, err := failover.New([]failover.Member[failover.Upstream]{
				{Name: "free", Client: failover.Upstream{BaseURL: "http://free.test", Key: "k-free", Transport: bad}},
				{Name: "paid", Priority: 1, Client: failover.Upstream{BaseURL: "http://paid.test", Key: "k-paid", Transport: good}},
			})
			require.NoError(t, err)
			client := &http.Client{Transport: failover.NewTransport(p)}
			u := "http://failover.local" + tc.path
			if strings.Contains(tc.path, "stream") {
				u += "?alt=sse"
			}
			resp, err := client.Post(u, "application/json", strings.NewReader(tc.req))
			require.NoError(t, err)
			assert.Equal(t, "paid", resp.Header.Get("X-Failover-Member"))
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, tc.body, string(b), "the body passes through as it is")
			assert.Equal(t, [3]uint64{1, tc.want[0], tc.want[1]}, usageOf(t, p, "paid"))
			assert.Equal(t, [3]uint64{}, usageOf(t, p, "free"))
			assert.Equal(t, int64(1), bad.calls.Load())
			assert.Equal(t, int64(1), good.calls.Load())
		})
	}
}

// A JSON decoder that stops at the document's end without reading EOF
// or closing the body still counts the usage, once; closing it later
// counts nothing more.
func TestUsageTransportDecoderStops(t *testing.T) {
	good := &usageUpstream{status: http.StatusOK, body: func(string) string { return chatJSON }}
	p, err := failover.New([]failover.Member[failover.Upstream]{{Name: "a", Client: failover.Upstream{BaseURL: "http://a.test", Key: "k", Transport: good}}})
	require.NoError(t, err)
	resp, err := (&http.Client{Transport: failover.NewTransport(p)}).Post("http://x/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m"}`))
	require.NoError(t, err)
	buf := make([]byte, len(chatJSON)) // exactly the document: no EOF yet
	_, err = io.ReadFull(resp.Body, buf)
	require.NoError(t, err)
	assert.Equal(t, [3]uint64{1, 11, 7}, usageOf(t, p, "a"))
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, [3]uint64{1, 11, 7}, usageOf(t, p, "a"))
}

// ReportUsage adds to the member named, ignores unknown names and
// negative counts, and counts no call.
func TestReportUsage(t *testing.T) {
	p, err := failover.New([]failover.Member[int]{{Name: "a", Client: 1}, {Name: "b", Client: 2}})
	require.NoError(t, err)
	p.ReportUsage("a", 3, 4)
	p.ReportUsage("a", -5, 1)
	p.ReportUsage("nobody", 9, 9)
	assert.Equal(t, [3]uint64{0, 3, 5}, usageOf(t, p, "a"))
	assert.Equal(t, [3]uint64{}, usageOf(t, p, "b"))
}

// Concurrent chats, Transport calls and ReportUsage add up exactly
// (run with -race).
func TestUsageConcurrent(t *testing.T) {
	good := &usageUpstream{status: http.StatusOK, body: func(string) string { return chatJSON }}
	cfg := openai.DefaultConfig("sk-a")
	cfg.BaseURL = "http://a.test/v1"
	cfg.HTTPClient = &http.Client{Transport: good}
	p, err := failover.New([]failover.Member[*openai.Client]{failover.OpenAIMember("a", cfg)})
	require.NoError(t, err)
	o := failover.NewOpenAI(p)
	tp, err := failover.New([]failover.Member[failover.Upstream]{{Name: "t", Client: failover.Upstream{BaseURL: "http://t.test", Key: "k", Transport: good}}})
	require.NoError(t, err)
	client := &http.Client{Transport: failover.NewTransport(tp)}
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for i := range n {
		wg.Add(3)
		go func() {
			defer wg.Done()
			_, err := o.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: fmt.Sprint(i)}}})
			errs <- err
		}()
		go func() {
			defer wg.Done()
			resp, err := client.Post("http://x/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m"}`))
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
			errs <- err
		}()
		go func() { defer wg.Done(); p.ReportUsage("a", 1, 0); errs <- nil }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, [3]uint64{n, n*11 + n, n * 7}, usageOf(t, p, "a"))
	assert.Equal(t, [3]uint64{n, n * 11, n * 7}, usageOf(t, tp, "t"))
}

// The Usage hook hears each response's usage with the model it names and
// the context of the attempt that got it: a chat, a chat stream read to
// its usage chunk, a Transport call (Gemini's modelVersion) and
// ReportUsage.
func TestUsageHook(t *testing.T) {
	type attemptKey struct{}
	var mu sync.Mutex
	var got []failover.Usage
	var attempts []any
	hooks := failover.WithHooks(failover.Hooks{
		Attempt: func(ctx context.Context, member string, n int) (context.Context, func(failover.AttemptEnd)) {
			return context.WithValue(ctx, attemptKey{}, fmt.Sprintf("%s#%d", member, n)), func(failover.AttemptEnd) {}
		},
		Usage: func(ctx context.Context, u failover.Usage) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, u)
			attempts = append(attempts, ctx.Value(attemptKey{}))
		},
	})
	good := &usageUpstream{status: http.StatusOK, body: func(string) string { return chatJSON }}
	bad := &usageUpstream{status: http.StatusUnauthorized, body: func(string) string { return unauthorized }}
	member := func(name string, rt http.RoundTripper) failover.Member[*openai.Client] {
		cfg := openai.DefaultConfig("sk-" + name + "-key")
		cfg.BaseURL = "http://" + name + ".test/v1"
		cfg.HTTPClient = &http.Client{Transport: rt}
		return failover.OpenAIMember(name, cfg)
	}
	bm, gm := member("free", bad), member("paid", good)
	gm.Priority = 1
	p, err := failover.New([]failover.Member[*openai.Client]{bm, gm}, hooks)
	require.NoError(t, err)
	o := failover.NewOpenAI(p)
	req := openai.ChatCompletionRequest{Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}}
	_, err = o.CreateChatCompletion(context.Background(), req)
	require.NoError(t, err)

	good.body = func(string) string {
		return `data: {"id":"s","object":"chat.completion.chunk","model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}` + "\n\n" +
			`data: {"id":"s","object":"chat.completion.chunk","model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":21,"completion_tokens":2,"total_tokens":23}}` + "\n\ndata: [DONE]\n\n"
	}
	req.Stream, req.StreamOptions = true, &openai.StreamOptions{IncludeUsage: true}
	s, err := o.CreateChatCompletionStream(context.Background(), req)
	require.NoError(t, err)
	for err == nil {
		_, err = s.Recv()
	}
	require.ErrorIs(t, err, io.EOF)
	require.NoError(t, s.Close())
	p.ReportUsage("free", 3, 4)
	p.ReportUsage("nobody", 3, 4) // not a member: no hook
	p.ReportUsage("free", 0, 0)   // nothing: no hook

	gemini := &usageUpstream{status: http.StatusOK, body: func(string) string {
		return `{"candidates":[{"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":3},"modelVersion":"gemini-2.5-flash"}`
	}}
	tp, err := failover.New([]failover.Member[failover.Upstream]{{Name: "g", Client: failover.Upstream{BaseURL: "http://g.test", Key: "k-g", Transport: gemini}}}, hooks)
	require.NoError(t, err)
	resp, err := (&http.Client{Transport: failover.NewTransport(tp)}).Post("http://x/v1beta/models/gemini-2.5-flash:generateContent", "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []failover.Usage{
		{Member: "paid", Model: "m", PromptTokens: 11, CompletionTokens: 7},
		{Member: "paid", Model: "gpt-4o-2024-08-06", PromptTokens: 21, CompletionTokens: 2},
		{Member: "free", PromptTokens: 3, CompletionTokens: 4},
		{Member: "g", Model: "gemini-2.5-flash", PromptTokens: 4, CompletionTokens: 3},
	}, got)
	assert.Equal(t, []any{"paid#2", "paid#1", nil, "g#1"}, attempts, "the context of the attempt that got the response")
}
