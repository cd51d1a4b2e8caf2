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

func upstreamPool(t *testing.T, opts []failover.Option, ups ...http.RoundTripper) *failover.Pool[failover.Upstream] {
	t.Helper()
	var ms []failover.Member[failover.Upstream]
	for i, u := range ups {
		ms = append(ms, failover.Member[failover.Upstream]{Name: string(rune('a' + i)), Priority: i,
			Client: failover.Upstream{BaseURL: "https://" + string(rune('a'+i)) + ".example/v1", Key: "key-" + string(rune('a'+i)) + "-123456", Transport: u}})
	}
	p, err := failover.New(ms, opts...)
	require.NoError(t, err)
	return p
}

// openai-go (Messages before Model), openai-go's Responses (Input before
// Model) and anthropic-sdk-go (max_tokens, messages, model) all send the
// model AFTER the conversation. A prompt over 64 KiB hides the model from
// requestModel, so a typo'd model benches the member for every model, the
// regression ForModel was made to fix.
func TestReviewLacksModelAfterLongMessages(t *testing.T) {
	a := &modelUpstream{has: map[string]bool{"gpt-4o": true}}
	p := upstreamPool(t, nil, a)
	tr := failover.NewTransport(p)
	long := strings.Repeat("lorem ipsum ", 70<<10/12) // ~70 KiB, ~17k tokens
	resp := do(t, tr, http.MethodPost, "http://x/v1/chat/completions",
		`{"messages":[{"role":"user","content":"`+long+`"}],"model":"gpt-5-typo"}`)
	_ = resp.Body.Close()
	assert.Equal(t, 404, resp.StatusCode)
	st := statusOf(p, "a")
	assert.Equal(t, failover.Active, st.State, "a stays in rotation for other models")
	assert.Equal(t, []string{"gpt-5-typo"}, st.Lacks)
	resp = do(t, tr, http.MethodPost, "http://x/v1/chat/completions", `{"messages":[],"model":"gpt-4o"}`)
	_ = resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode, "a serves a model it has")
}

// requestModel keeps the LAST "model" at depth <= 2 of the body, so a
// caller's own chat "metadata" tag {"model": …} (after "model", as
// openai-go orders it) is taken for the call's model: the lack is recorded
// for the wrong model, and a later call for a model the member has is
// answered 404 model_not_found with no upstream call.
func TestReviewLacksNestedMetadataModel(t *testing.T) {
	a := &modelUpstream{has: map[string]bool{"gpt-4o": true}}
	p := upstreamPool(t, nil, a)
	tr := failover.NewTransport(p)
	body := func(model string) string {
		return `{"messages":[],"model":"` + model + `","metadata":{"model":"router-v2"}}`
	}
	resp := do(t, tr, http.MethodPost, "http://x/v1/chat/completions", body("gpt-5-typo"))
	_ = resp.Body.Close()
	assert.Equal(t, []string{"gpt-5-typo"}, statusOf(p, "a").Lacks, "the model the call asked for")
	resp = do(t, tr, http.MethodPost, "http://x/v1/chat/completions", body("gpt-4o"))
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode, "a has gpt-4o: %s", b)
	assert.Equal(t, []string{"gpt-5-typo", "gpt-4o"}, a.asked)
}

// Enable "clears cooldown/disable now" but keeps the lacks: after the
// operator adds the model at the provider and enables the member, calls
// for it are still refused for the rest of the window.
func TestReviewEnableKeepsLacks(t *testing.T) {
	a := &modelUpstream{has: map[string]bool{}}
	o := lacksPool(t, a)
	ctx := context.Background()
	_, err := o.CreateChatCompletion(ctx, chatFor("gpt-4o"))
	require.Error(t, err)
	a.has["gpt-4o"] = true // deployed
	require.NoError(t, o.Pool().Enable("a"))
	_, err = o.CreateChatCompletion(ctx, chatFor("gpt-4o"))
	assert.NoError(t, err, "Enable clears what keeps the member from serving")
	assert.Empty(t, o.Pool().Status()[0].Lacks)
}

// Update keeps lacks by name; once the member has a Model of its own it
// serves that model for every call, yet calls naming the old model still
// skip it (ErrLacksModel), and acquire checks lacks for members with Model.
func TestReviewUpdateToOwnModelKeepsLacks(t *testing.T) {
	a := &modelUpstream{has: map[string]bool{"llama-3.3-70b": true}}
	o := lacksPool(t, a)
	ctx := context.Background()
	_, err := o.CreateChatCompletion(ctx, chatFor("gpt-4o"))
	require.Error(t, err)
	cfg := openai.DefaultConfig("sk-test-key")
	cfg.BaseURL, cfg.HTTPClient = "http://p.test/v1", &http.Client{Transport: a}
	m := failover.OpenAIMember("a", cfg)
	m.Model = "llama-3.3-70b" // now serves its own model, whatever the caller names
	require.NoError(t, o.Pool().Update([]failover.Member[*openai.Client]{m}))
	resp, err := o.CreateChatCompletion(ctx, chatFor("gpt-4o"))
	require.NoError(t, err, "the member rewrites the model: its old lack is moot")
	assert.Equal(t, "llama-3.3-70b", resp.Model)
}

// GetModel is the call apps make to check a model exists, and it names no
// model: a GetModel of a typo benches every member for every call for the
// permanent window (the regression the lacks were made to fix).
func TestReviewGetModelTypoBenchesPool(t *testing.T) {
	var chat atomic.Int64
	up := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if strings.Contains(r.URL.Path, "/models/") {
			return answer(r, 404, `{"error":{"message":"The model 'gpt-5-typo' does not exist","type":"invalid_request_error","param":"model","code":"model_not_found"}}`), nil
		}
		chat.Add(1)
		return answer(r, 200, `{"id":"c","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`), nil
	})
	var ms []failover.Member[*openai.Client]
	for _, name := range []string{"a", "b"} {
		cfg := openai.DefaultConfig("sk-test-key")
		cfg.BaseURL, cfg.HTTPClient = "http://p.test/v1", &http.Client{Transport: up}
		ms = append(ms, failover.OpenAIMember(name, cfg))
	}
	p, err := failover.New(ms)
	require.NoError(t, err)
	o := failover.NewOpenAI(p)
	ctx := context.Background()
	_, err = o.GetModel(ctx, "gpt-5-typo")
	require.Error(t, err)
	_, err = o.CreateChatCompletion(ctx, chatFor("gpt-4o"))
	assert.NoError(t, err, "a model lookup's 404 must not bench the pool")
}

// A last-resort early probe ignores lacks: a call for a model that member
// a is known to lack spends its one early probe on a (an upstream 404),
// and b, which has the model and is cooling for the same outage, is not
// probed.
func TestReviewLastResortIgnoresLacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var phase atomic.Int32
		var calls [2]atomic.Int64
		p, err := failover.New([]failover.Member[int]{{Name: "a", Client: 0}, {Name: "b", Client: 1, Priority: 1}},
			failover.WithCooldowns(func() failover.Cooldowns { c := failover.DefaultCooldowns(); c.Blips = 0; return c }()))
		require.NoError(t, err)
		fn := func(ctx context.Context, m failover.Member[int]) (string, error) {
			calls[m.Client].Add(1)
			switch {
			case phase.Load() == 1: // an outage of both
				return "", &failover.HTTPError{StatusCode: 500, Body: []byte(`{"error":{"message":"boom","type":"server_error"}}`)}
			case m.Client == 0: // a has no model x
				return "", &failover.HTTPError{StatusCode: 404, Body: []byte(`{"error":{"message":"The model x does not exist","code":"model_not_found"}}`)}
			}
			return "ok", nil
		}
		ctx := context.Background()
		_, err = failover.Do(ctx, p, fn, failover.ForModel("x"))
		require.NoError(t, err)
		require.Equal(t, []string{"x"}, statusOf(p, "a").Lacks)
		phase.Store(1)
		_, err = failover.Do(ctx, p, fn, failover.ForModel("y"))
		require.Error(t, err)
		require.Equal(t, failover.CoolingDown, statusOf(p, "b").State)
		phase.Store(2) // the outage is over
		time.Sleep(2 * time.Second)
		before := [2]int64{calls[0].Load(), calls[1].Load()}
		out, err := failover.Do(ctx, p, fn, failover.ForModel("x"))
		assert.Equal(t, before[0], calls[0].Load(), "a lacks x: no upstream call")
		assert.NoError(t, err, "b's early probe serves")
		assert.Equal(t, "ok", out)
	})
}

// Any 404 with a model named becomes "the member lacks the model": a
// member whose BaseURL is wrong (every path 404s, plain text) stays
// Active in Status, and once every member "lacks" the model the caller's
// SDK is told model_not_found — a real misconfiguration/outage hidden
// behind a claim that the caller's model does not exist.
func TestReviewBare404HiddenAsModelNotFound(t *testing.T) {
	broken := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp := answer(r, 404, "404 page not found\n")
		resp.Header.Set("Content-Type", "text/plain; charset=utf-8")
		return resp, nil
	})
	p := upstreamPool(t, nil, broken)
	tr := failover.NewTransport(p)
	for range 2 {
		resp := do(t, tr, http.MethodPost, "http://x/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`)
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		assert.NotContains(t, string(b), "model_not_found", "nothing said the model does not exist")
	}
	assert.NotEqual(t, failover.Active, statusOf(p, "a").State, "every path 404s: a member fault")
}

// OpenAI's "organization must be verified to stream this model" is a
// not_found now; a stream refused so records the model as lacking for
// plain calls too, which the member serves.
func TestReviewStreamOnlyRefusalLacksModelForAll(t *testing.T) {
	up := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), `"stream":true`) {
			return answer(r, 400, `{"error":{"message":"Your organization must be verified to stream this model. Please go to: https://platform.openai.com/settings/organization/general and click on Verify Organization.","type":"invalid_request_error","param":"stream","code":"unsupported_value"}}`), nil
		}
		return answer(r, 200, `{"id":"c","object":"chat.completion","model":"o3","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`), nil
	})
	cfg := openai.DefaultConfig("sk-test-key")
	cfg.BaseURL, cfg.HTTPClient = "http://p.test/v1", &http.Client{Transport: up}
	p, err := failover.New([]failover.Member[*openai.Client]{failover.OpenAIMember("a", cfg)})
	require.NoError(t, err)
	o := failover.NewOpenAI(p)
	ctx := context.Background()
	_, err = o.CreateChatCompletionStream(ctx, chatFor("o3"))
	require.Error(t, err)
	_, err = o.CreateChatCompletion(ctx, chatFor("o3"))
	assert.NoError(t, err, "a serves o3 without streaming")
	assert.False(t, errors.Is(err, failover.ErrLacksModel))
}

// The first-event check now waits past preamble events for the first
// content, all under WithAttemptTimeout. A reasoning model on the
// Responses API sends response.created, in_progress and the reasoning
// item's output_item.added at once, then nothing until it has reasoned:
// a healthy stream that used to be served is now an attempt timeout on
// every member.
func TestReviewReasoningStreamTimesOutOnPreamble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			pr, pw := io.Pipe()
			go func() {
				_, _ = io.WriteString(pw, "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"status\":\"in_progress\"}}\n\n"+
					"event: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"response\":{\"id\":\"r\",\"status\":\"in_progress\"}}\n\n"+
					"event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"id\":\"rs_1\",\"type\":\"reasoning\",\"summary\":[]}}\n\n")
				select {
				case <-time.After(20 * time.Second): // reasoning, no summary requested
				case <-r.Context().Done():
					_ = pw.CloseWithError(r.Context().Err())
					return
				}
				_, _ = io.WriteString(pw, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n"+
					"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"status\":\"completed\"}}\n\n")
				_ = pw.Close()
			}()
			return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: pr, ContentLength: -1, Request: r}, nil
		})
		p := upstreamPool(t, []failover.Option{failover.WithAttemptTimeout(10 * time.Second)}, up, up)
		tr := failover.NewTransport(p)
		req, err := http.NewRequest(http.MethodPost, "http://x/v1/responses", strings.NewReader(`{"model":"o3","input":"hard","stream":true}`))
		require.NoError(t, err)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode, "%s", b)
		assert.Contains(t, string(b), "response.completed")
		assert.Equal(t, failover.Active, statusOf(p, "a").State)
	})
}
