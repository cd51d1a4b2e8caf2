package failover_test

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llmfailover/failover"
)

// A call that succeeds on a fallback counts a skip on each member it
// passed over, by cause: a disabled key, a cooling key, a key whose probe
// another call holds.
func TestSkipsOfSuccessfulCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{}
		b := &fakeClient{fail: firstN(1, apiErr(429, "rate_limit_exceeded", "Rate limit reached"))}
		c := &fakeClient{}
		p := newPool(t, members(a, b, c), failover.WithCooldowns(exact()))
		require.NoError(t, p.Disable("a"))

		got, err := failover.Do(context.Background(), p, call) // b fails with a 429, c serves
		require.NoError(t, err)
		assert.Equal(t, "c", got)
		for range 4 { // b cools: each call passes a and b over
			got, err = failover.Do(context.Background(), p, call)
			require.NoError(t, err)
			assert.Equal(t, "c", got)
		}
		assert.Equal(t, failover.Skips{Disabled: 5}, status(t, p, "a").Skipped)
		assert.Equal(t, failover.Skips{Cooling: 4}, status(t, p, "b").Skipped)
		assert.Equal(t, failover.Skips{}, status(t, p, "c").Skipped)
		assert.EqualValues(t, 1, b.calls.Load())

		// b's window ends: the next call probes it, slowly; a call made
		// meanwhile passes b over as probing.
		time.Sleep(time.Until(status(t, p, "b").Until) + time.Millisecond)
		b.delay = time.Second
		done := make(chan string)
		go func() {
			got, _ := failover.Do(context.Background(), p, call)
			done <- got
		}()
		synctest.Wait()
		got, err = failover.Do(context.Background(), p, call)
		require.NoError(t, err)
		assert.Equal(t, "c", got)
		assert.Equal(t, "b", <-done)
		assert.Equal(t, failover.Skips{Cooling: 4, Probing: 1}, status(t, p, "b").Skipped)
		assert.Equal(t, failover.Skips{Disabled: 7}, status(t, p, "a").Skipped)
		assert.EqualValues(t, 2, b.calls.Load())
	})
}

// Weighted counts a member its draws land on once a call: with the
// other member disabled and equal weights, about half the calls draw it
// first, and it serves none.
func TestSkipsWeighted(t *testing.T) {
	a, b := &fakeClient{}, &fakeClient{}
	ms := members(a, b)
	ms[1].Priority = 0
	p := newPool(t, ms, failover.WithStrategy(failover.Weighted))
	require.NoError(t, p.Disable("a"))
	const calls = 400
	for range calls {
		got, err := failover.Do(context.Background(), p, call)
		require.NoError(t, err)
		assert.Equal(t, "b", got)
	}
	skips := status(t, p, "a").Skipped.Disabled
	assert.InDelta(t, calls/2, float64(skips), calls*0.15, "skips %d", skips)
	assert.LessOrEqual(t, skips, uint64(calls), "at most once a call")
	assert.Zero(t, a.calls.Load())
}

// The Skip hook hears each member a call passed over, once per call, with
// the call's context and the cause; a panic in it reaches the caller and
// leaves the pool as it was.
func TestSkipHook(t *testing.T) {
	type callKey struct{}
	var heard []string
	panicking := false
	a, b, c := &fakeClient{}, &fakeClient{fail: always(apiErr(429, "rate_limit_exceeded", "Rate limit reached"))}, &fakeClient{}
	p := newPool(t, members(a, b, c), failover.WithCooldowns(exact()), failover.WithHooks(failover.Hooks{
		Call: func(ctx context.Context) (context.Context, func(error)) {
			return context.WithValue(ctx, callKey{}, "call"), func(error) {}
		},
		Skip: func(ctx context.Context, member string, cause error) {
			heard = append(heard, fmt.Sprintf("%v %s %v", ctx.Value(callKey{}), member, cause))
			if panicking {
				panic("skip hook")
			}
		},
	}))
	require.NoError(t, p.Disable("a"))
	for range 2 {
		got, err := failover.Do(context.Background(), p, call)
		require.NoError(t, err)
		assert.Equal(t, "c", got)
	}
	assert.Equal(t, []string{
		"call a " + failover.ErrDisabled.Error(), // b is tried and fails; the next selection counts a no more
		"call a " + failover.ErrDisabled.Error(), "call b " + failover.ErrCoolingDown.Error(),
	}, heard)
	assert.Equal(t, failover.Skips{Disabled: 2}, status(t, p, "a").Skipped)
	assert.Equal(t, failover.Skips{Cooling: 1}, status(t, p, "b").Skipped)

	panicking = true
	assert.PanicsWithValue(t, "skip hook", func() { _, _ = failover.Do(context.Background(), p, call) })
	panicking = false
	got, err := failover.Do(context.Background(), p, call)
	require.NoError(t, err)
	assert.Equal(t, "c", got)
	for _, s := range p.Status() {
		assert.Zero(t, s.InFlight, s.Name)
	}
	assert.EqualValues(t, 1, b.calls.Load())
	assert.EqualValues(t, 3, c.calls.Load())
}

// A hedged call counts a member it passes over once, though its hedge
// selects again.
func TestSkipsHedgedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b, c := &fakeClient{}, &fakeClient{delay: time.Minute}, &fakeClient{}
		p := newPool(t, members(a, b, c), failover.WithHedge(time.Second))
		require.NoError(t, p.Disable("a"))
		got, err := failover.Do(context.Background(), p, call)
		require.NoError(t, err)
		assert.Equal(t, "c", got, "the hedge served")
		synctest.Wait()
		assert.Equal(t, failover.Skips{Disabled: 1}, status(t, p, "a").Skipped)
		assert.EqualValues(t, 1, b.calls.Load())
		assert.EqualValues(t, 1, c.calls.Load())
	})
}
