package failover_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llmfailover/failover"
)

type hookKey struct{}

// TestHooksNestAndReport checks that attempts run under the call hook's
// context, in order, with their reasons, and that two WithHooks and two
// WithObserver options all run.
func TestHooksNestAndReport(t *testing.T) {
	var mu sync.Mutex
	var log []string
	add := func(s string) { mu.Lock(); log = append(log, s); mu.Unlock() }
	hooks := func(tag string) failover.Hooks {
		return failover.Hooks{
			Call: func(ctx context.Context) (context.Context, func(error)) {
				add(tag + " call")
				return context.WithValue(ctx, hookKey{}, tag), func(err error) { add(fmt.Sprintf("%s end %v", tag, err == nil)) }
			},
			Attempt: func(ctx context.Context, member string, n int) (context.Context, func(failover.AttemptEnd)) {
				add(fmt.Sprintf("%s attempt %s %d under %v", tag, member, n, ctx.Value(hookKey{})))
				return ctx, func(e failover.AttemptEnd) {
					add(fmt.Sprintf("%s done %s %d %q cooled=%v", tag, e.Member, e.N, e.Reason, !e.Until.IsZero()))
				}
			},
		}
	}
	var events [2]int
	p, err := failover.New([]failover.Member[string]{{Name: "bad", Client: "401"}, {Name: "busy", Client: "429"}, {Name: "ok", Client: ""}},
		failover.WithHooks(hooks("a")), failover.WithHooks(hooks("b")),
		failover.WithObserver(func(failover.Event) { events[0]++ }), failover.WithObserver(func(failover.Event) { events[1]++ }))
	require.NoError(t, err)
	out, err := failover.Do(context.Background(), p, func(ctx context.Context, m failover.Member[string]) (string, error) {
		assert.Equal(t, "b", ctx.Value(hookKey{}), "fn runs under the innermost hook's context")
		switch m.Client {
		case "401":
			return "", sdkErr{401}
		case "429":
			return "", sdkErr{429}
		}
		return m.Name, nil
	})
	require.NoError(t, err)
	assert.Equal(t, "ok", out)
	assert.Equal(t, []string{
		"a call", "b call",
		"a attempt bad 1 under b", "b attempt bad 1 under b", `b done bad 1 "auth" cooled=true`, `a done bad 1 "auth" cooled=true`,
		"a attempt busy 2 under b", "b attempt busy 2 under b", `b done busy 2 "rate_limit" cooled=true`, `a done busy 2 "rate_limit" cooled=true`,
		"a attempt ok 3 under b", "b attempt ok 3 under b", `b done ok 3 "" cooled=false`, `a done ok 3 "" cooled=false`,
		"b end true", "a end true",
	}, log)
	assert.Equal(t, events[0], events[1])
	assert.Positive(t, events[0])
}

// TestHooksPanic checks that a panic in fn ends the attempt and the call
// with ErrPanicked and leaves the member free.
func TestHooksPanic(t *testing.T) {
	var ends []error
	p, err := failover.New([]failover.Member[string]{{Name: "a", Client: "x", Limits: failover.Limits{MaxInFlight: 1}}},
		failover.WithHooks(failover.Hooks{
			Call: func(ctx context.Context) (context.Context, func(error)) {
				return ctx, func(err error) { ends = append(ends, err) }
			},
			Attempt: func(ctx context.Context, _ string, _ int) (context.Context, func(failover.AttemptEnd)) {
				return ctx, func(e failover.AttemptEnd) { ends = append(ends, e.Err) }
			},
		}))
	require.NoError(t, err)
	assert.Panics(t, func() {
		_, _ = failover.Do(context.Background(), p, func(context.Context, failover.Member[string]) (int, error) { panic("boom") })
	})
	require.Len(t, ends, 2)
	assert.True(t, errors.Is(ends[0], failover.ErrPanicked))
	assert.True(t, errors.Is(ends[1], failover.ErrPanicked))
	assert.Equal(t, 0, p.Status()[0].InFlight)
	_, err = failover.Do(context.Background(), p, func(context.Context, failover.Member[string]) (int, error) { return 1, nil })
	assert.NoError(t, err)
}

// BenchmarkDoHooks is the healthy path with no-op hooks.
func BenchmarkDoHooks(b *testing.B) {
	p := benchPool(b, 4, failover.WithHooks(failover.Hooks{
		Call: func(ctx context.Context) (context.Context, func(error)) { return ctx, func(error) {} },
		Attempt: func(ctx context.Context, _ string, _ int) (context.Context, func(failover.AttemptEnd)) {
			return ctx, func(failover.AttemptEnd) {}
		},
	}))
	benchDo(b, p)
}

// TestHooksHedged checks the attempt hooks of a hedged call: the slow
// first attempt ends lost, the hedge that served ends hedged.
func TestHooksHedged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var ends []failover.AttemptEnd
		p, err := failover.New([]failover.Member[string]{{Name: "slow", Client: "slow"}, {Name: "fast", Client: "fast"}},
			failover.WithHedge(time.Second),
			failover.WithHooks(failover.Hooks{Attempt: func(ctx context.Context, _ string, _ int) (context.Context, func(failover.AttemptEnd)) {
				return ctx, func(e failover.AttemptEnd) { mu.Lock(); ends = append(ends, e); mu.Unlock() }
			}}))
		require.NoError(t, err)
		upstream := map[string]int{}
		out, err := failover.Do(context.Background(), p, func(ctx context.Context, m failover.Member[string]) (string, error) {
			mu.Lock()
			upstream[m.Name]++
			mu.Unlock()
			if m.Client == "slow" {
				<-ctx.Done()
				return "", ctx.Err()
			}
			return m.Name, nil
		})
		require.NoError(t, err)
		assert.Equal(t, "fast", out)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, map[string]int{"slow": 1, "fast": 1}, upstream)
		require.Len(t, ends, 2)
		assert.Equal(t, "fast", ends[0].Member)
		assert.True(t, ends[0].Hedged)
		assert.NoError(t, ends[0].Err)
		assert.Equal(t, time.Duration(0), ends[0].Duration, "fake time: the hedge answers at once")
		assert.Equal(t, "slow", ends[1].Member)
		assert.True(t, ends[1].Lost)
		assert.Equal(t, 1, ends[1].N)
		assert.Equal(t, 0, p.Status()[0].InFlight+p.Status()[1].InFlight)
	})
}

// The Pool hook hears the new pool's Status once, from New; Update does
// not call it again, and the Status it holds follows the pool.
func TestPoolHook(t *testing.T) {
	var status []func() []failover.Status
	p, err := failover.New([]failover.Member[string]{{Name: "a", Client: "x"}},
		failover.WithHooks(failover.Hooks{Pool: func(s func() []failover.Status) { status = append(status, s) }}),
		failover.WithHooks(failover.Hooks{Pool: func(s func() []failover.Status) { status = append(status, s) }}))
	require.NoError(t, err)
	require.Len(t, status, 2, "both hooks, once each")
	require.NoError(t, p.Update([]failover.Member[string]{{Name: "a", Client: "x"}, {Name: "b", Client: "y"}}))
	require.Len(t, status, 2, "Update calls no hook")
	require.NoError(t, p.Disable("b"))
	st := status[0]()
	require.Len(t, st, 2)
	assert.Equal(t, failover.Disabled, st[1].State)
}
