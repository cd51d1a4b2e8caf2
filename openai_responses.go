package failover

import (
	"context"
	"encoding/json"
	"io"
	"net/http"

	"github.com/sashabaranov/go-openai"
)

// CreateResponse is openai.Client.CreateResponse (the Responses API) with
// failover. A request that continues a stored response
// (PreviousResponseID, or a Conversation) names an object of one account:
// pin it with [OnlyMember] through [WithCallOptions].
func (o *OpenAI) CreateResponse(ctx context.Context, req openai.CreateResponseRequest) (openai.CreateResponseResponse, error) {
	ctx = o.pool.named(ctx, opChat)
	return serve(ctx, o, EstimateResponseTokens(req), func(ctx context.Context, m Member[*openai.Client]) (openai.CreateResponseResponse, error) {
		r := req
		if m.Model != "" {
			r.Model = m.Model
		}
		return m.Client.CreateResponse(ctx, r)
	}, ForModel(req.Model))
}

// ResponseStream is a Responses API stream that failed over until its
// first event arrived. Its methods mirror *openai.ResponseStream.
type ResponseStream struct {
	s *eventStream[openai.ResponseStreamEvent]
}

// CreateResponseStream is openai.Client.CreateResponseStream with
// failover: it moves on to the next member when a stream fails to open,
// or fails, stalls (see [WithFirstChunkTimeout]), reports an error or
// response.failed, or ends before its first event. After that, an error
// goes to the caller from Recv and is reported against the member; a
// stream that ends before response.completed (or response.failed,
// response.incomplete, error) returns io.ErrUnexpectedEOF.
func (o *OpenAI) CreateResponseStream(ctx context.Context, req openai.CreateResponseRequest) (*ResponseStream, error) {
	ctx = o.pool.named(ctx, opChat)
	tokens := EstimateResponseTokens(req)
	s, err := Do(ctx, o.pool, func(actx context.Context, m Member[*openai.Client]) (*ResponseStream, error) {
		r := req
		if m.Model != "" {
			r.Model = m.Model
		}
		es, err := openEvents[openai.ResponseStreamEvent](ctx, actx, o, m, tokens, responsesProtocol(), func(ctx context.Context) (eventSource, error) {
			st, err := m.Client.CreateResponseStream(ctx, r)
			if st == nil {
				return nil, err
			}
			return st, err
		})
		if err != nil {
			return nil, err
		}
		return &ResponseStream{s: es}, nil
	}, callOptions(ctx, tokens, ForModel(req.Model))...)
	return s, unwrapResponse(err)
}

// responsesProtocol reads the Responses API's events: response.completed,
// response.failed, response.incomplete and error end a stream; error and
// response.failed are failures.
func responsesProtocol() protocol {
	return protocol{failed: responseFailure, ends: responseEnds, midStream: responseFailure}
}

// responseEvent is what the protocol reads of an event.
type responseEvent struct {
	Type     openai.ResponseStreamEventType `json:"type"`
	Code     any                            `json:"code"`
	Message  string                         `json:"message"`
	Response *struct {
		Error *openai.ResponseError `json:"error"`
	} `json:"response"`
}

func decodeResponseEvent(raw []byte) (responseEvent, bool) {
	var ev responseEvent
	return ev, json.Unmarshal(raw, &ev) == nil
}

func responseEnds(raw []byte) bool {
	ev, ok := decodeResponseEvent(raw)
	if !ok {
		return false
	}
	switch ev.Type {
	case openai.ResponseStreamEventCompleted, openai.ResponseStreamEventFailed,
		openai.ResponseStreamEventIncomplete, openai.ResponseStreamEventError:
		return true
	}
	return false
}

// responseFailure returns go-openai's APIError for an error or
// response.failed event, so that the classifier reads its code.
func responseFailure(raw []byte) error {
	ev, ok := decodeResponseEvent(raw)
	if !ok {
		return nil
	}
	switch ev.Type {
	case openai.ResponseStreamEventError:
		return &openai.APIError{Type: "server_error", Code: ev.Code, Message: ev.Message}
	case openai.ResponseStreamEventFailed:
		e := &openai.APIError{Type: "server_error", Message: "failover: response.failed"}
		if ev.Response != nil && ev.Response.Error != nil {
			e.Code, e.Message = ev.Response.Error.Code, ev.Response.Error.Message
		}
		return e
	}
	return nil
}

// Recv returns the next event, io.EOF at the stream's end, or
// io.ErrUnexpectedEOF when it ended before response.completed (or
// another final event). An error is reported against the member that
// served the stream. Recv on a nil stream returns io.EOF.
func (s *ResponseStream) Recv() (openai.ResponseStreamEvent, error) {
	if s == nil || s.s == nil {
		return openai.ResponseStreamEvent{}, io.EOF
	}
	return s.s.recv()
}

// RecvRaw returns the next event's JSON, as Recv would decode it.
func (s *ResponseStream) RecvRaw() ([]byte, error) {
	if s == nil || s.s == nil {
		return nil, io.EOF
	}
	return s.s.recvRaw()
}

// Close ends the stream and releases its connection. It may be called on
// a nil stream and more than once.
func (s *ResponseStream) Close() error {
	if s == nil || s.s == nil {
		return nil
	}
	return s.s.close()
}

// Header returns the response headers of the member that serves the
// stream, with X-Failover-Member naming it.
func (s *ResponseStream) Header() http.Header {
	if s == nil || s.s == nil {
		return http.Header{}
	}
	return s.s.header()
}

// GetRateLimitHeaders returns the rate-limit headers of the member that
// serves the stream.
func (s *ResponseStream) GetRateLimitHeaders() openai.RateLimitHeaders {
	return rateLimitHeaders(s.Header())
}

// Member returns the name of the member that serves the stream.
func (s *ResponseStream) Member() string {
	if s == nil || s.s == nil {
		return ""
	}
	return s.s.member
}
