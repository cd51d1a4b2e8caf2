package failover

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// WithHedge turns on hedging: when the current attempt has not answered
// within delay, the next member starts too, without waiting for the first.
// The first success wins; the other attempts are canceled and not
// penalised (their outcome counts as no verdict). A failure still hands
// over at once. Hedging trades upstream calls for latency: use it for
// interactive calls where a slow provider hurts more than a second call
// costs, and combine it with WithRetryBudget. The default, 0, never hedges.
// A panic in a hedged attempt that has lost is dropped; the winner's
// propagates.
func WithHedge(delay time.Duration) Option { return func(o *settings) { o.hedge = delay } }

// outcome is what one hedged attempt returned.
type outcome[T any] struct {
	i        int
	g        grant
	out      T
	err      error
	panicked bool
	value    any
	end      func(AttemptEnd) // the Attempt hook's, if any
	began    time.Time
	hedge    bool
	n        int
}

// lost ends the Attempt hook of an attempt whose outcome does not count.
func (r outcome[T]) lost(name string) {
	if r.end != nil {
		r.end(AttemptEnd{Member: name, N: r.n, Err: context.Canceled, Hedged: r.hedge, Lost: true})
	}
}

// hedged runs a call whose first member, i with grant g, is already
// claimed, starting the next member whenever the running ones are slower
// than the hedge delay or one fails. Each attempt's goroutine runs only fn;
// this goroutine settles every outcome, and on its way out (a return or a
// panic in user code) cancels the attempts still running, releases their
// members and closes what they return. tried holds the members the call
// may not try (see OnlyModel).
func hedged[C, T any](ctx context.Context, p *Pool[C], c *config[C], fn func(context.Context, Member[C]) (T, error), i int, g grant, base selection, limit int, tried bitset) (T, error) {
	var (
		zero     T
		mu       sync.Mutex // guards done and sends on results
		done     bool       // decided: late outcomes release their member
		results  = make(chan outcome[T], len(c.members))
		cancels  []context.CancelFunc
		attempts []Attempt
		running  int
	)
	launch := func(i int, g grant, r outcome[T], hctx context.Context) {
		m := &c.members[i]
		var actx context.Context
		var cancel context.CancelFunc
		if d := p.set.attemptTimeout; d > 0 {
			actx, cancel = context.WithTimeout(hctx, d)
		} else {
			actx, cancel = context.WithCancel(hctx)
		}
		cancels = append(cancels, cancel)
		tried.set(i)
		running++
		go func() {
			defer func() {
				if v := recover(); v != nil {
					r.panicked, r.value = true, v
				}
				mu.Lock()
				late := done
				if !late {
					results <- r
				}
				mu.Unlock()
				if late { // the call is decided: this attempt lost
					p.release(ctx, m.st, g)
					discard(r)
					r.lost(m.Name)
				}
			}()
			r.out, r.err = fn(actx, m.Member)
		}()
	}
	// start launches member i and then announces it: the attempt owns its
	// grant before any callback runs.
	start := func(i int, g grant, hedge bool) {
		m := &c.members[i]
		n := len(attempts) + running + 1
		r, hctx := outcome[T]{i: i, g: g, hedge: hedge, n: n}, ctx
		if h := p.set.hooks.Attempt; h != nil {
			r.began = p.now()
			hctx, r.end = h(ctx, m.Name, n)
			if hctx == nil {
				hctx = ctx
			}
		}
		launch(i, g, r, hctx)
		if hedge {
			m.st.hedged.Add(1)
			p.emit(ctx, Event{Kind: EventHedge, Member: m.Name, Attempt: n})
		}
		if g.probe {
			p.emit(ctx, Event{Kind: EventProbe, Member: m.Name, Attempt: n})
		}
	}
	refused := false // the retry budget refused the last attempt next looked for
	next := func(hedge bool) bool {
		refused = false
		if len(attempts)+running >= limit {
			return false
		}
		base.anew() // the selection keeps the skips the call counted
		i, g, ok := p.pick(c, &tried, &base)
		if !ok {
			return false
		}
		if p.budget != nil && !p.budget.spend() {
			p.release(ctx, c.members[i].st, g)
			refused = true
			return false
		}
		start(i, g, hedge)
		return true
	}
	defer func() { // every way out, a panic included
		mu.Lock()
		done = true
		var late []outcome[T]
		for drained := false; !drained; {
			select {
			case r := <-results:
				late = append(late, r)
			default:
				drained = true
			}
		}
		mu.Unlock()
		for _, cancel := range cancels {
			cancel()
		}
		for _, r := range late {
			p.release(ctx, c.members[r.i].st, r.g)
			discard(r)
			r.lost(c.members[r.i].Name)
		}
	}()

	timer := time.NewTimer(p.set.hedge)
	defer timer.Stop()
	start(i, g, false)
	for {
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-timer.C:
			next(true)
			timer.Reset(p.set.hedge)
		case r := <-results:
			running--
			m := &c.members[r.i]
			if r.panicked {
				p.release(ctx, m.st, r.g)
				if r.end != nil {
					r.end(AttemptEnd{Member: m.Name, Err: ErrPanicked, Hedged: r.hedge, Duration: p.now().Sub(r.began)})
				}
				panic(r.value)
			}
			n := len(attempts) + 1
			f := p.settle(ctx, c, m, r.g, r.err, &selection{clock: p.set.now, model: base.model}, n)
			if r.end != nil {
				e := p.attemptEnd(m.Name, n, r.err, f, r.began)
				e.Hedged = r.hedge
				r.end(e)
			}
			if r.err == nil {
				if len(attempts) > 0 {
					p.stick(c, r.i, p.now())
				}
				return r.out, nil
			}
			if !goesOn(c, &tried, m, f.v, &base) {
				return zero, r.err
			}
			attempts = append(attempts, Attempt{Member: m.Name, Reason: f.v.Reason, Err: r.err})
			if !next(false) && running == 0 {
				if refused { // the retry budget is spent: fail fast, as without hedging
					p.budgetSpent(ctx, attempts[0])
					return zero, attempts[0].Err
				}
				e := p.unavailable(c, &tried, attempts, base.tokens, base.model, f.at)
				p.exhausted(ctx, e)
				return zero, e
			}
			timer.Reset(p.set.hedge)
		}
	}
}

// discard closes what an attempt that lost returned: a stream or a response
// left open goes on generating tokens upstream. A panic in its Close is
// dropped, as the loser's own panic is.
func discard[T any](r outcome[T]) {
	if r.panicked || r.err != nil {
		return
	}
	defer func() { _ = recover() }()
	switch x := any(r.out).(type) {
	case *http.Response:
		if x != nil && x.Body != nil {
			_ = x.Body.Close()
		}
	case io.Closer:
		_ = x.Close()
	}
}
