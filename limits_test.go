package failover_test

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strings"
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

// maxInAnyMinute returns the most calls that started within any 60 s.
func maxInAnyMinute(starts []time.Time) int {
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	best, lo := 0, 0
	for hi := range starts {
		for !starts[hi].Before(starts[lo].Add(time.Minute)) {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// Four members with RPM 60 under 200 calls a minute for 5 minutes: every
// call succeeds and no member gets more than 60 calls in any minute.
func TestRPMLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		starts := map[string][]time.Time{}
		fn := func(ctx context.Context, m failover.Member[*fakeClient]) (string, error) {
			mu.Lock()
			starts[m.Name] = append(starts[m.Name], time.Now())
			mu.Unlock()
			return m.Name, nil
		}
		ms := members(&fakeClient{}, &fakeClient{}, &fakeClient{}, &fakeClient{})
		for i := range ms {
			ms[i].Limits.RPM = 60
		}
		p := newPool(t, ms)
		for range 5 * 200 {
			_, err := failover.Do(ctx, p, fn)
			require.NoError(t, err)
			time.Sleep(300 * time.Millisecond)
		}
		total := 0
		for name, s := range starts {
			total += len(s)
			assert.LessOrEqual(t, maxInAnyMinute(s), 60, name)
		}
		assert.Equal(t, 1000, total)
		assert.Equal(t, 60, maxInAnyMinute(starts["a"]), "the cheap member is used up to its limit")
	})
}

// When every member is over its limit: ErrUnavailable with the limit's
// reason and the time the oldest call leaves the window; with
// WithWaitForRecovery the call waits for it.
func TestLimitsUnavailableAndWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := members(&fakeClient{})
		ms[0].Limits.RPM = 2
		p := newPool(t, ms)
		start := time.Now()
		for range 2 {
			_, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
			time.Sleep(10 * time.Second)
		}
		_, err := failover.Do(ctx, p, call)
		var fe *failover.Error
		require.ErrorAs(t, err, &fe)
		assert.ErrorIs(t, err, failover.ErrUnavailable)
		assert.ErrorIs(t, err, failover.ErrLimited)
		assert.Equal(t, failover.ReasonLimited, fe.Attempts[0].Reason)
		assert.Equal(t, start.Add(time.Minute), fe.RetryAt)

		wp := newPool(t, ms, failover.WithWaitForRecovery(time.Minute))
		for range 2 {
			_, _ = failover.Do(ctx, wp, call)
		}
		before := time.Now()
		_, err = failover.Do(ctx, wp, call)
		require.NoError(t, err)
		assert.Equal(t, time.Minute, time.Since(before))
	})
}

// TPM counts the tokens given with Tokens; a call larger than TPM never
// goes to that member.
func TestTPMLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := &fakeClient{}, &fakeClient{}
		ms := members(a, b)
		ms[0].Limits.TPM = 1000
		p := newPool(t, ms)
		for _, want := range []string{"a", "a", "b"} {
			got, err := failover.Do(ctx, p, call, failover.Tokens(400))
			require.NoError(t, err)
			assert.Equal(t, want, got)
		}
		time.Sleep(time.Minute)
		got, _ := failover.Do(ctx, p, call, failover.Tokens(400))
		assert.Equal(t, "a", got, "the window slid")
		got, _ = failover.Do(ctx, p, call, failover.Tokens(5000))
		assert.Equal(t, "b", got, "too large for a's TPM")

		only := newPool(t, members(&fakeClient{}))
		require.NoError(t, only.Update([]failover.Member[*fakeClient]{{Name: "a", Client: a, Limits: failover.Limits{TPM: 100}}}))
		_, err := failover.Do(ctx, only, call, failover.Tokens(101))
		var fe *failover.Error
		require.ErrorAs(t, err, &fe)
		assert.True(t, fe.RetryAt.IsZero(), "it never fits")
	})
}

// MaxInFlight caps concurrent calls; a waiting call takes a slot as soon as
// one frees.
func TestMaxInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := &fakeClient{delay: time.Second}, &fakeClient{delay: time.Second}
		ms := members(a, b)
		ms[0].Limits.MaxInFlight = 2
		p := newPool(t, ms)
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() { _, _ = failover.Do(ctx, p, call) })
		}
		wg.Wait()
		assert.EqualValues(t, 2, a.calls.Load())
		assert.EqualValues(t, 3, b.calls.Load())
		assert.EqualValues(t, 3, p.Status()[0].Limited)
		assert.Equal(t, 2, p.Status()[0].Limits.MaxInFlight)

		one := members(&fakeClient{delay: time.Second})
		one[0].Limits.MaxInFlight = 1
		wp := newPool(t, one, failover.WithWaitForRecovery(time.Minute))
		start := time.Now()
		for range 3 {
			wg.Go(func() {
				_, err := failover.Do(ctx, wp, call)
				assert.NoError(t, err)
			})
		}
		wg.Wait()
		assert.Equal(t, 3*time.Second, time.Since(start), "one at a time")
	})
}

// A 400 context_length_exceeded on an 8k member with fallbacks of 8k and
// 128k: only the 128k one is tried. Without a larger one, the error comes
// back unchanged.
func TestContextLengthRouting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		tooLong := failovertest.Error(400, "invalid_request_error", "context_length_exceeded", "This model's maximum context length is 8192 tokens.")
		srv.Script("small-1", tooLong)
		srv.Script("small-2", tooLong)
		ms := []failover.Member[*openai.Client]{
			failover.OpenAIMember("small-1", srv.Config("small-1")),
			failover.OpenAIMember("small-2", srv.Config("small-2")),
			failover.OpenAIMember("large", srv.Config("large")),
		}
		ms[0].Limits.ContextTokens, ms[1].Limits.ContextTokens, ms[2].Limits.ContextTokens = 8192, 8192, 128000
		ms[2].Priority = 1
		p, err := failover.New(ms)
		require.NoError(t, err)
		client := failover.NewOpenAI(p)
		_, err = client.CreateChatCompletion(ctx, chatReq)
		require.NoError(t, err)
		assert.Equal(t, []int{1, 0, 1}, []int{srv.Calls("small-1"), srv.Calls("small-2"), srv.Calls("large")})
		assert.Equal(t, failover.Active, p.Status()[0].State, "the prompt's fault, not the member's")

		// A prompt estimated above 8k skips the small members without a call.
		srv.Reset()
		big := chatReq
		big.Messages = []openai.ChatCompletionMessage{{Role: "user", Content: strings.Repeat("word ", 8000)}}
		_, err = client.CreateChatCompletion(ctx, big)
		require.NoError(t, err)
		assert.Equal(t, []int{0, 0, 1}, []int{srv.Calls("small-1"), srv.Calls("small-2"), srv.Calls("large")})

		// No larger member: the provider's error, unchanged.
		srv.Reset()
		require.NoError(t, p.Update(ms[:2]))
		_, err = client.CreateChatCompletion(ctx, chatReq)
		var ae *openai.APIError
		require.ErrorAs(t, err, &ae)
		assert.Same(t, ae, err)
		assert.Equal(t, 1, len(srv.Requests("")))
	})
}

func TestEstimateTokens(t *testing.T) {
	//lint:ignore SA1019 the estimate reads the deprecated field too
	req := openai.ChatCompletionRequest{MaxTokens: 100, Messages: []openai.ChatCompletionMessage{
		{Role: "system", Content: strings.Repeat("a", 400)},
		{Role: "user", MultiContent: []openai.ChatMessagePart{{Type: "text", Text: strings.Repeat("b", 40)}}},
	}}
	assert.Equal(t, 4+100+4+10+100, failover.EstimateTokens(req))
	req.MaxCompletionTokens = 7
	assert.Equal(t, 4+100+4+10+7, failover.EstimateTokens(req))
}

// x-ratelimit-remaining-requests: 0 with x-ratelimit-reset-requests: 10s
// cools the member for 10 s without a 429.
func TestProactiveCooldown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		spent := failovertest.OK("last one")
		spent.Header = http.Header{"X-Ratelimit-Remaining-Requests": {"0"}, "X-Ratelimit-Reset-Requests": {"10s"},
			"X-Ratelimit-Remaining-Tokens": {"90000"}, "X-Ratelimit-Reset-Tokens": {"1s"}}
		srv.Script("k1", failovertest.OK("first"), spent, failovertest.OK("again"))
		var ev events
		p, err := failover.New(failover.OpenAIKeys("k", srv.Config, "k1", "k2"), failover.WithObserver(ev.observe))
		require.NoError(t, err)
		client := failover.NewOpenAI(p)
		for _, want := range []string{"first", "last one", "ok", "ok"} {
			resp, err := client.CreateChatCompletion(ctx, chatReq)
			require.NoError(t, err)
			assert.Equal(t, want, resp.Choices[0].Message.Content)
		}
		st := p.Status()[0]
		assert.Equal(t, failover.CoolingDown, st.State)
		assert.Equal(t, failover.ReasonRateLimit, st.Reason)
		assert.Equal(t, 10*time.Second, time.Until(st.Until))
		assert.Zero(t, st.Failures, "no 429 was spent")
		assert.Equal(t, 2, srv.Calls("k1"))
		assert.Equal(t, []failover.EventKind{failover.EventCooldown}, ev.kinds("k#1"))

		time.Sleep(10 * time.Second)
		resp, err := client.CreateChatCompletion(ctx, chatReq)
		require.NoError(t, err)
		assert.Equal(t, "again", resp.Choices[0].Message.Content)

		// Fewer tokens left than the next call needs: rest until the token reset.
		low := failovertest.OK("low")
		low.Header = http.Header{"X-Ratelimit-Remaining-Tokens": {"3"}, "X-Ratelimit-Reset-Tokens": {"6m0s"}}
		srv.Script("k1", low)
		_, err = client.CreateChatCompletion(ctx, chatReq)
		require.NoError(t, err)
		assert.Equal(t, 6*time.Minute, time.Until(p.Status()[0].Until))
	})
}

// Under an outage of every member the retry budget bounds upstream calls.
func TestRetryBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		run := func(opts ...failover.Option) (upstream int64, firstErrs int) {
			down := apiErr(503, nil, "overloaded")
			cs := []*fakeClient{{fail: always(down)}, {fail: always(down)}, {fail: always(down)}, {fail: always(down)}}
			cd := exact()
			cd.Transient.Base, cd.Transient.Max = 0, 0 // no cooldown: only the budget holds traffic back
			p := newPool(t, members(cs...), append(opts, failover.WithCooldowns(cd))...)
			for range 1000 {
				_, err := failover.Do(ctx, p, call)
				require.Error(t, err)
				var ae *openai.APIError
				if errors.As(err, &ae) && !errors.Is(err, failover.ErrExhausted) {
					firstErrs++
				}
				time.Sleep(time.Second)
			}
			for _, c := range cs {
				upstream += c.calls.Load()
			}
			return upstream, firstErrs
		}
		without, _ := run()
		assert.EqualValues(t, 4000, without, "every call tries every member")
		var ev events
		with, fast := run(failover.WithRetryBudget(0.1, 5), failover.WithObserver(ev.observe))
		spent := 0
		for _, e := range ev.all {
			if e.Kind == failover.EventExhausted && errors.Is(e.Err, failover.ErrRetryBudget) {
				spent++
			}
		}
		assert.Equal(t, fast, spent, "an event for each call the budget stopped")
		assert.LessOrEqual(t, with, int64(1000*1.1+5))
		assert.Greater(t, with, int64(1000))
		assert.Greater(t, fast, 900, "spent budget: the first error, at once")
		t.Logf("upstream calls for 1,000 calls in an outage: %d without a budget, %d with WithRetryBudget(0.1, 5)", without, with)
	})
}

// The same through go-openai against a provider that enforces 60 RPM per
// key: the client-side limit keeps every call under it, so the provider
// never answers 429.
func TestRPMLimitAgainstProvider(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		keys := []string{"k1", "k2", "k3", "k4"}
		for _, k := range keys {
			srv.Limit(k, 60)
		}
		ms := failover.OpenAIKeys("free", srv.Config, keys...)
		for i := range ms {
			ms[i].Limits.RPM = 60
		}
		p, err := failover.New(ms)
		require.NoError(t, err)
		client := failover.NewOpenAI(p)
		for range 5 * 200 {
			_, err := client.CreateChatCompletion(ctx, chatReq)
			require.NoError(t, err)
			time.Sleep(300 * time.Millisecond)
		}
		for _, k := range keys {
			assert.Zero(t, srv.Limited(k), k)
			var at []time.Time
			for _, r := range srv.Requests(k) {
				at = append(at, r.At)
			}
			assert.LessOrEqual(t, maxInAnyMinute(at), 60, k)
		}
		assert.Len(t, srv.Requests(""), 1000)

		// Without the client-side limit the provider's 429s do the limiting.
		q, err := failover.New(failover.OpenAIKeys("free", srv.Config, keys...))
		require.NoError(t, err)
		srv.Reset()
		unlimited := failover.NewOpenAI(q)
		for range 200 {
			_, _ = unlimited.CreateChatCompletion(ctx, chatReq)
			time.Sleep(300 * time.Millisecond)
		}
		assert.Positive(t, srv.Limited("k1"), "the control run does hit the provider's limit")
	})
}
