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
