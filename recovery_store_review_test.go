package failover_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/stretchr/testify/assert"
)

type countingStore struct {
	*failover.MemoryStore
	takes atomic.Int64
}

func (c *countingStore) Take(ctx context.Context, member string, l failover.Limits, tokens int, now time.Time) (bool, time.Time, error) {
	c.takes.Add(1)
	return c.MemoryStore.Take(ctx, member, l, tokens, now)
}

// A last-resort look at a limited member that does not qualify (it cools
// for a 429) asks the store for nothing (regression: every call made while
// it cooled spent one of its shared RPD slots with no upstream call, and
// the day's quota was gone before the window ended).
func TestEarlyLookSpendsNoSharedSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cd := failover.DefaultCooldowns()
		cd.Transient.Jitter = 0
		st := &countingStore{MemoryStore: failover.NewMemoryStore()}
		a := &fakeClient{fail: nth(1, apiErr(429, nil, "Rate limit reached"))}
		ms := members(a)
		ms[0].Limits = failover.Limits{RPD: 5}
		p := newPool(t, ms, failover.WithCooldowns(cd), failover.WithStore(st))
		_, _ = failover.Do(ctx, p, call) // 429: 5 s, no early probes
		for range 20 {
			_, err := failover.Do(ctx, p, call)
			assert.ErrorIs(t, err, failover.ErrUnavailable)
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("store Takes: %d, upstream calls: %d", st.takes.Load(), a.calls.Load())
		assert.EqualValues(t, 1, st.takes.Load(), "Takes for calls that never went upstream")
		time.Sleep(5 * time.Second) // the window is over; 4 of 5 calls are left today
		_, err := failover.Do(ctx, p, call)
		assert.NoError(t, err, "the day's shared quota was spent by phantom Takes")
	})
}

// With a Store, an outage of the only member is probed about once a
// second across two replicas, not once a second by each: the replica that
// learns of the outage from the store adopts the window, and only the one
// that saw the hint-less failure looks early.
func TestEarlyProbesAcrossReplicas(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := failover.NewMemoryStore()
		down := apiErr(503, nil, "upstream unavailable")
		a, b := &fakeClient{fail: always(down)}, &fakeClient{fail: always(down)}
		pa := newPool(t, []failover.Member[*fakeClient]{{Name: "m", Client: a}}, failover.WithStore(st))
		pb := newPool(t, []failover.Member[*fakeClient]{{Name: "m", Client: b}}, failover.WithStore(st))
		for range 2 { // each replica sees the outage itself
			_, _ = failover.Do(ctx, pa, call)
			_, _ = failover.Do(ctx, pb, call)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		before := a.calls.Load() + b.calls.Load()
		for range 10 { // ten seconds of calls on both replicas
			for range 5 {
				_, _ = failover.Do(ctx, pa, call)
				_, _ = failover.Do(ctx, pb, call)
			}
			time.Sleep(time.Second)
		}
		early := a.calls.Load() + b.calls.Load() - before
		t.Logf("upstream calls in 10 s of outage on 2 replicas: %d (a %d, b %d)", early, a.calls.Load(), b.calls.Load())
		assert.LessOrEqual(t, early, int64(12), "about one probe a second for the member, not one per replica")
		assert.Positive(t, early, "the outage is still probed")
	})
}
