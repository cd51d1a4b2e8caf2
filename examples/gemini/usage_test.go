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
	"google.golang.org/genai"
)

// Canary keys: none may reach a Status field, an error's text, or (the
// SDK's own) an upstream.
const (
	canaryRevoked = "AIzaSy-CANARY~revoked/7Qx=Zp"
	canaryGood    = "AIzaSy-CANARY~good/Y2k=Lw"
	canarySDK     = "AIzaSy-CANARY~sdk/never=sent"
)

// The usage the fake provider reports, and the model it names. Gemini's
// completion is candidatesTokenCount plus thoughtsTokenCount.
const (
	askedModel  = "gemini-flash-latest"
	servedModel = "gemini-2.5-flash"

	genPrompt, genCandidates, genThoughts = 9, 12, 30
	streamPrompt, streamThoughts          = 8, 21
)

// streamCandidates are the cumulative candidatesTokenCount of the stream's
// chunks: the last one counts.
var streamCandidates = []int{3, 7, 11}

// geminiServer is a loopback Gemini API: a revoked key gets Google's 401
// UNAUTHENTICATED; the good key gets a GenerateContentResponse, or an SSE
// stream (alt=sse) of them, each with its cumulative usageMetadata, the
// last with a finishReason.
type geminiServer struct {
	*httptest.Server
	mu    sync.Mutex
	calls map[string]int // upstream requests by key
	bad   []string       // what a request got wrong
	gzips int            // answers sent gzip-encoded
}

func newGeminiServer(t *testing.T) *geminiServer {
	t.Helper()
	s := &geminiServer{calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *geminiServer) serve(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("X-Goog-Api-Key")
	body, _ := io.ReadAll(r.Body)
	var req struct {
		Contents []json.RawMessage `json:"contents"`
	}
	jsonErr := json.Unmarshal(body, &req)
	stream := r.URL.Path == "/v1beta/models/"+askedModel+":streamGenerateContent"
	s.mu.Lock()
	s.calls[key]++
	if r.Method != http.MethodPost || jsonErr != nil || len(req.Contents) != 1 ||
		!stream && r.URL.Path != "/v1beta/models/"+askedModel+":generateContent" ||
		stream && r.URL.Query().Get("alt") != "sse" {
		s.bad = append(s.bad, fmt.Sprintf("%s %s (%v)", r.Method, r.URL, jsonErr))
	}
	if strings.Contains(fmt.Sprint(r.Header, r.URL), canarySDK) {
		s.bad = append(s.bad, "the SDK's own key reached the upstream")
	}
	if r.URL.Query().Has("key") {
		s.bad = append(s.bad, "a key query parameter reached the upstream")
	}
	s.mu.Unlock()

	switch key {
	case canaryGood:
	case canaryRevoked:
		// Google's shape for a rejected credential, with the key echoed
		// whole so that any leak of the body shows.
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{
  "error": {
    "code": 401,
    "message": "Request had invalid authentication credentials (%s). Expected OAuth 2 access token, login cookie or other valid authentication credential.",
    "status": "UNAUTHENTICATED"
  }
}
`, key)
		return
	default:
		http.Error(w, "unexpected key", http.StatusTeapot)
		return
	}
	if !stream {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		out := s.compressed(w, r)
		defer out.Close()
		fmt.Fprintf(out, `{
  "candidates": [
    {
      "content": {
        "parts": [
          {
            "text": "Hello there!"
          }
        ],
        "role": "model"
      },
      "finishReason": "STOP",
      "index": 0
    }
  ],
  "usageMetadata": {
    "promptTokenCount": %d,
    "candidatesTokenCount": %d,
    "totalTokenCount": %d,
    "promptTokensDetails": [
      {
        "modality": "TEXT",
        "tokenCount": %d
      }
    ],
    "thoughtsTokenCount": %d
  },
  "modelVersion": %q,
  "responseId": "6RdvaPLnCK2t1dkP-pmm0Qg"
}
`, genPrompt, genCandidates, genPrompt+genCandidates+genThoughts, genPrompt, genThoughts, servedModel)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	f, _ := w.(http.Flusher)
	parts := []string{"Hello", " from", " a stream"}
	for i, part := range parts {
		finish := ""
		if i == len(parts)-1 {
			finish = `,"finishReason":"STOP"`
		}
		fmt.Fprintf(w, "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": %q}],\"role\": \"model\"}%s,\"index\": 0}],"+
			"\"usageMetadata\": {\"promptTokenCount\": %d,\"candidatesTokenCount\": %d,\"totalTokenCount\": %d,"+
			"\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": %d}],\"thoughtsTokenCount\": %d},"+
			"\"modelVersion\": %q,\"responseId\": \"7BdvaKqGHuSz1dkP0dGpkQc\"}\r\n\r\n",
			part, finish, streamPrompt, streamCandidates[i], streamPrompt+streamCandidates[i]+streamThoughts, streamPrompt, streamThoughts, servedModel)
		if f != nil {
			f.Flush()
		}
	}
}

// compressed returns w, gzip-encoded when the request accepts it, as the
// provider's JSON answers are.
func (s *geminiServer) compressed(w http.ResponseWriter, r *http.Request) io.WriteCloser {
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
func (s *geminiServer) counts(t *testing.T) map[string]int {
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

// usageClient is a Gemini API client over a pool of the given members
// (name, key, BaseURL path after srv's address), with the recorder's
// hooks.
func usageClient(t *testing.T, srv *geminiServer, rec *recorder, members ...[3]string) (*genai.Client, *failover.Pool[failover.Upstream]) {
	t.Helper()
	var ms []failover.Member[failover.Upstream]
	for _, m := range members {
		ms = append(ms, failover.Member[failover.Upstream]{Name: m[0], Client: failover.Upstream{
			BaseURL: srv.URL + m[2], Key: m[1], Auth: failover.AuthGoogKey}})
	}
	pool, err := failover.New(ms, failover.WithHooks(rec.hooks()))
	if err != nil {
		t.Fatal(err)
	}
	client, err := genai.NewClient(t.Context(), &genai.ClientConfig{
		Backend:    genai.BackendGeminiAPI,
		APIKey:     canarySDK,
		HTTPClient: &http.Client{Transport: failover.NewTransport(pool)},
		HTTPOptions: genai.HTTPOptions{
			BaseURL:    "http://failover.local/",
			APIVersion: "v1beta",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return client, pool
}

// Google's Gen AI SDK, GenerateContent and GenerateContentStream (SSE),
// through the transport: the revoked key is asked once, the good key
// serves both, and its Status and the Usage hook count exactly the usage
// the provider reported, named with the response's modelVersion (not the
// model asked for). Completion is candidatesTokenCount plus
// thoughtsTokenCount; a stream's usageMetadata is cumulative, so its last
// chunk's counts, once.
func TestUsageCountedThroughGenAI(t *testing.T) {
	srv := newGeminiServer(t)
	rec := &recorder{}
	client, pool := usageClient(t, srv, rec, [3]string{"revoked", canaryRevoked, "/v1beta"}, [3]string{"good", canaryGood, ""})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	resp, err := client.Models.GenerateContent(ctx, askedModel, genai.Text("hi"), nil)
	if err != nil {
		t.Fatalf("GenerateContent: %v", err)
	}
	if resp.ModelVersion != servedModel || resp.Text() != "Hello there!" || resp.UsageMetadata.ThoughtsTokenCount != genThoughts {
		t.Fatalf("the SDK decoded %q %q %+v", resp.ModelVersion, resp.Text(), resp.UsageMetadata)
	}
	st := pool.Status()
	wantStatus(t, st[0], 0, 0, 0)
	wantStatus(t, st[1], 1, genPrompt, genCandidates+genThoughts)
	if st[0].Reason != failover.ReasonAuth {
		t.Errorf("revoked member: reason %q, want auth", st[0].Reason)
	}
	usages, _ := rec.heard()
	wantUsages(t, usages, failover.Usage{Member: "good", Model: servedModel, PromptTokens: genPrompt, CompletionTokens: genCandidates + genThoughts})

	var text strings.Builder
	chunks := 0
	for chunk, err := range client.Models.GenerateContentStream(ctx, askedModel, genai.Text("hi"), nil) {
		if err != nil {
			t.Fatalf("GenerateContentStream: %v", err)
		}
		chunks++
		text.WriteString(chunk.Text())
	}
	if chunks != len(streamCandidates) || text.String() != "Hello from a stream" {
		t.Fatalf("the SDK streamed %d chunks: %q", chunks, text.String())
	}

	last := streamCandidates[len(streamCandidates)-1]
	st = pool.Status()
	wantStatus(t, st[0], 0, 0, 0)
	wantStatus(t, st[1], 2, genPrompt+streamPrompt, genCandidates+genThoughts+uint64(last)+streamThoughts)
	usages, errs := rec.heard()
	wantUsages(t, usages,
		failover.Usage{Member: "good", Model: servedModel, PromptTokens: genPrompt, CompletionTokens: genCandidates + genThoughts},
		failover.Usage{Member: "good", Model: servedModel, PromptTokens: streamPrompt, CompletionTokens: last + streamThoughts})
	if got := srv.counts(t); len(got) != 3 || got[canaryRevoked] != 1 || got[canaryGood] != 2 || got["gzip"] != 1 {
		t.Errorf("upstream requests by key: revoked=%d good=%d (%d keys), gzip-encoded answers %d; want 1 2 and 1", got[canaryRevoked], got[canaryGood], len(got)-1, got["gzip"])
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "401") {
		t.Errorf("failed attempts: %q, want the one 401", errs)
	}
	noCanary(t, pool, errs...)
}

// When the only key is revoked, the SDK gets the 401 back: no usage is
// counted or heard, and the error shows no key.
func TestUsageNoneOnRevokedGenAI(t *testing.T) {
	srv := newGeminiServer(t)
	rec := &recorder{}
	client, pool := usageClient(t, srv, rec, [3]string{"revoked", canaryRevoked, ""})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	_, err := client.Models.GenerateContent(ctx, askedModel, genai.Text("hi"), nil)
	var apiErr genai.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != http.StatusUnauthorized || apiErr.Status != "UNAUTHENTICATED" {
		t.Fatalf("err = %v, want the upstream's 401", err)
	}
	wantStatus(t, pool.Status()[0], 0, 0, 0)
	usages, errs := rec.heard()
	wantUsages(t, usages)
	if got := srv.counts(t); len(got) != 2 || got[canaryRevoked] != 1 {
		t.Errorf("upstream requests by key: %d", got[canaryRevoked])
	}
	noCanary(t, pool, append(errs, err.Error(), apiErr.Message)...)
}
