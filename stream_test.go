package failover_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A member whose connection closes before any response byte (go-openai
// returns `Post …: EOF`) is a network failure: the stream fails over to the
// next member, and nothing panics. Before the fix openStream read that EOF
// as an empty stream and returned a ChatStream whose Recv panicked.
func TestStreamClosedBeforeResponseFailsOver(t *testing.T) {
	var dropped atomic.Int64
	drop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dropped.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	defer drop.Close()
	srv := failovertest.NewServer()
	srv.Script("good", failovertest.Stream("fine"))
	cfg := openai.DefaultConfig("k-drop")
	cfg.BaseURL = drop.URL + "/v1"
	cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	p, err := failover.New([]failover.Member[*openai.Client]{
		failover.OpenAIMember("drop", cfg),
		failover.OpenAIMember("good", srv.Config("good")),
	})
	require.NoError(t, err)
	s, err := failover.NewOpenAI(p).CreateChatCompletionStream(ctx, chatReq)
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, "good", s.Member())
	got, err := readStream(t, s)
	require.NoError(t, err)
	assert.Equal(t, "fine", got)
	assert.GreaterOrEqual(t, dropped.Load(), int64(1))
	assert.Equal(t, 1, srv.Calls("good"))
	assert.Equal(t, failover.ReasonNetwork, p.Status()[0].Reason)
}

// The zero ChatStream, and a nil one, are safe to use: Recv ends, Close and
// Header do nothing.
func TestChatStreamNilSafe(t *testing.T) {
	for _, s := range []*failover.ChatStream{nil, {}} {
		_, err := s.Recv()
		assert.ErrorIs(t, err, io.EOF)
		assert.NoError(t, s.Close())
		assert.NoError(t, s.Close())
		assert.NotNil(t, s.Header())
		assert.Equal(t, "", s.Member())
	}
}

// "[DONE]" inside a chunk's text is not the end marker: a stream whose text
// holds it and whose connection then drops ends with io.ErrUnexpectedEOF,
// not a clean io.EOF. The marker counts only as the line "data: [DONE]".
func TestStreamDoneOnlyAsAWholeLine(t *testing.T) {
	chunk := func(text string) string {
		return fmt.Sprintf("data: {\"id\":\"1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q}}]}\n\n", text)
	}
	cases := []struct {
		name string
		sse  string
		want error // of the Recv that ends the stream
	}{
		{"done in text, then drop", chunk("print('[DONE]')"), io.ErrUnexpectedEOF},
		{"done in text, data: [DONE] in text", chunk("data: [DONE]"), io.ErrUnexpectedEOF},
		{"marker without line end", chunk("a") + "data: [DONE]", io.ErrUnexpectedEOF},
		{"marker cut", chunk("a") + "data: [DO", io.ErrUnexpectedEOF},
		{"marker", chunk("a") + "data: [DONE]\n\n", io.EOF},
		{"marker without space", chunk("a") + "data:[DONE]\n\n", io.EOF},
		{"marker with CRLF", chunk("a") + "data: [DONE]\r\n\r\n", io.EOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, tc.sse)
			})
			cfg := openai.DefaultConfig("k1")
			cfg.BaseURL = "http://sse.invalid/v1"
			cfg.HTTPClient = &http.Client{Transport: &handlerTransport{h: h}}
			p, err := failover.New([]failover.Member[*openai.Client]{failover.OpenAIMember("m", cfg)})
			require.NoError(t, err)
			s, err := failover.NewOpenAI(p).CreateChatCompletionStream(ctx, chatReq)
			require.NoError(t, err)
			defer s.Close()
			_, err = readStream(t, s)
			if errors.Is(tc.want, io.EOF) {
				require.NoError(t, err, "a clean end")
			} else {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}
}

// A single SSE line that never ends fails the stream once it passes the
// line cap, instead of the SDK buffering all of it.
func TestStreamHugeLineIsBounded(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"")
		_, _ = io.Copy(w, io.LimitReader(zeros{}, 64<<20))
	})
	cfg := openai.DefaultConfig("k1")
	cfg.BaseURL = "http://sse.invalid/v1"
	cfg.HTTPClient = &http.Client{Transport: &streamingHandler{h: h}}
	srv := failovertest.NewServer()
	srv.Script("good", failovertest.Stream("fine"))
	p, err := failover.New([]failover.Member[*openai.Client]{
		failover.OpenAIMember("huge", cfg), failover.OpenAIMember("good", srv.Config("good")),
	})
	require.NoError(t, err)
	s, err := failover.NewOpenAI(p).CreateChatCompletionStream(ctx, chatReq)
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, "good", s.Member(), "a line over the cap before the first chunk fails over")
	assert.Contains(t, p.Status()[0].LastError, "stream line longer than")
}

// zeros reads as an endless run of 'a'.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

// streamingHandler serves a handler through a pipe, so a body the handler
// writes is read as it is written (httptest.ResponseRecorder would hold it
// all).
type streamingHandler struct{ h http.Handler }

func (s *streamingHandler) RoundTrip(r *http.Request) (*http.Response, error) {
	pr, pw := io.Pipe()
	w := &pipeWriter{header: http.Header{}, pw: pw, ready: make(chan struct{})}
	go func() {
		s.h.ServeHTTP(w, r)
		w.start()
		_ = pw.Close()
	}()
	<-w.ready
	return &http.Response{StatusCode: w.status, Header: w.header, Body: pr, Request: r}, nil
}

type pipeWriter struct {
	header http.Header
	pw     *io.PipeWriter
	status int
	ready  chan struct{}
}

func (w *pipeWriter) Header() http.Header { return w.header }
func (w *pipeWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		close(w.ready)
	}
}
func (w *pipeWriter) start() { w.WriteHeader(http.StatusOK) }
func (w *pipeWriter) Write(p []byte) (int, error) {
	w.start()
	return w.pw.Write(p)
}

// An error event in the middle of a stream that echoes the member's key (of
// no known shape) comes back from Recv without it; errors.As still finds
// the provider's error.
func TestStreamMidStreamErrorRedacted(t *testing.T) {
	const canary = "Zq7xW2mPvR9kLs4TnB8cYd3HfJ6gAe5u"
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n")
		_, _ = fmt.Fprintf(w, "data: {\"error\":{\"message\":\"key %s was revoked\",\"type\":\"server_error\"}}\n\n", strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	})
	cfg := openai.DefaultConfig(canary)
	cfg.BaseURL = "http://sse.invalid/v1"
	cfg.HTTPClient = &http.Client{Transport: &handlerTransport{h: h}}
	p, err := failover.New([]failover.Member[*openai.Client]{failover.OpenAIMember("m", cfg)})
	require.NoError(t, err)
	s, err := failover.NewOpenAI(p).CreateChatCompletionStream(ctx, chatReq)
	require.NoError(t, err)
	defer s.Close()
	_, err = readStream(t, s)
	require.Error(t, err)
	var ae *openai.APIError
	require.ErrorAs(t, err, &ae)
	assert.NotContains(t, err.Error(), canary)
	assert.Contains(t, err.Error(), "was revoked")
	assert.NotContains(t, p.Status()[0].LastError, canary)
}

// A stream request answered 200 with an HTML page (a proxy's, a portal's)
// is not an empty stream: it fails over. Before the fix go-openai read the
// page's EOF as a clean end and the caller got a stream with no chunk.
func TestStreamWrongContentTypeFailsOver(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<html><body>Please log in to the network</body></html>\n")
	})
	cfg := openai.DefaultConfig("k1")
	cfg.BaseURL = "http://portal.invalid/v1"
	cfg.HTTPClient = &http.Client{Transport: &handlerTransport{h: h}}
	srv := failovertest.NewServer()
	srv.Script("good", failovertest.Stream("fine"))
	p, err := failover.New([]failover.Member[*openai.Client]{
		failover.OpenAIMember("portal", cfg), failover.OpenAIMember("good", srv.Config("good")),
	})
	require.NoError(t, err)
	s, err := failover.NewOpenAI(p).CreateChatCompletionStream(ctx, chatReq)
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, "good", s.Member())
	got, err := readStream(t, s)
	require.NoError(t, err)
	assert.Equal(t, "fine", got)
}
