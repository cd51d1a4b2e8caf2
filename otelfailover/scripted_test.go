package otelfailover_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/otelfailover"
)

// Canary keys of unlike shapes: none may reach an attribute.
var canaries = map[string]string{
	"revoked": "sk-proj-CANARYrevoked0x7f3a",
	"limited": "canary_limited::42::ω",
	"healthy": "AIzaCANARYhealthy-9b1",
}

// provider is a loopback OpenAI-compatible server that answers by key: a
// revoked key gets 401, a limited one 429, a healthy one a chat answer or
// a stream with usage (or a 500 while failing is set). It counts the
// requests per key.
type provider struct {
	failing atomic.Bool
	mu      sync.Mutex
	calls   map[string]int
}

func (p *provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	name := ""
	for n, k := range canaries {
		if k == key {
			name = n
		}
	}
	p.mu.Lock()
	p.calls[name]++
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case name == "revoked":
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"message":"Incorrect API key provided: `+key+`.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`)
	case name == "limited":
		w.Header().Set("Retry-After", "20")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":{"message":"Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, Requested 1.","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
	case name != "healthy":
		w.WriteHeader(http.StatusBadRequest)
	case p.failing.Load():
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}`)
	case strings.Contains(string(body), `"stream":true`):
		w.Header().Set("Content-Type", "text/event-stream")
		for _, chunk := range []string{
			`{"id":"s","object":"chat.completion.chunk","model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}],"usage":null}`,
			`{"id":"s","object":"chat.completion.chunk","model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}],"usage":null}`,
			`{"id":"s","object":"chat.completion.chunk","model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":21,"completion_tokens":2,"total_tokens":23}}`,
		} {
			_, _ = fmt.Fprintf(w, "data: %s\n\n", chunk)
		}
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	default:
		_, _ = io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}`)
	}
}

// scriptedPool is a go-openai pool of the three keys on srv, in priority
// order, with om's option.
func scriptedPool(t *testing.T, srv *httptest.Server, opts ...failover.Option) *failover.OpenAI {
	t.Helper()
	var ms []failover.Member[*openai.Client]
	for i, name := range []string{"revoked", "limited", "healthy"} {
		cfg := openai.DefaultConfig(canaries[name])
		cfg.BaseURL = srv.URL + "/v1"
		cfg.HTTPClient = srv.Client()
		m := failover.OpenAIMember(name, cfg)
		m.Priority, m.Model = i, "gpt-4o-mini"
		if name == "healthy" {
			m.Model = "gpt-4o"
		}
		ms = append(ms, m)
	}
	p, err := failover.New(ms, opts...)
	require.NoError(t, err)
	return failover.NewOpenAI(p)
}

// TestMetricsScriptedRun drives a real go-openai client through the pool
// against a loopback provider: a chat that fails over from a revoked key
// and a rate-limited key to the healthy one, a second chat that skips
// both, a stream with usage, and a chat the healthy key fails with a 500.
// Every counter and histogram the README names has its value per member
// and reason.
func TestMetricsScriptedRun(t *testing.T) {
	up := &provider{calls: map[string]int{}}
	srv := httptest.NewServer(up)
	defer srv.Close()
	reader := sdkmetric.NewManualReader()
	om, err := otelfailover.NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	require.NoError(t, err)
	o := scriptedPool(t, srv, om.Option()) // the option observes the pool's gauges
	require.NoError(t, om.Err())

	ctx := otelfailover.WithOperation(context.Background(), "chat", "openai")
	req := openai.ChatCompletionRequest{Model: "gpt-4o", Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Hello"}}}
	for i := range 2 {
		resp, err := o.CreateChatCompletion(ctx, req)
		require.NoError(t, err, "chat %d", i)
		assert.Equal(t, "Hello", resp.Choices[0].Message.Content)
	}
	sreq := req
	sreq.Stream, sreq.StreamOptions = true, &openai.StreamOptions{IncludeUsage: true}
	s, err := o.CreateChatCompletionStream(ctx, sreq)
	require.NoError(t, err)
	for err == nil {
		_, err = s.Recv()
	}
	require.ErrorIs(t, err, io.EOF)
	require.NoError(t, s.Close())
	up.failing.Store(true)
	_, err = o.CreateChatCompletion(ctx, req)
	require.Error(t, err)
	var fe *failover.Error
	require.True(t, errors.As(err, &fe), "%v", err)

	assert.Equal(t, map[string]int{"revoked": 1, "limited": 1, "healthy": 4}, up.calls, "upstream requests per key")
	got := collect(t, reader)
	member := func(name string, kv ...string) map[string]string {
		m := map[string]string{"failover.member": name}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	assert.ElementsMatch(t, []point{{member("revoked"), 1}, {member("limited"), 1}, {member("healthy"), 4}}, got["failover.member.requests"])
	assert.ElementsMatch(t, []point{
		{member("revoked", "failover.reason", "auth"), 1},
		{member("limited", "failover.reason", "rate_limit"), 1},
		{member("healthy", "failover.reason", "server"), 1},
	}, got["failover.member.failures"])
	assert.Empty(t, got["failover.member.disabled"], "a 401 cools in the permanent lane; disabling takes a dead account or Disable")
	assert.ElementsMatch(t, []point{
		{member("revoked", "failover.lane", "permanent", "failover.reason", "auth"), 1},
		{member("limited", "failover.lane", "transient", "failover.reason", "rate_limit"), 1},
		{member("healthy", "failover.lane", "transient", "failover.reason", "server"), 1},
	}, got["failover.member.cooldowns"], "the healthy key's one 500 is a blip: a window of no length")
	skips := map[string]float64{}
	for _, p := range got["failover.member.skips"] {
		skips[p.attrs["failover.member"]+"/"+p.attrs["failover.skip.cause"]] = p.value
	}
	assert.Equal(t, map[string]float64{
		"revoked/cooling": 3, "revoked/probing": 0, "revoked/disabled": 0, "revoked/limited": 0, "revoked/model": 0,
		"limited/cooling": 3, "limited/probing": 0, "limited/disabled": 0, "limited/limited": 0, "limited/model": 0,
		"healthy/cooling": 0, "healthy/probing": 0, "healthy/disabled": 0, "healthy/limited": 0, "healthy/model": 0,
	}, skips, "the three calls after the first pass both keys over, the successful ones too")
	assert.ElementsMatch(t, []point{
		{member("revoked", "error.type", "auth"), 1},
		{member("limited", "error.type", "rate_limit"), 1},
		{member("healthy"), 3},
		{member("healthy", "error.type", "server"), 1},
	}, got["failover.attempt.duration"])
	call := func(kv ...string) map[string]string {
		return member("healthy", append([]string{"gen_ai.operation.name", "chat", "gen_ai.provider.name", "openai", "gen_ai.request.model", "gpt-4o"}, kv...)...)
	}
	assert.ElementsMatch(t, []point{
		{call("gen_ai.response.model", "gpt-4o-2024-08-06"), 2}, // the chats: their usage arrived within the call
		{call(), 1},                       // the stream: its usage arrives as it is read, after the call
		{call("error.type", "server"), 1}, // the 500
	}, got["gen_ai.client.operation.duration"])
	tokens := call("gen_ai.response.model", "gpt-4o-2024-08-06")
	in, out := copyWith(tokens, "gen_ai.token.type", "input"), copyWith(tokens, "gen_ai.token.type", "output")
	assert.ElementsMatch(t, []point{{in, 3}, {out, 3}}, got["gen_ai.client.token.usage"], "one record per response and type")
	assert.ElementsMatch(t, []point{{in, 11 + 11 + 21}, {out, 7 + 7 + 2}}, got["gen_ai.client.token.usage.sum"])
	assert.ElementsMatch(t, []point{{member("revoked"), 0}, {member("limited"), 0}, {member("healthy"), 3}}, got["failover.member.served"])
	assert.ElementsMatch(t, []point{
		{member("revoked", "gen_ai.token.type", "input"), 0}, {member("revoked", "gen_ai.token.type", "output"), 0},
		{member("limited", "gen_ai.token.type", "input"), 0}, {member("limited", "gen_ai.token.type", "output"), 0},
		{member("healthy", "gen_ai.token.type", "input"), 43}, {member("healthy", "gen_ai.token.type", "output"), 16},
	}, got["failover.member.tokens"])
	states := map[string]string{}
	for _, p := range got["failover.member.state"] {
		if p.value == 1 {
			assert.NotContains(t, states, p.attrs["failover.member"], "one state per member")
			states[p.attrs["failover.member"]] = p.attrs["failover.state"]
		}
	}
	assert.Len(t, got["failover.member.state"], 12, "four states per member")
	assert.Equal(t, map[string]string{"revoked": "cooling_down", "limited": "cooling_down", "healthy": "active"}, states)
	assert.ElementsMatch(t, []point{{member("revoked"), 0}, {member("limited"), 0}, {member("healthy"), 0}}, got["failover.member.in_flight"])
	for _, name := range []string{"failover.member.probes", "failover.member.recoveries", "failover.member.hedges", "failover.retry_budget.refusals"} {
		assert.Empty(t, got[name], name)
	}
	noSecrets(t, got)
}

func copyWith(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// noSecrets fails if an attribute value holds a canary key or a part of
// one.
func noSecrets(t *testing.T, got map[string][]point) {
	t.Helper()
	for name, ps := range got {
		for _, p := range ps {
			for k, v := range p.attrs {
				for _, key := range canaries {
					assert.NotContains(t, v, key, "%s %s", name, k)
					assert.NotContains(t, v, key[len(key)/2:], "%s %s", name, k)
				}
			}
		}
	}
}

// Without WithOperation, a call through the OpenAI client is named by its
// method ("chat", "embeddings") and its provider is the serving member's:
// gen_ai.operation.name and gen_ai.provider.name as the conventions
// require, with no setup.
func TestMetricsNameTheOperationAndProvider(t *testing.T) {
	up := &provider{calls: map[string]int{}}
	srv := httptest.NewServer(up)
	defer srv.Close()
	reader := sdkmetric.NewManualReader()
	om, err := otelfailover.NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	require.NoError(t, err)
	cfg := openai.DefaultConfig(canaries["healthy"])
	cfg.BaseURL, cfg.HTTPClient = srv.URL+"/v1", srv.Client()
	m := failover.OpenAIMember("healthy", cfg)
	m.Provider, m.Model = "groq", "llama-3.3-70b-versatile"
	p, err := failover.New([]failover.Member[*openai.Client]{m}, om.Option())
	require.NoError(t, err)
	reg, err := om.Observe(p) // again: it replaces the option's registration, no point twice
	require.NoError(t, err)
	defer func() { _ = reg.Unregister() }()
	o := failover.NewOpenAI(p)
	_, err = o.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}})
	require.NoError(t, err)
	// A provider named by WithOperation yields to the member's own.
	_, err = o.CreateChatCompletion(otelfailover.WithOperation(context.Background(), "chat", "openai"), openai.ChatCompletionRequest{Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}})
	require.NoError(t, err)

	got := collect(t, reader)
	want := map[string]string{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "groq", "gen_ai.request.model": "llama-3.3-70b-versatile",
		"gen_ai.response.model": "gpt-4o-2024-08-06", "failover.member": "healthy"}
	assert.Equal(t, []point{{want, 2}}, got["gen_ai.client.operation.duration"])
	assert.ElementsMatch(t, []point{{copyWith(want, "gen_ai.token.type", "input"), 2}, {copyWith(want, "gen_ai.token.type", "output"), 2}}, got["gen_ai.client.token.usage"])
	assert.Equal(t, []point{{map[string]string{"failover.member": "healthy"}, 2}}, got["failover.member.served"])
}
