package failover

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// maxFirstEvent bounds what Transport reads of a stream, within the
// attempt, to find its first event: a provider that answers 200 and then
// an error event has sent the caller nothing yet, so the call can fail
// over. Past this, the stream goes to the caller unchecked.
const maxFirstEvent = 64 << 10

// preambleWait bounds how long Transport waits, after events that carry
// no content, for one that does or for an error: Anthropic's
// overloaded_error follows its message_start at once, while a reasoning
// model may say nothing for minutes after response.created.
const preambleWait = 500 * time.Millisecond

// firstEvent reads r up to the end of the first event that says how the
// stream goes: one with content, or an error. The events before it that
// carry none (comments and keep-alives, as OpenRouter sends while a model
// starts; Anthropic's message_start and ping; a chat chunk with only the
// role; Responses' response.created) are read too, as the caller gets
// them, but after the first of them only for up to grace: then the
// stream is handed on, with rest to read after read (a read may be in
// flight). It returns the bytes read, the event's type ("" without an
// "event:" line) and its data, which is nil when r ended, failed, passed
// maxFirstEvent or the grace first (err says which, if any).
func firstEvent(r io.Reader, grace time.Duration) (read []byte, event string, data []byte, rest io.Reader, err error) {
	buf := make([]byte, 0, 4096)
	off := 0 // the start of the first event not parsed yet
	var rerr error
	var timer *time.Timer // from the first preamble event on
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var pending chan readResult // a read in flight, after a preamble event
	for {
		for { // every complete event read so far, also those a last Read brought with io.EOF
			ev, d, n, ok := nextEvent(buf[off:])
			if !ok {
				break
			}
			off += n
			if !preamble(ev, d) {
				return buf, ev, d, nil, nil
			}
			if timer == nil {
				timer = time.NewTimer(grace)
			}
		}
		if rerr != nil {
			// A last event without its blank line counts if it is whole:
			// JSON cut in the middle is a stream cut before its first event.
			if errors.Is(rerr, io.EOF) {
				if ev, d, _, ok := nextEvent(append(buf[off:len(buf):len(buf)], '\n', '\n')); ok && json.Valid(d) && !preamble(ev, d) {
					return buf, ev, d, nil, rerr
				}
			}
			return buf, "", nil, nil, rerr
		}
		if len(buf) >= maxFirstEvent {
			return buf, "", nil, nil, nil
		}
		if timer == nil { // before any event: the attempt bounds the wait
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			var n int
			n, rerr = r.Read(buf[len(buf):min(cap(buf), maxFirstEvent)])
			buf = buf[:len(buf)+n]
			continue
		}
		if pending == nil {
			pending = make(chan readResult, 1) // buffered: a read that outlives the wait never blocks
			go func(ch chan<- readResult) {
				b := make([]byte, 4096)
				n, err := r.Read(b)
				ch <- readResult{b[:n], err}
			}(pending)
		}
		select {
		case res := <-pending:
			pending = nil
			buf, rerr = append(buf, res.b...), res.err
		case <-timer.C: // no content yet, and none that fails: the stream goes on at the caller's
			return buf, "", nil, &pendingReader{ch: pending, r: r}, nil
		}
	}
}

// readResult is what one Read returned.
type readResult struct {
	b   []byte
	err error
}

// pendingReader is the rest of a stream whose next read is in flight: it
// returns that read's bytes and error, then reads r.
type pendingReader struct {
	ch   <-chan readResult
	head []byte
	err  error
	r    io.Reader
}

func (p *pendingReader) Read(b []byte) (int, error) {
	if p.ch != nil {
		res := <-p.ch
		p.ch, p.head, p.err = nil, res.b, res.err
	}
	if len(p.head) > 0 {
		n := copy(b, p.head)
		p.head = p.head[n:]
		return n, nil
	}
	if p.err != nil {
		return 0, p.err
	}
	return p.r.Read(b)
}

// nextEvent parses the first complete event with data in b, and how many
// bytes it took up to its blank line; ok is false when none is complete.
func nextEvent(b []byte) (event string, data []byte, n int, ok bool) {
	var ev string
	var d []byte
	has := false
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return "", nil, 0, false // the line is not complete
		}
		line := bytes.TrimSuffix(b[i:i+j], []byte("\r"))
		i += j + 1
		switch {
		case len(line) == 0:
			if has {
				return ev, d, i, true
			}
			ev = ""
		case bytes.HasPrefix(line, []byte("data:")):
			v := bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))
			if has {
				d = append(append(d, '\n'), v...)
			} else {
				d, has = append([]byte(nil), v...), true
			}
		case bytes.HasPrefix(line, []byte("event:")):
			ev = string(bytes.TrimSpace(line[len("event:"):]))
		}
	}
	return "", nil, 0, false
}

// preamble reports whether an event carries nothing the caller reads as
// output and cannot fail: Anthropic's message_start, ping and the start
// of an empty text or thinking block; the Responses API's
// response.created, response.in_progress and the announcements of an
// output item or content part; a chat chunk whose choices
// carry only a role (or none, as Azure's prompt-filter chunk).
func preamble(event string, data []byte) bool {
	if event == "ping" {
		return true
	}
	var ev struct {
		Type         string          `json:"type"`
		Error        json.RawMessage `json:"error"`
		ContentBlock *struct {
			Type     string `json:"type"`
			Text     string `json:"text"`
			Thinking string `json:"thinking"`
		} `json:"content_block"`
		Choices *[]struct {
			FinishReason *string `json:"finish_reason"`
			Text         string  `json:"text"` // a completion chunk's
			Delta        struct {
				Content          string            `json:"content"`
				ReasoningContent string            `json:"reasoning_content"`
				ToolCalls        []json.RawMessage `json:"tool_calls"`
			} `json:"delta"`
		} `json:"choices"`
	}
	if json.Unmarshal(data, &ev) != nil || (len(ev.Error) > 0 && string(ev.Error) != "null") {
		return false
	}
	switch ev.Type {
	case "ping", "message_start", "response.created", "response.in_progress",
		"response.output_item.added", "response.content_part.added": // an item or part announced, no output yet
		return true
	case "content_block_start":
		cb := ev.ContentBlock
		return cb != nil && (cb.Type == "text" || cb.Type == "thinking") && cb.Text == "" && cb.Thinking == ""
	case "":
	default:
		return false
	}
	if ev.Choices == nil {
		return false
	}
	for _, c := range *ev.Choices {
		if (c.FinishReason != nil && *c.FinishReason != "") || c.Text != "" || c.Delta.Content != "" || c.Delta.ReasoningContent != "" || len(c.Delta.ToolCalls) > 0 {
			return false
		}
	}
	return true
}

// eventFailure returns the failure a stream's first event reports, or
// nil: an "error" event (Anthropic, Responses), a JSON object with an
// "error" member (OpenAI-compatible servers, OpenRouter, Gemini) or whose
// "type" is "error" or "response.failed", or a chat chunk that finished
// with "error" before any content. Its Body is the event's data, which
// classification reads as it reads an error body; its status, for the
// caller's SDK should no member serve, is the one the error names.
func eventFailure(event string, data []byte, header http.Header) *HTTPError {
	var ev struct {
		Type     string          `json:"type"`
		Error    json.RawMessage `json:"error"`
		Response *struct {
			Error json.RawMessage `json:"error"`
		} `json:"response"`
	}
	var te *json.UnmarshalTypeError
	if err := json.Unmarshal(data, &ev); err != nil && !errors.As(err, &te) && event != "error" {
		return nil // not JSON: no failure to read (a field of another type is skipped, the rest read)
	}
	failed := event == "error" || ev.Type == "error" || ev.Type == "response.failed" ||
		(len(ev.Error) > 0 && string(ev.Error) != "null")
	if !failed {
		var chunk struct {
			Choices []struct {
				FinishReason string `json:"finish_reason"`
				Delta        struct {
					Content   string            `json:"content"`
					ToolCalls []json.RawMessage `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal(data, &chunk) != nil || len(chunk.Choices) == 0 {
			return nil
		}
		c := chunk.Choices[0]
		if c.FinishReason != "error" || c.Delta.Content != "" || len(c.Delta.ToolCalls) > 0 {
			return nil
		}
		// OpenRouter's upstream failure with no error member: a server
		// error, as on go-openai's path.
		data = []byte(`{"error":{"type":"server_error","message":"failover: the first chunk ended with finish_reason \"error\""}}`)
	}
	body := data
	if ev.Type == "response.failed" && ev.Response != nil && len(ev.Response.Error) > 0 && string(ev.Response.Error) != "null" {
		body, _ = json.Marshal(map[string]json.RawMessage{"error": ev.Response.Error})
	}
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	return &HTTPError{StatusCode: eventStatus(body), Header: h, Body: body, event: true}
}

// eventStatus is the HTTP status an error event stands for: the numeric
// code it carries (OpenRouter, Gemini), else its type's status (Anthropic's
// error types, Gemini's statuses, from their error docs), else 500.
func eventStatus(body []byte) int {
	var ev struct {
		Error struct {
			Code   any    `json:"code"`
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &ev)
	switch c := ev.Error.Code.(type) {
	case float64:
		if validStatus(int(c)) {
			return int(c)
		}
	case string:
		if n, err := strconv.Atoi(c); err == nil && validStatus(n) {
			return n
		}
	}
	switch ev.Error.Type + ev.Error.Status {
	case "overloaded_error":
		return 529
	case "rate_limit_error", "RESOURCE_EXHAUSTED":
		return http.StatusTooManyRequests
	case "authentication_error", "UNAUTHENTICATED":
		return http.StatusUnauthorized
	case "permission_error", "PERMISSION_DENIED":
		return http.StatusForbidden
	case "not_found_error", "NOT_FOUND":
		return http.StatusNotFound
	case "invalid_request_error", "INVALID_ARGUMENT":
		return http.StatusBadRequest
	case "request_too_large":
		return http.StatusRequestEntityTooLarge
	case "billing_error":
		return http.StatusPaymentRequired
	case "timeout_error", "DEADLINE_EXCEEDED":
		return http.StatusGatewayTimeout
	case "UNAVAILABLE":
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// errNoFirstEvent is the failure of a stream that ended before its first
// event: a cut connection, as far as the caller can tell.
var errNoFirstEvent = fmt.Errorf("failover: the stream ended before its first event: %w", io.ErrUnexpectedEOF)

// replayBody is a body whose first bytes were read already: it returns
// them, then the rest.
type replayBody struct {
	io.Reader
	io.Closer
}

// checkFirstEvent reads the first event of a stream that has a protocol
// (kind) within the attempt. It returns the upstream's failure when that
// event is an error, and otherwise the body to hand on, starting again
// from its first byte.
func checkFirstEvent(resp *http.Response, grace time.Duration) (io.ReadCloser, error) {
	read, event, data, rest, err := firstEvent(resp.Body, grace)
	if data != nil {
		if he := eventFailure(event, data, resp.Header); he != nil {
			_ = resp.Body.Close()
			return nil, he
		}
	}
	if data == nil && rest == nil && err != nil { // it ended or failed before its first content: nothing was sent
		_ = resp.Body.Close()
		if errors.Is(err, io.EOF) {
			err = errNoFirstEvent
		}
		return nil, err
	}
	if rest == nil {
		rest = resp.Body
		if err != nil {
			rest = &errReader{err}
		}
	}
	return replayBody{Reader: io.MultiReader(bytes.NewReader(read), rest), Closer: resp.Body}, nil
}

// errReader returns err: a body that failed after its first bytes fails
// there for the caller too.
type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }
