package main

// Adversarial tests of failover.Transport under genai's
// GenerateContentStream, against loopback servers in the Gemini API's
// wire format (streamGenerateContent?alt=sse: "data: {...}" chunks with
// candidates[].content.parts[].text and finishReason; an error chunk
// {"error":{"code","message","status"}}, as genai's APIError reads it).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"google.golang.org/genai"
)

const (
	sfKeyA = "AIzaSy-CANARY~AAAA/stream=1"
	sfKeyB = "AIzaSy-CANARY~BBBB/stream=2"
)

type sfServer struct {
	*httptest.Server
	mu    sync.Mutex
	resp  map[string][]string // key -> chunks, each written and flushed
	calls map[string]int
	paths []string
}

func newSFServer(t *testing.T, resp map[string][]string) *sfServer {
	t.Helper()
	s := &sfServer{resp: resp, calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("X-Goog-Api-Key")
		s.mu.Lock()
		chunks, ok := s.resp[key]
		s.calls[key]++
		s.paths = append(s.paths, r.URL.Path+"?"+r.URL.RawQuery)
		s.mu.Unlock()
		if !ok || !strings.HasSuffix(r.URL.Path, ":streamGenerateContent") || r.URL.Query().Get("alt") != "sse" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}`))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fl := w.(http.Flusher)
		fl.Flush()
		for _, c := range chunks {
			_, _ = w.Write([]byte(c))
			fl.Flush()
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

func sfChunk(text, finish string) string {
	fr := ""
	if finish != "" {
		fr = fmt.Sprintf(`,"finishReason":%q`, finish)
	}
	return fmt.Sprintf(`data: {"candidates": [{"content": {"parts": [{"text": %q}],"role": "model"}%s,"index": 0}],"usageMetadata": {"promptTokenCount": 3,"candidatesTokenCount": 2,"totalTokenCount": 5},"modelVersion": "gemini-2.5-flash","responseId": "abc"}`+"\r\n\r\n", text, fr)
}

func sfHealthy(parts ...string) []string {
	var out []string
	for i, p := range parts {
		f := ""
		if i == len(parts)-1 {
			f = "STOP"
		}
		out = append(out, sfChunk(p, f))
	}
	return out
}

var sfUnavailable = `data: {"error": {"code": 503,"message": "The model is overloaded. Please try again later.","status": "UNAVAILABLE"}}` + "\r\n\r\n"

func sfClient(t *testing.T, srv *sfServer, keys ...string) (*genai.Client, *failover.Pool[failover.Upstream]) {
	t.Helper()
	var ms []failover.Member[failover.Upstream]
	for i, k := range keys {
		ms = append(ms, failover.Member[failover.Upstream]{Name: string(rune('A' + i)), Priority: i,
			Client: failover.Upstream{BaseURL: srv.URL + "/v1beta", Key: k, Auth: failover.AuthGoogKey}})
	}
	pool, err := failover.New(ms)
	if err != nil {
		t.Fatal(err)
	}
	client, err := genai.NewClient(context.Background(), &genai.ClientConfig{
		Backend:     genai.BackendGeminiAPI,
		APIKey:      "caller-unused",
		HTTPClient:  &http.Client{Transport: failover.NewTransport(pool)},
		HTTPOptions: genai.HTTPOptions{BaseURL: "http://failover.local/", APIVersion: "v1beta"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return client, pool
}

func sfDrain(t *testing.T, client *genai.Client) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var text strings.Builder
	for resp, err := range client.Models.GenerateContentStream(ctx, "gemini-2.5-flash", genai.Text("hi"), nil) {
		if err != nil {
			return text.String(), err
		}
		text.WriteString(resp.Text())
	}
	if ctx.Err() != nil {
		t.Fatalf("stream took too long: %v", ctx.Err())
	}
	return text.String(), nil
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

// A's first SSE chunk is Gemini's error chunk (503 UNAVAILABLE): the call
// fails over and the SDK reads B's stream whole.
func TestSFGeminiErrorChunkFailsOver(t *testing.T) {
	for name, a := range map[string][]string{
		"503 UNAVAILABLE":        {sfUnavailable},
		"429 RESOURCE_EXHAUSTED": {`data: {"error": {"code": 429,"message": "Resource has been exhausted (e.g. check quota).","status": "RESOURCE_EXHAUSTED"}}` + "\r\n\r\n"},
		"LF line ends":           {strings.ReplaceAll(sfUnavailable, "\r\n", "\n")},
		"no blank line then EOF": {strings.TrimSuffix(sfUnavailable, "\r\n\r\n")},
	} {
		t.Run(name, func(t *testing.T) {
			srv := newSFServer(t, map[string][]string{sfKeyA: a, sfKeyB: sfHealthy("Hel", "lo")})
			client, pool := sfClient(t, srv, sfKeyA, sfKeyB)
			text, err := sfDrain(t, client)
			if err != nil || text != "Hello" {
				t.Fatalf("text %q err %v, want B's Hello", text, err)
			}
			if a, b := srv.count(sfKeyA), srv.count(sfKeyB); a != 1 || b != 1 {
				t.Fatalf("upstream calls A=%d B=%d, want 1 1", a, b)
			}
			st := pool.Status()[0]
			if st.State != failover.CoolingDown || (st.Reason != failover.ReasonOverloaded && st.Reason != failover.ReasonRateLimit) {
				t.Fatalf("A: %s %s (%s)", st.State, st.Reason, st.LastError)
			}
			for _, p := range srv.paths {
				if p != "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse" {
					t.Fatalf("upstream path %s", p)
				}
			}
			sfNoSecrets(t, pool, err)
		})
	}
}

// One member whose stream is an error chunk: the SDK gets a genai.APIError
// with Gemini's code and status.
func TestSFGeminiErrorChunkSingleMember(t *testing.T) {
	srv := newSFServer(t, map[string][]string{sfKeyA: {sfUnavailable}})
	client, pool := sfClient(t, srv, sfKeyA)
	text, err := sfDrain(t, client)
	var ae genai.APIError
	if text != "" || !errors.As(err, &ae) || ae.Code != 503 || ae.Status != "UNAVAILABLE" {
		t.Fatalf("text %q err %T %v, want genai.APIError 503 UNAVAILABLE", text, err, err)
	}
	sfNoSecrets(t, pool, err)
}

// An error chunk after text must reach the SDK, not fail over.
func TestSFGeminiErrorAfterTextReachesSDK(t *testing.T) {
	srv := newSFServer(t, map[string][]string{sfKeyA: {sfChunk("part", ""), sfUnavailable}, sfKeyB: sfHealthy("never")})
	client, pool := sfClient(t, srv, sfKeyA, sfKeyB)
	text, err := sfDrain(t, client)
	var ae genai.APIError
	if text != "part" || !errors.As(err, &ae) || ae.Code != 503 {
		t.Fatalf("text %q err %v, want A's part then its 503", text, err)
	}
	if srv.count(sfKeyB) != 0 {
		t.Fatal("B was asked after A sent text")
	}
	sfNoSecrets(t, pool, err)
}

// Gemini names the model in the path: two pass-through members answer
// 404 NOT_FOUND for a model neither has; the SDK gets a 404, the next
// call for it asks no upstream, and another model still works.
func TestSFGeminiModelLacked(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.URL.Path, "/models/gemini-typo:") {
			w.WriteHeader(404)
			_, _ = w.Write([]byte(`{"error":{"code":404,"message":"models/gemini-typo is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.","status":"NOT_FOUND"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"candidates":[{"content":{"parts":[{"text":"ok"}],"role":"model"},"finishReason":"STOP","index":0}],"modelVersion":"gemini-2.5-flash"}`))
	}))
	defer srv.Close()
	client, pool := sfClient(t, &sfServer{Server: srv}, sfKeyA, sfKeyB)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 2 {
		_, err := client.Models.GenerateContent(ctx, "gemini-typo", genai.Text("hi"), nil)
		var ae genai.APIError
		if !errors.As(err, &ae) || ae.Code != 404 {
			t.Fatalf("call %d: %T %v, want genai.APIError 404", i, err, err)
		}
		mu.Lock()
		n := calls
		mu.Unlock()
		if n != 2 {
			t.Fatalf("call %d: %d upstream calls, want 2", i, n)
		}
		sfNoSecrets(t, pool, err)
	}
	resp, err := client.Models.GenerateContent(ctx, "gemini-2.5-flash", genai.Text("hi"), nil)
	if err != nil || resp.Text() != "ok" {
		t.Fatalf("gemini-2.5-flash: %v", err)
	}
	for _, st := range pool.Status() {
		if len(st.Lacks) != 1 || st.Lacks[0] != "gemini-typo" {
			t.Fatalf("%s lacks %v", st.Name, st.Lacks)
		}
	}
}
