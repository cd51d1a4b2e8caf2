package failover_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llmfailover/failover"
)

// With WithHedge, a call the retry budget stops fails as it does without
// hedging: fast, with its first attempt's error (not an *Error that says
// every attempt failed), and one EventExhausted carrying ErrRetryBudget,
// even when a hedge was refused before the failure.
func TestHedgedRetryBudgetFailsFast(t *testing.T) {
	for _, slow := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			first := &fakeClient{fail: always(apiErr(503, nil, "overloaded"))}
			if slow {
				first.delay = 3 * time.Second // the hedge timer fires first, and the budget refuses the hedge
			}
			second := &fakeClient{}
			var ev events
			p := newPool(t, members(first, second), failover.WithCooldowns(exact()), failover.WithHedge(time.Second),
				failover.WithRetryBudget(0, 0), failover.WithObserver(ev.observe))
			_, err := failover.Do(context.Background(), p, call)
			require.Error(t, err)
			var ae *openai.APIError
			assert.True(t, errors.As(err, &ae), "the first attempt's error: %v", err)
			assert.False(t, errors.Is(err, failover.ErrExhausted), "not an exhausted call: %v", err)
			exhausted := 0
			for _, e := range ev.all {
				if e.Kind == failover.EventExhausted {
					exhausted++
					assert.ErrorIs(t, e.Err, failover.ErrRetryBudget)
				}
			}
			assert.Equal(t, 1, exhausted, "slow=%v", slow)
			assert.EqualValues(t, 1, first.calls.Load())
			assert.Zero(t, second.calls.Load(), "the budget held the failover back")
		})
	}
}
