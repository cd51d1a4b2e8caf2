package main

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// Canary keys: none may reach a Status field, an error's text, or (the
// SDK's own) an upstream.
const (
	canaryRevoked = "sk-proj-CANARY~revoked/7Qx=Zp"
	canaryGood    = "sk-proj-CANARY~good/Y2k=Lw"
	canarySDK     = "sk-proj-CANARY~sdk/never=sent"
)

// The usage the fake provider reports, and the model it names.
const (
	servedModel = "gpt-4o-2024-08-06"

	chatPrompt, chatCached, chatCompletion, chatReasoning = 1117, 1024, 46, 12
	streamPrompt, streamCompletion                        = 19, 10
)

// openAIServer is a loopback OpenAI: a revoked key gets OpenAI's 401
// invalid_api_key; the good key gets a chat completion, or a chat stream
// whose last chunk (stream_options.include_usage) carries the usage.
type openAIServer struct {
	*httptest.Server
	mu    sync.Mutex
	calls map[string]int // upstream requests by key
	bad   []string       // what a request got wrong
	gzips int            // answers sent gzip-encoded
}

func newOpenAIServer(t *testing.T) *openAIServer {
	t.Helper()
	s := &openAIServer{calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *openAIServer) serve(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	body, _ := io.ReadAll(r.Body)
	var req struct {
		Model         string `json:"model"`
		Stream        bool   `json:"stream"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	jsonErr := json.Unmarshal(body, &req)
	s.mu.Lock()
	s.calls[key]++
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" || jsonErr != nil || req.Model != "gpt-4o" {
		s.bad = append(s.bad, fmt.Sprintf("%s %s model %q (%v)", r.Method, r.URL.Path, req.Model, jsonErr))
	}
	if strings.Contains(fmt.Sprint(r.Header, r.URL), canarySDK) {
		s.bad = append(s.bad, "the SDK's own key reached the upstream")
	}
	if req.Stream && !req.StreamOptions.IncludeUsage {
		s.bad = append(s.bad, "a stream without stream_options.include_usage")
	}
	s.mu.Unlock()

	switch key {
	case canaryGood:
	case canaryRevoked:
		// OpenAI's shape for a bad key; the key is echoed whole (OpenAI masks
		// it) so that any leak of the body shows.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`, key)
		return
	default:
		http.Error(w, "unexpected key", http.StatusTeapot)
		return
	}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		out := s.compressed(w, r)
		defer out.Close()
		fmt.Fprintf(out, `{
  "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  "object": "chat.completion",
  "created": 1741570283,
  "model": %q,
  "choices": [
    {
      "index": 0,
      "message": {"role": "assistant", "content": "Hello there!", "refusal": null, "annotations": []},
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": %d,
    "completion_tokens": %d,
    "total_tokens": %d,
    "prompt_tokens_details": {"cached_tokens": %d, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": %d, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
  },
  "service_tier": "default",
  "system_fingerprint": "fp_fc9f1d7035"
}`, servedModel, chatPrompt, chatCompletion, chatPrompt+chatCompletion, chatCached, chatReasoning)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	f, _ := w.(http.Flusher)
	chunk := func(data string) {
		fmt.Fprintf(w, "data: %s\n\n", data)
		if f != nil {
			f.Flush()
		}
	}
	head := fmt.Sprintf(`{"id":"chatcmpl-AsK2","object":"chat.completion.chunk","created":1741570283,"model":%q,"service_tier":"default","system_fingerprint":"fp_44709d6fcb",`, servedModel)
	chunk(head + `"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}`)
	for _, part := range []string{"Hello", " from", " a stream"} {
		chunk(head + fmt.Sprintf(`"choices":[{"index":0,"delta":{"content":%q},"logprobs":null,"finish_reason":null}],"usage":null}`, part))
	}
	chunk(head + `"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`)
	chunk(head + fmt.Sprintf(`"choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`,
		streamPrompt, streamCompletion, streamPrompt+streamCompletion))
	chunk("[DONE]")
}

// compressed returns w, gzip-encoded when the request accepts it, as the
// provider's JSON answers are.
func (s *openAIServer) compressed(w http.ResponseWriter, r *http.Request) io.WriteCloser {
	if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		return nopWriteCloser{w}
	}
	s.mu.Lock()
	s.gzips++
	s.mu.Unlock()
	w.Header().Set("Content-Encoding", "gzip")
	return gzip.NewWriter(w)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// counts returns the upstream requests by key (and under "gzip" the
// answers sent gzip-encoded), and fails on any request
// the SDK and the transport should not have sent.
func (s *openAIServer) counts(t *testing.T) map[string]int {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.bad {
		t.Errorf("upstream request: %s", b)
	}
	out := map[string]int{"gzip": s.gzips}
	for k, n := range s.calls {
		out[k] = n
	}
	return out
}

// recorder keeps what the hooks hear: each Usage, and each failed
// attempt's error text.
type recorder struct {
	mu     sync.Mutex
	usages []failover.Usage
	errs   []string
}

func (r *recorder) hooks() failover.Hooks {
	return failover.Hooks{
		Usage: func(_ context.Context, u failover.Usage) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.usages = append(r.usages, u)
		},
		Attempt: func(ctx context.Context, _ string, _ int) (context.Context, func(failover.AttemptEnd)) {
			return ctx, func(e failover.AttemptEnd) {
				if e.Err != nil {
					r.mu.Lock()
					defer r.mu.Unlock()
					r.errs = append(r.errs, e.Err.Error())
				}
			}
		},
	}
}

func (r *recorder) heard() ([]failover.Usage, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]failover.Usage(nil), r.usages...), append([]string(nil), r.errs...)
}

// usageClient is an openai-go client over a pool of the given keys at
// srv, with the recorder's hooks.
func usageClient(t *testing.T, srv *openAIServer, rec *recorder, keys map[string]string, order ...string) (openai.Client, *failover.Pool[failover.Upstream]) {
	t.Helper()
	var members []failover.Member[failover.Upstream]
	for _, name := range order {
		members = append(members, failover.Member[failover.Upstream]{Name: name, Client: failover.Upstream{BaseURL: srv.URL + "/v1", Key: keys[name]}})
	}
	pool, err := failover.New(members, failover.WithHooks(rec.hooks()))
	if err != nil {
		t.Fatal(err)
	}
	client := openai.NewClient(
		option.WithBaseURL("http://failover.local/v1/"),
		option.WithAPIKey(canarySDK),
		option.WithHTTPClient(&http.Client{Transport: failover.NewTransport(pool)}),
		option.WithMaxRetries(0),
	)
	return client, pool
}

// noCanary fails if a canary key shows in any field of the pool's status
// or in any of texts.
func noCanary(t *testing.T, pool *failover.Pool[failover.Upstream], texts ...string) {
	t.Helper()
	st, err := json.Marshal(pool.Status())
	if err != nil {
		t.Fatal(err)
	}
	all := append([]string{string(st), fmt.Sprintf("%+v", pool.Status())}, texts...)
	for _, k := range []string{canaryRevoked, canaryGood, canarySDK} {
		for _, s := range all {
			if strings.Contains(s, k) {
				t.Errorf("a canary key shows: %s", s)
			}
		}
	}
}

// wantStatus checks one member's counters.
func wantStatus(t *testing.T, s failover.Status, served, prompt, completion uint64) {
	t.Helper()
	if s.Served != served || s.PromptTokens != prompt || s.CompletionTokens != completion {
		t.Errorf("%s: served=%d prompt=%d completion=%d, want %d %d %d", s.Name, s.Served, s.PromptTokens, s.CompletionTokens, served, prompt, completion)
	}
}

func wantUsages(t *testing.T, got []failover.Usage, want ...failover.Usage) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Usage hook heard %+v, want %+v", got, want)
	}
}

// openai-go's chat completion and chat stream through the transport: the
// revoked key is asked once, the good key serves both, and its Status and
// the Usage hook count exactly the usage the provider reported, named
// with the model the response names (not the one asked for). Cached
// prompt tokens are part of prompt_tokens and reasoning tokens part of
// completion_tokens: neither is added again.
func TestUsageCountedThroughOpenAIGo(t *testing.T) {
	srv := newOpenAIServer(t)
	rec := &recorder{}
	client, pool := usageClient(t, srv, rec, map[string]string{"revoked": canaryRevoked, "good": canaryGood}, "revoked", "good")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	if err != nil {
		t.Fatalf("chat completion: %v", err)
	}
	if resp.Model != servedModel || resp.Choices[0].Message.Content != "Hello there!" || resp.Usage.PromptTokens != chatPrompt {
		t.Fatalf("the SDK decoded %q %q %d", resp.Model, resp.Choices[0].Message.Content, resp.Usage.PromptTokens)
	}
	st := pool.Status()
	wantStatus(t, st[0], 0, 0, 0)
	wantStatus(t, st[1], 1, chatPrompt, chatCompletion)
	if st[0].Reason != failover.ReasonAuth {
		t.Errorf("revoked member: reason %q, want auth", st[0].Reason)
	}
	usages, _ := rec.heard()
	wantUsages(t, usages, failover.Usage{Member: "good", Model: servedModel, PromptTokens: chatPrompt, CompletionTokens: chatCompletion})

	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:         "gpt-4o",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var text strings.Builder
	var last openai.ChatCompletionChunk
	for stream.Next() {
		last = stream.Current()
		if len(last.Choices) > 0 {
			text.WriteString(last.Choices[0].Delta.Content)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("chat stream: %v", err)
	}
	if err := stream.Close(); err != nil {
		t.Fatalf("closing the stream: %v", err)
	}
	if text.String() != "Hello from a stream" || last.Usage.CompletionTokens != streamCompletion {
		t.Fatalf("the SDK streamed %q, last usage %+v", text.String(), last.Usage)
	}

	st = pool.Status()
	wantStatus(t, st[0], 0, 0, 0)
	wantStatus(t, st[1], 2, chatPrompt+streamPrompt, chatCompletion+streamCompletion)
	usages, errs := rec.heard()
	wantUsages(t, usages,
		failover.Usage{Member: "good", Model: servedModel, PromptTokens: chatPrompt, CompletionTokens: chatCompletion},
		failover.Usage{Member: "good", Model: servedModel, PromptTokens: streamPrompt, CompletionTokens: streamCompletion})
	if got := srv.counts(t); len(got) != 3 || got[canaryRevoked] != 1 || got[canaryGood] != 2 || got["gzip"] != 1 {
		t.Errorf("upstream requests by key: revoked=%d good=%d (%d keys), gzip-encoded answers %d; want 1 2 and 1", got[canaryRevoked], got[canaryGood], len(got)-1, got["gzip"])
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "401") {
		t.Errorf("failed attempts: %q, want the one 401", errs)
	}
	noCanary(t, pool, errs...)
}

// When the only key is revoked, the SDK gets the 401 back: no usage is
// counted or heard, and neither the error nor the body the SDK reads
// shows a key.
func TestUsageNoneOnRevokedOpenAIGo(t *testing.T) {
	srv := newOpenAIServer(t)
	rec := &recorder{}
	client, pool := usageClient(t, srv, rec, map[string]string{"revoked": canaryRevoked}, "revoked")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("err = %v, want the upstream's 401", err)
	}
	if !strings.Contains(apiErr.RawJSON(), "invalid_api_key") {
		t.Errorf("the SDK did not get OpenAI's error body: %s", apiErr.RawJSON())
	}
	wantStatus(t, pool.Status()[0], 0, 0, 0)
	usages, errs := rec.heard()
	wantUsages(t, usages)
	if got := srv.counts(t); len(got) != 2 || got[canaryRevoked] != 1 {
		t.Errorf("upstream requests by key: %d", got[canaryRevoked])
	}
	noCanary(t, pool, append(errs, err.Error(), apiErr.RawJSON(), apiErr.Message)...)
}
