package failovertest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Anthropic's Messages API, as the server answers POST /v1/messages (or any
// request carrying an anthropic-version header): a message object, a
// stream of named events (message_start, content_block_start,
// content_block_delta, content_block_stop, message_delta, message_stop),
// and errors of the shape {"type":"error","error":{"type":...,"message":...}}.

// anthropicRequestID is the request_id of every Anthropic error body.
const anthropicRequestID = "req_failovertest"

// AnthropicMessage returns an Anthropic message object (the body of a
// non-streaming POST /v1/messages) whose one text block is text.
func AnthropicMessage(model, text string) string {
	b, _ := json.Marshal(anthropicMessage(model, text, "end_turn"))
	return string(b)
}

func anthropicMessage(model, text string, stop any) map[string]any {
	content := []any{}
	if text != "" {
		content = append(content, map[string]any{"type": "text", "text": text})
	}
	return map[string]any{
		"id": "msg_failovertest", "type": "message", "role": "assistant", "model": model,
		"content": content, "stop_reason": stop, "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": 10, "output_tokens": max(1, len(text)/4)},
	}
}

// AnthropicOK returns a scripted Anthropic message whose text is text. Its
// "model" is empty: an unscripted call answers with the model it asked for.
func AnthropicOK(text string) Response {
	return Response{Body: AnthropicMessage("", text)}
}

// AnthropicEvents returns the data of each event of an Anthropic stream
// whose text deltas are texts, in order: message_start,
// content_block_start, one content_block_delta per text,
// content_block_stop, message_delta, message_stop. The server names each
// event after its "type" field. Cut the slice to script a stream that
// drops early.
func AnthropicEvents(model string, texts ...string) []string {
	evs := []any{
		map[string]any{"type": "message_start", "message": anthropicMessage(model, "", nil)},
		map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}},
	}
	n := 0
	for _, t := range texts {
		n += len(t)
		evs = append(evs, map[string]any{"type": "content_block_delta", "index": 0,
			"delta": map[string]any{"type": "text_delta", "text": t}})
	}
	evs = append(evs,
		map[string]any{"type": "content_block_stop", "index": 0},
		map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": "end_turn", "stop_sequence": nil},
			"usage": map[string]any{"output_tokens": max(1, n/4)}},
		map[string]any{"type": "message_stop"},
	)
	out := make([]string, len(evs))
	for i, ev := range evs {
		b, _ := json.Marshal(ev)
		out[i] = string(b)
	}
	return out
}

// AnthropicStream returns a scripted Anthropic stream whose text deltas are
// texts. With NoDone set the stream ends without message_stop.
func AnthropicStream(texts ...string) Response {
	return Response{Chunks: AnthropicEvents("", texts...)}
}

// AnthropicErrorBody returns an Anthropic error body, such as
// {"type":"error","error":{"type":"rate_limit_error","message":"..."},"request_id":"req_..."}.
// Anthropic's types: invalid_request_error (400), authentication_error
// (401), billing_error (402), permission_error (403), not_found_error
// (404), request_too_large (413), rate_limit_error (429), api_error (500),
// overloaded_error (529).
func AnthropicErrorBody(typ, message string) string {
	b, _ := json.Marshal(map[string]any{"type": "error",
		"error": map[string]any{"type": typ, "message": message}, "request_id": anthropicRequestID})
	return string(b)
}

// AnthropicErrorEvent returns the data of a mid-stream Anthropic error
// event; in a stream the server names it "error".
func AnthropicErrorEvent(typ, message string) string {
	b, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": message}})
	return string(b)
}

// AnthropicError returns a scripted error answer with an Anthropic error body.
func AnthropicError(status int, typ, message string) Response {
	return Response{Status: status, Header: http.Header{"Request-Id": {anthropicRequestID}}, Body: AnthropicErrorBody(typ, message)}
}

// AnthropicRateLimited returns Anthropic's 429 rate_limit_error with
// retry-after (whole seconds, rounded up) and the
// anthropic-ratelimit-requests-* headers: limit, remaining 0, and the reset
// as an RFC 3339 time retryAfter from now.
func AnthropicRateLimited(retryAfter time.Duration) Response {
	r := AnthropicError(http.StatusTooManyRequests, "rate_limit_error",
		"This request would exceed the rate limit for your organization of 50 requests per minute.")
	secs := int((retryAfter + time.Second - 1) / time.Second)
	r.Header.Set("Retry-After", strconv.Itoa(secs))
	r.Header.Set("Anthropic-Ratelimit-Requests-Limit", "50")
	r.Header.Set("Anthropic-Ratelimit-Requests-Remaining", "0")
	r.Header.Set("Anthropic-Ratelimit-Requests-Reset", time.Now().Add(retryAfter).UTC().Format(time.RFC3339))
	return r
}

// AnthropicOverloaded returns Anthropic's 529 overloaded_error.
func AnthropicOverloaded() Response {
	return AnthropicError(529, "overloaded_error", "Overloaded")
}

// AnthropicUnauthorized returns Anthropic's 401 authentication_error for a
// revoked or wrong key.
func AnthropicUnauthorized() Response {
	return AnthropicError(http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
}
