package failovertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// protocol is the wire format a request is answered in, chosen by its path.
type protocol int

const (
	protoOpenAI    protocol = iota // chat, completions, embeddings, models
	protoAnthropic                 // POST /v1/messages
	protoGemini                    // /v1beta/models/{model}:generateContent and friends
	protoResponses                 // OpenAI's POST /v1/responses: its stream names each event and has no [DONE]
)

// protocolOf tells the protocol of r from its path: Anthropic's messages
// endpoint (or any request with an anthropic-version header), Gemini's
// models/{model}:method, and OpenAI's for everything else.
func protocolOf(r *http.Request) protocol {
	p := r.URL.Path
	switch {
	case geminiMethodOf(p) != "":
		return protoGemini
	case strings.HasSuffix(p, "/v1/messages") || strings.Contains(p, "/v1/messages/") || p == "/messages" ||
		r.Header.Get("Anthropic-Version") != "":
		return protoAnthropic
	case strings.HasSuffix(p, "/responses"):
		return protoResponses
	}
	return protoOpenAI
}

// describe fills in what the path says of the call: Gemini carries its model
// and its streaming in the path, not the body.
func (p protocol) describe(r *http.Request, req *Request) {
	if p != protoGemini {
		return
	}
	model, method := geminiPath(r.URL.Path)
	req.Model = model
	req.Stream = method == "streamGenerateContent"
}

// rateLimited is the 429 of a call over the key's Limit.
func (p protocol) rateLimited(retryAfter time.Duration) Response {
	switch p {
	case protoAnthropic:
		return AnthropicRateLimited(retryAfter)
	case protoGemini:
		return GeminiRateLimited(retryAfter)
	}
	return RateLimited(retryAfter)
}

// defaultStream is the stream of an unscripted streaming call.
func (p protocol) defaultStream(req Request) []string {
	switch p {
	case protoAnthropic:
		return AnthropicEvents(req.Model, "ok")
	case protoGemini:
		return GeminiChunks(req.Model, "ok")
	}
	return defaultChunks(req) // methods.go: chat, completions, Responses
}

// defaultBody is the success of an unscripted call, or ok false when the
// OpenAI defaults apply.
func (p protocol) defaultBody(req Request) (string, bool) {
	switch p {
	case protoAnthropic:
		return AnthropicMessage(req.Model, "ok"), true
	case protoGemini:
		return GeminiResponse(req.Model, "ok"), true
	}
	return "", false
}

// writeChunk writes one stream chunk in the protocol's framing: OpenAI's
// chat and Gemini's are "data:" lines, Anthropic's and the Responses API's
// name each event after its "type". With noEnd, Anthropic's message_stop
// and the Responses API's response.completed are left out, as a dropped
// connection leaves them out.
func (p protocol) writeChunk(w io.Writer, chunk string, noEnd bool) {
	switch p {
	case protoAnthropic, protoResponses:
		var ev struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal([]byte(chunk), &ev)
		if noEnd && (ev.Type == "message_stop" || ev.Type == "response.completed") {
			return
		}
		if ev.Type != "" {
			fmt.Fprintf(w, "event: %s\n", ev.Type)
		}
		fmt.Fprintf(w, "data: %s\n\n", chunk)
	case protoGemini:
		fmt.Fprintf(w, "data: %s\r\n\r\n", chunk)
	default:
		fmt.Fprintf(w, "data: %s\n\n", chunk)
	}
}

// end closes a stream: OpenAI's chat and completions with "data: [DONE]"
// unless noEnd; Anthropic's, Gemini's and the Responses API's have no
// terminator of their own (their end events are chunks: message_stop,
// response.completed).
func (p protocol) end(w io.Writer, noEnd bool) {
	if p == protoOpenAI && !noEnd {
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	}
}
