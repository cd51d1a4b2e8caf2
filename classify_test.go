package failover_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

type sdkErr struct{ code int }

func (e sdkErr) Error() string   { return "request failed" }
func (e sdkErr) StatusCode() int { return e.code }

type hinted struct{ error }

func (hinted) RetryAfter() time.Duration { return 42 * time.Second }

// TestClassifyErrors covers errors that are not provider bodies: transport,
// context, other SDKs and plain text.
func TestClassifyErrors(t *testing.T) {
	urlErr := func(err error) error {
		return &url.Error{Op: "Post", URL: "https://api.example.com/v1/chat/completions", Err: err}
	}
	for _, tc := range []struct {
		name string
		err  error
		want failover.Reason
	}{
		{"canceled", context.Canceled, failover.ReasonCanceled},
		{"canceled in url.Error", urlErr(context.Canceled), failover.ReasonCanceled},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), failover.ReasonTimeout},
		{"net timeout", urlErr(&net.OpError{Op: "read", Err: timeoutErr{}}), failover.ReasonTimeout},
		{"ETIMEDOUT", &net.OpError{Op: "dial", Err: syscall.ETIMEDOUT}, failover.ReasonTimeout},
		{"connection refused", urlErr(&net.OpError{Op: "dial", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}), failover.ReasonNetwork},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), failover.ReasonNetwork},
		{"broken pipe", syscall.EPIPE, failover.ReasonNetwork},
		{"EOF", urlErr(io.EOF), failover.ReasonNetwork},
		{"unexpected EOF", io.ErrUnexpectedEOF, failover.ReasonNetwork},
		{"DNS", urlErr(&net.DNSError{Err: "no such host", Name: "api.example.com"}), failover.ReasonNetwork},
		{"TLS", urlErr(x509.UnknownAuthorityError{}), failover.ReasonNetwork},
		{"HTML 502", &openai.RequestError{HTTPStatusCode: 502, HTTPStatus: "502 Bad Gateway", Body: []byte("<html><h1>502 Bad Gateway</h1></html>")}, failover.ReasonServer},
		{"mid-stream server_error", fmt.Errorf("error, %w", &openai.APIError{Type: "server_error", Message: "The server had an error"}), failover.ReasonServer},
		{"mid-stream rate limit", fmt.Errorf("error, %w", &openai.APIError{Code: "rate_limit_exceeded", Message: "Rate limit reached"}), failover.ReasonRateLimit},
		{"503 server_error type", &openai.APIError{HTTPStatusCode: 503, Type: "server_error", Message: "The engine is currently overloaded"}, failover.ReasonOverloaded},
		{"other SDK status method", sdkErr{401}, failover.ReasonAuth},
		{"other SDK status text", errors.New(`POST "https://api.anthropic.com/v1/messages": 429 Too Many Requests {"type":"error"}`), failover.ReasonRateLimit},
		{"status code text", errors.New("API error (status code: 503)"), failover.ReasonOverloaded},
		{"HTTP status line", errors.New("unexpected response: HTTP/1.1 404 Not Found"), failover.ReasonNotFound},
		{"stray number is not a status", errors.New("invalid parameter: max 500 tokens"), failover.ReasonUnknown},
		{"stray 429 in an id", errors.New("request req_429abc failed validation"), failover.ReasonUnknown},
		{"number before a wrong phrase", errors.New("got 500 Tokens over the limit"), failover.ReasonUnknown},
		{"400 with a number", apiErr(400, nil, "max_tokens is too large: 5000. This model supports at most 500 completion tokens"), failover.ReasonBadRequest},
		{"text rate limit", errors.New("provider said: rate limit exceeded, slow down"), failover.ReasonRateLimit},
		{"text context", errors.New("This model's maximum context length is 8192 tokens"), failover.ReasonContextLength},
		{"anything else", errors.New("something odd"), failover.ReasonUnknown},
		{"go-openai request check", openai.ErrContentFieldsMisused, failover.ReasonBadRequest},
		{"go-openai empty stream", openai.ErrTooManyEmptyStreamMessages, failover.ReasonServer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, failover.Classify(tc.err).Reason, "%v", tc.err)
		})
	}
	assert.Equal(t, failover.Verdict{}, failover.Classify(nil))
	assert.Equal(t, 42*time.Second, failover.Classify(hinted{apiErr(429, nil, "x")}).RetryAfter)
	assert.Equal(t, failover.MaxRetryHint, failover.Classify(headerErr{apiErr(429, nil, "x"), http.Header{"Retry-After": {"86400"}}}).RetryAfter, "capped at 1 h")
}

// The reason table: lane and whether the call moves on.
func TestReasonPolicy(t *testing.T) {
	for _, tc := range []struct {
		r     failover.Reason
		lane  failover.Lane
		moves bool
	}{
		{failover.ReasonRateLimit, failover.LaneTransient, true},
		{failover.ReasonQuota, failover.LaneQuota, true},
		{failover.ReasonOverloaded, failover.LaneTransient, true},
		{failover.ReasonServer, failover.LaneTransient, true},
		{failover.ReasonTimeout, failover.LaneTransient, true},
		{failover.ReasonNetwork, failover.LaneTransient, true},
		{failover.ReasonAuth, failover.LanePermanent, true},
		{failover.ReasonForbidden, failover.LanePermanent, true},
		{failover.ReasonNotFound, failover.LanePermanent, true},
		{failover.ReasonContextLength, failover.LaneNone, false},
		{failover.ReasonContentFilter, failover.LaneNone, false},
		{failover.ReasonBadRequest, failover.LaneNone, false},
		{failover.ReasonCanceled, failover.LaneNone, false},
		{failover.ReasonUnknown, failover.LaneNone, true},
	} {
		assert.Equal(t, tc.lane, tc.r.Lane(), tc.r)
		assert.Equal(t, tc.moves, tc.r.FailsOver(), tc.r)
	}
}

// A classifier set with WithClassifier decides first; ok=false defers.
func TestUserClassifier(t *testing.T) {
	special := errors.New("provider X: soft limit")
	p := newPool(t, members(&fakeClient{fail: always(special)}, &fakeClient{}),
		failover.WithClassifier(func(err error) (failover.Verdict, bool) {
			if errors.Is(err, special) {
				return failover.Verdict{Reason: failover.ReasonQuota}, true
			}
			return failover.Verdict{}, false
		}))
	got, err := failover.Do(ctx, p, call)
	require.NoError(t, err)
	assert.Equal(t, "b", got)
	assert.Equal(t, failover.ReasonQuota, status(t, p, "a").Reason)
}

func TestRetryHint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		for _, tc := range []struct {
			name string
			h    http.Header
			want time.Duration
		}{
			{"none", http.Header{}, 0},
			{"seconds", http.Header{"Retry-After": {"20"}}, 20 * time.Second},
			{"http date", http.Header{"Retry-After": {now.Add(90 * time.Second).UTC().Format(http.TimeFormat)}}, 90 * time.Second},
			{"past date", http.Header{"Retry-After": {now.Add(-time.Minute).UTC().Format(http.TimeFormat)}}, 0},
			{"ms wins", http.Header{"Retry-After": {"20"}, "Retry-After-Ms": {"1500"}}, 1500 * time.Millisecond},
			{"azure ms", http.Header{"X-Ms-Retry-After-Ms": {"250"}}, 250 * time.Millisecond},
			{"garbage", http.Header{"Retry-After": {"soon"}}, 0},
			{"negative", http.Header{"Retry-After": {"-5"}}, 0},
			{"huge", http.Header{"Retry-After": {"1e300"}}, failover.MaxRetryHint},
			{"openai requests", http.Header{"X-Ratelimit-Reset-Requests": {"6m0s"}, "X-Ratelimit-Remaining-Requests": {"0"}, "X-Ratelimit-Reset-Tokens": {"20ms"}, "X-Ratelimit-Remaining-Tokens": {"900"}}, 6 * time.Minute},
			{"openai tokens", http.Header{"X-Ratelimit-Reset-Requests": {"1s"}, "X-Ratelimit-Remaining-Requests": {"10"}, "X-Ratelimit-Reset-Tokens": {"7.66s"}, "X-Ratelimit-Remaining-Tokens": {"0"}}, 7660 * time.Millisecond},
			{"earliest without remaining", http.Header{"X-Ratelimit-Reset-Requests": {"1s"}, "X-Ratelimit-Reset-Tokens": {"20ms"}}, 20 * time.Millisecond},
			{"anthropic", http.Header{"Anthropic-Ratelimit-Requests-Reset": {now.Add(12 * time.Second).Format(time.RFC3339)}, "Anthropic-Ratelimit-Requests-Remaining": {"0"}}, 12 * time.Second},
			{"unix ms", http.Header{"X-Ratelimit-Reset": {fmt.Sprint(now.Add(30 * time.Second).UnixMilli())}}, 30 * time.Second},
		} {
			assert.Equal(t, tc.want, failover.RetryHint(tc.h, now), tc.name)
		}
		gemini := `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"43s"}]}}`
		assert.Equal(t, 43*time.Second, failover.RetryHintFromBody([]byte(gemini)))
		assert.Equal(t, 43*time.Second, failover.RetryHintFromBody([]byte("["+gemini+"]")))
		assert.Zero(t, failover.RetryHintFromBody([]byte("<html>")))
		for msg, want := range map[string]time.Duration{
			"Rate limit reached for gpt-4o. Please try again in 6s.":                     6 * time.Second,
			"Please try again in 1m30s.":                                                 90 * time.Second,
			"Please try again in 20ms.":                                                  20 * time.Millisecond,
			"Please retry in 43.5s.":                                                     43500 * time.Millisecond,
			"Requests have exceeded the token rate limit. Please retry after 6 seconds.": 6 * time.Second,
			"try again in 2 minutes":                                                     2 * time.Minute,
			"retry later":                                                                0,
		} {
			assert.Equal(t, want, failover.Classify(errors.New(msg)).RetryAfter, msg)
		}
	})
}

// What net/http's transport returns for a peer that answers with bytes that
// are not HTTP is a network failure (texts from net/http's transport.go and
// response.go).
func TestClassifyMalformedResponse(t *testing.T) {
	for _, msg := range []string{
		`net/http: HTTP/1.x transport connection broken: malformed HTTP status code "garbage"`,
		`malformed HTTP response "\x16\x03\x01"`,
		`net/http: HTTP/1.x transport connection broken: malformed HTTP version "XYZ"`,
	} {
		assert.Equal(t, failover.ReasonNetwork, failover.Classify(errors.New(msg)).Reason, msg)
	}
}

// Statuses in SDK texts are read only where they are anchored.
func TestStatusFromTextAnchors(t *testing.T) {
	for text, want := range map[string]failover.Reason{
		"Error code: 500 - {'error': {'message': 'The model produced invalid content.', 'type': 'model_error'}}": failover.ReasonServer,
		"503 Too many connections, please wait before trying again.":                                             failover.ReasonOverloaded,
		"512 MB of memory were used": failover.ReasonUnknown,
		"used max 500 tokens":        failover.ReasonUnknown,
		"429 {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}": failover.ReasonRateLimit,
	} {
		assert.Equal(t, want, failover.Classify(errors.New(text)).Reason, text)
	}
}
