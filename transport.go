package failover

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/llmfailover/failover/internal/redact"
)

// Auth says how an [Upstream] sends its credential.
type Auth int

// The ways to send a credential.
const (
	AuthBearer  Auth = iota // Authorization: Bearer <key> (OpenAI and compatible)
	AuthAPIKey              // api-key: <key> (Azure OpenAI)
	AuthXAPIKey             // x-api-key: <key> (Anthropic)
	AuthGoogKey             // x-goog-api-key: <key> (Gemini)
	AuthQuery               // ?key=<key> (Gemini, some gateways)
)

// credentialHeaders are removed from every outgoing request: the caller's
// own credential never reaches an upstream, and one member's never reaches
// another.
var credentialHeaders = []string{"Authorization", "Api-Key", "X-Api-Key", "X-Goog-Api-Key"}

// Upstream is an HTTP member's configuration for [Transport]: where to send
// a request and with which credential.
type Upstream struct {
	// BaseURL replaces the scheme and host of each request's URL; the
	// request's path is kept but for the base path and a version segment
	// ("v1", "v1beta") the two share, a whole segment: with BaseURL
	// "https://openrouter.ai/api/v1", http://any-host/v1/chat/completions
	// goes to https://openrouter.ai/api/v1/chat/completions; with
	// "https://generativelanguage.googleapis.com" or ".../v1beta",
	// /v1beta/models/x:generateContent keeps its path. Query parameters of
	// BaseURL (Azure's api-version) are added where the request has none.
	BaseURL string
	Key     string      // the credential; never shown in errors, events or status
	Auth    Auth        // how Key is sent; AuthBearer by default
	Header  http.Header // extra headers, such as anthropic-version or OpenRouter's HTTP-Referer
	// Transport sends the request; nil means http.DefaultTransport.
	Transport http.RoundTripper
}

// DefaultMaxReplayBody is the default largest request body Transport
// buffers so that it can replay it on another member.
const DefaultMaxReplayBody = 32 << 20

// maxErrorBody bounds what Transport reads of a failed response to
// classify it.
const maxErrorBody = 64 << 10

// ErrBodyTooLarge: a request body without GetBody is larger than
// Transport.MaxReplayBody, so it could not be replayed; nothing was sent.
var ErrBodyTooLarge = errors.New("failover: request body larger than the replay limit")

// Transport is an http.RoundTripper that fails over across a pool of
// upstreams, for SDKs other than go-openai (openai-go, Anthropic's, Google's,
// langchaingo) and plain net/http. Each request goes to the member the pool
// picks, with that member's credential and, if the member has a Model, the
// JSON body's "model" rewritten (and a Gemini path's models/{model}). A failed response is classified from its
// status, headers and (bounded) body, and the request is replayed on the next
// member. A successful response, streaming or not, passes through as it
// arrives; a stream that ends before its protocol's end event (OpenAI's
// "data: [DONE]", Responses' response.completed, Anthropic's message_stop,
// a Gemini chunk with a finishReason) reads as io.ErrUnexpectedEOF, not a
// clean io.EOF. Members' Limits apply with a token estimate of the JSON
// body (see [EstimateBodyTokens]), and a success whose rate-limit headers
// say the member is spent rests it until their reset.
//
// Every response carries X-Failover-Member with the name of the member that
// answered. When no member serves, the caller's SDK gets the last
// upstream's error response as is, or, if no member could be tried, a 503
// with Retry-After and a JSON error body, without X-Failover-Member. Turn
// the SDK's own retries off: the pool is the one retry loop.
type Transport struct {
	Pool *Pool[Upstream]
	// MaxReplayBody is the largest body buffered for replay when the
	// request has no GetBody; 0 means DefaultMaxReplayBody.
	MaxReplayBody int64
}

// NewTransport returns a Transport over p.
func NewTransport(p *Pool[Upstream]) *Transport { return &Transport{Pool: p} }

// HTTPError is a failed upstream response, as Transport classifies it. Its
// text is redacted; so are its Body and Header values of the credentials
// the pool holds, since they go back to the caller.
type HTTPError struct {
	StatusCode int
	Header     http.Header
	Body       []byte // at most 64 KiB

	sec    *redact.Secrets
	member string // the member that answered, for X-Failover-Member
	event  bool   // a 200 stream's first event: StatusCode is the one it names, and classification reads the Body
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("upstream answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.sec.Text(string(e.Body), maxErrText))
}

// response rebuilds the upstream response for the caller's SDK, with
// X-Failover-Member naming the member that answered (none for the pool's
// own 503).
func (e *HTTPError) response(req *http.Request) *http.Response {
	h := e.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if e.member != "" {
		h[memberHeader] = []string{e.member}
	} else {
		h.Del(memberHeader)
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", e.StatusCode, http.StatusText(e.StatusCode)), StatusCode: e.StatusCode,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h,
		Body: io.NopCloser(bytes.NewReader(e.Body)), ContentLength: int64(len(e.Body)), Request: req,
	}
}

// RoundTrip sends req through the pool.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, raw, err := t.replayable(req)
	if err != nil {
		return nil, err
	}
	tokens, err := t.bodyEstimate(req, &body, &raw, t.replayLimit())
	if err != nil {
		return nil, err
	}
	var buf [2]CallOption
	opts := buf[:0]
	if tokens > 0 {
		opts = append(opts, Tokens(tokens))
	}
	if t.Pool.through() { // a member may lack the caller's model
		if model := requestModel(req.URL.Path, req.Header.Get("Content-Type"), body, raw); model != "" {
			opts = append(opts, ForModel(model))
		}
	}
	ctx := t.Pool.named(req.Context(), operationOfPath(req.URL.Path))
	resp, err := Do(ctx, t.Pool, func(actx context.Context, m Member[Upstream]) (*http.Response, error) {
		resp, err := send(ctx, actx, req, body, m)
		if err != nil {
			var he *HTTPError
			if errors.As(err, &he) {
				he.member = m.Name
				if he.StatusCode == http.StatusNotFound && accountBound(req.URL.Path) {
					err = &resourceError{err} // an account's ID: the caller's, as it is
				}
			}
			return nil, scrub(err, t.Pool.secrets())
		}
		t.restIfSpent(m.Name, resp.Header, tokens, req.URL.Path, raw, req.ContentLength)
		if resp.Header == nil {
			resp.Header = http.Header{}
		}
		resp.Header[memberHeader] = []string{m.Name}
		if b, ok := resp.Body.(*cancelOnClose); ok && resp.StatusCode < 300 && !encoded(resp.Header) {
			b.usage.rep, b.usage.member, b.usage.ctx = t.Pool, m.Name, actx // the usage it reports is m's
		}
		return resp, nil
	}, opts...)
	if err == nil {
		return resp, nil
	}
	var fe *Error
	if errors.As(err, &fe) { // no member served
		if he := lastHTTPError(fe); he != nil {
			return he.response(req), nil // the last upstream's answer
		}
		if errors.Is(err, ErrUnavailable) {
			return unavailableResponse(req, fe), nil
		}
		return nil, err
	}
	var he *HTTPError
	if errors.As(err, &he) { // a request error, as the upstream answered it
		return he.response(req), nil
	}
	return nil, err
}

// lastHTTPError returns the HTTPError of the last attempt that was tried,
// or nil.
func lastHTTPError(fe *Error) *HTTPError {
	for i := len(fe.Attempts) - 1; i >= 0; i-- {
		var he *HTTPError
		if a := fe.Attempts[i]; !a.Skipped && errors.As(a.Err, &he) {
			return he
		}
	}
	return nil
}

// lacksEverywhere reports whether every member fe skipped lacks the
// call's model.
func lacksEverywhere(fe *Error) bool {
	for _, a := range fe.Attempts {
		if !errors.Is(a.Err, ErrLacksModel) {
			return false
		}
	}
	return len(fe.Attempts) > 0
}

// unavailableResponse is the 503 a caller's SDK sees when no member could
// be tried, with Retry-After from RetryAt.
func unavailableResponse(req *http.Request, fe *Error) *http.Response {
	if lacksEverywhere(fe) {
		// Every member answered not_found for the call's model: the
		// caller's SDK gets the 404 its provider would send.
		b, _ := json.Marshal(map[string]any{"error": map[string]any{
			"message": fe.Error(), "type": "invalid_request_error", "code": "model_not_found"}})
		he := &HTTPError{StatusCode: http.StatusNotFound, Header: http.Header{"Content-Type": {"application/json"}}, Body: b}
		return he.response(req)
	}
	b, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": fe.Error(), "type": "failover_unavailable", "code": "unavailable"}})
	h := http.Header{"Content-Type": {"application/json"}}
	if !fe.RetryAt.IsZero() {
		h.Set("Retry-After", strconv.Itoa(max(int(time.Until(fe.RetryAt).Seconds()+0.999), 1)))
	}
	he := &HTTPError{StatusCode: http.StatusServiceUnavailable, Header: h, Body: b}
	return he.response(req)
}

// replayable returns a function that yields a fresh copy of the body for
// each attempt, and the body itself when it is buffered, or an error
// before any upstream call when the body cannot be replayed.
func (t *Transport) replayable(req *http.Request) (func() (io.ReadCloser, []byte, error), []byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return func() (io.ReadCloser, []byte, error) { return http.NoBody, nil, nil }, nil, nil
	}
	if req.GetBody != nil { // the request can replay itself: no buffering, no limit
		_ = req.Body.Close()
		return func() (io.ReadCloser, []byte, error) { rc, err := req.GetBody(); return rc, nil, err }, nil, nil
	}
	limit := t.replayLimit()
	b, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	_ = req.Body.Close()
	if err != nil {
		return nil, nil, err
	}
	if int64(len(b)) > limit {
		return nil, nil, fmt.Errorf("%w (%d bytes): set Transport.MaxReplayBody or give the request a GetBody", ErrBodyTooLarge, limit)
	}
	return func() (io.ReadCloser, []byte, error) { return io.NopCloser(bytes.NewReader(b)), b, nil }, b, nil
}

// graceWithin is how long Transport waits after a stream's first events
// without content: preambleWait, or less so that it ends well within the
// attempt's deadline, should it have one.
func graceWithin(actx context.Context) time.Duration {
	if dl, ok := actx.Deadline(); ok {
		return min(preambleWait, time.Until(dl)/2)
	}
	return preambleWait
}

// encoded reports whether a response's body is compressed (the caller
// asked for an encoding itself, so net/http left it as it came): the
// stream checks and the usage scan cannot read it.
func encoded(h http.Header) bool {
	e := strings.TrimSpace(h.Get("Content-Encoding"))
	return e != "" && !strings.EqualFold(e, "identity")
}

// replayLimit is MaxReplayBody, or its default.
func (t *Transport) replayLimit() int64 {
	if t.MaxReplayBody <= 0 {
		return DefaultMaxReplayBody
	}
	return t.MaxReplayBody
}

// send makes one attempt on member m. The upstream request lives in ctx (the
// caller's), so a streamed body outlives the attempt; the attempt's context
// bounds the wait for the response headers and, for an error status, the
// read of its (capped) body.
func send(ctx, actx context.Context, req *http.Request, body func() (io.ReadCloser, []byte, error), m Member[Upstream]) (*http.Response, error) {
	up := m.Client
	target, err := url.Parse(up.BaseURL)
	if err != nil || target.Host == "" {
		return nil, fmt.Errorf("%w: member %q: BaseURL %q is not an absolute URL", ErrInvalid, m.Name, redact.String(up.BaseURL))
	}
	rc, raw, err := body()
	if err != nil {
		return nil, err
	}
	if m.Model != "" && raw == nil && rc != http.NoBody { // a GetBody body: read it to rewrite the model
		raw, err = io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			return nil, err
		}
		rc = io.NopCloser(bytes.NewReader(raw))
	}
	if m.Model != "" && raw != nil {
		if b, ok := withModel(raw, m.Model); ok {
			rc, raw = io.NopCloser(bytes.NewReader(b)), b
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(actx, cancel)
	out := req.Clone(rctx)
	out.Body, out.GetBody = rc, nil
	switch {
	case raw != nil:
		out.ContentLength = int64(len(raw))
	case rc == http.NoBody:
		out.ContentLength = 0
	default:
		out.ContentLength = req.ContentLength // a GetBody body is the request's own
	}
	out.Host = ""
	q := out.URL.Query()
	q.Del("key")
	route(out.URL, target, q)
	if m.Model != "" {
		if p := withPathModel(out.URL.Path, m.Model); p != out.URL.Path {
			out.URL.Path, out.URL.RawPath = p, ""
		}
	}
	for _, h := range credentialHeaders {
		out.Header.Del(h)
	}
	for k, vs := range up.Header {
		out.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	switch up.Auth {
	case AuthAPIKey:
		out.Header.Set("Api-Key", up.Key)
	case AuthXAPIKey:
		out.Header.Set("X-Api-Key", up.Key)
	case AuthGoogKey:
		out.Header.Set("X-Goog-Api-Key", up.Key)
	case AuthQuery:
		q.Set("key", up.Key)
	default:
		out.Header.Set("Authorization", "Bearer "+up.Key)
	}
	out.URL.RawQuery = q.Encode()
	rt := up.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	resp, err := rt.RoundTrip(out)
	if err == nil && resp.StatusCode >= 400 {
		return failedResponse(ctx, actx, resp, stop, cancel)
	}
	kind := streamNone
	if err == nil && !encoded(resp.Header) { // a compressed body is the caller's to decode: no check reads it
		kind = streamCheckFor(out, resp, raw)
	}
	if kind != streamNone && isEventStream(resp.Header) {
		// A stream whose first event is an error has sent the caller
		// nothing: the call fails over. The wait for that event is the
		// attempt's, as on go-openai's path.
		var body io.ReadCloser
		if body, err = checkFirstEvent(resp, graceWithin(actx)); err == nil {
			resp.Body = body
		}
	}
	attemptOver := !stop() // a 2xx body outlives the attempt once its first event came: streams are long
	if err == nil && attemptOver && ctx.Err() == nil {
		// The attempt ended as the answer came: its request is canceled
		// and the body would fail at the caller's first read.
		_ = resp.Body.Close()
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		var ue *url.Error
		if errors.As(err, &ue) {
			err = &url.Error{Op: ue.Op, URL: redact.String(ue.URL), Err: ue.Err}
		}
		if attemptOver && ctx.Err() == nil {
			err = fmt.Errorf("failover: attempt: %w", actx.Err())
		}
		return nil, err
	}
	// a stream cut before its protocol's end event is an error
	resp.Body = checkedStream(kind, resp.Body)
	cb := &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	cb.usage.scan.sse = kind != streamNone || isEventStream(resp.Header)
	resp.Body = cb
	return resp, nil
}

// failedResponse reads at most maxErrorBody of an error response, inside
// the attempt: stop ends the attempt's hold on the request, cancel ends
// the request. A body that is still arriving when the attempt ends (a
// server that trickles it) is an attempt timeout; one cut short otherwise
// (a connection reset) is classified from the part that arrived.
func failedResponse(ctx, actx context.Context, resp *http.Response, stop func() bool, cancel context.CancelFunc) (*http.Response, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	attemptOver := !stop()
	cancel()
	_ = resp.Body.Close()
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case attemptOver:
			return nil, fmt.Errorf("failover: attempt: %w while reading the body of a %d answer", actx.Err(), resp.StatusCode)
		}
	}
	return nil, &HTTPError{StatusCode: resp.StatusCode, Header: resp.Header, Body: b}
}

// withModel rewrites the "model" field of a JSON object body.
func withModel(body []byte, model string) ([]byte, bool) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return nil, false
	}
	if _, ok := fields["model"]; !ok {
		return nil, false
	}
	fields["model"], _ = json.Marshal(model)
	b, err := json.Marshal(fields)
	return b, err == nil
}

// cancelOnClose releases the upstream request's context with its body,
// and meters the token usage the body reports.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
	usage  usageMeter
}

func (c *cancelOnClose) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.usage.read(p[:n], err)
	return n, err
}

func (c *cancelOnClose) Close() error {
	defer c.cancel() // a panicking Usage hook still ends the request
	err := c.ReadCloser.Close()
	c.usage.flush()
	return err
}
