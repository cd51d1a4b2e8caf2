package failover_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A slow primary (5 s) and a fast secondary (100 ms), hedged after 1 s: the
// call returns after 1.1 s, the primary's call is canceled, and the primary
// is not penalised.
func TestHedge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var canceled atomic.Bool
		fn := func(ctx context.Context, m failover.Member[*fakeClient]) (string, error) {
			d := 100 * time.Millisecond
			if m.Name == "a" {
				d = 5 * time.Second
			}
			select {
			case <-time.After(d):
				return m.Name, nil
			case <-ctx.Done():
				if m.Name == "a" {
					canceled.Store(true)
				}
				return "", ctx.Err()
			}
		}
		var ev events
		p := newPool(t, members(&fakeClient{}, &fakeClient{}, &fakeClient{}), failover.WithHedge(time.Second), failover.WithObserver(ev.observe))
		start := time.Now()
		got, err := failover.Do(ctx, p, fn)
		require.NoError(t, err)
		assert.Equal(t, "b", got)
		assert.Equal(t, 1100*time.Millisecond, time.Since(start))
		synctest.Wait()
		assert.True(t, canceled.Load(), "the loser is canceled")
		st := p.Status()
		assert.Equal(t, failover.Active, st[0].State)
		assert.Zero(t, st[0].Failures)
		assert.Zero(t, st[0].InFlight)
		assert.EqualValues(t, 1, st[1].Hedged)
		assert.EqualValues(t, 0, st[2].Requests, "only one hedge was needed")
		assert.Equal(t, []failover.EventKind{failover.EventHedge}, ev.kinds("b"))

		// A fast failure still hands over at once, without waiting for the delay.
		p2 := newPool(t, members(&fakeClient{fail: always(apiErr(500, nil, "x"))}, &fakeClient{}), failover.WithHedge(time.Minute))
		start = time.Now()
		got, err = failover.Do(ctx, p2, call)
		require.NoError(t, err)
		assert.Equal(t, "b", got)
		assert.Zero(t, time.Since(start))

		// Every member fails: ErrExhausted with every attempt.
		bad := apiErr(503, nil, "down")
		p3 := newPool(t, members(&fakeClient{fail: always(bad), delay: 2 * time.Second}, &fakeClient{fail: always(bad)}), failover.WithHedge(time.Second))
		_, err = failover.Do(ctx, p3, call)
		var fe *failover.Error
		require.ErrorAs(t, err, &fe)
		assert.ErrorIs(t, err, failover.ErrExhausted)
		assert.Len(t, fe.Attempts, 2)
		for _, s := range p3.Status() {
			assert.Zero(t, s.InFlight)
		}
	})
}

// The caller's cancellation ends a hedged call at once.
func TestHedgeCallerCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, members(&fakeClient{delay: time.Hour}, &fakeClient{delay: time.Hour}), failover.WithHedge(time.Second))
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := failover.Do(cctx, p, call)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		synctest.Wait()
		for _, s := range p.Status() {
			assert.Zero(t, s.InFlight)
			assert.Zero(t, s.Failures)
			assert.Equal(t, failover.Active, s.State)
		}
	})
}
