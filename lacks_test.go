package failover_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llmfailover/failover"
)

// modelUpstream is an OpenAI-compatible provider that serves the models
// it has and answers 404 model_not_found for the others, counting the
// requests per model.
type modelUpstream struct {
	has   map[string]bool
	calls atomic.Int64
	asked []string
}

func (u *modelUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	u.calls.Add(1)
	b, _ := io.ReadAll(r.Body)
	model := ""
	if i := strings.Index(string(b), `"model":"`); i >= 0 {
		rest := string(b)[i+len(`"model":"`):]
		model = rest[:strings.IndexByte(rest, '"')]
	}
	u.asked = append(u.asked, model)
	if !u.has[model] {
		return answer(r, 404, `{"error":{"message":"The model `+"`"+model+"`"+` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}`), nil
	}
	return answer(r, 200, `{"id":"c","object":"chat.completion","model":"`+model+`","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}`), nil
}

func lacksPool(t *testing.T, ups ...*modelUpstream) *failover.OpenAI {
	t.Helper()
	var ms []failover.Member[*openai.Client]
	for i, u := range ups {
		cfg := openai.DefaultConfig("sk-test-key")
		cfg.BaseURL, cfg.HTTPClient = "http://p.test/v1", &http.Client{Transport: u}
		m := failover.OpenAIMember(string(rune('a'+i)), cfg)
		m.Priority = i
		ms = append(ms, m)
	}
	p, err := failover.New(ms)
	require.NoError(t, err)
	return failover.NewOpenAI(p)
}

func chatFor(model string) openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{Model: model, Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}}
}

// A caller's model that a pass-through member lacks skips that member for
// that model only: the call fails over to a member that has it, later
// calls for it skip the member with no upstream call, and calls for other
// models still use it (regression: one unknown model benched every
// member for every call).
func TestLacksModelSkipsForThatModelOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &modelUpstream{has: map[string]bool{"llama-3.3-70b": true}}
		b := &modelUpstream{has: map[string]bool{"llama-3.3-70b": true, "gpt-4o": true}}
		o := lacksPool(t, a, b)
		ctx := context.Background()
		for range 3 {
			resp, err := o.CreateChatCompletion(ctx, chatFor("gpt-4o"))
			require.NoError(t, err)
			assert.Equal(t, "gpt-4o", resp.Model)
		}
		assert.Equal(t, []string{"gpt-4o"}, a.asked, "a was asked for gpt-4o once")
		assert.EqualValues(t, 3, b.calls.Load())
		st := o.Pool().Status()
		assert.Equal(t, failover.Active, st[0].State, "a stays in rotation")
		assert.Equal(t, []string{"gpt-4o"}, st[0].Lacks)
		assert.Equal(t, failover.Skips{Model: 2}, st[0].Skipped)

		resp, err := o.CreateChatCompletion(ctx, chatFor("llama-3.3-70b"))
		require.NoError(t, err)
		assert.Equal(t, "llama-3.3-70b", resp.Model)
		assert.Equal(t, []string{"gpt-4o", "llama-3.3-70b"}, a.asked, "a serves the models it has")

		// A model no member has: each is asked once, then the call fails
		// with no upstream call, and the others are served as before.
		_, err = o.CreateChatCompletion(ctx, chatFor("gpt-5-typo"))
		require.Error(t, err)
		var ae *openai.APIError
		assert.True(t, errors.As(err, &ae) && ae.HTTPStatusCode == 404, "the provider's 404: %v", err)
		_, err = o.CreateChatCompletion(ctx, chatFor("gpt-5-typo"))
		require.ErrorIs(t, err, failover.ErrUnavailable)
		assert.ErrorIs(t, err, failover.ErrLacksModel)
		assert.Equal(t, []string{"gpt-4o", "llama-3.3-70b", "gpt-5-typo"}, a.asked)
		assert.EqualValues(t, 4, b.calls.Load(), "b too was asked for it once")
		_, err = o.CreateChatCompletion(ctx, chatFor("llama-3.3-70b"))
		require.NoError(t, err)

		// The lack ends with the permanent lane's base window.
		time.Sleep(failover.DefaultCooldowns().Permanent.Base + time.Second)
		assert.Empty(t, o.Pool().Status()[0].Lacks)
		_, err = o.CreateChatCompletion(ctx, chatFor("gpt-4o"))
		require.NoError(t, err)
		assert.Equal(t, "gpt-4o", a.asked[len(a.asked)-1], "asked again after the window")
	})
}

// A member with its own Model is the one that lacks it: a not_found
// benches it as before.
func TestNotFoundBenchesAMemberWithItsOwnModel(t *testing.T) {
	a := &modelUpstream{has: map[string]bool{}}
	b := &modelUpstream{has: map[string]bool{"gpt-4o": true}}
	o := lacksPool(t, a, b)
	ms := []failover.Member[*openai.Client]{}
	for i, u := range []*modelUpstream{a, b} {
		cfg := openai.DefaultConfig("sk-test-key")
		cfg.BaseURL, cfg.HTTPClient = "http://p.test/v1", &http.Client{Transport: u}
		m := failover.OpenAIMember(string(rune('a'+i)), cfg)
		m.Priority, m.Model = i, "gpt-4o"
		ms = append(ms, m)
	}
	require.NoError(t, o.Pool().Update(ms))
	_, err := o.CreateChatCompletion(context.Background(), chatFor("anything"))
	require.NoError(t, err)
	st := o.Pool().Status()
	assert.NotEqual(t, failover.Active, st[0].State, "a's own model is missing: a member fault")
	assert.Equal(t, failover.ReasonNotFound, st[0].Reason)
	assert.Empty(t, st[0].Lacks)
}

// Through Transport, the body's model names the call's model; when every
// member lacks it, the caller's SDK gets a 404 model_not_found, not a 503.
func TestLacksModelThroughTransport(t *testing.T) {
	a := &modelUpstream{has: map[string]bool{"gpt-4o": true}}
	p, err := failover.New([]failover.Member[failover.Upstream]{{Name: "a", Client: failover.Upstream{BaseURL: "https://a.example", Key: "a-key-123456", Transport: a}}})
	require.NoError(t, err)
	tr := failover.NewTransport(p)
	for i, want := range []int{404, 404, 200} {
		model := "gpt-5-typo"
		if i == 2 {
			model = "gpt-4o"
		}
		resp := do(t, tr, http.MethodPost, "http://x/v1/chat/completions", `{"model":"`+model+`","messages":[]}`)
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, "call %d: %s", i, b)
		if i == 1 {
			assert.Contains(t, string(b), "model_not_found")
		}
	}
	assert.Equal(t, []string{"gpt-5-typo", "gpt-4o"}, a.asked, "the second typo made no upstream call")
	assert.Equal(t, []string{"gpt-5-typo"}, statusOf(p, "a").Lacks)
}
