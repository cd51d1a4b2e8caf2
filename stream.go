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
	raw    []byte                               // first's JSON, for RecvRaw
	cancel context.CancelFunc
	pool   *Pool[*openai.Client]
	member string
	ctx    context.Context // the attempt's that opened it, for the Usage hook
	once   sync.Once       // reports a failure at most once
}

// usage counts a chunk's usage, if it carries one, to the member.
func (s *ChatStream) usage(r *openai.ChatCompletionStreamResponse) {
	if r.Usage != nil {
		s.pool.used(s.ctx, Usage{Member: s.member, Model: r.Model, PromptTokens: r.Usage.PromptTokens, CompletionTokens: r.Usage.CompletionTokens})
	}
}

// CreateChatCompletionStream opens a stream with failover. It moves on to the
// next member when a stream fails to open, or fails, stalls (see
// [WithFirstChunkTimeout]) or ends without [DONE] before its first chunk:
// until then the caller has seen nothing, so nothing is duplicated. After
// the first chunk, an error goes to the caller from Recv and is reported
// against the member (see [Pool.Report]).
func (o *OpenAI) CreateChatCompletionStream(ctx context.Context, req openai.ChatCompletionRequest) (*ChatStream, error) {
	ctx = o.pool.named(ctx, opChat)
	tokens := EstimateTokens(req)
	s, err := Do(ctx, o.pool, func(actx context.Context, m Member[*openai.Client]) (*ChatStream, error) {
		return o.openStream(ctx, actx, m, req, tokens)
	}, callOptions(ctx, tokens, ForModel(req.Model))...)
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
	var raw []byte
	if opened {
		raw, err = st.RecvRaw()
		if err == nil {
			err = json.Unmarshal(raw, &first)
		}
		if err == nil && failedChunk(first) {
			err = failedChunkError()
		}
		if err == nil {
			err = errorChunk(raw)
		}
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
			markServed(st, m.Name)
			cs := &ChatStream{stream: st, cancel: cancel, pool: o.pool, member: m.Name, ctx: actx}
			if err == nil {
				cs.first, cs.raw = &first, raw
			}
			return cs, nil
		}
		err = context.Canceled // the stream's context was canceled under it
	}
	if st != nil {
		_ = st.Close()
	}
	cancel()
	return nil, x.wrap(o.openFailure(ctx, actx, err, timedOut, attemptOver, "chunk"), m.Model, o.pool.secrets())
}

// openFailure is the error of a stream that failed to open: the caller's
// cancellation, a first event (what) that came too late, the attempt's
// timeout, or err itself.
func (o *OpenAI) openFailure(ctx, actx context.Context, err error, timedOut, attemptOver bool, what string) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case timedOut:
		return fmt.Errorf("failover: no first %s within %v: %w", what, o.firstChunk, context.DeadlineExceeded)
	case attemptOver:
		return fmt.Errorf("failover: attempt: %w", actx.Err())
	}
	return err
}

// failedChunkError is the failure of a stream whose first chunk ends with
// finish_reason "error" and no content: OpenRouter's way of reporting an
// upstream failure inside a 200 stream. Each failure has its own error:
// the pool redacts errors in place.
func failedChunkError() error {
	return &openai.APIError{Type: "server_error", Message: `failover: the first chunk ended with finish_reason "error"`}
}

// errorChunk returns the failure of a first chunk that is an error and no
// chunk: an "error" member (a string, as xAI sends "Timed out waiting for
// first token", or an object) and no choices, which go-openai decodes as
// an empty chunk; nil otherwise.
func errorChunk(raw []byte) error {
	var c struct {
		Error   json.RawMessage   `json:"error"`
		Code    any               `json:"code"` // xAI's, beside a string error
		Type    string            `json:"type"`
		Choices []json.RawMessage `json:"choices"`
	}
	if json.Unmarshal(raw, &c) != nil || len(c.Error) == 0 || string(c.Error) == "null" || len(c.Choices) > 0 {
		return nil
	}
	err := eventError(raw)
	var ae *openai.APIError
	if errors.As(err, &ae) {
		if ae.Code == nil {
			ae.Code = c.Code
		}
		if ae.Type == "" {
			ae.Type = c.Type
		}
	}
	return err
}

// failedChunk reports whether c ends the stream with finish_reason "error"
// before any content.
func failedChunk(c openai.ChatCompletionStreamResponse) bool {
	for _, ch := range c.Choices {
		if ch.FinishReason == "error" && ch.Delta.Content == "" && len(ch.Delta.ToolCalls) == 0 {
			return true
		}
	}
	return false
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
		s.first, s.raw = nil, nil
		s.usage(&r)
		return r, nil
	}
	if s.stream == nil {
		return openai.ChatCompletionStreamResponse{}, io.EOF
	}
	r, err := s.stream.Recv()
	if err == nil {
		s.usage(&r)
	}
	return r, s.failed(err)
}

// RecvRaw returns the next chunk's JSON, as Recv would decode it, with
// Recv's errors.
func (s *ChatStream) RecvRaw() ([]byte, error) {
	if s == nil {
		return nil, io.EOF
	}
	if s.first != nil {
		raw, first := s.raw, s.first
		s.first, s.raw = nil, nil
		s.usage(first)
		return raw, nil
	}
	if s.stream == nil {
		return nil, io.EOF
	}
	raw, err := s.stream.RecvRaw()
	if err == nil {
		if u, ok := scanUsage(raw); ok {
			u.Member = s.member
			s.pool.used(s.ctx, u)
		}
	}
	return raw, s.failed(err)
}

// failed redacts a stream's error and reports it against the member, once.
func (s *ChatStream) failed(err error) error {
	if err != nil && !errors.Is(err, io.EOF) {
		err = scrub(err, s.pool.secrets())
		s.once.Do(func() { s.pool.Report(s.member, err) })
	}
	return err
}

// GetRateLimitHeaders returns the rate-limit headers of the member that
// serves the stream, as *openai.ChatCompletionStream does.
func (s *ChatStream) GetRateLimitHeaders() openai.RateLimitHeaders {
	return rateLimitHeaders(s.Header())
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

// Header returns the response headers of the member that serves the
// stream, with X-Failover-Member naming it.
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
//
// With events set (the go-openai glue), it also turns an error event that
// go-openai would miss or garble into go-openai's own mid-stream error: an
// Anthropic-shaped {"type":"error","error":{…}} (go-openai reads it as an
// empty chunk) and {"error":"text"} (go-openai loses the text).
type sseBody struct {
	io.ReadCloser
	events    bool
	line      []byte // the first doneLineCap bytes of the current line
	lineLen   int    // the current line's length so far
	event     []byte // the current line, while it may be an error event
	candidate bool   // event holds the current line
	decided   bool   // the line's first doneLineCap bytes were seen
	done      bool
	err       error // sticky: a line too long, or an error event
}

func (b *sseBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.ReadCloser.Read(p)
	for off := 0; off < n; {
		seg, more := p[off:n], false
		if j := bytes.IndexByte(seg, '\n'); j >= 0 {
			seg, more = seg[:j], true
		}
		start := off - b.lineLen // where the current line began in p, if >= 0
		off += len(seg)
		if more {
			off++
		}
		if room := doneLineCap - len(b.line); room > 0 {
			b.line = append(b.line, seg[:min(room, len(seg))]...)
		}
		if b.events {
			b.keepEvent(seg)
		}
		b.lineLen += len(seg)
		if b.lineLen > maxSSELine {
			b.err = errSSELine
			return n, b.err
		}
		if !more {
			continue
		}
		b.done = b.done || (b.lineLen <= doneLineCap && isDoneLine(b.line))
		if b.events && b.candidate && isErrorEvent(b.event) {
			b.err = eventError(b.event)
			return max(start, 0), b.err // go-openai gets the lines before it
		}
		b.line, b.lineLen, b.event, b.candidate = b.line[:0], 0, b.event[:0], true
	}
	if errors.Is(err, io.EOF) && b.events && b.candidate && isErrorEvent(b.event) {
		b.err = eventError(b.event) // the last line, without its newline
		return n, b.err
	}
	if errors.Is(err, io.EOF) && !b.done {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// keepEvent collects the current line while it may be an error event: its
// first doneLineCap bytes until they decide, the rest (up to maxErrorBody)
// only once they say it is one.
func (b *sseBody) keepEvent(seg []byte) {
	if b.lineLen == 0 {
		b.event, b.candidate, b.decided = b.event[:0], true, false
	}
	if !b.candidate {
		return
	}
	if !b.decided {
		take := min(len(seg), doneLineCap-len(b.event))
		b.event = append(b.event, seg[:take]...)
		seg = seg[take:]
		if len(b.event) < doneLineCap {
			return // the line's end decides
		}
		b.decided = true
		if !isErrorEvent(b.event) {
			b.event, b.candidate = b.event[:0], false
			return
		}
	}
	if len(b.event)+len(seg) > maxErrorBody {
		b.event, b.candidate = b.event[:0], false
		return
	}
	b.event = append(b.event, seg...)
}

// isDoneLine reports whether line is the end marker "data: [DONE]".
func isDoneLine(line []byte) bool {
	rest, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data:"))
	return ok && string(bytes.TrimSpace(rest)) == "[DONE]"
}

// isErrorEvent reports whether the start of a line is an error event that
// go-openai does not read itself: {"type":"error" or {"error":"text".
func isErrorEvent(start []byte) bool {
	rest, ok := bytes.CutPrefix(bytes.TrimSpace(start), []byte("data:"))
	if !ok {
		return false
	}
	rest = bytes.TrimSpace(rest)
	for _, p := range [...]string{`{"type":"error"`, `{"type": "error"`, `{"error":"`, `{"error": "`} {
		if bytes.HasPrefix(rest, []byte(p)) {
			return true
		}
	}
	return false
}

// eventError is go-openai's mid-stream error for an error event line:
// {"type":"error","error":{"type":…,"message":…}} or {"error":"text"}.
func eventError(line []byte) error {
	rest, _ := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data:"))
	rest = bytes.TrimSpace(rest)
	var ev struct {
		Error json.RawMessage `json:"error"`
	}
	e := &openai.APIError{Message: string(rest)}
	if json.Unmarshal(rest, &ev) == nil {
		var inner struct {
			Type    string `json:"type"`
			Code    any    `json:"code"`
			Message string `json:"message"`
		}
		var text string
		switch {
		case json.Unmarshal(ev.Error, &inner) == nil:
			e.Type, e.Code, e.Message = inner.Type, inner.Code, inner.Message
		case json.Unmarshal(ev.Error, &text) == nil:
			e.Message = text
		}
	}
	return fmt.Errorf("error, %w", e)
}
