package failover_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// callLog records when calls reach each member, for checking the pool's
// invariants after a run.
type callLog struct {
	mu    sync.Mutex
	calls map[string][]span
}

type span struct{ start, end time.Time }

func (l *callLog) add(member string, s span) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls[member] = append(l.calls[member], s)
}

// chaos is a provider that fails at random: 429s with hints, 5xx, 401s,
// slow answers that hit the attempt timeout, and stalls.
func chaos(log *callLog, seed uint64) func(ctx context.Context, m failover.Member[*fakeClient]) (string, error) {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(ctx context.Context, m failover.Member[*fakeClient]) (string, error) {
		mu.Lock()
		roll, hint, delay := rng.IntN(10000), 1+rng.IntN(30), time.Duration(1+rng.IntN(500))*time.Millisecond
		mu.Unlock()
		s := span{start: time.Now()}
		defer func() { s.end = time.Now(); log.add(m.Name, s) }()
		switch {
		case roll < 100:
			delay = time.Minute // a stall: the attempt timeout ends it
		case roll < 200:
			delay = 3 * time.Second // slower than the attempt timeout
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		switch {
		case roll < 500:
			return "", headerErr{apiErr(429, "rate_limit_exceeded", "Rate limit reached"), http.Header{"Retry-After": {strconv.Itoa(hint)}}}
		case roll < 700:
			return "", apiErr(500+rng.IntN(4), nil, "upstream error")
		case roll < 701:
			return "", apiErr(401, "invalid_api_key", "Incorrect API key provided")
		}
		return m.Name, nil
	}
}

// A stress run: 1,000 goroutines × 100 calls over 8 members with random
// faults and caller cancellations. Afterwards: every call is accounted for,
// no call reached a member inside its cooldown window, probes never
// overlapped, in-flight counts are back to zero, and no goroutine is left
// (synctest fails a test that leaves one blocked).
func TestStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress run")
	}
	synctest.Test(t, func(t *testing.T) {
		log := &callLog{calls: map[string][]span{}}
		var evMu sync.Mutex
		var cooldowns = map[string][]span{} // window per member: emitted at start, until end
		var recoveries = map[string][]time.Time{}
		cs := make([]*fakeClient, 8)
		for i := range cs {
			cs[i] = &fakeClient{}
		}
		ms := members(cs...)
		for i := range ms {
			ms[i].Priority = i / 4 // two tiers of four
		}
		p := newPool(t, ms, failover.WithStrategy(failover.RoundRobin), failover.WithAttemptTimeout(2*time.Second),
			failover.WithObserver(func(e failover.Event) {
				evMu.Lock()
				defer evMu.Unlock()
				switch e.Kind {
				case failover.EventCooldown:
					cooldowns[e.Member] = append(cooldowns[e.Member], span{time.Now(), e.Until})
				case failover.EventRecovered:
					recoveries[e.Member] = append(recoveries[e.Member], time.Now())
				}
			}))
		// An operator takes h out of rotation for a minute in the middle.
		var offAt, onAt time.Time
		operatorDone := make(chan struct{})
		go func() {
			defer close(operatorDone)
			time.Sleep(30 * time.Second)
			assert.NoError(t, p.Disable("h"))
			offAt = time.Now()
			time.Sleep(time.Minute)
			onAt = time.Now()
			assert.NoError(t, p.Enable("h"))
		}()
		const goroutines, perG = 1000, 100
		var ok, failed, canceled atomic.Int64
		var wg sync.WaitGroup
		for g := range goroutines {
			fn := chaos(log, uint64(g))
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 7))
				for range perG {
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+rng.IntN(20))*time.Second)
					if rng.IntN(50) == 0 {
						cancel() // the caller gives up at once
					}
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
		wg.Wait()
		assert.EqualValues(t, goroutines*perG, ok.Load()+failed.Load()+canceled.Load(), "every call accounted for")
		t.Logf("ok=%d failed=%d canceled=%d upstream=%d", ok.Load(), failed.Load(), canceled.Load(), func() (n int) {
			for _, c := range log.calls {
				n += len(c)
			}
			return
		}())
		assert.Positive(t, ok.Load())

		for _, st := range p.Status() {
			assert.Zero(t, st.InFlight, st.Name)
		}
		<-operatorDone
		require.False(t, onAt.IsZero())
		for _, c := range log.calls["h"] {
			if c.start.After(offAt) && c.start.Before(onAt) {
				t.Errorf("h: call at %v while disabled %v–%v", c.start, offAt, onAt)
			}
		}
		// No call started strictly inside a window but last-resort probes;
		// calls that start after
		// a window ends (probes) never overlap until the member recovers or
		// cools again.
		probes, earlies := 0, 0
		for name, windows := range cooldowns {
			calls := log.calls[name]
			sort.Slice(calls, func(i, j int) bool { return calls[i].start.Before(calls[j].start) })
			for _, w := range windows {
				enabled := name == "h" && w.start.Before(onAt) && w.end.After(onAt)
				if enabled {
					w.end = onAt // Enable ends the window, with no probe
				}
				// Inside a window, only last-resort probes: one at a time,
				// a second apart, until one of them recovers the member.
				cut := w.end
				for _, r := range recoveries[name] {
					if !r.Before(w.start) && r.Before(cut) { // also in the instant a late hint extends the window
						cut = r
					}
				}
				var early span
				for _, c := range calls {
					if !c.start.After(w.start) || !c.start.Before(cut) {
						continue
					}
					earlies++
					if !early.start.IsZero() && (c.start.Before(early.end) || c.start.Sub(early.start) < time.Second) {
						t.Errorf("%s: call at %v inside the window %v–%v, %v after the last-resort probe at %v", name, c.start, w.start, w.end, c.start.Sub(early.start), early.start)
					}
					early = c
				}
				if enabled || cut.Before(w.end) {
					continue // the window ended early: Enable, or a last-resort probe recovered the member
				}
				next := time.Time{} // the first recovery or new window after w.end
				for _, r := range recoveries[name] {
					if !r.Before(w.end) && (next.IsZero() || r.Before(next)) {
						next = r
					}
				}
				for _, o := range windows {
					if o.start.After(w.end) && (next.IsZero() || o.start.Before(next)) {
						next = o.start
					}
				}
				var last span
				for _, c := range calls {
					// A call at the very instant a blip's window of no
					// length opened may have started before it.
					if c.start.Before(w.end) || !c.start.After(w.start) || (!next.IsZero() && !c.start.Before(next)) {
						continue
					}
					probes++
					if !last.end.IsZero() && c.start.Before(last.end) {
						t.Errorf("%s: overlapping probes at %v and %v", name, last.start, c.start)
					}
					last = c
				}
			}
		}
		t.Logf("probe calls checked: %d, last-resort probes: %d", probes, earlies)
	})
}

// Memory does not grow with the number of calls.
func TestNoGrowth(t *testing.T) {
	p := newPool(t, members(&fakeClient{fail: always(apiErr(429, nil, "x"))}, &fakeClient{}))
	run := func(n int) uint64 {
		for range n {
			_, err := failover.Do(context.Background(), p, call)
			require.NoError(t, err)
			_ = p.Enable("a")
		}
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	run(1000)
	before := run(1000)
	after := run(20000)
	assert.Less(t, after, before+512<<10, "heap grew from %d to %d", before, after)
}
