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
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var ctx = context.Background()

// 1. A 429 on the primary: the same call is served by the next member, the
// primary cools 5 s ±20 %, then exactly one probe reaches it, and on success
// it serves again.
func TestRateLimitFailsOverAndProbesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{fail: firstN(1, apiErr(429, "rate_limit_exceeded", "Rate limit reached"))}
		b := &fakeClient{}
		p := newPool(t, members(a, b))

		got, err := failover.Do(ctx, p, call)
		require.NoError(t, err)
		assert.Equal(t, "b", got)
		assert.EqualValues(t, 1, a.calls.Load())
		assert.EqualValues(t, 1, b.calls.Load())

		st := status(t, p, "a")
		assert.Equal(t, failover.CoolingDown, st.State)
		assert.Equal(t, failover.ReasonRateLimit, st.Reason)
		window := time.Until(st.Until)
		assert.GreaterOrEqual(t, window, 4*time.Second)
		assert.LessOrEqual(t, window, 6*time.Second)

		// While cooling, a is never called.
		for range 20 {
			got, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
			assert.Equal(t, "b", got)
		}
		assert.EqualValues(t, 1, a.calls.Load())

		// After the window, one probe succeeds and a serves again.
		time.Sleep(window)
		got, err = failover.Do(ctx, p, call)
		require.NoError(t, err)
		assert.Equal(t, "a", got)
		assert.EqualValues(t, 2, a.calls.Load())
		assert.Equal(t, failover.Active, status(t, p, "a").State)
		assert.Equal(t, 0, status(t, p, "a").ConsecutiveFailures)
		got, _ = failover.Do(ctx, p, call)
		assert.Equal(t, "a", got)
	})
}

// The exact window without jitter, and its doubling per failed probe.
func TestTransientWindowDoublesPerFailedProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{fail: always(apiErr(503, nil, "overloaded"))}
		p := newPool(t, members(a, &fakeClient{}), failover.WithCooldowns(exact()))
		for _, want := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second} {
			_, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
			st := status(t, p, "a")
			assert.Equal(t, failover.ReasonOverloaded, st.Reason)
			assert.Equal(t, want, time.Until(st.Until))
			time.Sleep(want)
		}
		assert.EqualValues(t, 4, a.calls.Load())
	})
}

// 2. A 401 takes the member out for 15 min: the next 1,000 calls make no
// call to it.
func TestAuthFailureIsLong(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{fail: always(apiErr(401, "invalid_api_key", "Incorrect API key provided"))}
		b := &fakeClient{}
		p := newPool(t, members(a, b), failover.WithCooldowns(exact()))
		start := time.Now()
		for range 1001 {
			got, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
			require.Equal(t, "b", got)
			time.Sleep(500 * time.Millisecond) // 1,000 calls span 8 min 20 s
		}
		assert.EqualValues(t, 1, a.calls.Load())
		st := status(t, p, "a")
		assert.Equal(t, failover.ReasonAuth, st.Reason)
		assert.Equal(t, failover.CoolingDown, st.State)
		assert.Equal(t, 15*time.Minute, st.Until.Sub(start))
	})
}

func TestPermanentUntilEnable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{fail: firstN(1, apiErr(403, nil, "Project does not have access to model"))}
		cd := exact()
		cd.PermanentUntilEnable = true
		var ev events
		p := newPool(t, members(a, &fakeClient{}), failover.WithCooldowns(cd), failover.WithObserver(ev.observe))
		_, err := failover.Do(ctx, p, call)
		require.NoError(t, err)
		assert.Equal(t, failover.Disabled, status(t, p, "a").State)
		time.Sleep(24 * time.Hour)
		got, _ := failover.Do(ctx, p, call)
		assert.Equal(t, "b", got)
		assert.EqualValues(t, 1, a.calls.Load())

		require.NoError(t, p.Enable("a"))
		got, _ = failover.Do(ctx, p, call)
		assert.Equal(t, "a", got)
		assert.Equal(t, []failover.EventKind{failover.EventAttemptFailed, failover.EventDisabled, failover.EventRecovered}, ev.kinds("a"))
	})
}

// 3. insufficient_quota under a 429 is quota (1 h), and cools the group.
func TestQuotaCoolsGroup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		quota := apiErr(429, "insufficient_quota", "You exceeded your current quota, please check your plan and billing details.")
		a := &fakeClient{fail: always(quota)}
		b, c := &fakeClient{}, &fakeClient{}
		ms := members(a, b, c)
		ms[0].Group, ms[1].Group = "org-1", "org-1"
		p := newPool(t, ms, failover.WithCooldowns(exact()))

		got, err := failover.Do(ctx, p, call)
		require.NoError(t, err)
		assert.Equal(t, "c", got, "b shares a's quota: the same call skips it")
		assert.EqualValues(t, 0, b.calls.Load())

		for _, name := range []string{"a", "b"} {
			st := status(t, p, name)
			assert.Equal(t, failover.ReasonQuota, st.Reason, name)
			assert.Equal(t, time.Hour, time.Until(st.Until), name)
		}
		time.Sleep(59 * time.Minute)
		got, _ = failover.Do(ctx, p, call)
		assert.Equal(t, "c", got)
		assert.EqualValues(t, 0, b.calls.Load(), "b cools with its group")
		time.Sleep(time.Minute)
		got, _ = failover.Do(ctx, p, call)
		assert.Equal(t, "c", got, "a's probe fails and cools the group again")
		assert.EqualValues(t, 2, a.calls.Load())
		assert.EqualValues(t, 0, b.calls.Load())
		assert.Equal(t, 2*time.Hour, time.Until(status(t, p, "b").Until))
	})
}

// 4. A 400 does not fail over, cools nothing, and comes back as-is.
func TestBadRequestReturnsUnchanged(t *testing.T) {
	a := &fakeClient{fail: always(apiErr(400, nil, "Invalid value for 'max_tokens': max 500 tokens"))}
	b := &fakeClient{}
	p := newPool(t, members(a, b))
	_, err := failover.Do(ctx, p, call)
	var ae *openai.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 400, ae.HTTPStatusCode)
	assert.NotErrorIs(t, err, failover.ErrExhausted)
	assert.EqualValues(t, 0, b.calls.Load())
	st := status(t, p, "a")
	assert.Equal(t, failover.Active, st.State)
	assert.Zero(t, st.Failures)
}

// 5. Everything cooling: ErrUnavailable with the earliest RetryAt; with
// WithWaitForRecovery the call waits and succeeds, never past its deadline.
func TestUnavailableAndWaitForRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{fail: firstN(1, headerErr{apiErr(429, nil, "slow down"), http.Header{"Retry-After": {"20"}}})}
		b := &fakeClient{fail: firstN(1, apiErr(429, nil, "boom"))}
		p := newPool(t, members(a, b), failover.WithCooldowns(exact()))
		start := time.Now()

		_, err := failover.Do(ctx, p, call)
		var fe *failover.Error
		require.ErrorAs(t, err, &fe)
		assert.ErrorIs(t, err, failover.ErrExhausted)
		require.Len(t, fe.Attempts, 2)
		assert.Equal(t, failover.ReasonRateLimit, fe.Attempts[0].Reason)
		assert.Equal(t, failover.ReasonRateLimit, fe.Attempts[1].Reason)
		var ae *openai.APIError
		assert.ErrorAs(t, err, &ae)

		_, err = failover.Do(ctx, p, call)
		require.ErrorAs(t, err, &fe)
		assert.ErrorIs(t, err, failover.ErrUnavailable)
		assert.Equal(t, start.Add(5*time.Second), fe.RetryAt, "b recovers first")
		require.Len(t, fe.Attempts, 2)
		for _, at := range fe.Attempts {
			assert.True(t, at.Skipped)
			assert.ErrorIs(t, at.Err, failover.ErrCoolingDown)
		}
		assert.Equal(t, failover.ReasonRateLimit, fe.Attempts[0].Reason)
		assert.Equal(t, failover.ReasonRateLimit, fe.Attempts[1].Reason, "a rate limit is never probed early")

		// A deadline before the recovery: no wait at all.
		wp := newPool(t, members(a, b), failover.WithWaitForRecovery(time.Minute))
		require.NoError(t, wp.Update(members(a, b)))
		a.calls.Store(0)
		b.calls.Store(0)
		a.fail = firstN(1, apiErr(429, nil, "slow down"))
		b.fail = firstN(1, apiErr(429, nil, "slow down"))
		_, err = failover.Do(ctx, wp, call) // both cool about 5 s
		require.Error(t, err)
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		before := time.Now()
		_, err = failover.Do(dctx, wp, call)
		assert.ErrorIs(t, err, failover.ErrUnavailable)
		assert.Equal(t, before, time.Now(), "must not wait when the recovery is past the deadline")

		// Enough time: the call waits for the earliest recovery and succeeds.
		got, err := failover.Do(ctx, wp, call)
		require.NoError(t, err)
		assert.Contains(t, []string{"a", "b"}, got)
		assert.InDelta(t, 5*time.Second, time.Since(before), float64(time.Second+time.Millisecond))
	})
}

// 6. 50 concurrent calls when a cooldown ends: exactly one reaches the
// recovering member.
func TestSingleProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{fail: firstN(1, apiErr(429, nil, "rate limited")), delay: time.Second}
		b := &fakeClient{delay: time.Second}
		p := newPool(t, members(a, b), failover.WithCooldowns(exact()))
		_, err := failover.Do(ctx, p, call)
		require.NoError(t, err)
		time.Sleep(5 * time.Second)

		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				_, err := failover.Do(ctx, p, call)
				assert.NoError(t, err)
			})
		}
		synctest.Wait()
		assert.Equal(t, failover.Probing, status(t, p, "a").State)
		wg.Wait()
		assert.EqualValues(t, 2, a.calls.Load(), "the first failure and exactly one probe")
		assert.EqualValues(t, 50, b.calls.Load())
		assert.Equal(t, failover.Active, status(t, p, "a").State)
	})
}

// A probe with no verdict (the caller gave up) frees the slot: the next
// call probes.
func TestProbeWithoutVerdictReleasesSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{fail: firstN(1, apiErr(429, nil, "rate limited"))}
		p := newPool(t, members(a, &fakeClient{}), failover.WithCooldowns(exact()))
		_, _ = failover.Do(ctx, p, call)
		time.Sleep(5 * time.Second)

		a.delay = time.Minute
		cctx, cancel := context.WithCancel(ctx)
		go func() { time.Sleep(time.Second); cancel() }()
		_, err := failover.Do(cctx, p, call)
		assert.ErrorIs(t, err, context.Canceled)
		assert.EqualValues(t, 2, a.calls.Load())
		assert.Equal(t, failover.Active, status(t, p, "a").State, "window over, slot free")

		a.delay = 0
		got, err := failover.Do(ctx, p, call)
		require.NoError(t, err)
		assert.Equal(t, "a", got)
	})
}

// 7. Ten concurrent 429s on one member escalate its level once.
func TestConcurrentFailuresEscalateOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{delay: time.Second, fail: always(apiErr(429, nil, "rate limited"))}
		p := newPool(t, members(a, &fakeClient{}), failover.WithCooldowns(exact()))
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				_, err := failover.Do(ctx, p, call)
				assert.NoError(t, err)
			})
		}
		wg.Wait()
		assert.EqualValues(t, 10, a.calls.Load())
		st := status(t, p, "a")
		assert.Equal(t, 5*time.Second, time.Until(st.Until), "level 1, not 10")
		assert.EqualValues(t, 10, st.Failures)

		// The probe after the window escalates to level 2, not 11.
		time.Sleep(5 * time.Second)
		a.delay = 0
		_, err := failover.Do(ctx, p, call)
		require.NoError(t, err)
		assert.Equal(t, 10*time.Second, time.Until(status(t, p, "a").Until))
	})
}

// 8. A Retry-After of 30 s is a floor above the 5 s base.
func TestRetryAfterIsFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		err429 := headerErr{apiErr(429, nil, "rate limited"), http.Header{"Retry-After": {"30"}}}
		a := &fakeClient{fail: firstN(1, err429)}
		p := newPool(t, members(a, &fakeClient{}))
		_, err := failover.Do(ctx, p, call)
		require.NoError(t, err)
		assert.Equal(t, 30*time.Second, time.Until(status(t, p, "a").Until))
		time.Sleep(29 * time.Second)
		got, _ := failover.Do(ctx, p, call)
		assert.Equal(t, "b", got)
		time.Sleep(time.Second)
		got, _ = failover.Do(ctx, p, call)
		assert.Equal(t, "a", got)
	})
}

// 9. The caller cancels during an attempt: Do returns at once with the
// context error and the member is not penalised.
func TestCallerCancelDoesNotPenalise(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{delay: time.Hour}
		b := &fakeClient{}
		p := newPool(t, members(a, b))
		cctx, cancel := context.WithCancel(ctx)
		go func() { time.Sleep(time.Second); cancel() }()
		start := time.Now()
		_, err := failover.Do(cctx, p, call)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, time.Second, time.Since(start))
		assert.EqualValues(t, 0, b.calls.Load(), "no failover after the caller gave up")
		st := status(t, p, "a")
		assert.Equal(t, failover.Active, st.State)
		assert.Zero(t, st.Failures)
		assert.Zero(t, st.InFlight)
	})
}

// An attempt timeout is a timeout: it fails over and cools the member.
func TestAttemptTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{delay: time.Hour}
		p := newPool(t, members(a, &fakeClient{}), failover.WithAttemptTimeout(10*time.Second))
		start := time.Now()
		got, err := failover.Do(ctx, p, call)
		require.NoError(t, err)
		assert.Equal(t, "b", got)
		assert.Equal(t, 10*time.Second, time.Since(start))
		assert.Equal(t, failover.ReasonTimeout, status(t, p, "a").Reason)
	})
}

// 10. A primary that fails every other call does not flap: with stickiness
// the traffic stays on the fallback for the configured time after each
// failover, and the backoff grows with each failure because the primary
// never stays healthy for as long as its last window.
func TestStickinessDampsFlapping(t *testing.T) {
	run := func(t *testing.T, stickiness time.Duration) (callsA []time.Time, windows []time.Duration) {
		a := &fakeClient{}
		a.fail = func(n int64) error {
			callsA = append(callsA, time.Now())
			if n%2 == 1 {
				return apiErr(503, nil, "overloaded")
			}
			return nil
		}
		var ev events
		p := newPool(t, members(a, &fakeClient{}), failover.WithCooldowns(exact()),
			failover.WithStickiness(stickiness), failover.WithObserver(ev.observe))
		for range 30 * 60 { // one call a second for 30 minutes
			_, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
			time.Sleep(time.Second)
		}
		for _, e := range ev.all {
			if e.Member == "a" && e.Kind == failover.EventCooldown {
				windows = append(windows, e.Until.Sub(callsA[len(windows)*2]))
			}
		}
		return callsA, windows
	}
	synctest.Test(t, func(t *testing.T) {
		calls, windows := run(t, 10*time.Minute)
		assert.Equal(t, []time.Duration{5 * time.Second, 20 * time.Second, 80 * time.Second}, windows)
		// After each failure, a is not called again for the stickiness period
		// or its window, whichever is longer.
		for i := 0; i+1 < len(calls); i += 2 {
			gap := calls[i+1].Sub(calls[i])
			assert.GreaterOrEqual(t, gap, max(10*time.Minute, windows[i/2]), "failure %d", i/2)
		}
		sticky := len(calls)

		calls, windows = run(t, 0)
		// Each relapse right after a recovery quadruples the window, past
		// the transient cap of 5 min, up to an hour.
		assert.Equal(t, []time.Duration{5 * time.Second, 20 * time.Second, 80 * time.Second, 320 * time.Second,
			1280 * time.Second, time.Hour}, windows[:6])
		assert.Less(t, 2*sticky, len(calls), "stickiness spares the flapping member")
		t.Logf("calls to the flapping primary in 30 min: %d with stickiness, %d without", sticky, len(calls))
	})
}

// 11a. Update keeps the state of a member that stays; removed members
// disappear; new ones start Active.
func TestUpdateKeepsState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{fail: always(apiErr(401, nil, "bad key"))}
		b, c := &fakeClient{}, &fakeClient{}
		p := newPool(t, members(a, b), failover.WithCooldowns(exact()))
		_, _ = failover.Do(ctx, p, call)
		until := status(t, p, "a").Until

		ms := members(a, b, c)
		ms[1].Name = "b2" // b removed, b2 added
		require.NoError(t, p.Update(ms))
		st := p.Status()
		require.Len(t, st, 3)
		assert.Equal(t, []string{"a", "b2", "c"}, []string{st[0].Name, st[1].Name, st[2].Name})
		assert.Equal(t, until, st[0].Until, "a keeps its cooldown")
		assert.Equal(t, failover.CoolingDown, st[0].State)
		assert.Equal(t, failover.Active, st[1].State)
		assert.ErrorIs(t, p.Enable("b"), failover.ErrUnknownMember)

		// Invalid input changes nothing.
		require.ErrorIs(t, p.Update(nil), failover.ErrInvalid)
		assert.Len(t, p.Status(), 3)
	})
}

// 11b. Priority tiers serve the cheap tier first; RoundRobin spreads calls
// by the expected counts (Weighted draws at random: strategies_test.go).
func TestStrategies(t *testing.T) {
	tiered := func() ([]*fakeClient, []failover.Member[*fakeClient]) {
		cs := []*fakeClient{{}, {}, {}, {}}
		ms := members(cs...)
		ms[0].Priority, ms[1].Priority, ms[2].Priority, ms[3].Priority = 0, 0, 0, 1
		ms[0].Weight, ms[1].Weight, ms[2].Weight = 3, 1, 0
		return cs, ms
	}
	for _, tc := range []struct {
		strategy failover.Strategy
		want     []int64
		order    string // first calls
	}{
		{failover.Ordered, []int64{100, 0, 0, 0}, "aaaaa"},
		{failover.RoundRobin, []int64{34, 33, 33, 0}, "abcab"},
		{failover.LeastInFlight, []int64{100, 0, 0, 0}, "aaaaa"},
	} {
		t.Run(tc.strategy.String(), func(t *testing.T) {
			cs, ms := tiered()
			p := newPool(t, ms, failover.WithStrategy(tc.strategy))
			order := ""
			for range 100 {
				got, err := failover.Do(ctx, p, call)
				require.NoError(t, err)
				if len(order) < 5 {
					order += got
				}
			}
			assert.Equal(t, tc.order, order)
			for i, c := range cs {
				assert.Equal(t, tc.want[i], c.calls.Load(), "member %d", i)
			}
		})
	}
}

// The cheap tier is used until it fails; then the fallback tier serves.
func TestTierFallback(t *testing.T) {
	cs := []*fakeClient{{fail: always(apiErr(429, nil, "x"))}, {fail: always(apiErr(402, nil, "x"))}, {}}
	ms := members(cs...)
	ms[0].Priority, ms[1].Priority, ms[2].Priority = 0, 0, 5
	p := newPool(t, ms, failover.WithStrategy(failover.RoundRobin))
	got, err := failover.Do(ctx, p, call)
	require.NoError(t, err)
	assert.Equal(t, "c", got)
	assert.EqualValues(t, 1, cs[0].calls.Load())
	assert.EqualValues(t, 1, cs[1].calls.Load())
}

func TestLeastInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cs := []*fakeClient{{delay: time.Second}, {delay: time.Second}, {delay: time.Second}}
		ms := members(cs...)
		for i := range ms {
			ms[i].Priority = 0
		}
		p := newPool(t, ms, failover.WithStrategy(failover.LeastInFlight))
		var wg sync.WaitGroup
		for range 9 {
			wg.Go(func() { _, _ = failover.Do(ctx, p, call) })
			synctest.Wait()
		}
		wg.Wait()
		for i, c := range cs {
			assert.EqualValues(t, 3, c.calls.Load(), "member %d", i)
		}
	})
}

func TestMaxAttempts(t *testing.T) {
	e := apiErr(500, nil, "boom")
	cs := []*fakeClient{{fail: always(e)}, {fail: always(e)}, {}}
	p := newPool(t, members(cs...), failover.WithMaxAttempts(2))
	_, err := failover.Do(ctx, p, call)
	var fe *failover.Error
	require.ErrorAs(t, err, &fe)
	assert.ErrorIs(t, err, failover.ErrExhausted)
	assert.Len(t, fe.Attempts, 2)
	assert.EqualValues(t, 0, cs[2].calls.Load())
}

// A panic in fn propagates and leaves no in-flight count or probe slot held.
func TestPanicLeavesPoolConsistent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{fail: firstN(1, apiErr(429, nil, "x"))}
		p := newPool(t, members(a, &fakeClient{}), failover.WithCooldowns(exact()))
		_, _ = failover.Do(ctx, p, call)
		time.Sleep(5 * time.Second)
		boom := func(ctx context.Context, m failover.Member[*fakeClient]) (string, error) { panic("boom " + m.Name) }
		assert.PanicsWithValue(t, "boom a", func() { _, _ = failover.Do(ctx, p, boom) }, "the probe panics")
		st := status(t, p, "a")
		assert.Zero(t, st.InFlight)
		got, err := failover.Do(ctx, p, call)
		require.NoError(t, err)
		assert.Equal(t, "a", got, "the probe slot was released")
		assert.Zero(t, status(t, p, "a").InFlight)
	})
}

func TestEnableDisableReport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := &fakeClient{}, &fakeClient{}
		p := newPool(t, members(a, b), failover.WithCooldowns(exact()))
		require.NoError(t, p.Disable("a"))
		got, _ := failover.Do(ctx, p, call)
		assert.Equal(t, "b", got)
		assert.Equal(t, failover.Disabled, status(t, p, "a").State)
		require.NoError(t, p.Enable("a"))
		got, _ = failover.Do(ctx, p, call)
		assert.Equal(t, "a", got)
		assert.ErrorIs(t, p.Disable("nope"), failover.ErrUnknownMember)

		// A stream that broke after its first chunk is reported.
		midStream := &openai.APIError{Type: "server_error", Message: "The server had an error while processing your request."}
		p.Report("a", midStream)
		st := status(t, p, "a")
		assert.Equal(t, failover.CoolingDown, st.State)
		assert.Equal(t, failover.ReasonServer, st.Reason)
		assert.Equal(t, 5*time.Second, time.Until(st.Until))
		// A second report from a call of the same window escalates nothing.
		p.Report("a", midStream)
		assert.Equal(t, 5*time.Second, time.Until(status(t, p, "a").Until))
		p.Report("a", nil)
		assert.Equal(t, failover.CoolingDown, status(t, p, "a").State, "a stale success does not end a window")
		p.Report("nope", nil)
	})
}

// The observer runs outside the pool's locks: it may call the pool.
func TestObserverMayCallPool(t *testing.T) {
	var p *failover.Pool[*fakeClient]
	seen := 0
	p = newPool(t, members(&fakeClient{fail: always(apiErr(500, nil, "x"))}, &fakeClient{}),
		failover.WithObserver(func(failover.Event) { seen++; _ = p.Status() }))
	_, err := failover.Do(ctx, p, call)
	require.NoError(t, err)
	assert.Equal(t, 2, seen) // attempt failed, cooldown
}

func TestDoBadInput(t *testing.T) {
	var nilPool *failover.Pool[*fakeClient]
	_, err := failover.Do(ctx, nilPool, call)
	assert.ErrorIs(t, err, failover.ErrNilPool)
	p := newPool(t, members(&fakeClient{}))
	_, err = failover.Do[*fakeClient, string](ctx, p, nil)
	assert.ErrorIs(t, err, failover.ErrInvalid)
	//lint:ignore SA1012 checking that a nil context is an error, not a panic
	_, err = failover.Do(nil, p, call) //nolint:staticcheck
	assert.ErrorIs(t, err, failover.ErrInvalid)
	assert.ErrorIs(t, nilPool.Enable("a"), failover.ErrNilPool)
	assert.Nil(t, nilPool.Status())
	assert.True(t, errors.Is(nilPool.Update(nil), failover.ErrNilPool))
}

// Callers waiting for a recovery do not spin while the single probe runs:
// they wake when it ends and then all succeed on the recovered member.
func TestWaitersFollowTheProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{fail: firstN(1, apiErr(429, nil, "rate limited"))}
		p := newPool(t, members(a), failover.WithCooldowns(exact()), failover.WithWaitForRecovery(time.Minute))
		_, err := failover.Do(ctx, p, call)
		require.ErrorIs(t, err, failover.ErrExhausted)
		a.delay = time.Second
		start := time.Now()
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				got, err := failover.Do(ctx, p, call)
				assert.NoError(t, err)
				assert.Equal(t, "a", got)
			})
		}
		time.Sleep(5*time.Second + time.Second/2)
		assert.Equal(t, failover.Probing, status(t, p, "a").State)
		assert.EqualValues(t, 2, a.calls.Load(), "one probe while the others wait")
		wg.Wait()
		assert.EqualValues(t, 21, a.calls.Load())
		assert.Equal(t, 7*time.Second, time.Since(start), "5 s window, 1 s probe, 1 s call")
	})
}

// Ten consecutive successes after a recovery prove the member healthy: its
// next failure starts again at the base window. A failure sooner is a
// relapse: the backoff continues, twice as fast.
func TestBackoffResetsAfterSteadySuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fail := apiErr(503, nil, "boom")
		a := &fakeClient{fail: func(n int64) error {
			if n == 1 || n == 12 || n == 14 {
				return fail
			}
			return nil
		}}
		p := newPool(t, members(a, &fakeClient{}), failover.WithCooldowns(exact()))
		_, _ = failover.Do(ctx, p, call) // call 1 fails: 5 s
		time.Sleep(5 * time.Second)
		for range 11 { // the probe (2) and calls 3–11 succeed; call 12 fails
			_, _ = failover.Do(ctx, p, call)
		}
		assert.Equal(t, 5*time.Second, time.Until(status(t, p, "a").Until), "level forgotten after 10 successes")
		time.Sleep(5 * time.Second)
		for range 2 { // the probe (13) succeeds, call 14 fails right after
			_, _ = failover.Do(ctx, p, call)
		}
		assert.Equal(t, 20*time.Second, time.Until(status(t, p, "a").Until), "a relapse: level 1 → 3")
	})
}
