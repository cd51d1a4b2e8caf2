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

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/llmfailover/failover"
)

// Canary keys: none may reach a Status field, an error's text, or (the
// SDK's own) an upstream.
const (
	canaryRevoked = "sk-ant-api03-CANARY~revoked/7Qx=Zp"
	canaryGood    = "sk-ant-api03-CANARY~good/Y2k=Lw"
	canarySDK     = "sk-ant-api03-CANARY~sdk/never=sent"
)

// The usage the fake provider reports, and the model it names.
const (
	askedModel  = "claude-sonnet-4-5"
	servedModel = "claude-sonnet-4-5-20250929"

	msgInput, msgCacheWrite, msgCacheRead, msgOutput = 2095, 120, 1800, 503
	streamInput, streamOutputStart, streamOutput     = 472, 2, 89
)

// anthropicServer is a loopback Anthropic Messages API: a revoked key gets
// Anthropic's 401 authentication_error; the good key gets a message, or a
// message stream (message_start with the input tokens, content deltas,
// message_delta with the cumulative output tokens, message_stop).
type anthropicServer struct {
	*httptest.Server
	mu    sync.Mutex
	calls map[string]int // upstream requests by key
	bad   []string       // what a request got wrong
	gzips int            // answers sent gzip-encoded
}

func newAnthropicServer(t *testing.T) *anthropicServer {
	t.Helper()
	s := &anthropicServer{calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *anthropicServer) serve(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("X-Api-Key")
	body, _ := io.ReadAll(r.Body)
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	jsonErr := json.Unmarshal(body, &req)
	s.mu.Lock()
	s.calls[key]++
	if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" || jsonErr != nil || req.Model != askedModel {
		s.bad = append(s.bad, fmt.Sprintf("%s %s model %q (%v)", r.Method, r.URL.Path, req.Model, jsonErr))
	}
	if strings.Contains(fmt.Sprint(r.Header, r.URL), canarySDK) {
		s.bad = append(s.bad, "the SDK's own key reached the upstream")
	}
	if r.Header.Get("Authorization") != "" {
		s.bad = append(s.bad, "an Authorization header reached the upstream")
	}
	s.mu.Unlock()

	w.Header().Set("Request-Id", "req_011CSHoEeqs5C35K2UUqR7Fy")
	switch key {
	case canaryGood:
	case canaryRevoked:
		// Anthropic's shape for a bad key, with the key echoed whole so that
		// any leak of the body shows.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key: %s"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}`, key)
		return
	default:
		http.Error(w, "unexpected key", http.StatusTeapot)
		return
	}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		out := s.compressed(w, r)
		defer out.Close()
		fmt.Fprintf(out, `{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":%q,`+
			`"content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,`+
			`"usage":{"input_tokens":%d,"cache_creation_input_tokens":%d,"cache_read_input_tokens":%d,`+
			`"cache_creation":{"ephemeral_5m_input_tokens":%d,"ephemeral_1h_input_tokens":0},`+
			`"output_tokens":%d,"server_tool_use":{"web_search_requests":0},"service_tier":"standard"}}`,
			servedModel, msgInput, msgCacheWrite, msgCacheRead, msgCacheWrite, msgOutput)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	f, _ := w.(http.Flusher)
	event := func(name, data string) {
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, data)
		if f != nil {
			f.Flush()
		}
	}
	event("message_start", fmt.Sprintf(`{"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","model":%q,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":%d,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":%d,"service_tier":"standard"}}}`,
		servedModel, streamInput, streamOutputStart))
	event("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
	event("ping", `{"type": "ping"}`)
	for _, part := range []string{"Hello", " from", " a stream"} {
		event("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":%q}}`, part))
	}
	event("content_block_stop", `{"type":"content_block_stop","index":0}`)
	event("message_delta", fmt.Sprintf(`{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":%d}}`, streamOutput))
	event("message_stop", `{"type":"message_stop"}`)
}

// compressed returns w, gzip-encoded when the request accepts it, as the
// provider's JSON answers are.
func (s *anthropicServer) compressed(w http.ResponseWriter, r *http.Request) io.WriteCloser {
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
func (s *anthropicServer) counts(t *testing.T) map[string]int {
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

// usageClient is an Anthropic client over a pool of the given members
// (name, key, BaseURL path after srv's address), with the recorder's
// hooks.
func usageClient(t *testing.T, srv *anthropicServer, rec *recorder, members ...[3]string) (anthropic.Client, *failover.Pool[failover.Upstream]) {
	t.Helper()
	var ms []failover.Member[failover.Upstream]
	for _, m := range members {
		ms = append(ms, failover.Member[failover.Upstream]{Name: m[0], Client: failover.Upstream{
			BaseURL: srv.URL + m[2], Key: m[1], Auth: failover.AuthXAPIKey}})
	}
	pool, err := failover.New(ms, failover.WithHooks(rec.hooks()))
	if err != nil {
		t.Fatal(err)
	}
	client := anthropic.NewClient(
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL("http://failover.local/"),
		option.WithAPIKey(canarySDK),
		option.WithHTTPClient(&http.Client{Transport: failover.NewTransport(pool)}),
		option.WithMaxRetries(0),
	)
	return client, pool
}

var usageParams = anthropic.MessageNewParams{
	Model:     anthropic.Model(askedModel),
	MaxTokens: 1024,
	Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
}

// Anthropic's SDK, Messages.New and Messages.NewStreaming, through the
// transport: the revoked key is asked once, the good key serves both, and
// its Status and the Usage hook count exactly the usage the provider
// reported, named with the model the response names (message_start's in
// the stream). A message counts input_tokens (cache writes and reads are
// not part of it, and are not added) and output_tokens; a stream counts
// message_start's input_tokens and message_delta's cumulative
// output_tokens, not message_start's placeholder.
func TestUsageCountedThroughAnthropicSDK(t *testing.T) {
	srv := newAnthropicServer(t)
	rec := &recorder{}
	client, pool := usageClient(t, srv, rec, [3]string{"revoked", canaryRevoked, ""}, [3]string{"good", canaryGood, "/v1"})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	msg, err := client.Messages.New(ctx, usageParams)
	if err != nil {
		t.Fatalf("Messages.New: %v", err)
	}
	if string(msg.Model) != servedModel || msg.Content[0].Text != "Hi! My name is Claude." || msg.Usage.CacheReadInputTokens != msgCacheRead {
		t.Fatalf("the SDK decoded %q %q %+v", msg.Model, msg.Content[0].Text, msg.Usage)
	}
	st := pool.Status()
	wantStatus(t, st[0], 0, 0, 0)
	wantStatus(t, st[1], 1, msgInput, msgOutput)
	if st[0].Reason != failover.ReasonAuth {
		t.Errorf("revoked member: reason %q, want auth", st[0].Reason)
	}
	usages, _ := rec.heard()
	wantUsages(t, usages, failover.Usage{Member: "good", Model: servedModel, PromptTokens: msgInput, CompletionTokens: msgOutput})

	stream := client.Messages.NewStreaming(ctx, usageParams)
	var acc anthropic.Message
	var kinds []string
	for stream.Next() {
		ev := stream.Current()
		kinds = append(kinds, ev.Type)
		if err := acc.Accumulate(ev); err != nil {
			t.Fatalf("accumulating %s: %v", ev.Type, err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("Messages.NewStreaming: %v", err)
	}
	if err := stream.Close(); err != nil {
		t.Fatalf("closing the stream: %v", err)
	}
	if len(kinds) == 0 || kinds[len(kinds)-1] != "message_stop" || acc.Content[0].Text != "Hello from a stream" || acc.Usage.OutputTokens != streamOutput {
		t.Fatalf("the SDK streamed %v: %q, usage %+v", kinds, acc.Content[0].Text, acc.Usage)
	}

	st = pool.Status()
	wantStatus(t, st[0], 0, 0, 0)
	wantStatus(t, st[1], 2, msgInput+streamInput, msgOutput+streamOutput)
	usages, errs := rec.heard()
	wantUsages(t, usages,
		failover.Usage{Member: "good", Model: servedModel, PromptTokens: msgInput, CompletionTokens: msgOutput},
		failover.Usage{Member: "good", Model: servedModel, PromptTokens: streamInput, CompletionTokens: streamOutput})
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
func TestUsageNoneOnRevokedAnthropicSDK(t *testing.T) {
	srv := newAnthropicServer(t)
	rec := &recorder{}
	client, pool := usageClient(t, srv, rec, [3]string{"revoked", canaryRevoked, "/v1"})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	_, err := client.Messages.New(ctx, usageParams)
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("err = %v, want the upstream's 401", err)
	}
	if !strings.Contains(apiErr.RawJSON(), "authentication_error") {
		t.Errorf("the SDK did not get Anthropic's error body: %s", apiErr.RawJSON())
	}
	wantStatus(t, pool.Status()[0], 0, 0, 0)
	usages, errs := rec.heard()
	wantUsages(t, usages)
	if got := srv.counts(t); len(got) != 2 || got[canaryRevoked] != 1 {
		t.Errorf("upstream requests by key: %d", got[canaryRevoked])
	}
	noCanary(t, pool, append(errs, err.Error(), apiErr.RawJSON())...)
}
