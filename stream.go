package failover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sashabaranov/go-openai"
)

// WithFirstChunkTimeout bounds the wait for a stream's first chunk: a
// provider that opens a stream and then stalls is a timeout, and the call
// fails over. The default, 0, waits as long as the attempt may (see
// [WithAttemptTimeout]).
func WithFirstChunkTimeout(d time.Duration) OpenAIOption {
	return func(o *OpenAI) { o.firstChunk = max(d, 0) }
}

// ChatStream is a chat completion stream that failed over until its first
// chunk arrived. Its methods mirror *openai.ChatCompletionStream.
type ChatStream struct {
	stream *openai.ChatCompletionStream
	first  *openai.ChatCompletionStreamResponse // not yet returned by Recv
	cancel context.CancelFunc
	pool   *Pool[*openai.Client]
	member string
	once   sync.Once // reports a failure at most once
}

// CreateChatCompletionStream opens a stream with failover. It moves on to the
// next member when a stream fails to open, or fails, stalls (see
// [WithFirstChunkTimeout]) or ends without [DONE] before its first chunk:
// until then the caller has seen nothing, so nothing is duplicated. After
// the first chunk, an error goes to the caller from Recv and is reported
// against the member (see [Pool.Report]).
func (o *OpenAI) CreateChatCompletionStream(ctx context.Context, req openai.ChatCompletionRequest) (*ChatStream, error) {
	tokens := EstimateTokens(req)
	s, err := Do(ctx, o.pool, func(actx context.Context, m Member[*openai.Client]) (*ChatStream, error) {
		return o.openStream(ctx, actx, m, req, tokens)
	}, Tokens(tokens))
	return s, unwrapResponse(err)
}

// openStream opens a stream on one member and waits for its first chunk.
// The stream lives in ctx (the caller's context); the attempt's context and
// the first-chunk timeout bound only the wait for the first chunk.
func (o *OpenAI) openStream(ctx, actx context.Context, m Member[*openai.Client], req openai.ChatCompletionRequest, tokens int) (*ChatStream, error) {
	sctx, cancel := context.WithCancel(ctx)
	sctx, x := withExchange(sctx)
	stopAttempt := context.AfterFunc(actx, cancel)
	var stalled *time.Timer
	if o.firstChunk > 0 {
		stalled = time.AfterFunc(o.firstChunk, cancel)
	}
	if m.Model != "" {
		req.Model = m.Model
	}
	st, err := m.Client.CreateChatCompletionStream(sctx, req)
	var first openai.ChatCompletionStreamResponse
	if err == nil {
		first, err = st.Recv()
	}
	attemptOver := !stopAttempt()                 // the attempt's context ended
	timedOut := stalled != nil && !stalled.Stop() // the first chunk came too late
	if err == nil || errors.Is(err, io.EOF) {
		if !attemptOver && !timedOut {
			o.restIfSpent(m.Name, x, nil, tokens)
			cs := &ChatStream{stream: st, cancel: cancel, pool: o.pool, member: m.Name}
			if err == nil {
				cs.first = &first
			}
			return cs, nil
		}
		err = context.Canceled // the stream's context was canceled under it
	}
	if st != nil {
		_ = st.Close()
	}
	cancel()
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case timedOut:
		err = fmt.Errorf("failover: no first chunk within %v: %w", o.firstChunk, context.DeadlineExceeded)
	case attemptOver:
		err = fmt.Errorf("failover: attempt: %w", actx.Err())
	}
	return nil, x.wrap(scrub(err, o.pool.secrets()))
}

// Recv returns the next chunk, or io.EOF after [DONE]. A stream that ends
// without [DONE] returns io.ErrUnexpectedEOF, not a clean end. An error is
// reported against the member that served the stream.
func (s *ChatStream) Recv() (openai.ChatCompletionStreamResponse, error) {
	if s.first != nil {
		r := *s.first
		s.first = nil
		return r, nil
	}
	r, err := s.stream.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		s.once.Do(func() { s.pool.Report(s.member, err) })
	}
	return r, err
}

// Close ends the stream and releases its connection.
func (s *ChatStream) Close() error {
	s.cancel()
	return s.stream.Close()
}

// Header returns the response headers of the member that serves the stream.
func (s *ChatStream) Header() http.Header { return s.stream.Header() }

// Member returns the name of the member that serves the stream.
func (s *ChatStream) Member() string { return s.member }

func isEventStream(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "text/event-stream")
}

// isCompletionPath reports whether a request streams chat or text
// completions, which end with "data: [DONE]".
func isCompletionPath(path string) bool {
	return strings.HasSuffix(path, "/chat/completions") || strings.HasSuffix(path, "/completions")
}

// sseBody turns the end of a completion stream without "data: [DONE]" into
// io.ErrUnexpectedEOF: a dropped connection is an error, not a clean end.
type sseBody struct {
	io.ReadCloser
	tail []byte // the last bytes read, to find a marker split across reads
	done bool
}

var doneMarker = []byte("[DONE]")

func (b *sseBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if !b.done && n > 0 {
		buf := append(b.tail, p[:n]...)
		b.done = bytes.Contains(buf, doneMarker)
		b.tail = append(b.tail[:0], buf[max(len(buf)-len(doneMarker)+1, 0):]...)
	}
	if errors.Is(err, io.EOF) && !b.done {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
