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
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A primary that fails every other call with a 500 is benched, default
// Blips and all: its failure rate passes blipRate at its third failure
// (regression: it kept all its traffic).
func TestAlternatingServerErrorsAreBenched(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cd := failover.DefaultCooldowns()
		cd.Transient.Jitter = 0
		a := &fakeClient{fail: func(n int64) error {
			if n%2 == 0 {
				return apiErr(500, nil, "The server had an error")
			}
			return nil
		}}
		b := &fakeClient{}
		p := newPool(t, members(a, b), failover.WithCooldowns(cd))
		for range 600 { // 1 minute at 10 calls/s
			_, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("a: %d calls (%d failed), b: %d", a.calls.Load(), status(t, p, "a").Failures, b.calls.Load())
		assert.Less(t, a.calls.Load(), int64(100), "a 50%%-failing primary keeps all its traffic")
	})
}

// A hint that extends a hint-less window (a call already in flight answers
// 503 with Retry-After) stops last-resort probes until the hint's end
// (regression: they went on once a second).
func TestHintExtensionStopsEarlyProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cd := failover.DefaultCooldowns()
		cd.Transient.Jitter = 0
		cd.Blips = 0
		g1, g2 := make(chan struct{}), make(chan struct{})
		a := &fakeClient{}
		a.fail = func(n int64) error {
			switch n {
			case 1:
				<-g1
				return apiErr(503, nil, "overloaded") // no hint: 5 s window
			case 2:
				<-g2
				return headerErr{apiErr(503, nil, "overloaded"), http.Header{"Retry-After": {"60"}}}
			}
			return nil // the provider would serve, but asked for 60 s
		}
		p := newPool(t, members(a))
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _, _ = failover.Do(ctx, p, call) }()
		go func() { defer wg.Done(); _, _ = failover.Do(ctx, p, call) }()
		synctest.Wait() // both in flight on a, Active
		close(g1)
		synctest.Wait()
		close(g2)
		wg.Wait()
		st := status(t, p, "a")
		require.Equal(t, failover.CoolingDown, st.State)
		require.Equal(t, 60*time.Second, time.Until(st.Until), "the hint extended the window")
		time.Sleep(2 * time.Second)
		before := a.calls.Load()
		_, err := failover.Do(ctx, p, call)
		assert.ErrorIs(t, err, failover.ErrUnavailable)
		assert.Equal(t, before, a.calls.Load(), "an early probe inside a provider's Retry-After")
	})
}

// A last-resort probe answered with a 429 without a hint stops later
// last-resort probes (regression: the window kept its reason, server, and
// every second another early probe hit the rate-limited provider).
func TestEarlyProbe429StopsEarlyProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cd := failover.DefaultCooldowns()
		cd.Transient.Jitter = 0
		cd.Blips = 0
		a := &fakeClient{fail: func(n int64) error {
			if n == 1 {
				return apiErr(500, nil, "boom")
			}
			return apiErr(429, nil, "Rate limit reached")
		}}
		p := newPool(t, members(a))
		_, _ = failover.Do(ctx, p, call) // 500: 5 s window
		for range 4 {
			time.Sleep(time.Second)
			_, _ = failover.Do(ctx, p, call)
		}
		t.Logf("reason %s, calls %d", status(t, p, "a").Reason, a.calls.Load())
		assert.LessOrEqual(t, a.calls.Load(), int64(2), "early probes after the provider answered 429")
	})
}

var _ = context.Background
var _ = errors.New
