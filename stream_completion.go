package failover

import (
	"context"
	"encoding/json"
	"io"
	"net/http"

	"github.com/sashabaranov/go-openai"
)

// CompletionStream is a completion stream that failed over until its first
// event arrived. Its methods mirror *openai.CompletionStream.
type CompletionStream struct {
	s *eventStream[openai.CompletionResponse]
}

// CreateCompletionStream is openai.Client.CreateCompletionStream with
// failover: it moves on to the next member when a stream fails to open,
// or fails, stalls (see [WithFirstChunkTimeout]) or ends without [DONE]
// before its first event. After that, an error goes to the caller from
// Recv and is reported against the member.
func (o *OpenAI) CreateCompletionStream(ctx context.Context, req openai.CompletionRequest) (*CompletionStream, error) {
	ctx = o.pool.named(ctx, opCompletion)
	tokens := estimateCompletion(req)
	s, err := Do(ctx, o.pool, func(actx context.Context, m Member[*openai.Client]) (*CompletionStream, error) {
		r := req
		if m.Model != "" {
			r.Model = m.Model
		}
		es, err := openEvents[openai.CompletionResponse](ctx, actx, o, m, tokens, protocol{failed: completionFailure}, func(ctx context.Context) (eventSource, error) {
			st, err := m.Client.CreateCompletionStream(ctx, r)
			if st == nil {
				return nil, err
			}
			return st, err
		})
		if err != nil {
			return nil, err
		}
		return &CompletionStream{s: es}, nil
	}, callOptions(ctx, tokens, ForModel(req.Model))...)
	return s, unwrapResponse(err)
}

// completionFailure is the failure of a first completion event that ends
// the stream with finish_reason "error" and no text (OpenRouter's upstream
// failure inside a 200 stream, as for chat), or nil.
func completionFailure(raw []byte) error {
	var c struct {
		Choices []struct {
			Text         string `json:"text"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return nil
	}
	if err := errorChunk(raw); err != nil {
		return err
	}
	for _, ch := range c.Choices {
		if ch.FinishReason == "error" && ch.Text == "" {
			return failedChunkError()
		}
	}
	return nil
}

// Recv returns the next event, or io.EOF after [DONE]. A stream that ends
// without [DONE] returns io.ErrUnexpectedEOF. An error is reported against
// the member that served the stream. Recv on a nil stream returns io.EOF.
func (s *CompletionStream) Recv() (openai.CompletionResponse, error) {
	if s == nil || s.s == nil {
		return openai.CompletionResponse{}, io.EOF
	}
	return s.s.recv()
}

// RecvRaw returns the next event's JSON, as Recv would decode it.
func (s *CompletionStream) RecvRaw() ([]byte, error) {
	if s == nil || s.s == nil {
		return nil, io.EOF
	}
	return s.s.recvRaw()
}

// Close ends the stream and releases its connection. It may be called on
// a nil stream and more than once.
func (s *CompletionStream) Close() error {
	if s == nil || s.s == nil {
		return nil
	}
	return s.s.close()
}

// Header returns the response headers of the member that serves the
// stream, with X-Failover-Member naming it.
func (s *CompletionStream) Header() http.Header {
	if s == nil || s.s == nil {
		return http.Header{}
	}
	return s.s.header()
}

// GetRateLimitHeaders returns the rate-limit headers of the member that
// serves the stream.
func (s *CompletionStream) GetRateLimitHeaders() openai.RateLimitHeaders {
	return rateLimitHeaders(s.Header())
}

// Member returns the name of the member that serves the stream.
func (s *CompletionStream) Member() string {
	if s == nil || s.s == nil {
		return ""
	}
	return s.s.member
}

// rateLimitHeaders parses h as go-openai's GetRateLimitHeaders does.
func rateLimitHeaders(h http.Header) openai.RateLimitHeaders {
	var r openai.RawResponse
	r.SetHeader(h)
	return r.GetRateLimitHeaders()
}
