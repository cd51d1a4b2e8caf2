package failover_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
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
