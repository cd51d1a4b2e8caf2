package failover

import (
	"bytes"
	"context"
	"encoding/json"
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
	opened := err == nil && st != nil
	if opened {
		first, err = st.Recv()
	} else if err == nil {
		err = errors.New("failover: the client returned neither a stream nor an error")
	}
	attemptOver := !stopAttempt()                 // the attempt's context ended
	timedOut := stalled != nil && !stalled.Stop() // the first chunk came too late
	// io.EOF from the first Recv is a stream that ended after [DONE]; from
	// the open, it is a connection closed before any response: a failure.
	if opened && (err == nil || errors.Is(err, io.EOF)) {
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
// reported against the member that served the stream. Recv on a nil or
// empty stream returns io.EOF.
func (s *ChatStream) Recv() (openai.ChatCompletionStreamResponse, error) {
	if s == nil {
		return openai.ChatCompletionStreamResponse{}, io.EOF
	}
	if s.first != nil {
		r := *s.first
		s.first = nil
		return r, nil
	}
	if s.stream == nil {
		return openai.ChatCompletionStreamResponse{}, io.EOF
	}
	r, err := s.stream.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		err = scrub(err, s.pool.secrets())
		s.once.Do(func() { s.pool.Report(s.member, err) })
	}
	return r, err
}

// Close ends the stream and releases its connection. It may be called on
// a nil stream and more than once.
func (s *ChatStream) Close() error {
	if s == nil {
		return nil
	}
	if s.cancel != nil {
		s.cancel()
	}
	if s.stream == nil {
		return nil
	}
	return s.stream.Close()
}

// Header returns the response headers of the member that serves the stream.
func (s *ChatStream) Header() http.Header {
	if s == nil || s.stream == nil {
		return http.Header{}
	}
	return s.stream.Header()
}

// Member returns the name of the member that serves the stream.
func (s *ChatStream) Member() string {
	if s == nil {
		return ""
	}
	return s.member
}

func isEventStream(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "text/event-stream")
}

// checksDone reports whether a response to a completion request must end
// with "data: [DONE]": it is an event stream, or the request asked for one
// (go-openai's Accept header, or "stream": true in the JSON body that
// openai-go and others send). A stream request answered with another
// content type (an HTML page from a proxy, say) then fails instead of
// passing as an empty stream. body is the request's body, if known.
func checksDone(req *http.Request, resp *http.Response, body []byte) bool {
	if resp.StatusCode >= 300 || !isCompletionPath(req.URL.Path) {
		return false
	}
	if isEventStream(resp.Header) || strings.Contains(req.Header.Get("Accept"), "text/event-stream") {
		return true
	}
	if !bytes.Contains(body, []byte(`"stream"`)) {
		return false
	}
	var r struct {
		Stream bool `json:"stream"`
	}
	return json.Unmarshal(body, &r) == nil && r.Stream
}

// isCompletionPath reports whether a request streams chat or text
// completions, which end with "data: [DONE]".
func isCompletionPath(path string) bool {
	return strings.HasSuffix(path, "/chat/completions") || strings.HasSuffix(path, "/completions")
}

// maxSSELine bounds one line of a completion stream. A chunk is a few
// hundred bytes; a line without end is a broken or hostile upstream, and
// the SDK would buffer all of it.
const maxSSELine = 8 << 20

// doneLineCap is how much of a line sseBody keeps to recognise the end
// marker: a longer line is not "data: [DONE]".
const doneLineCap = 64

// errSSELine is the error of a stream line longer than maxSSELine.
var errSSELine = fmt.Errorf("failover: stream line longer than %d MiB", maxSSELine>>20)

// sseBody turns the end of a completion stream without the event
// "data: [DONE]" into io.ErrUnexpectedEOF: a dropped connection is an
// error, not a clean end. The marker counts only as a whole line, as
// go-openai reads it (data:, optional spaces, [DONE], the line's end), so
// "[DONE]" inside a chunk's text does not end the stream. A line longer
// than maxSSELine fails the stream.
type sseBody struct {
	io.ReadCloser
	line    []byte // the first doneLineCap bytes of the current line
	lineLen int    // the current line's length so far
	done    bool
	err     error // sticky: a line too long
}

func (b *sseBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.ReadCloser.Read(p)
	for rest := p[:n]; len(rest) > 0; {
		seg, more := rest, false
		if j := bytes.IndexByte(rest, '\n'); j >= 0 {
			seg, rest, more = rest[:j], rest[j+1:], true
		} else {
			rest = nil
		}
		if room := doneLineCap - len(b.line); room > 0 {
			b.line = append(b.line, seg[:min(room, len(seg))]...)
		}
		b.lineLen += len(seg)
		if b.lineLen > maxSSELine {
			b.err = errSSELine
			return n, b.err
		}
		if more {
			b.done = b.done || (b.lineLen <= doneLineCap && isDoneLine(b.line))
			b.line, b.lineLen = b.line[:0], 0
		}
	}
	if errors.Is(err, io.EOF) && !b.done {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// isDoneLine reports whether line is the end marker "data: [DONE]".
func isDoneLine(line []byte) bool {
	rest, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data:"))
	return ok && string(bytes.TrimSpace(rest)) == "[DONE]"
}
