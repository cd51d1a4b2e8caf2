package failover_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Regression tests for the findings of the review of the fidelity change.

// A billing quota with an ordinary short hint rests on the quota lane: only
// a period quota's reset shortens the first quota window.
func TestQuotaShortHintKeepsTheLane(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spent := headerErr{apiErr(429, "insufficient_quota", "You exceeded your current quota, please check your plan and billing details."), http.Header{"Retry-After": {"2"}}}
		a := &fakeClient{fail: always(spent)}
		p := newPool(t, members(a, &fakeClient{}), failover.WithCooldowns(exact()))
		_, err := failover.Do(ctx, p, call)
		require.NoError(t, err)
		st := status(t, p, "a")
		assert.Equal(t, failover.ReasonQuota, st.Reason)
		assert.Equal(t, time.Hour, time.Until(st.Until), "the quota lane, not the 2 s hint")
	})
}

// The next midnight Pacific from the first two hours of a change day.
func TestPacificMidnightOnChangeDays(t *testing.T) {
	for _, tc := range []struct{ now, reset string }{
		{"2026-03-08T08:30:00Z", "2026-03-09T07:00:00Z"}, // 00:30 PST; the next midnight is PDT
		{"2026-11-01T08:30:00Z", "2026-11-02T08:00:00Z"}, // 01:30 PDT; the next midnight is PST
	} {
		now, _ := time.Parse(time.RFC3339, tc.now)
		reset, _ := time.Parse(time.RFC3339, tc.reset)
		v := failover.ClassifyAt(bodyErr{apiErr(429, nil, "You exceeded your current quota"), []byte(geminiPerDay)}, now)
		assert.Equal(t, reset.Sub(now), v.RetryAfter, tc.now)
	}
}

// Update with other limits keeps the day's counts: a spent free key gets
// no new day from a reload.
func TestUpdateKeepsTheDay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{}
		ms := members(a)
		ms[0].Limits = failover.Limits{RPD: 2}
		p := newPool(t, ms)
		for range 2 {
			_, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
		}
		ms[0].Limits.MaxInFlight = 4
		require.NoError(t, p.Update(ms))
		_, err := failover.Do(ctx, p, call)
		assert.ErrorIs(t, err, failover.ErrUnavailable)
		assert.EqualValues(t, 2, a.calls.Load())
		assert.Equal(t, 2, status(t, p, "a").RequestsToday)
	})
}

// Request errors whose words look like a member's: a 400 stays a 400.
func TestRequestErrorsStayRequestErrors(t *testing.T) {
	for _, msg := range []string{
		"Invalid token ID 100257 in logit_bias",
		"Additional properties are forbidden ('foo' was unexpected)",
		"Invalid model parameter 'temperature': must be at most 2",
		"Invalid value for 'rate_limit': expected an object",
	} {
		assert.Equal(t, failover.ReasonBadRequest, failover.Classify(apiErr(400, nil, msg)).Reason, msg)
	}
	// A per-minute limit that mentions a daily reset is still a rate limit.
	v := failover.Classify(apiErr(429, "rate_limit_exceeded", "Rate limit reached on requests per min (RPM): Limit 3. Your daily usage resets at midnight."))
	assert.Equal(t, failover.ReasonRateLimit, v.Reason)
}

// Concurrent streams whose first chunk fails each get their own error.
func TestFailedFirstChunksConcurrently(t *testing.T) {
	srv := failovertest.NewServer()
	chunk := `{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}`
	srv.Script("a", failovertest.Response{Chunks: []string{chunk}})
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		p, err := failover.New([]failover.Member[*openai.Client]{failover.OpenAIMember("a", srv.Config("a"))})
		require.NoError(t, err)
		c := failover.NewOpenAI(p)
		wg.Go(func() {
			_, errs[i] = c.CreateChatCompletionStream(context.Background(), fixtureRequest)
		})
	}
	wg.Wait()
	seen := map[*openai.APIError]bool{}
	for _, err := range errs {
		var ae *openai.APIError
		require.True(t, errors.As(err, &ae), "%v", err)
		assert.False(t, seen[ae], "a shared error value")
		seen[ae] = true
	}
}

// An error event that is the stream's last line, without a newline.
func TestErrorEventAtEOF(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(`data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
	})
	cfg := openai.DefaultConfig("k")
	cfg.BaseURL = "http://provider.test/v1"
	cfg.HTTPClient = &http.Client{Transport: &handlerTransport{h: h}}
	var rec recorder
	p, err := failover.New([]failover.Member[*openai.Client]{failover.OpenAIMember("m", cfg)}, rec.option())
	require.NoError(t, err)
	_, err = failover.NewOpenAI(p).CreateChatCompletionStream(context.Background(), fixtureRequest)
	require.Error(t, err)
	var ae *openai.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, "overloaded_error", ae.Type)
	assert.Equal(t, "Overloaded", ae.Message)
	require.NotNil(t, rec.v)
	assert.Equal(t, failover.ReasonOverloaded, rec.v.Reason)
}
