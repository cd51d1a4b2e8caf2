// Package faultserver is a loopback upstream that speaks the OpenAI
// chat-completions API (POST …/chat/completions, plain JSON and
// "stream": true server-sent events) and misbehaves on purpose, one way
// per server: it closes or resets connections, trickles or floods bodies,
// stalls, sends bytes that are not HTTP, or answers in a framing that is
// legal but unusual. The fault suite of package failover drives real HTTP
// clients against it.
//
// Every handler ends when the client goes away, when the server closes,
// or after [Config.Hold] at the latest; each write has a deadline, and
// large bodies are generated as they are written, so the server does no
// unbounded work and holds no large buffer.
package faultserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is how a server answers every request.
type Mode string

// The modes. Unless a mode says otherwise, a plain request gets JSON and a
// request with "stream": true gets an event stream.
const (
	// Healthy answers correctly: a chat completion, or a stream of chunks
	// ending with "data: [DONE]".
	Healthy Mode = "healthy"
	// CloseBeforeResponse reads the request, then closes the connection
	// without writing a byte.
	CloseBeforeResponse Mode = "close_before_response"
	// ResetMidBody sends a 200's headers and part of its body (half a JSON
	// object, or an unfinished first SSE line), then resets the connection
	// (SO_LINGER 0: the client sees a TCP RST).
	ResetMidBody Mode = "reset_mid_body"
	// TrickleError sends a 500's headers, then its JSON error body one byte
	// per Config.TrickleInterval.
	TrickleError Mode = "trickle_error"
	// HugeBody answers 500 with a JSON error body of Config.HugeSize bytes,
	// with its Content-Length.
	HugeBody Mode = "huge_body"
	// HugeSSELine answers 200 text/event-stream, to any request, with one
	// "data:" line of Config.HugeSize bytes and no newline, then ends the
	// response.
	HugeSSELine Mode = "huge_sse_line"
	// NoDone answers 200 text/event-stream, to any request, with valid
	// chunks, one of whose text is "print('[DONE]')", then ends the
	// response cleanly without the event "data: [DONE]".
	NoDone Mode = "no_done"
	// StallBeforeHeaders reads the request and sends nothing.
	StallBeforeHeaders Mode = "stall_before_headers"
	// StallAfterHeaders sends a 200's headers and then nothing.
	StallAfterHeaders Mode = "stall_after_headers"
	// Garbage reads the request, writes bytes that are not HTTP, and
	// closes the connection.
	Garbage Mode = "garbage"
	// WrongContentType answers 200 text/html with a proxy's login page, to
	// any request.
	WrongContentType Mode = "wrong_content_type"
	// HTTP10CloseDelimited answers correctly in HTTP/1.0, without
	// Content-Length: the body ends when the server closes the connection.
	HTTP10CloseDelimited Mode = "http10_close_delimited"
	// Echo answers Config.EchoStatus with an OpenAI error whose message,
	// param and body echo every credential the request carried (its
	// headers but the usual non-secret ones, and its query), and echoes
	// them in the response header X-Echo too. With EchoStatus 200 a stream
	// request gets one valid chunk, then an error event that echoes them,
	// and a plain request gets a 500.
	Echo Mode = "echo"
)

// Faults returns the fault modes, in a fixed order: every mode but Healthy
// and Echo.
func Faults() []Mode {
	return []Mode{CloseBeforeResponse, ResetMidBody, TrickleError, HugeBody, HugeSSELine, NoDone,
		StallBeforeHeaders, StallAfterHeaders, Garbage, WrongContentType, HTTP10CloseDelimited}
}

// ModeHeader names the response header that carries the serving server's
// mode, so that a test can tell which upstream answered.
const ModeHeader = "X-Faultserver-Mode"

// Content is the text of a Healthy (and HTTP10CloseDelimited) answer; a
// stream sends it one character per chunk.
const Content = "ok"

// Config configures a server. The zero value of each field means its
// default.
type Config struct {
	Mode Mode
	// TrickleInterval is the pause between two bytes of TrickleError;
	// default 20 ms.
	TrickleInterval time.Duration
	// HugeSize is the size of HugeBody's body and HugeSSELine's line;
	// default 256 MiB.
	HugeSize int64
	// Hold bounds how long any handler stalls or trickles; default 30 s.
	Hold time.Duration
	// WriteTimeout bounds each write to a client; default 5 s.
	WriteTimeout time.Duration
	// ResetDelay is how long ResetMidBody waits between its partial answer
	// and the reset, so that the client has read the headers; default
	// 50 ms.
	ResetDelay time.Duration
	// EchoStatus is Echo's status; default 500.
	EchoStatus int
}

func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = Healthy
	}
	if c.TrickleInterval <= 0 {
		c.TrickleInterval = 20 * time.Millisecond
	}
	if c.HugeSize <= 0 {
		c.HugeSize = 256 << 20
	}
	if c.Hold <= 0 {
		c.Hold = 30 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.ResetDelay <= 0 {
		c.ResetDelay = 50 * time.Millisecond
	}
	if c.EchoStatus == 0 {
		c.EchoStatus = http.StatusInternalServerError
	}
	return c
}

// Server is a running fault-injecting upstream on a loopback port.
type Server struct {
	// URL is the server's root, such as http://127.0.0.1:4711.
	URL string

	cfg     Config
	ts      *httptest.Server
	ctx     context.Context // canceled by Close
	cancel  context.CancelFunc
	calls   atomic.Int64
	active  atomic.Int64
	running sync.WaitGroup // handlers, hijacked or not

	mu        sync.Mutex
	hijacked  map[net.Conn]struct{}
	closeOnce sync.Once
}

// New starts a server in mode with the default configuration.
func New(mode Mode) *Server { return Start(Config{Mode: mode}) }

// Start starts a server with cfg.
func Start(cfg Config) *Server {
	s := &Server{cfg: cfg.withDefaults(), hijacked: map[net.Conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.ts.Config.ErrorLog = log.New(io.Discard, "", 0) // hostile answers make the server complain
	s.ts.Start()
	s.URL = s.ts.URL
	return s
}

// BaseURL is the URL to configure a client with: URL + "/v1".
func (s *Server) BaseURL() string { return s.URL + "/v1" }

// Mode returns the server's mode.
func (s *Server) Mode() Mode { return s.cfg.Mode }

// Calls returns the number of chat-completion requests received.
func (s *Server) Calls() int { return int(s.calls.Load()) }

// Active returns the number of handlers still running.
func (s *Server) Active() int { return int(s.active.Load()) }

// Close stops every handler, closes every connection and the listener,
// and waits (at most 5 s) for the handlers to return. It may be called
// more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.cancel()
		s.mu.Lock()
		for c := range s.hijacked {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.ts.CloseClientConnections()
		s.ts.Close()
		done := make(chan struct{})
		go func() { s.running.Wait(); close(done) }()
		t := time.NewTimer(5 * time.Second)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		}
	})
}

// request is what the handler needs of a call.
type request struct {
	Stream bool   `json:"stream"`
	Model  string `json:"model"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.running.Add(1)
	s.active.Add(1)
	defer func() { s.active.Add(-1); s.running.Done() }()
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
		http.Error(w, `{"error":{"message":"not found","type":"invalid_request_error"}}`, http.StatusNotFound)
		return
	}
	s.calls.Add(1)
	// Read the whole request (bounded), so that closing the connection is
	// a clean FIN rather than a reset over unread bytes, and so that the
	// server notices when the client goes away.
	var req request
	_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req)
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	if req.Model == "" {
		req.Model = "gpt-4o"
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Hold)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()

	h := w.Header()
	h.Set(ModeHeader, string(s.cfg.Mode))
	switch s.cfg.Mode {
	case CloseBeforeResponse:
		if c, _, ok := s.hijack(w); ok {
			s.drop(c)
		}
	case ResetMidBody:
		s.resetMidBody(ctx, w, req)
	case TrickleError:
		s.trickle(ctx, w)
	case HugeBody:
		h.Set("Content-Type", "application/json")
		prefix, suffix := `{"error":{"message":"`, `","type":"server_error","code":null}}`
		h.Set("Content-Length", strconv.FormatInt(s.cfg.HugeSize, 10))
		w.WriteHeader(http.StatusInternalServerError)
		s.flood(ctx, w, prefix, suffix, s.cfg.HugeSize)
	case HugeSSELine:
		h.Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		s.flood(ctx, w, `data: {"id":"chatcmpl-fault","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"`, "", s.cfg.HugeSize)
	case NoDone:
		h.Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for _, c := range []string{"print('", "[DONE]", "')"} {
			if s.write(w, event(chunk(req.Model, c))) != nil {
				return
			}
		}
	case StallBeforeHeaders:
		<-ctx.Done()
	case StallAfterHeaders:
		if req.Stream {
			h.Set("Content-Type", "text/event-stream")
		} else {
			h.Set("Content-Type", "application/json")
		}
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		<-ctx.Done()
	case Garbage:
		if c, _, ok := s.hijack(w); ok {
			_ = c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			_, _ = c.Write([]byte("\x00\xff\x16\x03\x01SSH-2.0-not-http\r\n\x1b[31mnothing to see\r\n\r\n"))
			s.drop(c)
		}
	case WrongContentType:
		body := "<html><head><title>Sign in</title></head><body>Please sign in to the proxy.</body></html>\n"
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		_ = s.write(w, body)
	case HTTP10CloseDelimited:
		c, bw, ok := s.hijack(w)
		if !ok {
			return
		}
		ct, body := "application/json", completion(req.Model)
		if req.Stream {
			ct, body = "text/event-stream", healthyStream(req.Model)
		}
		_ = c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		fmt.Fprintf(bw, "HTTP/1.0 200 OK\r\nContent-Type: %s\r\n%s: %s\r\n\r\n%s", ct, ModeHeader, s.cfg.Mode, body)
		_ = bw.Flush()
		s.drop(c)
	case Echo:
		s.echo(w, r, req)
	default: // Healthy
		if req.Stream {
			h.Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			_ = s.write(w, healthyStream(req.Model))
			return
		}
		body := completion(req.Model)
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		_ = s.write(w, body)
	}
}

// write sends text and flushes it, within the write timeout.
func (s *Server) write(w http.ResponseWriter, text string) error {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if _, err := io.WriteString(w, text); err != nil {
		return err
	}
	return rc.Flush()
}

// flood writes prefix, filler and suffix, n bytes in all (the filler is
// cut if prefix and suffix do not fit), from one small buffer, until done
// or the client stops reading.
func (s *Server) flood(ctx context.Context, w http.ResponseWriter, prefix, suffix string, n int64) {
	if s.write(w, prefix) != nil {
		return
	}
	fill := make([]byte, 32<<10)
	for i := range fill {
		fill[i] = 'x'
	}
	rc := http.NewResponseController(w)
	for left := n - int64(len(prefix)) - int64(len(suffix)); left > 0 && ctx.Err() == nil; {
		k := min(int64(len(fill)), left)
		_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		if _, err := w.Write(fill[:k]); err != nil {
			return
		}
		left -= k
	}
	if ctx.Err() == nil {
		_ = s.write(w, suffix)
	}
}

// trickle sends a 500 whose body comes one byte per interval.
func (s *Server) trickle(ctx context.Context, w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	if http.NewResponseController(w).Flush() != nil {
		return
	}
	body := `{"error":{"message":"` + strings.Repeat("slow ", 1<<14) + `","type":"server_error"}}`
	t := time.NewTicker(s.cfg.TrickleInterval)
	defer t.Stop()
	for i := 0; i < len(body); i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.write(w, body[i:i+1]) != nil {
			return
		}
	}
}

// resetMidBody sends headers and part of a body, then resets.
func (s *Server) resetMidBody(ctx context.Context, w http.ResponseWriter, req request) {
	c, bw, ok := s.hijack(w)
	if !ok {
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if req.Stream {
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n%s: %s\r\n\r\n", ModeHeader, s.cfg.Mode)
		full := event(chunk(req.Model, Content))
		bw.WriteString(full[:len(full)/2])
	} else {
		full := completion(req.Model)
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s: %s\r\n\r\n", len(full), ModeHeader, s.cfg.Mode)
		bw.WriteString(full[:len(full)/2])
	}
	_ = bw.Flush()
	t := time.NewTimer(s.cfg.ResetDelay)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	s.drop(c)
}

// echo answers with the request's credentials in the error.
func (s *Server) echo(w http.ResponseWriter, r *http.Request, req request) {
	seen := credentials(r)
	w.Header().Set("X-Echo", seen)
	status := s.cfg.EchoStatus
	if status == http.StatusOK && req.Stream {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		if s.write(w, event(chunk(req.Model, "o"))) != nil {
			return
		}
		b, _ := json.Marshal(map[string]any{"error": map[string]any{
			"message": "stream failed for " + seen, "type": "server_error", "param": seen, "code": nil}})
		_ = s.write(w, event(string(b)))
		return
	}
	if status < 400 {
		status = http.StatusInternalServerError
	}
	typ := "server_error"
	if status < 500 {
		typ = "invalid_request_error"
	}
	b, _ := json.Marshal(map[string]any{
		"error":    map[string]any{"message": "rejected credentials: " + seen, "type": typ, "param": seen, "code": nil},
		"received": seen,
	})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = s.write(w, string(b))
}

// credentials lists every header of r that may carry a secret, and its
// query, as "Name=value" pairs.
func credentials(r *http.Request) string {
	var out []string
	for k, vs := range r.Header {
		switch k {
		case "Accept", "Accept-Encoding", "Content-Type", "Content-Length", "Connection", "User-Agent":
			continue
		}
		out = append(out, k+"="+strings.Join(vs, ","))
	}
	sort.Strings(out)
	if r.URL.RawQuery != "" {
		out = append(out, "query="+r.URL.RawQuery)
	}
	return strings.Join(out, "; ")
}

// hijack takes over the connection and tracks it until drop.
func (s *Server) hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, bool) {
	c, bw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, false
	}
	s.mu.Lock()
	s.hijacked[c] = struct{}{}
	s.mu.Unlock()
	if s.ctx.Err() != nil { // closed meanwhile: Close may have missed it
		s.drop(c)
		return nil, nil, false
	}
	return c, bw, true
}

// drop closes a hijacked connection.
func (s *Server) drop(c net.Conn) {
	_ = c.Close()
	s.mu.Lock()
	delete(s.hijacked, c)
	s.mu.Unlock()
}

// chunk is one chat.completion.chunk with text as its delta.
func chunk(model, text string) string {
	b, _ := json.Marshal(map[string]any{
		"id": "chatcmpl-faultserver", "object": "chat.completion.chunk", "created": 1, "model": model,
		"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": text}, "finish_reason": nil}},
	})
	return string(b)
}

func event(data string) string { return "data: " + data + "\n\n" }

// healthyStream is Content, one character per chunk, then [DONE].
func healthyStream(model string) string {
	var b strings.Builder
	for _, r := range Content {
		b.WriteString(event(chunk(model, string(r))))
	}
	b.WriteString("data: [DONE]\n\n")
	return b.String()
}

// completion is a chat completion answering Content.
func completion(model string) string {
	b, _ := json.Marshal(map[string]any{
		"id": "chatcmpl-faultserver", "object": "chat.completion", "created": 1, "model": model,
		"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": Content}, "finish_reason": "stop"}},
		"usage":   map[string]any{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
	})
	return string(b)
}
