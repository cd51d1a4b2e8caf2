package failover_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tierOf is n members of one tier, with clients of their own.
func tierOf(n int) ([]*fakeClient, []failover.Member[*fakeClient]) {
	cs := make([]*fakeClient, n)
	ms := make([]failover.Member[*fakeClient], n)
	for i := range cs {
		cs[i] = &fakeClient{}
		ms[i] = failover.Member[*fakeClient]{Name: fmt.Sprintf("m%d", i), Client: cs[i]}
	}
	return cs, ms
}

// within asserts that got of n calls is share of them, give or take tol.
func within(t *testing.T, got int64, n int, share, tol float64, what string) {
	t.Helper()
	f := float64(got) / float64(n)
	assert.True(t, math.Abs(f-share) <= tol, "%s: %.3f of the calls, want %.3f ± %.3f", what, f, share, tol)
}

// Weighted spreads calls in proportion to Weight: 3:1 gives the first
// member 75 % of 10,000 calls, in a small tier and a large one, and the
// shares stay in proportion among the members that can serve.
func TestWeightedShares(t *testing.T) {
	const calls = 10000
	t.Run("3:1", func(t *testing.T) {
		cs, ms := tierOf(2)
		ms[0].Weight, ms[1].Weight = 3, 1
		p := newPool(t, ms, failover.WithStrategy(failover.Weighted))
		for range calls {
			_, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
		}
		within(t, cs[0].calls.Load(), calls, 0.75, 0.02, "weight 3")
		within(t, cs[1].calls.Load(), calls, 0.25, 0.02, "weight 1")
	})
	t.Run("1,024 members", func(t *testing.T) {
		// One member of weight 1,024 among 1,023 of weight 1 (and 0, which
		// counts as 1): half of the calls.
		cs, ms := tierOf(1024)
		ms[7].Weight = 1024
		ms[8].Weight = 0
		p := newPool(t, ms, failover.WithStrategy(failover.Weighted))
		for range calls {
			_, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
		}
		within(t, cs[7].calls.Load(), calls, 1024.0/2047, 0.02, "weight 1,024")
		var most int64
		for i, c := range cs {
			if i != 7 {
				most = max(most, c.calls.Load())
			}
		}
		assert.Less(t, most, int64(40), "a member of weight 1 (expected 4.9 calls)")
	})
	t.Run("among the ready", func(t *testing.T) {
		// 3:1:4 with the third disabled: 3:1 among the other two.
		cs, ms := tierOf(3)
		ms[0].Weight, ms[1].Weight, ms[2].Weight = 3, 1, 4
		p := newPool(t, ms, failover.WithStrategy(failover.Weighted))
		require.NoError(t, p.Disable("m2"))
		for range calls {
			_, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
		}
		within(t, cs[0].calls.Load(), calls, 0.75, 0.02, "weight 3")
		assert.Zero(t, cs[2].calls.Load(), "disabled")
	})
}

// On a virtual clock the draws replay: two pools make the same choices.
func TestWeightedReplaysOnVirtualClock(t *testing.T) {
	clock := func() time.Time { return time.Unix(1e9, 0) }
	order := func() string {
		_, ms := tierOf(64)
		for i := range ms {
			ms[i].Weight = i + 1
		}
		p := newPool(t, ms, failover.WithStrategy(failover.Weighted), failover.WithClock(clock))
		s := ""
		for range 50 {
			got, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
			s += got + " "
		}
		return s
	}
	assert.Equal(t, order(), order())
}

// Weighted and LeastInFlight in large tiers never choose a cooling or
// disabled member, and a tier where only one member is ready still finds
// it, at once and on the first call.
func TestDrawnStrategiesSkipUnready(t *testing.T) {
	for _, s := range []failover.Strategy{failover.Weighted, failover.LeastInFlight} {
		t.Run(s.String(), func(t *testing.T) {
			cs, ms := tierOf(1024)
			ms[5].Weight = 1 << 20 // the draws all but always fall on it
			cs[5].fail = always(apiErr(429, "rate_limit_exceeded", "Rate limit reached"))
			p := newPool(t, ms, failover.WithStrategy(s))
			for range 2000 {
				_, err := failover.Do(ctx, p, call)
				require.NoError(t, err)
			}
			assert.LessOrEqual(t, cs[5].calls.Load(), int64(1), "the cooling member")
			if cs[5].calls.Load() == 1 { // LeastInFlight draws two of 1,024: m5 may never come up
				assert.Equal(t, failover.CoolingDown, status(t, p, "m5").State)
			}

			for i := range ms {
				if i != 900 && i != 5 {
					require.NoError(t, p.Disable(ms[i].Name))
				}
			}
			before := cs[900].calls.Load()
			for range 100 {
				got, err := failover.Do(ctx, p, call)
				require.NoError(t, err)
				require.Equal(t, "m900", got)
			}
			assert.Equal(t, before+100, cs[900].calls.Load())
			assert.LessOrEqual(t, cs[5].calls.Load(), int64(1), "the cooling member")
		})
	}
}
