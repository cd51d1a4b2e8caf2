package failover

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// maxFirstEvent bounds what Transport reads of a stream, within the
// attempt, to find its first event: a provider that answers 200 and then
// an error event has sent the caller nothing yet, so the call can fail
// over. Past this, the stream goes to the caller unchecked.
const maxFirstEvent = 64 << 10

// firstEvent reads r up to the end of the first event that has data (the
// comments and keep-alives before it are read too, as OpenRouter sends
// them while a model starts). It returns the bytes read, the event's type
// ("" without an "event:" line) and its data, which is nil when r ended,
// failed or passed maxFirstEvent first (err says which, if any).
func firstEvent(r io.Reader) (read []byte, event string, data []byte, err error) {
	buf := make([]byte, 0, 4096)
	for {
		if event, data, ok := parseFirstEvent(buf); ok {
			return buf, event, data, nil
		}
		if len(buf) >= maxFirstEvent {
			return buf, "", nil, nil
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, rerr := r.Read(buf[len(buf):min(cap(buf), maxFirstEvent)])
		buf = buf[:len(buf)+n]
		if rerr != nil {
			if event, data, ok := parseFirstEvent(append(buf, '\n', '\n')); ok && errors.Is(rerr, io.EOF) {
				return buf, event, data, rerr // a last event without its blank line
			}
			return buf, "", nil, rerr
		}
	}
}

// parseFirstEvent finds the first complete event with data in b.
func parseFirstEvent(b []byte) (event string, data []byte, ok bool) {
	var ev string
	var d []byte
	has := false
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return "", nil, false // the line is not complete
		}
		line := bytes.TrimSuffix(b[:i], []byte("\r"))
		b = b[i+1:]
		switch {
		case len(line) == 0:
			if has {
				return ev, d, true
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
	return "", nil, false
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
	if json.Unmarshal(data, &ev) != nil {
		if event != "error" {
			return nil
		}
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
func checkFirstEvent(resp *http.Response) (io.ReadCloser, error) {
	read, event, data, err := firstEvent(resp.Body)
	if data != nil {
		if he := eventFailure(event, data, resp.Header); he != nil {
			_ = resp.Body.Close()
			return nil, he
		}
	}
	if data == nil && err != nil { // it ended or failed before its first event: nothing was sent
		_ = resp.Body.Close()
		if errors.Is(err, io.EOF) {
			err = errNoFirstEvent
		}
		return nil, err
	}
	rest := io.Reader(resp.Body)
	if err != nil {
		rest = &errReader{err}
	}
	return replayBody{Reader: io.MultiReader(bytes.NewReader(read), rest), Closer: resp.Body}, nil
}

// errReader returns err: a body that failed after its first bytes fails
// there for the caller too.
type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }
