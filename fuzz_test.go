package failover_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/sashabaranov/go-openai"
)

var reasons = map[failover.Reason]bool{
	failover.ReasonRateLimit: true, failover.ReasonQuota: true, failover.ReasonOverloaded: true,
	failover.ReasonServer: true, failover.ReasonTimeout: true, failover.ReasonNetwork: true,
	failover.ReasonAuth: true, failover.ReasonForbidden: true, failover.ReasonNotFound: true,
	failover.ReasonContextLength: true, failover.ReasonContentFilter: true, failover.ReasonBadRequest: true,
	failover.ReasonCanceled: true, failover.ReasonUnknown: true,
}

// FuzzClassify: arbitrary statuses, codes, messages and bodies, in every
// error shape the classifier reads. It never panics, always returns a
// defined reason and a hint in [0, MaxRetryHint], or up to 24 h for a quota
// (a period quota's reset), and no hint on a reason that stops the call.
func FuzzClassify(f *testing.F) {
	f.Add(429, "rate_limit_exceeded", "Rate limit reached. Please try again in 6s.", `{"error":{"message":"x"}}`, "20")
	f.Add(400, "", "max 500 tokens", `[{"error":{"code":400,"status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}]`, "")
	f.Add(0, "server_error", "status code: 503", `<html>502 Bad Gateway</html>`, "Sat, 01 Jan 2000 00:00:30 GMT")
	f.Add(529, "overloaded_error", "retry after 1e308 hours", `{"error":"string"}`, "-1")
	f.Add(429, "resource_exhausted", "Quota exceeded for metric: x, limit: 50", `{"error":{"code":429,"details":[{"violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},{"retryDelay":"17s"}]}}`, "")
	f.Add(429, "1310", "Weekly/Monthly Limit Exhausted. Your limit will reset at 2000-01-04 18:33:48", `{"error":{"metadata":{"headers":{"X-RateLimit-Reset":"99999999999999"}}}}`, "86400")
	f.Fuzz(func(t *testing.T, status int, code, msg, body, retryAfter string) {
		h := http.Header{"Retry-After": {retryAfter}, "X-Ratelimit-Reset-Requests": {retryAfter}}
		errs := []error{
			&openai.APIError{HTTPStatusCode: status, Code: code, Type: code, Message: msg},
			fmt.Errorf("error, %w", &openai.APIError{Code: status, Message: msg}),
			&openai.RequestError{HTTPStatusCode: status, Body: []byte(body), Err: errors.New(msg)},
			headerErr{&openai.APIError{HTTPStatusCode: status, Message: msg}, h},
			bodyErr{headerErr{&openai.APIError{HTTPStatusCode: status, Code: code, Message: msg}, h}, []byte(body)},
			errors.New(msg),
			errors.New(body),
		}
		for _, err := range errs {
			v := failover.Classify(err)
			if !reasons[v.Reason] {
				t.Fatalf("undefined reason %q for %v", v.Reason, err)
			}
			limit := failover.MaxRetryHint
			if v.Reason == failover.ReasonQuota {
				limit = 24 * time.Hour
			}
			if v.RetryAfter < 0 || v.RetryAfter > limit || (!v.Reason.FailsOver() && v.RetryAfter != 0) {
				t.Fatalf("hint %v out of range for %s: %v", v.RetryAfter, v.Reason, err)
			}
		}
	})
}

// FuzzRetryHint: every header parser and the body parser stay within
// [0, MaxRetryHint].
func FuzzRetryHint(f *testing.F) {
	f.Add("20", "1500", "6m0s", "0", "2000-01-01T00:00:12Z", `{"error":{"details":[{"retryDelay":"43s"}]}}`)
	f.Add("Sat, 01 Jan 2000 00:00:30 GMT", "NaN", "-1s", "", "946684860000", `[{"error":{"details":[{"retryDelay":"9999999h"}]}}]`)
	f.Fuzz(func(t *testing.T, ra, ms, reset, remaining, anthropic, body string) {
		h := http.Header{
			"Retry-After": {ra}, "Retry-After-Ms": {ms}, "X-Ms-Retry-After-Ms": {ms},
			"X-Ratelimit-Reset-Requests": {reset}, "X-Ratelimit-Remaining-Requests": {remaining},
			"X-Ratelimit-Reset-Tokens": {ra}, "Anthropic-Ratelimit-Requests-Reset": {anthropic},
			"X-Ratelimit-Reset": {anthropic},
		}
		now := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
		for _, d := range []time.Duration{failover.RetryHint(h, now), failover.RetryHintFromBody([]byte(body))} {
			if d < 0 || d > failover.MaxRetryHint {
				t.Fatalf("hint %v out of range", d)
			}
		}
	})
}

// FuzzStream: arbitrary SSE bytes through the streaming path. It never
// panics or hangs, and a stream either fails over, ends with io.EOF after
// [DONE], or returns an error.
func FuzzStream(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"))
	f.Add([]byte("data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n"))
	f.Add([]byte("data: [DO"))
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"print('[DONE]')\"}}]}\n\n"))
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n  data:   [DONE]  \r\n"))
	f.Add([]byte(": keep-alive\n\ndata: {}\n\nevent: x\ndata: [DONE]"))
	f.Fuzz(func(t *testing.T, sse []byte) {
		srv := failovertest.NewServer()
		srv.Script("k1", failovertest.Response{Chunks: []string{}, NoDone: true, Header: nil})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.Copy(w, bytes.NewReader(sse))
		})
		cfg := openai.DefaultConfig("k1")
		cfg.BaseURL = "http://fuzz.invalid/v1"
		cfg.HTTPClient = &http.Client{Transport: &handlerTransport{h: h}}
		p, err := failover.New([]failover.Member[*openai.Client]{failover.OpenAIMember("fuzz", cfg), failover.OpenAIMember("ok", srv.Config("ok"))})
		if err != nil {
			t.Fatal(err)
		}
		s, err := failover.NewOpenAI(p).CreateChatCompletionStream(ctx, chatReq)
		if err != nil {
			return
		}
		defer s.Close()
		for range 10000 {
			if _, err := s.Recv(); err != nil {
				if errors.Is(err, io.EOF) && s.Member() == "fuzz" && !hasDoneLine(sse) {
					t.Fatalf("clean end without [DONE]")
				}
				return
			}
		}
		t.Fatal("stream never ended")
	})
}

// hasDoneLine is the test's own reading of the end marker, as go-openai
// reads it: a line ended by '\n' that, trimmed, is "data:", optional
// spaces, then "[DONE]". Text that merely holds "[DONE]" is not one.
func hasDoneLine(sse []byte) bool {
	lines := strings.Split(string(sse), "\n")
	for _, line := range lines[:len(lines)-1] { // the last piece has no line end
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "data:"); ok && strings.TrimSpace(rest) == "[DONE]" {
			return true
		}
	}
	return false
}

// FuzzNew: arbitrary member lists, limits, day zones and option values
// give a pool or an ErrInvalid error, never a panic; Update behaves the
// same.
func FuzzNew(f *testing.F) {
	f.Add("a,b,a", 1, -1, 0, int64(-5), 0.5, 2, "")
	f.Add("", 0, 0, -3, int64(0), 1.5, 9, "Mars/Olympus")
	f.Add("x", 5, 1, 1, int64(time.Hour), -0.1, 3, "America/Los_Angeles")
	f.Add("y", 1, 2, 0, int64(0), 0.0, 0, "../../etc/passwd")
	f.Fuzz(func(t *testing.T, names string, weight, rpm, prio int, d int64, jitter float64, strategy int, zone string) {
		var ms []failover.Member[string]
		for _, n := range strings.Split(names, ",") {
			ms = append(ms, failover.Member[string]{Name: n, Client: "c", Weight: weight, Priority: prio, Limits: failover.Limits{RPM: rpm, RPD: rpm, TPD: weight, DayZone: zone}})
		}
		cd := failover.DefaultCooldowns()
		cd.Transient.Jitter, cd.Quota.Base = jitter, time.Duration(d)
		opts := []failover.Option{
			failover.WithCooldowns(cd), failover.WithStrategy(failover.Strategy(strategy)),
			failover.WithAttemptTimeout(time.Duration(d)), failover.WithStickiness(time.Duration(d)),
			failover.WithMaxAttempts(weight),
		}
		p, err := failover.New(ms, opts...)
		if err != nil {
			if !errors.Is(err, failover.ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		if err := p.Update(ms); err != nil {
			t.Fatalf("Update of New's members: %v", err)
		}
		if err := p.Update(append(ms, ms...)); !errors.Is(err, failover.ErrInvalid) {
			t.Fatalf("duplicate names accepted: %v", err)
		}
		_, _ = failover.Do(ctx, p, func(_ context.Context, m failover.Member[string]) (string, error) { return m.Client, nil })
	})
}
