package failover

import (
	"context"
	"errors"
	"time"
)

// ErrPanicked is the error a hook's end function receives when the call or
// the attempt it reports ended in a panic (of fn, an observer, a
// classifier or a hook). The panic itself goes on to the caller of Do.
var ErrPanicked = errors.New("failover: panicked")

// Hooks instrument calls and attempts, for tracing and metrics (see the
// otelfailover module). Either function may be nil. Both are called
// synchronously, never while the pool holds a lock; a panic in a hook
// propagates to the caller of Do and leaves the pool consistent.
type Hooks struct {
	// Call is called when Do starts a call, with the caller's context.
	// The context it returns is the call's: every attempt's context
	// derives from it (so an attempt's span nests under the call's). end
	// is called once when the call returns, with Do's error (nil on
	// success, an [*Error] when no member served, ErrPanicked on a panic).
	Call func(ctx context.Context) (context.Context, func(err error))
	// Attempt is called before the n-th attempt (1-based) of a call runs
	// on member, with the call's context. The context it returns is the
	// one fn receives (the attempt timeout, if any, is added to it). end
	// is called once when the attempt is over, after the member's state
	// is settled.
	Attempt func(ctx context.Context, member string, n int) (context.Context, func(AttemptEnd))
	// Skip is called when a call passes over a member that cannot serve
	// it, before the call tries another: cause is ErrCoolingDown,
	// ErrProbing, ErrDisabled, ErrLimited or ErrLacksModel, and ctx is the
	// call's. It is called once per call and member, as Status.Skipped
	// counts, with no lock held.
	Skip func(ctx context.Context, member string, cause error)
	// Usage is called with the token usage of each response counted to a
	// member's Status (by [OpenAI], [Transport] or [Pool.ReportUsage]),
	// with the context of the attempt that got the response
	// (context.Background for ReportUsage). A stream's or a Transport
	// body's usage arrives as the caller reads it, often after the call's
	// end function ran.
	Usage func(ctx context.Context, u Usage)
	// Pool is called once, by New, with the new pool's Status, so that a
	// hook can read the pool's state later (otelfailover's gauges read it
	// at each collection). It is not called by Update.
	Pool func(status func() []Status)
}

// Usage is the token usage of one response, as its provider reported it
// and [Hooks.Usage] receives it.
type Usage struct {
	Member string // the member that served it
	// Model is the model the response names (such as
	// "gpt-4o-2024-08-06"), empty when it names none. It comes from the
	// provider: bound its cardinality before using it as a label.
	Model            string
	PromptTokens     int
	CompletionTokens int
}

// AttemptEnd is how one attempt ended, as [Hooks.Attempt]'s end function
// receives it.
type AttemptEnd struct {
	Member string
	N      int    // 1-based attempt number within the call
	Reason Reason // empty on success; the classification of its failure
	// Err is the attempt's error, nil on success. Its text is redacted;
	// errors.As reaches the original.
	Err      error
	Duration time.Duration // from the hook's call to the attempt's outcome
	// Until is the end of the cooldown the failure opened or extended,
	// zero if it opened none.
	Until time.Time
	// Hedged is true for an attempt started by WithHedge next to a
	// slower one.
	Hedged bool
	// Lost is true for a hedged attempt canceled because another one
	// won; it has no verdict and its member is not penalised.
	Lost bool
}

// WithHooks adds hooks that see every call and attempt. Several WithHooks
// options all run: the first given is the outermost (its Call sees the
// caller's context and its end runs last). The default is no hooks, and
// then Do does no work for them.
func WithHooks(h Hooks) Option {
	return func(o *settings) { o.hooks = o.hooks.then(h) }
}

// then composes h after the hooks already set.
func (outer Hooks) then(inner Hooks) Hooks {
	switch {
	case outer.Call == nil:
	case inner.Call == nil:
		inner.Call = outer.Call
	default:
		a, b := outer.Call, inner.Call
		inner.Call = func(ctx context.Context) (context.Context, func(error)) {
			ctx, endA := a(ctx)
			ctx, endB := b(ctx)
			return ctx, func(err error) {
				defer endA(err)
				endB(err)
			}
		}
	}
	switch {
	case outer.Attempt == nil:
	case inner.Attempt == nil:
		inner.Attempt = outer.Attempt
	default:
		a, b := outer.Attempt, inner.Attempt
		inner.Attempt = func(ctx context.Context, member string, n int) (context.Context, func(AttemptEnd)) {
			ctx, endA := a(ctx, member, n)
			ctx, endB := b(ctx, member, n)
			return ctx, func(e AttemptEnd) {
				defer endA(e)
				endB(e)
			}
		}
	}
	switch {
	case outer.Skip == nil:
	case inner.Skip == nil:
		inner.Skip = outer.Skip
	default:
		a, b := outer.Skip, inner.Skip
		inner.Skip = func(ctx context.Context, member string, cause error) {
			defer b(ctx, member, cause)
			a(ctx, member, cause)
		}
	}
	switch {
	case outer.Pool == nil:
	case inner.Pool == nil:
		inner.Pool = outer.Pool
	default:
		a, b := outer.Pool, inner.Pool
		inner.Pool = func(status func() []Status) {
			defer b(status)
			a(status)
		}
	}
	switch {
	case outer.Usage == nil:
	case inner.Usage == nil:
		inner.Usage = outer.Usage
	default:
		a, b := outer.Usage, inner.Usage
		inner.Usage = func(ctx context.Context, u Usage) {
			defer b(ctx, u)
			a(ctx, u)
		}
	}
	return inner
}

// hookedDo runs a call under the Call hook: end sees Do's error, or
// ErrPanicked when the call panics (and the panic goes on).
func hookedDo[C, T any](ctx context.Context, p *Pool[C], fn func(ctx context.Context, m Member[C]) (T, error), opts []CallOption) (out T, err error) {
	ctx, end := p.set.hooks.Call(ctx)
	if ctx == nil {
		ctx = context.Background()
	}
	returned := false
	defer func() {
		if end == nil {
			return
		}
		if !returned {
			end(ErrPanicked)
			return
		}
		end(err)
	}()
	out, err = do(ctx, p, fn, opts)
	returned = true
	return out, err
}

// attemptEnd builds what an attempt's end hook receives.
func (p *Pool[C]) attemptEnd(member string, n int, err error, f failure, began time.Time) AttemptEnd {
	e := AttemptEnd{Member: member, N: n, Reason: f.v.Reason, Until: f.until}
	if err != nil {
		e.Err = p.redacted(err)
	}
	at := f.at
	if at.IsZero() {
		at = p.now()
	}
	e.Duration = at.Sub(began)
	return e
}

// Options combines opts into one Option, applied in order, so a package
// can hand out several as one (otelfailover does). Nil options are
// skipped.
func Options(opts ...Option) Option {
	return func(o *settings) {
		for _, opt := range opts {
			if opt != nil {
				opt(o)
			}
		}
	}
}
