// Package failovertest provides a fake OpenAI-compatible provider for
// testing failover setups, in the spirit of net/http/httptest.
//
// A [Server] tells API keys apart by their credential header
// (Authorization: Bearer, api-key or x-api-key) and answers each key from
// its own script: a sequence of [Response] values (status, headers, JSON
// body, SSE chunks, mid-stream errors, delays). It counts the calls each key
// receives and records what they asked for. Besides chat completions,
// completions and embeddings it lists models ([Server.SetModels]) and
// answers the Responses API, images, audio and moderations, reading the
// model of multipart bodies too ([FormFile] returns their files).
//
// The same server speaks Anthropic's and Gemini's protocols, chosen by
// path: POST /v1/messages answers Anthropic's message objects, named stream
// events and error bodies ([AnthropicOK], [AnthropicStream],
// [AnthropicRateLimited], ...); {version}/models/{model}:generateContent and
// :streamGenerateContent answer Gemini's GenerateContentResponse, streams
// and Google's error bodies ([GeminiOK], [GeminiStream],
// [GeminiRateLimited], ...), with the key from x-goog-api-key or ?key= and
// the model from the path. Unscripted calls get each protocol's default
// success, and a key's Limit answers in its protocol's 429.
//
// The server runs in memory by default: [Server.HTTPClient] delivers requests
// to it without a network, so tests can run inside a testing/synctest bubble
// with fake time, and streamed chunks arrive one by one. [Server.Start]
// also serves it on a loopback port for clients that need a URL.
package failovertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sashabaranov/go-openai"
)

// BaseURL is the base URL of the in-memory server; any host works with
// [Server.HTTPClient], this one reads well in logs.
const BaseURL = "http://failovertest.invalid/v1"

// Response is one scripted answer.
type Response struct {
	// Status is the HTTP status; 0 means 200.
	Status int
	// Header is added to the response.
	Header http.Header
	// Body is the response body, sent as is (usually JSON) whatever the
	// path. Empty with a 2xx status means a default success for the
	// endpoint and model asked: GET /models lists the models set with
	// [Server.SetModels], GET /models/{id} returns one of them or a 404.
	Body string
	// Chunks makes a 200 answer an SSE stream: each chunk is sent as one
	// "data: <chunk>" event (named "event: <type>" on Anthropic's messages
	// and OpenAI's Responses, as they send them), then, for chat and
	// completions, "data: [DONE]" unless NoDone is set. Use [Chunk] for a
	// chat delta and [ErrorEvent] for a mid-stream error.
	Chunks []string
	// NoDone ends the stream without its end, as a dropped connection
	// does: no "data: [DONE]" (chat, completions), no message_stop
	// (Anthropic), no response.completed (Responses).
	NoDone bool
	// Delay is waited before the status line; ChunkDelay before each chunk.
	// Both end early when the client goes away.
	Delay, ChunkDelay time.Duration
}

// Request is what one call asked for.
type Request struct {
	Key    string // the credential the call carried
	Path   string
	Model  string // the body's "model", or the id of GET /models/{id}
	Stream bool
	Body   []byte
	// Method and ContentType are the request's; see [FormFile] for a
	// multipart body.
	Method, ContentType string
	At                  time.Time // when the call arrived
	// Limited is true when the call was over the key's Limit and got a 429.
	Limited bool
}

// Server is a fake OpenAI-compatible provider. Its methods are safe for
// concurrent use. Create it with [NewServer].
type Server struct {
	mu       sync.Mutex
	scripts  map[string][]Response
	limits   map[string]int // requests per minute, by key
	models   []string       // what GET /models lists
	requests []Request
	ts       *httptest.Server
}

// NewServer returns a server with no scripts: every key is answered with a
// default success until [Server.Script] says otherwise.
func NewServer() *Server {
	return &Server{scripts: make(map[string][]Response), limits: make(map[string]int)}
}

// Script sets the answers for key: the n-th call gets rs[n-1], and calls
// after the last get the last answer again. It replaces an earlier script
// and resets nothing else.
func (s *Server) Script(key string, rs ...Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts[key] = append([]Response(nil), rs...)
}

// Limit makes the server enforce rpm requests per minute (over any sliding
// 60 s) for key, as a provider does: a call over it gets a 429 with
// Retry-After instead of its scripted answer. 0 removes the limit.
func (s *Server) Limit(key string, rpm int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits[key] = rpm
}

// SetModels sets the models that GET /models lists and GET /models/{id}
// returns (go-openai's ListModels and GetModel), in order, for every key;
// GetModel of any other id is OpenAI's 404 model_not_found. With no ids,
// the list is empty. A key's script still comes first: a scripted error
// answers a models call too.
func (s *Server) SetModels(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.models = append([]string(nil), ids...)
}

// Limited returns how many calls with key the server refused for its Limit.
func (s *Server) Limited(key string) int {
	n := 0
	for _, r := range s.Requests(key) {
		if r.Limited {
			n++
		}
	}
	return n
}

// Calls returns the number of calls that carried key.
func (s *Server) Calls(key string) int {
	return len(s.Requests(key))
}

// Requests returns the calls that carried key, in order; with key "" all calls.
func (s *Server) Requests(key string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range s.requests {
		if key == "" || r.Key == key {
			out = append(out, r)
		}
	}
	return out
}

// Reset forgets the recorded calls; scripts restart from their first answer.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// HTTPClient returns a client whose requests the server answers in memory,
// whatever their host. Responses stream: a client reads each chunk as the
// server writes it.
func (s *Server) HTTPClient() *http.Client {
	return &http.Client{Transport: memoryTransport{s}}
}

// Config returns a go-openai configuration for key that talks to the server:
// over the network after Start, else in memory.
func (s *Server) Config(key string) openai.ClientConfig {
	cfg := openai.DefaultConfig(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ts != nil {
		cfg.BaseURL = s.ts.URL + "/v1"
	} else {
		cfg.BaseURL = BaseURL
		cfg.HTTPClient = s.HTTPClient()
	}
	return cfg
}

// Start serves on a loopback port and returns the base URL ("http://127.0.0.1:port/v1").
// Close stops it.
func (s *Server) Start() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ts == nil {
		s.ts = httptest.NewServer(s)
	}
	return s.ts.URL + "/v1"
}

// Close stops the listener started by Start, if any.
func (s *Server) Close() {
	s.mu.Lock()
	ts := s.ts
	s.ts = nil
	s.mu.Unlock()
	if ts != nil {
		ts.Close()
	}
}

// ServeHTTP answers one call from the script of its key.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
	}
	var fields struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	if json.Unmarshal(body, &fields) != nil {
		fields.Model = formModel(r, body) // methods.go
	}
	req := Request{Key: keyOf(r), Path: r.URL.Path, Model: fields.Model, Stream: fields.Stream, Body: body,
		Method: r.Method, ContentType: r.Header.Get("Content-Type"), At: time.Now()}
	modelID, isModel := modelPath(r)
	if isModel {
		req.Model = modelID
	}
	proto := protocolOf(r) // OpenAI, Anthropic or Gemini shapes: see protocol.go
	proto.describe(r, &req)

	s.mu.Lock()
	n, recent := 0, 0
	for _, old := range s.requests {
		if old.Key == req.Key {
			n++
			if !old.Limited && req.At.Sub(old.At) < time.Minute {
				recent++
			}
		}
	}
	rpm := s.limits[req.Key]
	req.Limited = rpm > 0 && recent >= rpm
	s.requests = append(s.requests, req)
	script := s.scripts[req.Key]
	models := s.models
	s.mu.Unlock()

	resp := Response{}
	switch {
	case req.Limited:
		resp = proto.rateLimited(time.Second)
	case len(script) > 0:
		resp = script[min(n, len(script)-1)]
	}
	if !wait(r, resp.Delay) {
		return
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	if resp.Chunks == nil && resp.Body == "" && status < 300 && req.Stream {
		resp.Chunks = proto.defaultStream(req)
	}
	if resp.Chunks != nil && status < 300 {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(status)
		flush(w)
		for _, c := range resp.Chunks {
			if !wait(r, resp.ChunkDelay) {
				return
			}
			proto.writeChunk(w, c, resp.NoDone)
			flush(w)
		}
		proto.end(w, resp.NoDone)
		return
	}
	b := resp.Body
	if b == "" && status < 300 {
		if pb, ok := proto.defaultBody(req); ok {
			b = pb
		} else {
			status, b = defaultBody(r, req, models)
		}
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, b)
}

// keyOf returns the credential of a request, from Authorization: Bearer,
// api-key (Azure), x-api-key (Anthropic), x-goog-api-key or ?key= (Gemini).
func keyOf(r *http.Request) string {
	if v := r.Header.Get("Authorization"); v != "" {
		return strings.TrimSpace(strings.TrimPrefix(v, "Bearer "))
	}
	if v := r.Header.Get("api-key"); v != "" {
		return v
	}
	if v := r.Header.Get("x-api-key"); v != "" {
		return v
	}
	if v := r.Header.Get("x-goog-api-key"); v != "" {
		return v
	}
	return r.URL.Query().Get("key")
}

func wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return r.Context().Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// modelCreated is the "created" time of every listed model (2024-01-01).
const modelCreated = 1704067200

// modelPath reports whether r is a GET of /models or /models/{id}, and the id.
func modelPath(r *http.Request) (id string, ok bool) {
	if r.Method != http.MethodGet {
		return "", false
	}
	if strings.HasSuffix(r.URL.Path, "/models") {
		return "", true
	}
	if _, id, ok := strings.Cut(r.URL.Path, "/models/"); ok && id != "" {
		return id, true // ids may have slashes, as OpenRouter's do
	}
	return "", false
}

func model(id string) map[string]any {
	return map[string]any{"id": id, "object": "model", "created": modelCreated, "owned_by": "failovertest"}
}

// defaultBody is the default success for the endpoint asked, with its status.
func defaultBody(r *http.Request, req Request, models []string) (int, string) {
	if b, ok := methodBody(req); ok { // methods.go
		return http.StatusOK, b
	}
	var v any
	switch id, isModel := modelPath(r); {
	case isModel && id == "":
		data := make([]any, len(models))
		for i, m := range models {
			data[i] = model(m)
		}
		v = map[string]any{"object": "list", "data": data}
	case isModel:
		if !slices.Contains(models, id) {
			return http.StatusNotFound, ErrorBody("invalid_request_error", "model_not_found",
				fmt.Sprintf("The model '%s' does not exist or you do not have access to it.", id))
		}
		v = model(id)
	case strings.HasSuffix(req.Path, "/embeddings"):
		v = map[string]any{"object": "list", "model": req.Model,
			"data": []any{map[string]any{"object": "embedding", "index": 0, "embedding": []float64{0.1, 0.2, 0.3}}}}
	case strings.HasSuffix(req.Path, "/chat/completions"):
		v = openai.ChatCompletionResponse{ID: "chatcmpl-fake", Object: "chat.completion", Model: req.Model,
			Choices: []openai.ChatCompletionChoice{{Message: openai.ChatCompletionMessage{Role: "assistant", Content: "ok"}, FinishReason: "stop"}}}
	default:
		v = openai.CompletionResponse{ID: "cmpl-fake", Object: "text_completion", Model: req.Model,
			Choices: []openai.CompletionChoice{{Text: "ok", FinishReason: "stop"}}}
	}
	b, _ := json.Marshal(v)
	return http.StatusOK, string(b)
}

// Chunk returns a chat completion chunk whose delta is content.
func Chunk(model, content string) string {
	b, _ := json.Marshal(openai.ChatCompletionStreamResponse{ID: "chatcmpl-fake", Object: "chat.completion.chunk", Model: model,
		Choices: []openai.ChatCompletionStreamChoice{{Delta: openai.ChatCompletionStreamChoiceDelta{Content: content}}}})
	return string(b)
}

// ErrorBody returns an OpenAI-style error body.
func ErrorBody(typ, code, message string) string {
	e := map[string]any{"message": message, "type": typ, "param": nil, "code": nil}
	if code != "" {
		e["code"] = code
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	return string(b)
}

// ErrorEvent returns a mid-stream error event (an SSE data payload), as
// OpenAI sends when a stream fails after it started.
func ErrorEvent(typ, message string) string { return ErrorBody(typ, "", message) }

// Error returns a scripted error answer with an OpenAI-style body.
func Error(status int, typ, code, message string) Response {
	return Response{Status: status, Body: ErrorBody(typ, code, message)}
}

// OK returns a scripted success whose chat message (or completion text) is content.
func OK(content string) Response {
	b, _ := json.Marshal(openai.ChatCompletionResponse{ID: "chatcmpl-fake", Object: "chat.completion",
		Choices: []openai.ChatCompletionChoice{{Message: openai.ChatCompletionMessage{Role: "assistant", Content: content}, FinishReason: "stop"}}})
	return Response{Body: string(b)}
}

// Stream returns a scripted stream of chat deltas.
func Stream(contents ...string) Response {
	r := Response{Chunks: make([]string, len(contents))}
	for i, c := range contents {
		r.Chunks[i] = Chunk("", c)
	}
	return r
}

// RateLimited returns a 429 with Retry-After (whole seconds).
func RateLimited(retryAfter time.Duration) Response {
	r := Error(http.StatusTooManyRequests, "requests", "rate_limit_exceeded", "Rate limit reached for requests")
	r.Header = http.Header{"Retry-After": {fmt.Sprint(int(retryAfter.Seconds()))}}
	return r
}

// Unauthorized returns OpenAI's 401 for a revoked or wrong key.
func Unauthorized() Response {
	return Error(http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")
}

// memoryTransport hands requests to the server in memory. The handler runs
// in its own goroutine and writes into a pipe, so bodies stream.
type memoryTransport struct{ s *Server }

func (t memoryTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody { // a GET, such as ListModels
		r = r.Clone(r.Context())
		r.Body = http.NoBody
	} else {
		b, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			return nil, err
		}
		r = r.Clone(r.Context())
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	pr, pw := io.Pipe()
	w := &pipeWriter{header: make(http.Header), pw: pw, ready: make(chan struct{})}
	go func() {
		t.s.ServeHTTP(w, r)
		w.WriteHeader(http.StatusOK) // in case the handler wrote nothing
		_ = pw.Close()
	}()
	select {
	case <-w.ready:
	case <-r.Context().Done():
		_ = pr.CloseWithError(r.Context().Err())
		return nil, r.Context().Err()
	}
	stop := context.AfterFunc(r.Context(), func() { _ = pr.CloseWithError(r.Context().Err()) })
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.sent,
		Body:          &stopCloser{ReadCloser: pr, stop: stop},
		ContentLength: -1,
		Request:       r,
	}, nil
}

// pipeWriter is an http.ResponseWriter that writes into a pipe.
type pipeWriter struct {
	header http.Header
	sent   http.Header
	status int
	pw     *io.PipeWriter
	ready  chan struct{}
	once   sync.Once
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(status int) {
	w.once.Do(func() {
		w.status, w.sent = status, w.header.Clone()
		close(w.ready)
	})
}

func (w *pipeWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(b)
}

func (w *pipeWriter) Flush() {}

type stopCloser struct {
	io.ReadCloser
	stop func() bool
}

func (c *stopCloser) Close() error {
	c.stop()
	return c.ReadCloser.Close()
}
