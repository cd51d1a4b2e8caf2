package main

// Adversarial tests of failover.Transport under openai-go's chat
// streaming, against loopback servers in OpenAI's and OpenRouter's wire
// formats (chat.completion.chunk with choices[].delta and finish_reason,
// OpenRouter's ": OPENROUTER PROCESSING" comments and its mid-stream
// error chunk with a top-level "error" and finish_reason "error").

import (
	"bytes"
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
	"github.com/openai/openai-go/v3/responses"
)

const (
	sfKeyA = "sk-or-v1-CANARY~AAAA/stream=1"
	sfKeyB = "sk-or-v1-CANARY~BBBB/stream=2"
)

// sfStep is one write of a scripted answer, after a pause.
type sfStep struct {
	wait time.Duration
	data string
}

// sfScript is what the server answers one key: a status, headers and the
// body's writes.
type sfScript struct {
	status int
	header map[string]string
	steps  []sfStep
	gzip   bool // gzip-encode the body (when the request accepts it)
}

type sfServer struct {
	*httptest.Server
	mu      sync.Mutex
	scripts map[string]func(model string) sfScript
	calls   map[string]int
	models  map[string][]string // models asked of each key
}

func newSFServer(t *testing.T, scripts map[string]func(model string) sfScript) *sfServer {
	t.Helper()
	s := &sfServer{scripts: scripts, calls: map[string]int{}, models: map[string][]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		body, _ := io.ReadAll(r.Body)
		var req struct {
			Model string `json:"model"`
		}
		_ = json.Unmarshal(body, &req)
		s.mu.Lock()
		f, ok := s.scripts[key]
		s.calls[key]++
		s.models[key] = append(s.models[key], req.Model)
		s.mu.Unlock()
		if !ok {
			w.WriteHeader(401)
			_, _ = w.Write([]byte(`{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`))
			return
		}
		sc := f(req.Model)
		for k, v := range sc.header {
			w.Header().Set(k, v)
		}
		var out io.Writer = w
		var gz *gzip.Writer
		if sc.gzip && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			gz = gzip.NewWriter(w)
			out = gz
		}
		w.WriteHeader(sc.status)
		fl := w.(http.Flusher)
		fl.Flush()
		for _, st := range sc.steps {
			select {
			case <-time.After(st.wait):
			case <-r.Context().Done():
				return
			}
			_, _ = io.WriteString(out, st.data)
			if gz != nil {
				_ = gz.Flush()
			}
			fl.Flush()
		}
		if gz != nil {
			_ = gz.Close()
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sfServer) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[key]
}

func sfClient(t *testing.T, srv *sfServer, opts []failover.Option, keys ...string) (openai.Client, *failover.Pool[failover.Upstream]) {
	t.Helper()
	var ms []failover.Member[failover.Upstream]
	for i, k := range keys {
		ms = append(ms, failover.Member[failover.Upstream]{Name: string(rune('A' + i)), Priority: i,
			Client: failover.Upstream{BaseURL: srv.URL + "/api/v1", Key: k}})
	}
	pool, err := failover.New(ms, opts...)
	if err != nil {
		t.Fatal(err)
	}
	client := openai.NewClient(
		option.WithBaseURL("http://failover.local/v1/"),
		option.WithAPIKey("sk-caller-unused"),
		option.WithHTTPClient(&http.Client{Transport: failover.NewTransport(pool)}),
		option.WithMaxRetries(0),
	)
	return client, pool
}

func sfChunk(delta string, finish string) string {
	fr := "null"
	if finish != "" {
		fr = fmt.Sprintf("%q", finish)
	}
	return fmt.Sprintf(`data: {"id":"gen-1","object":"chat.completion.chunk","created":1730000000,"model":"openai/gpt-4o","choices":[{"index":0,"delta":%s,"finish_reason":%s,"logprobs":null}]}`+"\n\n", delta, fr)
}

func sfText(s string) string { return sfChunk(fmt.Sprintf(`{"content":%q}`, s), "") }

var sfRole = sfChunk(`{"role":"assistant","content":""}`, "")

// sfHealthy is a whole OpenAI chat stream of the given deltas.
func sfHealthy(deltas ...string) func(string) sfScript {
	return func(string) sfScript {
		steps := []sfStep{{data: sfRole}}
		for _, d := range deltas {
			steps = append(steps, sfStep{data: sfText(d)})
		}
		steps = append(steps, sfStep{data: sfChunk(`{}`, "stop")}, sfStep{data: "data: [DONE]\n\n"})
		return sfScript{status: 200, header: map[string]string{"Content-Type": "text/event-stream"}, steps: steps}
	}
}

func sfStream(steps ...string) func(string) sfScript {
	return func(string) sfScript {
		sc := sfScript{status: 200, header: map[string]string{"Content-Type": "text/event-stream"}}
		for _, s := range steps {
			sc.steps = append(sc.steps, sfStep{data: s})
		}
		return sc
	}
}

var sfParams = openai.ChatCompletionNewParams{
	Model:    "openai/gpt-4o",
	Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
}

func sfDrain(t *testing.T, ctx context.Context, client openai.Client, p openai.ChatCompletionNewParams, opts ...option.RequestOption) (string, error) {
	t.Helper()
	stream := client.Chat.Completions.NewStreaming(ctx, p, opts...)
	defer stream.Close()
	var text strings.Builder
	for stream.Next() {
		for _, c := range stream.Current().Choices {
			text.WriteString(c.Delta.Content)
		}
	}
	return text.String(), stream.Err()
}

func sfNoSecrets(t *testing.T, pool *failover.Pool[failover.Upstream], err error) {
	t.Helper()
	for _, k := range []string{sfKeyA, sfKeyB} {
		for _, s := range pool.Status() {
			if strings.Contains(fmt.Sprintf("%+v", s), k) {
				t.Errorf("status of %s shows a key", s.Name)
			}
		}
		if err != nil && strings.Contains(err.Error(), k) {
			t.Errorf("error shows a key: %v", err)
		}
	}
}

func sfCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// OpenRouter: processing comments, then its mid-stream error chunk, or
// a role chunk then an error object: fails over to B, whose stream the
// SDK reads whole and without error.
func TestSFOpenRouterErrorBeforeContentFailsOver(t *testing.T) {
	proc := ": OPENROUTER PROCESSING\n\n"
	orErr := `data: {"id":"gen-1","object":"chat.completion.chunk","created":1730000000,"model":"openai/gpt-4o","provider":"OpenAI","error":{"code":"server_error","message":"Provider disconnected unexpectedly"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}` + "\n\n"
	cases := []struct {
		name   string
		a      func(string) sfScript
		reason failover.Reason
	}{
		{"processing comments then error chunk", sfStream(proc, proc, proc, orErr), failover.ReasonServer},
		{"role chunk then error object", sfStream(sfRole, `data: {"error":{"message":"Upstream overloaded","code":502}}`+"\n\n"), failover.ReasonServer},
		{"role chunk then 429 error object", sfStream(proc, sfRole, `data: {"error":{"message":"Rate limit exceeded: free-models-per-min","code":429}}`+"\n\n"), failover.ReasonRateLimit},
		{"finish_reason error without error member", sfStream(proc, sfRole, sfChunk(`{"content":""}`, "error")), failover.ReasonServer},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newSFServer(t, map[string]func(string) sfScript{sfKeyA: c.a, sfKeyB: sfHealthy("Hel", "lo")})
			client, pool := sfClient(t, srv, nil, sfKeyA, sfKeyB)
			text, err := sfDrain(t, sfCtx(t, 5*time.Second), client, sfParams)
			if err != nil || text != "Hello" {
				t.Fatalf("text %q err %v, want B's Hello", text, err)
			}
			if a, b := srv.count(sfKeyA), srv.count(sfKeyB); a != 1 || b != 1 {
				t.Fatalf("upstream calls A=%d B=%d, want 1 1", a, b)
			}
			if st := pool.Status()[0]; st.Reason != c.reason {
				t.Fatalf("A: %s %s (%s), want %s", st.State, st.Reason, st.LastError, c.reason)
			}
			sfNoSecrets(t, pool, err)
		})
	}
}

// With one member, OpenRouter's error chunk reaches the SDK as an HTTP
// error it can errors.As.
func TestSFOpenRouterErrorSingleMember(t *testing.T) {
	srv := newSFServer(t, map[string]func(string) sfScript{
		sfKeyA: sfStream(": OPENROUTER PROCESSING\n\n", `data: {"error":{"message":"Upstream overloaded","code":503}}`+"\n\n"),
	})
	client, pool := sfClient(t, srv, nil, sfKeyA)
	_, err := sfDrain(t, sfCtx(t, 5*time.Second), client, sfParams)
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 503 {
		t.Fatalf("error %T %v, want *openai.Error 503", err, err)
	}
	sfNoSecrets(t, pool, err)
}

// A healthy stream whose first data chunk is larger than the 64 KiB the
// transport reads to find it passes through unchanged.
func TestSFBigFirstChunkPassesThrough(t *testing.T) {
	big := strings.Repeat("x", 100<<10)
	srv := newSFServer(t, map[string]func(string) sfScript{sfKeyA: func(string) sfScript {
		sc := sfHealthy("tail")("")
		sc.steps = append([]sfStep{{data: sfText(big)}}, sc.steps...)
		return sc
	}, sfKeyB: sfHealthy("B")})
	client, pool := sfClient(t, srv, nil, sfKeyA, sfKeyB)
	text, err := sfDrain(t, sfCtx(t, 5*time.Second), client, sfParams)
	if err != nil || text != big+"tail" {
		t.Fatalf("text of %d bytes (want %d), err %v", len(text), len(big)+4, err)
	}
	if srv.count(sfKeyB) != 0 {
		t.Fatal("B was asked")
	}
	// The same through plain net/http, byte for byte.
	resp, err := (&http.Client{Transport: failover.NewTransport(pool)}).Post("http://failover.local/v1/chat/completions",
		"application/json", strings.NewReader(`{"model":"openai/gpt-4o","stream":true,"messages":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var want bytes.Buffer
	for _, s := range srv.scripts[sfKeyA]("").steps {
		want.WriteString(s.data)
	}
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("body of %d bytes (err %v), want the upstream's %d bytes unchanged", len(got), err, want.Len())
	}
	sfNoSecrets(t, pool, err)
}

// A model no member has: two pass-through members answer 404
// model_not_found; the SDK gets a 404; the next call for that model
// asks no upstream and gets a 404; a call for another model still works.
func TestSFModelLacked(t *testing.T) {
	notFound := func(model string) sfScript {
		if model == "gpt-5-typo" {
			return sfScript{status: 404, header: map[string]string{"Content-Type": "application/json"}, steps: []sfStep{{data: `{"error":{"message":"The model ` + "`gpt-5-typo`" + ` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}`}}}
		}
		return sfScript{status: 200, header: map[string]string{"Content-Type": "application/json"}, steps: []sfStep{{data: `{"id":"chatcmpl-1","object":"chat.completion","created":1730000000,"model":"` + model + `","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`}}}
	}
	srv := newSFServer(t, map[string]func(string) sfScript{sfKeyA: notFound, sfKeyB: notFound})
	client, pool := sfClient(t, srv, nil, sfKeyA, sfKeyB)
	typo := openai.ChatCompletionNewParams{Model: "gpt-5-typo", Messages: sfParams.Messages}
	for i := range 2 {
		_, err := client.Chat.Completions.New(sfCtx(t, 5*time.Second), typo)
		var ae *openai.Error
		if !errors.As(err, &ae) || ae.StatusCode != 404 {
			t.Fatalf("call %d: %T %v, want *openai.Error 404", i, err, err)
		}
		if ae.Code != "model_not_found" {
			t.Errorf("call %d: code %q, want model_not_found", i, ae.Code)
		}
		if a, b := srv.count(sfKeyA), srv.count(sfKeyB); a != 1 || b != 1 {
			t.Fatalf("call %d: upstream calls A=%d B=%d, want 1 1", i, a, b)
		}
		sfNoSecrets(t, pool, err)
	}
	for _, st := range pool.Status() {
		if len(st.Lacks) != 1 || st.Lacks[0] != "gpt-5-typo" || st.State == failover.CoolingDown {
			t.Fatalf("%s: state %s lacks %v, want in rotation lacking gpt-5-typo", st.Name, st.State, st.Lacks)
		}
	}
	resp, err := client.Chat.Completions.New(sfCtx(t, 5*time.Second), openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: sfParams.Messages})
	if err != nil || resp.Choices[0].Message.Content != "ok" {
		t.Fatalf("call for gpt-4o: %v", err)
	}
	if a := srv.count(sfKeyA); a != 2 {
		t.Fatalf("A asked %d times, want 2", a)
	}
	// and streaming for the typo: a 404 too, no upstream call
	_, err = sfDrain(t, sfCtx(t, 5*time.Second), client, typo)
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 404 || srv.count(sfKeyA)+srv.count(sfKeyB) != 3 {
		t.Fatalf("streamed typo: %v, upstream calls %d", err, srv.count(sfKeyA)+srv.count(sfKeyB))
	}
}

// A sends its headers, then nothing for 2 s: with a 300 ms attempt
// timeout the SDK gets B's stream well before A would speak.
func TestSFSlowFirstEvent(t *testing.T) {
	for name, a := range map[string]func(string) sfScript{
		"silent": func(string) sfScript {
			return sfScript{status: 200, header: map[string]string{"Content-Type": "text/event-stream"}, steps: []sfStep{{wait: 2 * time.Second, data: sfRole}}}
		},
		"keep-alive comments": func(string) sfScript {
			sc := sfScript{status: 200, header: map[string]string{"Content-Type": "text/event-stream"}}
			for range 20 {
				sc.steps = append(sc.steps, sfStep{wait: 100 * time.Millisecond, data: ": OPENROUTER PROCESSING\n\n"})
			}
			return sc
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := newSFServer(t, map[string]func(string) sfScript{sfKeyA: a, sfKeyB: sfHealthy("fast")})
			client, pool := sfClient(t, srv, []failover.Option{failover.WithAttemptTimeout(300 * time.Millisecond)}, sfKeyA, sfKeyB)
			start := time.Now()
			text, err := sfDrain(t, sfCtx(t, 1500*time.Millisecond), client, sfParams)
			if el := time.Since(start); err != nil || text != "fast" || el > time.Second {
				t.Fatalf("text %q err %v after %v, want B's fast within 1 s", text, err, el)
			}
			if st := pool.Status()[0]; st.Reason != failover.ReasonTimeout {
				t.Fatalf("A's reason %s, want timeout", st.Reason)
			}
			sfNoSecrets(t, pool, err)
		})
	}
}

// A role-only chunk and then a long silence (a reasoning model) is the
// member's stream: after the preamble Transport waits only a moment for
// content or an error, well within the attempt, and then hands the stream
// on; the content that comes after the attempt timeout reaches the SDK.
func TestSFRoleChunkThenLongSilenceIsServed(t *testing.T) {
	srv := newSFServer(t, map[string]func(string) sfScript{
		sfKeyA: func(string) sfScript {
			return sfScript{status: 200, header: map[string]string{"Content-Type": "text/event-stream"}, steps: []sfStep{
				{data: sfRole}, {wait: 1200 * time.Millisecond, data: sfText("late")}, {data: sfChunk(`{}`, "stop")}, {data: "data: [DONE]\n\n"}}}
		},
		sfKeyB: sfHealthy("fast")})
	client, pool := sfClient(t, srv, []failover.Option{failover.WithAttemptTimeout(300 * time.Millisecond)}, sfKeyA, sfKeyB)
	text, err := sfDrain(t, sfCtx(t, 5*time.Second), client, sfParams)
	if err != nil || text != "late" {
		t.Fatalf("text %q err %v, want A's late answer", text, err)
	}
	if st := pool.Status()[0]; st.Failures != 0 {
		t.Fatalf("A counted %d failures, want none", st.Failures)
	}
	sfNoSecrets(t, pool, err)
}

// A first event that came in time is never cut by the attempt timeout.
func TestSFSlowStreamAfterFirstEventNotCut(t *testing.T) {
	srv := newSFServer(t, map[string]func(string) sfScript{sfKeyA: func(string) sfScript {
		return sfScript{status: 200, header: map[string]string{"Content-Type": "text/event-stream"}, steps: []sfStep{
			{data: sfRole}, {data: sfText("a")}, {wait: 500 * time.Millisecond, data: sfText("b")}, {wait: 200 * time.Millisecond, data: sfChunk(`{}`, "stop")}, {data: "data: [DONE]\n\n"}}}
	}})
	client, pool := sfClient(t, srv, []failover.Option{failover.WithAttemptTimeout(300 * time.Millisecond)}, sfKeyA)
	text, err := sfDrain(t, sfCtx(t, 3*time.Second), client, sfParams)
	if err != nil || text != "ab" {
		t.Fatalf("text %q err %v, want ab", text, err)
	}
	sfNoSecrets(t, pool, err)
}

// The caller sets Accept-Encoding: gzip itself; A answers a gzip-encoded
// healthy stream. net/http leaves it compressed, the transport passes it
// on unread, with its Content-Encoding.
func TestSFGzipStreamPassesThrough(t *testing.T) {
	gz := func(m string) sfScript { sc := sfHealthy("zip", "ped")(m); sc.gzip = true; return sc }
	srv := newSFServer(t, map[string]func(string) sfScript{sfKeyA: gz, sfKeyB: sfHealthy("B")})
	_, pool := sfClient(t, srv, nil, sfKeyA, sfKeyB)

	// plain net/http: the caller decodes it
	req, _ := http.NewRequestWithContext(sfCtx(t, 5*time.Second), "POST", "http://failover.local/v1/chat/completions",
		strings.NewReader(`{"model":"openai/gpt-4o","stream":true,"messages":[]}`))
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := (&http.Client{Transport: failover.NewTransport(pool)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("X-Failover-Member") != "A" {
		t.Fatalf("headers %v", resp.Header)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !strings.Contains(string(plain), `"content":"zip"`) || !strings.HasSuffix(string(plain), "data: [DONE]\n\n") {
		t.Fatalf("decoded %q err %v", plain, err)
	}

	// openai-go with the header set by hand: the SDK's SSE decoder reads
	// resp.Body as it comes and does not decode Content-Encoding, so it
	// can't read a compressed stream; that is the caller's choice, not
	// the transport's. Here we only check the SDK fails cleanly (no
	// panic, no hang, no key in the error).
	client := openai.NewClient(option.WithBaseURL("http://failover.local/v1/"), option.WithAPIKey("sk-caller-unused"),
		option.WithHTTPClient(&http.Client{Transport: failover.NewTransport(pool)}), option.WithMaxRetries(0))
	text, err := sfDrain(t, sfCtx(t, 5*time.Second), client, sfParams, option.WithHeader("Accept-Encoding", "gzip"))
	t.Logf("openai-go over a hand-asked gzip stream: text %q err %v", text, err)
	if text == "zipped" {
		t.Log("the SDK decoded it")
	}
	sfNoSecrets(t, pool, err)
	if srv.count(sfKeyB) != 0 {
		t.Fatalf("B asked %d times: a compressed healthy stream must not fail over", srv.count(sfKeyB))
	}
}

// A short healthy stream that arrives in one Read together with the end
// of the body (a short answer, a proxy that buffers, HTTP/2): the SDK
// must read it, with one member or two.
func TestSFStreamEndingInOneRead(t *testing.T) {
	one := func(m string) sfScript {
		sc := sfHealthy("Hel", "lo")(m)
		var all strings.Builder
		for _, st := range sc.steps {
			all.WriteString(st.data)
		}
		sc.steps = []sfStep{{data: all.String()}}
		return sc
	}
	srv := newSFServer(t, map[string]func(string) sfScript{sfKeyA: one})
	client, pool := sfClient(t, srv, nil, sfKeyA)
	text, err := sfDrain(t, sfCtx(t, 5*time.Second), client, sfParams)
	if err != nil || text != "Hello" {
		t.Fatalf("text %q err %v, want Hello", text, err)
	}
	sfNoSecrets(t, pool, err)
}

func sfEv(name, data string) string { return "event: " + name + "\ndata: " + data + "\n\n" }

var (
	sfRespCreated    = sfEv("response.created", `{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","created_at":1730000000,"status":"in_progress","model":"gpt-4o","output":[]}}`)
	sfRespInProgress = sfEv("response.in_progress", `{"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_1","object":"response","created_at":1730000000,"status":"in_progress","model":"gpt-4o","output":[]}}`)
	sfRespItemAdded  = sfEv("response.output_item.added", `{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}}`)
	sfRespPartAdded  = sfEv("response.content_part.added", `{"type":"response.content_part.added","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}`)
	sfRespFailed     = sfEv("response.failed", `{"type":"response.failed","sequence_number":4,"response":{"id":"resp_1","object":"response","created_at":1730000000,"status":"failed","model":"gpt-4o","output":[],"error":{"code":"server_error","message":"The server had an error while processing your request."}}}`)
)

func sfRespHealthy(text string) func(string) sfScript {
	return sfStream(sfRespCreated, sfRespInProgress, sfRespItemAdded, sfRespPartAdded,
		sfEv("response.output_text.delta", fmt.Sprintf(`{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":%q,"logprobs":[]}`, text)),
		sfEv("response.completed", `{"type":"response.completed","sequence_number":5,"response":{"id":"resp_1","object":"response","created_at":1730000000,"status":"completed","model":"gpt-4o","output":[]}}`))
}

func sfRespDrain(t *testing.T, client openai.Client) (string, error) {
	stream := client.Responses.NewStreaming(sfCtx(t, 5*time.Second), responses.ResponseNewParams{
		Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")}})
	defer stream.Close()
	var text strings.Builder
	for stream.Next() {
		if ev := stream.Current(); ev.Type == "response.output_text.delta" {
			text.WriteString(ev.Delta)
		}
	}
	return text.String(), stream.Err()
}

// Responses: response.created and .in_progress, then response.failed:
// fails over to B.
func TestSFResponsesFailedFailsOver(t *testing.T) {
	srv := newSFServer(t, map[string]func(string) sfScript{
		sfKeyA: sfStream(sfRespCreated, sfRespInProgress, sfRespFailed), sfKeyB: sfRespHealthy("hi")})
	client, pool := sfClient(t, srv, nil, sfKeyA, sfKeyB)
	text, err := sfRespDrain(t, client)
	if err != nil || text != "hi" {
		t.Fatalf("text %q err %v, want B's hi", text, err)
	}
	if a, b := srv.count(sfKeyA), srv.count(sfKeyB); a != 1 || b != 1 {
		t.Fatalf("upstream calls A=%d B=%d", a, b)
	}
	if r := pool.Status()[0].Reason; r != failover.ReasonServer {
		t.Fatalf("A's reason %s, want server", r)
	}
	sfNoSecrets(t, pool, err)
}

// Responses: the empty message item and empty text part OpenAI sends
// before any delta carry no output, like Anthropic's empty text block,
// so a failure after them has sent the caller nothing.
func TestSFResponsesFailedAfterEmptyItemFailsOver(t *testing.T) {
	srv := newSFServer(t, map[string]func(string) sfScript{
		sfKeyA: sfStream(sfRespCreated, sfRespInProgress, sfRespItemAdded, sfRespPartAdded, sfRespFailed), sfKeyB: sfRespHealthy("hi")})
	client, pool := sfClient(t, srv, nil, sfKeyA, sfKeyB)
	text, err := sfRespDrain(t, client)
	if err != nil || text != "hi" {
		t.Fatalf("text %q err %v, want B's hi", text, err)
	}
	sfNoSecrets(t, pool, err)
}
