package failover

import (
	"context"
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
}

// hedged runs a call whose first member, i with grant g, is already
// claimed, starting the next member whenever the running ones are slower
// than the hedge delay or one fails.
func hedged[C, T any](ctx context.Context, p *Pool[C], c *config[C], fn func(context.Context, Member[C]) (T, error), i int, g grant, base selection, limit int) (T, error) {
	var (
		zero     T
		mu       sync.Mutex // guards done and sends on results
		done     bool       // decided: late outcomes release their member
		results  = make(chan outcome[T], len(c.members))
		cancels  []context.CancelFunc
		tried    bitset
		attempts []Attempt
		running  int
	)
	launch := func(i int, g grant) {
		m := &c.members[i]
		var actx context.Context
		var cancel context.CancelFunc
		if d := p.set.attemptTimeout; d > 0 {
			actx, cancel = context.WithTimeout(ctx, d)
		} else {
			actx, cancel = context.WithCancel(ctx)
		}
		cancels = append(cancels, cancel)
		tried.set(i)
		running++
		go func() {
			r := outcome[T]{i: i, g: g}
			defer func() {
				if v := recover(); v != nil {
					r.panicked, r.value = true, v
				}
				mu.Lock()
				defer mu.Unlock()
				if done {
					p.apply(ctx, m.st, m.st.release(g), Event{Member: m.Name})
					return
				}
				results <- r
			}()
			r.out, r.err = fn(actx, m.Member)
		}()
	}
	next := func(hedge bool) bool {
		if len(attempts)+running >= limit {
			return false
		}
		sel := base
		i, g, ok := p.pick(c, &tried, &sel)
		if !ok {
			return false
		}
		m := &c.members[i]
		if p.budget != nil && !p.budget.spend() {
			p.apply(ctx, m.st, m.st.release(g), Event{Member: m.Name})
			if len(attempts) > 0 {
				p.budgetSpent(ctx, attempts[0])
			}
			return false
		}
		if hedge {
			m.st.hedged.Add(1)
			p.emit(ctx, Event{Kind: EventHedge, Member: m.Name, Attempt: len(attempts) + running + 1})
		}
		launch(i, g)
		return true
	}
	finish := func() {
		mu.Lock()
		done = true
		for drained := false; !drained; {
			select {
			case r := <-results:
				m := &c.members[r.i]
				p.apply(ctx, m.st, m.st.release(r.g), Event{Member: m.Name})
			default:
				drained = true
			}
		}
		mu.Unlock()
		for _, cancel := range cancels {
			cancel()
		}
	}

	launch(i, g)
	timer := time.NewTimer(p.set.hedge)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			finish()
			return zero, ctx.Err()
		case <-timer.C:
			next(true)
			timer.Reset(p.set.hedge)
		case r := <-results:
			running--
			m := &c.members[r.i]
			switch {
			case r.panicked:
				finish()
				p.apply(ctx, m.st, m.st.release(r.g), Event{Member: m.Name})
				panic(r.value)
			case r.err == nil:
				finish()
				p.apply(ctx, m.st, m.st.succeed(r.g, &selection{clock: p.set.now}), Event{Member: m.Name})
				if len(attempts) > 0 {
					p.stick(c, r.i, p.now())
				}
				return r.out, nil
			}
			now := p.now()
			v := p.verdict(ctx, r.err, now)
			p.failed(ctx, c, m.Group, m.st, r.g, r.err, v, now, len(attempts)+1)
			if !v.Reason.FailsOver() {
				finish()
				return zero, r.err
			}
			attempts = append(attempts, Attempt{Member: m.Name, Reason: v.Reason, Err: r.err})
			if !next(false) && running == 0 {
				finish()
				e := p.unavailable(c, &tried, attempts, base.tokens, now)
				p.exhausted(ctx, e)
				return zero, e
			}
			timer.Reset(p.set.hedge)
		}
	}
}
