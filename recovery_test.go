package failover_test

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nth fails only the n-th call with err.
func nth(n int64, err error) func(int64) error {
	return func(i int64) error {
		if i == n {
			return err
		}
		return nil
	}
}

// A healthy member's isolated 500 is a blip: the next call probes it and
// it keeps its traffic; the fallback serves only the failed call.
func TestBlipKeepsTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeClient{fail: nth(3, apiErr(500, nil, "The server had an error"))}
		b := &fakeClient{}
		p := newPool(t, members(a, b))
		for range 10 {
			got, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
			assert.NotEmpty(t, got)
			time.Sleep(100 * time.Millisecond)
		}
		assert.EqualValues(t, 10, a.calls.Load())
		assert.EqualValues(t, 1, b.calls.Load(), "only the failed call")
		st := status(t, p, "a")
		assert.Equal(t, failover.Active, st.State)
		assert.EqualValues(t, 1, st.Failures)
	})
}

// Two failures in a row, a rate limit, a hint or a first call that fails
// cool at once.
func TestBlipsEndAtOnce(t *testing.T) {
	boom := apiErr(500, nil, "boom")
	for _, tc := range []struct {
		name   string
		fail   func(int64) error
		window time.Duration
	}{
		{"second 500 in a row", func(i int64) error {
			if i == 2 || i == 3 {
				return boom
			}
			return nil
		}, 5 * time.Second},
		{"429", nth(2, apiErr(429, nil, "Rate limit reached")), 5 * time.Second},
		{"500 with a hint", nth(2, headerErr{boom, http.Header{"Retry-After": {"30"}}}), 30 * time.Second},
		{"first call", nth(1, boom), 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cd := failover.DefaultCooldowns()
				cd.Transient.Jitter = 0
				a := &fakeClient{fail: tc.fail}
				p := newPool(t, members(a, &fakeClient{}), failover.WithCooldowns(cd))
				var last time.Time
				for range 3 {
					_, err := failover.Do(ctx, p, call)
					require.NoError(t, err)
					if st := status(t, p, "a"); st.State == failover.CoolingDown {
						last = st.Until
						break
					}
				}
				require.False(t, last.IsZero(), "a never cooled")
				assert.Equal(t, tc.window, time.Until(last))
			})
		})
	}
}

// A pool of one whose only member cooled on a hint-less 503 serves the
// next call: the call probes it early as a last resort.
func TestLastResortPoolOfOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ev events
		a := &fakeClient{fail: nth(1, apiErr(503, nil, "The engine is currently overloaded"))}
		p := newPool(t, members(a), failover.WithObserver(ev.observe))
		_, err := failover.Do(ctx, p, call)
		require.ErrorIs(t, err, failover.ErrExhausted)
		require.Equal(t, failover.CoolingDown, status(t, p, "a").State)
		time.Sleep(100 * time.Millisecond)
		got, err := failover.Do(ctx, p, call)
		require.NoError(t, err)
		assert.Equal(t, "a", got)
		assert.Equal(t, failover.Active, status(t, p, "a").State)
		assert.Equal(t, 1, ev.count(failover.EventProbe, "a"))
		assert.Equal(t, 1, ev.count(failover.EventRecovered, "a"))
	})
}

// Last-resort probes are one a second per member and one per call; a
// failed one leaves the window as it was; calls in between fail at once
// with no upstream call. Upstream calls never outnumber calls made.
func TestLastResortNoAmplification(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		down := apiErr(503, nil, "The engine is currently overloaded")
		a, b := &fakeClient{fail: always(down)}, &fakeClient{fail: always(down)}
		cd := failover.DefaultCooldowns()
		cd.Transient.Jitter = 0
		p := newPool(t, members(a, b), failover.WithCooldowns(cd))
		_, err := failover.Do(ctx, p, call) // both fail: windows of 5 s
		require.Error(t, err)
		until := status(t, p, "a").Until
		calls := 1
		for range 40 { // 4 s at 10 calls a second, inside the windows
			time.Sleep(100 * time.Millisecond)
			_, err := failover.Do(ctx, p, call)
			require.Error(t, err)
			calls++
		}
		upstream := a.calls.Load() + b.calls.Load()
		assert.LessOrEqual(t, upstream, int64(calls), "no more upstream calls than calls")
		assert.EqualValues(t, 1+4, a.calls.Load(), "the first call, then one probe a second (0.1, 1.1, 2.1, 3.1 s)")
		assert.EqualValues(t, 1+4, b.calls.Load(), "b: one look a second too (0.2, 1.2, 2.2, 3.2 s)")
		assert.Equal(t, until, status(t, p, "a").Until, "a failed early probe leaves the window")
	})
}

// A member cooling on a rate limit, or on a hint, is never probed early:
// the provider asked us to wait.
func TestLastResortRespectsRateLimitsAndHints(t *testing.T) {
	for name, err := range map[string]error{
		"429":           apiErr(429, nil, "Rate limit reached"),
		"503 with hint": headerErr{apiErr(503, nil, "overloaded"), http.Header{"Retry-After": {"10"}}},
		"401":           apiErr(401, "invalid_api_key", "Incorrect API key provided"),
		"quota":         apiErr(429, "insufficient_quota", "You exceeded your current quota"),
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := &fakeClient{fail: nth(1, err)}
				p := newPool(t, members(a))
				_, _ = failover.Do(ctx, p, call)
				time.Sleep(100 * time.Millisecond)
				_, got := failover.Do(ctx, p, call)
				assert.ErrorIs(t, got, failover.ErrUnavailable)
				assert.EqualValues(t, 1, a.calls.Load())
			})
		})
	}
}
