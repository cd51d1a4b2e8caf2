package failover_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/storetest"
	"github.com/stretchr/testify/require"
)

// TestMemoryStore runs the Store conformance tests against MemoryStore:
// the replicas are pools of one process.
func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Connect {
		s := failover.NewMemoryStore()
		return func() failover.Store { return s }
	})
}

// brokenStore is a store whose backend is down: every call fails and
// saves are lost.
type brokenStore struct{ leases, takes atomic.Int64 }

var errDown = errors.New("store down")

func (*brokenStore) Save(failover.Shared)        {}
func (*brokenStore) Watch(func(failover.Shared)) {}
func (b *brokenStore) Lease(context.Context, string, string, time.Time) (time.Time, bool, error) {
	b.leases.Add(1)
	return time.Time{}, false, errDown
}
func (b *brokenStore) Take(context.Context, string, failover.Limits, int, time.Time) (bool, time.Time, error) {
	b.takes.Add(1)
	return false, time.Time{}, errDown
}

// TestStoreDownFallsBackToLocalState: a store that fails costs no call:
// cooldowns, probes and limits go on with the pool's own state.
func TestStoreDownFallsBackToLocalState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &brokenStore{}
		free := &fakeClient{fail: firstN(1, apiErr(503, nil, "boom"))}
		paid := &fakeClient{}
		p, err := failover.New([]failover.Member[*fakeClient]{
			{Name: "free", Client: free, Limits: failover.Limits{RPM: 2}},
			{Name: "paid", Client: paid, Priority: 1},
		}, failover.WithStore(store), failover.WithCooldowns(fixedCooldowns(5*time.Second)))
		require.NoError(t, err)
		ctx := context.Background()
		for range 3 {
			_, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
		}
		// The 503 cooled free for 5 s on local state; paid served all three.
		require.Equal(t, int64(1), free.calls.Load())
		require.Equal(t, int64(3), paid.calls.Load())
		time.Sleep(5 * time.Second)
		got, err := failover.Do(ctx, p, call)
		require.NoError(t, err)
		require.Equal(t, "free", got, "the probe runs on local state when the lease fails")
		require.Equal(t, int64(1), store.leases.Load())
		// The local RPM of 2 holds: the 503 and the probe used it.
		got, err = failover.Do(ctx, p, call)
		require.NoError(t, err)
		require.Equal(t, "paid", got)
		require.Equal(t, int64(2), free.calls.Load())
		require.Positive(t, store.takes.Load())
	})
}

// TestManualDisableOutranksAProbe: a member disabled while another replica
// probes it stays disabled when the probe succeeds.
func TestManualDisableOutranksAProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := failover.NewMemoryStore()
		gate := make(chan struct{})
		free := &fakeClient{fail: func(n int64) error {
			if n == 1 {
				return apiErr(503, nil, "boom")
			}
			<-gate
			return nil
		}}
		members := []failover.Member[*fakeClient]{{Name: "free", Client: free}, {Name: "paid", Client: &fakeClient{}, Priority: 1}}
		a, err := failover.New(members, failover.WithStore(store), failover.WithCooldowns(fixedCooldowns(5*time.Second)))
		require.NoError(t, err)
		b, err := failover.New(members, failover.WithStore(store), failover.WithCooldowns(fixedCooldowns(5*time.Second)))
		require.NoError(t, err)
		ctx := context.Background()
		_, err = failover.Do(ctx, a, call)
		require.NoError(t, err)
		time.Sleep(5 * time.Second)
		probe := make(chan string)
		go func() {
			got, _ := failover.Do(ctx, b, call)
			probe <- got
		}()
		synctest.Wait()
		require.Equal(t, failover.Probing, statusOf(b, "free").State)
		require.NoError(t, a.Disable("free"))
		close(gate)
		<-probe
		for _, p := range []*failover.Pool[*fakeClient]{a, b} {
			require.Equal(t, failover.Disabled, statusOf(p, "free").State)
		}
		require.NoError(t, b.Enable("free"))
		require.Equal(t, failover.Active, statusOf(a, "free").State)
	})
}

func statusOf[C any](p *failover.Pool[C], name string) failover.Status {
	for _, s := range p.Status() {
		if s.Name == name {
			return s
		}
	}
	return failover.Status{}
}

// fixedCooldowns cools every lane for d, without jitter or growth.
func fixedCooldowns(d time.Duration) failover.Cooldowns {
	b := failover.Backoff{Base: d, Max: d}
	return failover.Cooldowns{Transient: b, Quota: b, Permanent: b}
}

// A stress run of four pools sharing a MemoryStore: 4 × 100 goroutines ×
// 30 calls over 6 members with random faults. Afterwards: every call is
// accounted for, no call on any pool started inside a window any pool
// announced, nothing is left in flight, and the store carries a Disable
// and an Enable to every pool.
func TestStoreStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress run")
	}
	synctest.Test(t, func(t *testing.T) {
		log := &callLog{calls: map[string][]span{}}
		var evMu sync.Mutex
		windows := map[string][]span{}
		recovered := map[string][]time.Time{}
		store := failover.NewMemoryStore()
		cs := make([]*fakeClient, 6)
		for i := range cs {
			cs[i] = &fakeClient{}
		}
		ms := members(cs...)
		pools := make([]*failover.Pool[*fakeClient], 4)
		for i := range pools {
			pools[i] = newPool(t, ms, failover.WithStore(store), failover.WithStrategy(failover.RoundRobin),
				failover.WithAttemptTimeout(2*time.Second),
				failover.WithObserver(func(e failover.Event) {
					evMu.Lock()
					defer evMu.Unlock()
					switch e.Kind {
					case failover.EventCooldown:
						windows[e.Member] = append(windows[e.Member], span{time.Now(), e.Until})
					case failover.EventRecovered:
						recovered[e.Member] = append(recovered[e.Member], time.Now())
					}
				}))
		}
		const perPool, perG = 100, 30
		var ok, failed, canceled atomic.Int64
		var wg sync.WaitGroup
		for i, p := range pools {
			for g := range perPool {
				fn := chaos(log, uint64(i*perPool+g))
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(i*perPool+g), 11))
					for range perG {
						ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+rng.IntN(20))*time.Second)
						_, err := failover.Do(ctx, p, fn)
						cancel()
						switch {
						case err == nil:
							ok.Add(1)
						case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
							canceled.Add(1)
						default:
							failed.Add(1)
						}
						time.Sleep(time.Duration(rng.IntN(2000)) * time.Millisecond)
					}
				})
			}
		}
		wg.Wait()
		require.EqualValues(t, 4*perPool*perG, ok.Load()+failed.Load()+canceled.Load(), "every call accounted for")
		require.Positive(t, ok.Load())
		t.Logf("ok=%d failed=%d canceled=%d windows=%d", ok.Load(), failed.Load(), canceled.Load(), len(windows))
		for name, ws := range windows {
			for _, w := range ws {
				// Inside a window, only last-resort probes: at most one a
				// second per pool, until one of them recovers the member.
				cut := w.end
				for _, r := range recovered[name] {
					if !r.Before(w.start) && r.Before(cut) { // also in the instant a late hint extends the window
						cut = r
					}
				}
				inside := 0
				for _, c := range log.calls[name] {
					if c.start.After(w.start) && c.start.Before(cut) {
						inside++
					}
				}
				if most := len(pools) * (int(cut.Sub(w.start)/time.Second) + 1); inside > most {
					t.Errorf("%s: %d calls inside the window %v–%v, at most %d last-resort probes", name, inside, w.start, w.end, most)
				}
			}
		}
		for _, p := range pools {
			for _, st := range p.Status() {
				require.Zero(t, st.InFlight, st.Name)
			}
		}
		for _, m := range ms {
			require.NoError(t, pools[0].Disable(m.Name))
		}
		for _, p := range pools {
			for _, st := range p.Status() {
				require.Equal(t, failover.Disabled, st.State, st.Name)
			}
		}
		for _, m := range ms {
			require.NoError(t, pools[3].Enable(m.Name))
		}
		for _, p := range pools {
			for _, st := range p.Status() {
				require.Equal(t, failover.Active, st.State, st.Name)
			}
		}
	})
}

// midSave is a MemoryStore that, on the first save of a cooldown, runs
// during first before it stores it: a newer change of the same member,
// made while the older one is on its way to the store.
type midSave struct {
	*failover.MemoryStore
	during func()
	once   sync.Once
}

func (m *midSave) Save(s failover.Shared) {
	if s.State == failover.CoolingDown {
		m.once.Do(m.during)
	}
	m.MemoryStore.Save(s)
}

// TestSavesLeaveInOrder: an Enable made while the cooldown it lifts is
// being saved reaches the store after it, so no replica keeps the older
// cooldown. Without ordering, the store took the Enable first and the
// cooldown last: the saving pool was Active and the other cooling.
func TestSavesLeaveInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := failover.NewMemoryStore()
		store := &midSave{MemoryStore: mem}
		free := &fakeClient{fail: firstN(1, apiErr(503, nil, "boom"))}
		members := []failover.Member[*fakeClient]{{Name: "free", Client: free}, {Name: "paid", Client: &fakeClient{}, Priority: 1}}
		a, err := failover.New(members, failover.WithStore(store), failover.WithCooldowns(fixedCooldowns(time.Hour)))
		require.NoError(t, err)
		b, err := failover.New(members, failover.WithStore(mem), failover.WithCooldowns(fixedCooldowns(time.Hour)))
		require.NoError(t, err)
		store.during = func() { require.NoError(t, a.Enable("free")) }
		got, err := failover.Do(context.Background(), a, call)
		require.NoError(t, err)
		require.Equal(t, "paid", got)
		for name, p := range map[string]*failover.Pool[*fakeClient]{"a": a, "b": b} {
			require.Equal(t, failover.Active, statusOf(p, "free").State, "pool %s", name)
		}
		got, err = failover.Do(context.Background(), b, call)
		require.NoError(t, err)
		require.Equal(t, "free", got)
	})
}

// TestStoreInput: a nil pointer as store is an error of New, not a panic
// later; a nil interface is no store; the zero MemoryStore works.
func TestStoreInput(t *testing.T) {
	members := []failover.Member[*fakeClient]{{Name: "a", Client: &fakeClient{}}}
	_, err := failover.New(members, failover.WithStore((*failover.MemoryStore)(nil)))
	require.ErrorIs(t, err, failover.ErrInvalid)
	require.ErrorContains(t, err, "WithStore: nil store")

	p, err := failover.New(members, failover.WithStore(nil))
	require.NoError(t, err)
	_, err = failover.Do(context.Background(), p, call)
	require.NoError(t, err)

	var zero failover.MemoryStore
	a, err := failover.New(members, failover.WithStore(&zero))
	require.NoError(t, err)
	b, err := failover.New(members, failover.WithStore(&zero))
	require.NoError(t, err)
	require.NoError(t, a.Disable("a"))
	require.Equal(t, failover.Disabled, statusOf(b, "a").State)
}
