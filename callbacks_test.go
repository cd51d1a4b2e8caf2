package failover_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mustPanic runs f and reports whether it panicked.
func mustPanic(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	f()
}

// panicOn is an observer that panics on the given event kind.
func panicOn(kind failover.EventKind) func(failover.Event) {
	return func(ev failover.Event) {
		if ev.Kind == kind {
			panic("observer: " + kind.String())
		}
	}
}

// assertSettled checks that no call holds any member.
func assertSettled(t *testing.T, p *failover.Pool[*fakeClient]) {
	t.Helper()
	for _, s := range p.Status() {
		assert.Zero(t, s.InFlight, "member %s in flight", s.Name)
		assert.NotEqual(t, failover.Probing, s.State, "member %s probing", s.Name)
	}
}

// An observer that panics on EventProbe: the panic reaches the caller, the
// probe slot is freed, and the next call after it probes the member again.
// Before the fix the member stayed Probing with InFlight 1 for good.
func TestObserverPanicOnProbe(t *testing.T) {
	for _, hedge := range []time.Duration{0, time.Second} {
		t.Run("hedge="+hedge.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var arm atomic.Bool
				obs := func(ev failover.Event) {
					if arm.Load() {
						panicOn(failover.EventProbe)(ev)
					}
				}
				a := &fakeClient{fail: firstN(1, apiErr(429, nil, "slow down"))}
				p := newPool(t, members(a, &fakeClient{}), failover.WithCooldowns(exact()),
					failover.WithObserver(obs), failover.WithHedge(hedge))
				_, err := failover.Do(ctx, p, call)
				require.NoError(t, err)
				time.Sleep(time.Minute) // past a's window
				arm.Store(true)
				mustPanic(t, func() { _, _ = failover.Do(ctx, p, call) })
				synctest.Wait()
				assertSettled(t, p)
				arm.Store(false)
				got, err := failover.Do(ctx, p, call)
				require.NoError(t, err)
				assert.Equal(t, "a", got, "a is probed again and recovers")
				assert.Equal(t, failover.Active, status(t, p, "a").State)
			})
		})
	}
}

// A classifier that panics: a MaxInFlight 2 member still serves after many
// panics. Before the fix each panic leaked one in-flight slot.
func TestClassifierPanicReleasesSlots(t *testing.T) {
	for _, hedge := range []time.Duration{0, time.Second} {
		t.Run("hedge="+hedge.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				boom := errors.New("boom")
				var fail atomic.Bool
				fail.Store(true)
				c := &fakeClient{fail: func(int64) error {
					if fail.Load() {
						return boom
					}
					return nil
				}}
				ms := members(c)
				ms[0].Limits.MaxInFlight = 2
				p := newPool(t, ms, failover.WithHedge(hedge), failover.WithClassifier(func(err error) (failover.Verdict, bool) {
					panic("classifier")
				}))
				for range 5 {
					mustPanic(t, func() { _, _ = failover.Do(ctx, p, call) })
				}
				synctest.Wait()
				assertSettled(t, p)
				mustPanic(t, func() { p.Report("a", boom) })
				assertSettled(t, p)
				fail.Store(false)
				got, err := failover.Do(ctx, p, call)
				require.NoError(t, err)
				assert.Equal(t, "a", got)
			})
		})
	}
}

// An observer that panics on EventAttemptFailed, and a log handler that
// panics: the member's cooldown and its group's are in place before any
// callback runs, so the panic leaves the pool as a quiet call would.
func TestCallbackPanicAfterFailure(t *testing.T) {
	quota := apiErr(429, "insufficient_quota", "You exceeded your current quota")
	for name, opt := range map[string]failover.Option{
		"observer": failover.WithObserver(panicOn(failover.EventAttemptFailed)),
		"logger":   failover.WithLogger(slog.New(panicHandler{})),
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, a2, b := &fakeClient{fail: always(quota)}, &fakeClient{}, &fakeClient{}
				ms := members(a, a2, b)
				ms[0].Group, ms[1].Group = "org", "org"
				ms[1].Priority = 0
				p := newPool(t, ms, failover.WithCooldowns(exact()), opt)
				mustPanic(t, func() { _, _ = failover.Do(ctx, p, call) })
				assertSettled(t, p)
				for _, n := range []string{"a", "b"} {
					s := status(t, p, n)
					assert.Equal(t, failover.CoolingDown, s.State, n)
					assert.Equal(t, failover.ReasonQuota, s.Reason, n)
					assert.False(t, s.Until.IsZero(), n)
				}
				assert.EqualValues(t, 1, a.calls.Load())
				assert.Zero(t, a2.calls.Load(), "its group partner is cooled with it, not called")
			})
		})
	}
}

// panicHandler is a slog.Handler whose Handle panics.
type panicHandler struct{}

func (panicHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (panicHandler) Handle(context.Context, slog.Record) error { panic("log handler") }
func (h panicHandler) WithAttrs([]slog.Attr) slog.Handler      { return h }
func (h panicHandler) WithGroup(string) slog.Handler           { return h }

// An observer that panics on EventHedge: the hedged attempt already owns
// its member, so the panic leaks nothing and the attempts are canceled.
func TestObserverPanicOnHedge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(t, members(&fakeClient{delay: time.Hour}, &fakeClient{delay: time.Hour}),
			failover.WithHedge(time.Second), failover.WithObserver(panicOn(failover.EventHedge)))
		mustPanic(t, func() { _, _ = failover.Do(ctx, p, call) })
		synctest.Wait()
		assertSettled(t, p)
	})
}

// A blocking observer holds only its own call: other calls on the pool go on.
func TestBlockingObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var once sync.Once
		obs := func(ev failover.Event) {
			if ev.Kind == failover.EventAttemptFailed {
				once.Do(func() { <-release })
			}
		}
		var n atomic.Int64
		a := &fakeClient{fail: func(int64) error {
			if n.Add(1) == 1 {
				return apiErr(503, nil, "once")
			}
			return nil
		}}
		p := newPool(t, members(a, &fakeClient{}), failover.WithObserver(obs), failover.WithCooldowns(exact()))
		blocked := make(chan error, 1)
		go func() { _, err := failover.Do(ctx, p, call); blocked <- err }()
		synctest.Wait()
		got, err := failover.Do(ctx, p, call)
		require.NoError(t, err)
		assert.Equal(t, "b", got, "a is cooling while the observer blocks")
		close(release)
		require.NoError(t, <-blocked)
		assertSettled(t, p)
	})
}

// closer is a result that records whether it was closed.
type closer struct {
	name   string
	closed atomic.Bool
}

func (c *closer) Close() error { c.closed.Store(true); return nil }

// The losers of a hedged call are closed: a stream left open goes on
// generating tokens upstream. That holds for a loser that succeeds after
// the winner, one that succeeds as the call is decided, and when the
// caller's context ends.
func TestHedgeClosesLosers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var made []*closer
		delays := map[string]time.Duration{"a": 3 * time.Second, "b": 1500 * time.Millisecond}
		fn := func(ctx context.Context, m failover.Member[*fakeClient]) (*closer, error) {
			time.Sleep(delays[m.Name]) // ignores ctx, as a stream that already opened
			c := &closer{name: m.Name}
			mu.Lock()
			made = append(made, c)
			mu.Unlock()
			return c, nil
		}
		p := newPool(t, members(&fakeClient{}, &fakeClient{}), failover.WithHedge(time.Second))
		got, err := failover.Do(ctx, p, fn)
		require.NoError(t, err)
		assert.Equal(t, "b", got.name)
		time.Sleep(time.Minute)
		synctest.Wait()
		require.Len(t, made, 2)
		for _, c := range made {
			assert.Equal(t, c != got, c.closed.Load(), "member %s", c.name)
		}
		assertSettled(t, p)

		// The caller's context ends: both late successes are closed.
		made = nil
		delays["b"] = 3 * time.Second
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err = failover.Do(cctx, p, fn)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		time.Sleep(time.Minute)
		synctest.Wait()
		require.Len(t, made, 2)
		for _, c := range made {
			assert.True(t, c.closed.Load(), "member %s", c.name)
		}
		assertSettled(t, p)
	})
}

// With hedging on, a context_length failure still goes on to a member with
// a larger context, as without it. Before the fix the error came back
// although the large member was untried.
func TestHedgeContextLengthRouting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		small := &fakeClient{fail: always(apiErr(400, "context_length_exceeded", "This model's maximum context length is 8192 tokens."))}
		large := &fakeClient{}
		ms := members(small, large)
		ms[0].Limits.ContextTokens, ms[1].Limits.ContextTokens = 8192, 128000
		p := newPool(t, ms, failover.WithHedge(time.Second))
		got, err := failover.Do(ctx, p, call)
		require.NoError(t, err)
		assert.Equal(t, "b", got)
		assert.Equal(t, []int64{1, 1}, []int64{small.calls.Load(), large.calls.Load()})
		assert.Equal(t, failover.Active, status(t, p, "a").State, "the prompt's fault, not the member's")
	})
}
