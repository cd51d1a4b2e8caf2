package failover_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Text rules match words, not parts of identifiers, and a stray number or
// parameter name decides nothing.
func TestTextRulesMatchWords(t *testing.T) {
	for msg, want := range map[string]failover.Reason{
		"Unknown parameter: 'custom_rate_limit_key'.":                                  failover.ReasonBadRequest,
		"Unrecognized request argument supplied: quota_project":                        failover.ReasonBadRequest,
		"Invalid 'max_tokens': integer above maximum value. Expected 429.":             failover.ReasonBadRequest,
		"'overloaded_flag' is not a known field":                                       failover.ReasonBadRequest,
		"You exceeded your current quota, please check your plan and billing details.": failover.ReasonQuota,
		"Your input exceeds the context window of this model.":                         failover.ReasonContextLength,
	} {
		assert.Equal(t, want, failover.Classify(apiErr(400, nil, msg)).Reason, msg)
	}
	// With no status, the same words decide alone.
	assert.Equal(t, failover.ReasonUnknown, failover.Classify(errors.New("field custom_rate_limit_key rejected")).Reason)
	assert.Equal(t, failover.ReasonRateLimit, failover.Classify(errors.New("rate-limited, slow down")).Reason)
	assert.Equal(t, failover.ReasonNetwork, failover.Classify(errors.New("read ECONNRESET")).Reason)
}

// A Model the member sets that go-openai refuses before sending is the
// member's configuration: the call moves on to the next member. The same
// model asked for by the caller is the caller's request: the call stops.
func TestMemberModelRefusedBeforeSending(t *testing.T) {
	srv := failovertest.NewServer()
	legacy := failover.OpenAIMember("legacy", srv.Config("legacy"))
	legacy.Model = "text-davinci-003" // completion-only: go-openai refuses it for chat
	p, err := failover.New([]failover.Member[*openai.Client]{legacy, failover.OpenAIMember("good", srv.Config("good"))})
	require.NoError(t, err)
	c := failover.NewOpenAI(p)

	resp, err := c.CreateChatCompletion(context.Background(), fixtureRequest)
	require.NoError(t, err)
	assert.NotEmpty(t, resp.Choices)
	assert.Equal(t, []int{0, 1}, []int{srv.Calls("legacy"), srv.Calls("good")})
	assert.Equal(t, failover.ReasonNotFound, p.Status()[0].Reason)

	p2, err := failover.New([]failover.Member[*openai.Client]{failover.OpenAIMember("a", srv.Config("a")), failover.OpenAIMember("b", srv.Config("b"))})
	require.NoError(t, err)
	req := fixtureRequest
	req.Model = "text-davinci-003"
	_, err = failover.NewOpenAI(p2).CreateChatCompletion(context.Background(), req)
	assert.ErrorIs(t, err, openai.ErrChatCompletionInvalidModel)
	for _, st := range p2.Status() {
		assert.Equal(t, failover.Active, st.State, st.Name)
	}
}

// geminiPerDay is Gemini's 429 for a spent daily free-tier quota: a
// QuotaFailure naming a PerDay quotaId and a RetryInfo of seconds (shape
// from ai.google.dev/gemini-api/docs/rate-limits and google.rpc.QuotaFailure).
const geminiPerDay = `{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 50, model: gemini-2.5-pro","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"17s"}]}}`

// A spent daily quota rests the free key until midnight Pacific, exactly,
// instead of being asked every few seconds: over a day at one call per
// 10 s (8,640 calls), the free key gets 2 calls, where it got 293.
func TestDailyQuotaRestsUntilReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script("free", failovertest.Response{Status: 429, Body: geminiPerDay})
		free := failover.OpenAIMember("free", srv.Config("free"))
		paid := failover.OpenAIMember("paid", srv.Config("paid"))
		paid.Priority = 1
		p, err := failover.New([]failover.Member[*openai.Client]{free, paid})
		require.NoError(t, err)
		c := failover.NewOpenAI(p)

		start := time.Now() // 2000-01-01 00:00 UTC = 1999-12-31 16:00 PST
		_, err = c.CreateChatCompletion(context.Background(), fixtureRequest)
		require.NoError(t, err)
		st := p.Status()[0]
		assert.Equal(t, failover.ReasonQuota, st.Reason)
		assert.Equal(t, start.Add(8*time.Hour), st.Until, "midnight Pacific")

		for range 8640 - 1 {
			time.Sleep(10 * time.Second)
			_, err := c.CreateChatCompletion(context.Background(), fixtureRequest)
			require.NoError(t, err)
		}
		assert.Equal(t, 2, srv.Calls("free"), "one call at the start, one at the reset")
		assert.Equal(t, 8640, srv.Calls("paid"), "the paid key serves every call")
	})
}

// A spent per-day limit with the provider's own hint (Groq's "Please try
// again in 9m38s" on tokens per day) rests the member for that hint, not for
// the quota lane's hour.
func TestPeriodQuotaRestsForItsHint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script("k", failovertest.Error(429, "tokens", "rate_limit_exceeded",
			"Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_x` service tier `on_demand` on tokens per day (TPD): Limit 100000, Used 99812, Requested 1234. Please try again in 9m38.016s."))
		p, err := failover.New([]failover.Member[*openai.Client]{failover.OpenAIMember("k", srv.Config("k")), failover.OpenAIMember("b", srv.Config("b"))})
		require.NoError(t, err)
		_, err = failover.NewOpenAI(p).CreateChatCompletion(context.Background(), fixtureRequest)
		require.NoError(t, err)
		st := p.Status()[0]
		assert.Equal(t, failover.ReasonQuota, st.Reason)
		assert.Equal(t, 9*time.Minute+38016*time.Millisecond, time.Until(st.Until))
	})
}

// Midnight Pacific across the daylight-saving changes of 2026 (8 March,
// 1 November).
func TestGoogleDayResetsAtPacificMidnight(t *testing.T) {
	for _, tc := range []struct{ now, reset string }{
		{"2000-01-01T00:00:00Z", "2000-01-01T08:00:00Z"}, // PST
		{"2026-03-07T12:00:00Z", "2026-03-08T08:00:00Z"}, // 04:00 PST on 7 March: the next midnight is still PST
		{"2026-03-08T12:00:00Z", "2026-03-09T07:00:00Z"}, // PDT from 8 March
		{"2026-10-31T06:59:00Z", "2026-10-31T07:00:00Z"}, // 23:59 PDT
		{"2026-11-01T12:00:00Z", "2026-11-02T08:00:00Z"}, // PST again
	} {
		now, _ := time.Parse(time.RFC3339, tc.now)
		reset, _ := time.Parse(time.RFC3339, tc.reset)
		err := bodyErr{apiErr(429, nil, "You exceeded your current quota"), []byte(geminiPerDay)}
		v := failover.ClassifyAt(err, now)
		assert.Equal(t, failover.ReasonQuota, v.Reason, tc.now)
		assert.Equal(t, reset.Sub(now), v.RetryAfter, tc.now)
	}
}

// An Anthropic-shaped error event after a first chunk, in the same read:
// the chunk arrives whole, then the event is an overload (go-openai alone
// reads that event as an empty chunk).
func TestErrorEventAfterChunk(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: "+failovertest.Chunk("m", "hel")+"\n\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
	})
	cfg := openai.DefaultConfig("k")
	cfg.BaseURL = "http://provider.test/v1"
	cfg.HTTPClient = &http.Client{Transport: &handlerTransport{h: h}}
	p, err := failover.New([]failover.Member[*openai.Client]{failover.OpenAIMember("m", cfg)})
	require.NoError(t, err)
	s, err := failover.NewOpenAI(p).CreateChatCompletionStream(context.Background(), fixtureRequest)
	require.NoError(t, err)
	defer s.Close()
	chunk, err := s.Recv()
	require.NoError(t, err)
	assert.Equal(t, "hel", chunk.Choices[0].Delta.Content)
	_, err = s.Recv()
	require.Error(t, err)
	var ae *openai.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, "Overloaded", ae.Message)
	assert.Equal(t, failover.ReasonOverloaded, failover.Classify(err).Reason)
}

// The error body the glue keeps for the classifier is redacted like every
// other text: a key the provider echoes does not reach an attempt's error.
func TestKeptErrorBodyIsRedacted(t *testing.T) {
	const canary = "zq-canary-7Hd9"
	srv := failovertest.NewServer()
	srv.Script(canary, failovertest.Response{Status: 429, Body: `{"error":{"code":429,"message":"key ` + canary + ` is over its quota","details":[{"retryDelay":"3s"}]}}`})
	p, err := failover.New([]failover.Member[*openai.Client]{failover.OpenAIMember("a", srv.Config(canary))})
	require.NoError(t, err)
	_, err = failover.NewOpenAI(p).CreateChatCompletion(context.Background(), fixtureRequest)
	var fe *failover.Error
	require.ErrorAs(t, err, &fe)
	var bodied interface{ Body() []byte }
	require.ErrorAs(t, fe.Attempts[0].Err, &bodied)
	assert.NotContains(t, string(bodied.Body()), canary)
	assert.Contains(t, string(bodied.Body()), "retryDelay")
	assert.NotContains(t, err.Error(), canary)
	assert.False(t, strings.Contains(p.Status()[0].LastError, canary))
}
