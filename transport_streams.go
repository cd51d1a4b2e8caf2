package failover

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// streamKind is the protocol whose end event a streamed response must
// carry before its body ends cleanly.
type streamKind int

const (
	streamNone      streamKind = iota
	streamDone                 // OpenAI chat and text completions: "data: [DONE]" (sseBody)
	streamResponses            // OpenAI Responses: response.completed, .incomplete or .failed
	streamAnthropic            // Anthropic messages: message_stop
	streamGemini               // Gemini streamGenerateContent?alt=sse: a chunk with finishReason or blockReason
)

// streamCheckFor says which end event the response to out must carry:
// a 2xx on a chat or completion path the request asked to stream (see
// checksDone), on a Responses or Anthropic messages path likewise, or
// a Gemini streamGenerateContent answered as an event stream (alt=sse).
// Gemini's default answer, a JSON array, is left to the SDK's JSON
// parser, which fails on a cut array. body is the request's body, if known.
func streamCheckFor(out *http.Request, resp *http.Response, body []byte) streamKind {
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return streamNone
	}
	path := out.URL.Path
	switch {
	case isCompletionPath(path):
		if checksDone(out, resp, body) {
			return streamDone
		}
	case strings.HasSuffix(path, "/responses"):
		if wantsStream(out, resp, body) {
			return streamResponses
		}
	case strings.HasSuffix(path, "/messages"):
		if wantsStream(out, resp, body) {
			return streamAnthropic
		}
	case strings.HasSuffix(path, ":streamGenerateContent"):
		if isEventStream(resp.Header) || out.URL.Query().Get("alt") == "sse" {
			return streamGemini
		}
	}
	return streamNone
}

// wantsStream reports whether a response is, or was asked to be, an event
// stream: its content type, the request's Accept header, or "stream": true
// in the JSON body.
func wantsStream(req *http.Request, resp *http.Response, body []byte) bool {
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

// checkedStream wraps a streamed body with the end check of its protocol.
func checkedStream(kind streamKind, body io.ReadCloser) io.ReadCloser {
	switch kind {
	case streamDone:
		return &sseBody{ReadCloser: body}
	case streamResponses:
		return &eventBody{ReadCloser: body, accept: responsesEnd, m: [2]fieldMatcher{{key: `"type"`}}}
	case streamAnthropic:
		return &eventBody{ReadCloser: body, accept: anthropicEnd, m: [2]fieldMatcher{{key: `"type"`}}}
	case streamGemini:
		return &eventBody{ReadCloser: body, accept: geminiEnd, m: [2]fieldMatcher{{key: `"finishReason"`}, {key: `"blockReason"`}}}
	}
	return body
}

// responsesEnd reports whether an event type ends a Responses stream: the
// three terminal events of OpenAI's Responses API.
func responsesEnd(v []byte) bool {
	switch string(v) {
	case "response.completed", "response.incomplete", "response.failed", "error":
		return true
	}
	return false
}

// anthropicEnd reports whether an event type ends an Anthropic stream.
func anthropicEnd(v []byte) bool { return string(v) == "message_stop" }

// geminiEnd reports whether a finishReason or blockReason ends a Gemini
// stream: any value but the unspecified one.
func geminiEnd(v []byte) bool {
	return len(v) > 0 && !strings.HasSuffix(string(v), "_UNSPECIFIED")
}

// eventBody turns the end of an event stream without its protocol's end
// event into io.ErrUnexpectedEOF. The end event is an "event: <type>"
// line or a data line whose JSON has the field the protocol names
// ("type", or Gemini's "finishReason" and "blockReason") with a value
// accept takes. The field is found as JSON, outside strings: an escaped
// quote inside a chunk's text is no match. A line longer than maxSSELine
// fails the stream. It keeps no more than a line's first doneLineCap
// bytes and allocates nothing past its first line.
type eventBody struct {
	io.ReadCloser
	accept  func([]byte) bool
	m       [2]fieldMatcher // unused entries have no key
	head    []byte          // the first doneLineCap bytes of the current line
	lineLen int
	done    bool
	err     error // sticky: a line too long
}

func (b *eventBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.ReadCloser.Read(p)
	for _, c := range p[:n] {
		if c == '\n' {
			b.endLine()
			continue
		}
		b.lineLen++
		if b.lineLen > maxSSELine {
			b.err = errSSELine
			return n, b.err
		}
		if len(b.head) < doneLineCap {
			b.head = append(b.head, c)
		}
		if b.done {
			continue
		}
		for i := range b.m {
			if b.m[i].key != "" && b.m[i].feed(c, b.accept) && bytes.HasPrefix(b.head, []byte("data:")) {
				b.done = true
			}
		}
	}
	if errors.Is(err, io.EOF) {
		b.endLine() // a last line without its newline
		if !b.done {
			err = io.ErrUnexpectedEOF
		}
	}
	return n, err
}

// endLine checks an "event:" line and starts the next line.
func (b *eventBody) endLine() {
	if !b.done && b.lineLen <= doneLineCap {
		if rest, ok := bytes.CutPrefix(bytes.TrimSpace(b.head), []byte("event:")); ok && b.accept(bytes.TrimSpace(rest)) {
			b.done = true
		}
	}
	b.head, b.lineLen = b.head[:0], 0
	for i := range b.m {
		b.m[i].reset()
	}
}

// maxFieldValue bounds the value a fieldMatcher captures: end event types
// are short.
const maxFieldValue = 40

// fieldMatcher finds `"key": "value"` in a stream of JSON bytes without
// buffering it: key is the quoted field name; value is captured up to
// maxFieldValue bytes and given to accept. In valid JSON an unescaped
// quote only delimits a string, so a match never starts inside one.
type fieldMatcher struct {
	key   string
	phase int // 0: in key, 1: after key, 2: after colon, 3: in value
	off   int // bytes of key matched
	val   [maxFieldValue]byte
	n     int // bytes of val
}

func (m *fieldMatcher) reset() { m.phase, m.off, m.n = 0, 0, 0 }

// feed moves the matcher on by c and reports whether a value accept takes
// just ended.
func (m *fieldMatcher) feed(c byte, accept func([]byte) bool) bool {
	switch m.phase {
	case 1, 2:
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			return false
		case m.phase == 1 && c == ':':
			m.phase = 2
			return false
		case m.phase == 2 && c == '"':
			m.phase, m.n = 3, 0
			return false
		}
	case 3:
		switch {
		case c == '"':
			ok := accept(m.val[:m.n])
			m.reset()
			return ok
		case c != '\\' && m.n < maxFieldValue:
			m.val[m.n] = c
			m.n++
			return false
		}
	default:
		if c == m.key[m.off] {
			if m.off++; m.off == len(m.key) {
				m.phase = 1
			}
			return false
		}
	}
	m.reset()
	if c == m.key[0] {
		m.off = 1
	}
	return false
}
