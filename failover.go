// Package failover makes LLM calls survive bad keys, rate limits, quota
// exhaustion and provider outages.
//
// A [Pool] holds named members, one API configuration each (a client of any
// type, typically *openai.Client, plus its priority, model and limits). [Do]
// runs a call on the first member that can serve it. A failure is classified
// into a [Reason]; the reason decides whether the call moves on to the next
// member and which cooldown lane the failed member goes to. Cooldowns back
// off exponentially and end with a single half-open probe, so a member that
// cannot serve costs no upstream calls until it may have recovered.
package failover

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/llmfailover/failover/internal/redact"
)

// Errors of the pool. Match them with errors.Is.
var (
	// ErrExhausted: every member that could be tried failed.
	ErrExhausted = errors.New("failover: every attempt failed")
	// ErrUnavailable: no member could be tried (all cooling, disabled or
	// limited). The *Error's RetryAt says when one recovers.
	ErrUnavailable = errors.New("failover: no member available")
	// ErrInvalid: New or Update got an invalid member or option, or Do got
	// a nil function or context.
	ErrInvalid = errors.New("failover: invalid configuration")
	// ErrNilPool: a method was called on a nil *Pool.
	ErrNilPool = errors.New("failover: nil pool")
	// ErrUnknownMember: no member has the given name.
	ErrUnknownMember = errors.New("failover: unknown member")
	// ErrCoolingDown is the Err of an Attempt skipped because the member
	// is cooling down.
	ErrCoolingDown = errors.New("cooling down")
	// ErrProbing is the Err of an Attempt skipped because another call is
	// probing the member.
	ErrProbing = errors.New("probe in flight")
	// ErrDisabled is the Err of an Attempt skipped because the member is
	// disabled.
	ErrDisabled = errors.New("disabled")
	// ErrLimited is the Err of an Attempt skipped because the call would
	// exceed the member's Limits.
	ErrLimited = errors.New("over its limits")
	// ErrRetryBudget is the Err of the EventExhausted emitted when a call
	// failed fast because the retry budget was spent (see WithRetryBudget);
	// the call itself returns its first error.
	ErrRetryBudget = errors.New("failover: retry budget spent")
)

// coolingError is the Err of an Attempt skipped for a cooldown; it matches
// ErrCoolingDown.
type coolingError struct{ until time.Time }

func (e coolingError) Error() string {
	return "cooling down until " + e.until.UTC().Format(time.RFC3339)
}
func (e coolingError) Is(target error) bool { return target == ErrCoolingDown }

// limitedError is the Err of an Attempt skipped for its Limits; it matches
// ErrLimited.
type limitedError struct{ until time.Time }

func (e limitedError) Error() string {
	if e.until.IsZero() {
		return "over its limits: the call is larger than its TPM, TPD or context"
	}
	return "over its limits until " + e.until.UTC().Format(time.RFC3339)
}
func (e limitedError) Is(target error) bool { return target == ErrLimited }

// Error is returned by [Do] when no member served the call: it wraps
// [ErrExhausted] when every member that was tried failed, and
// [ErrUnavailable] when no member could be tried. errors.As finds the
// providers' errors through it.
type Error struct {
	// Attempts has one entry per member tried, in order, then one per
	// member skipped, with the reason it could not be tried.
	Attempts []Attempt
	// RetryAt is the earliest time a member that was not tried recovers;
	// zero if none will without Enable.
	RetryAt time.Time

	kind error
	sec  *redact.Secrets // the pool's credentials when the error was made
}

// Attempt is one member's part in a failed call.
type Attempt struct {
	Member string
	Reason Reason
	Err    error // the provider's error, unchanged; for a skip, ErrCoolingDown, ErrProbing, ErrDisabled, ErrLimited or ErrLacksModel
	// Duration is how long the attempt took. The first attempt of a call
	// is timed only when the pool has an observer, a logger or an attempt
	// timeout (so that the healthy path reads no clock); otherwise its
	// Duration is 0. Later attempts are always timed.
	Duration time.Duration
	Skipped  bool
}

// Error describes every attempt. API keys are redacted, and so is every
// credential the pool holds; each attempt's error text is cut at 2 KiB.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.kind.Error())
	for i, a := range e.Attempts {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(a.Member)
		if a.Skipped {
			b.WriteString(" skipped")
		}
		if a.Reason != "" {
			fmt.Fprintf(&b, " (%s)", a.Reason)
		}
		if a.Err != nil {
			b.WriteString(": ")
			b.WriteString(e.sec.Text(a.Err.Error(), maxLogText))
		}
	}
	if !e.RetryAt.IsZero() {
		fmt.Fprintf(&b, "; retry at %s", e.RetryAt.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// Is reports whether target is ErrExhausted or ErrUnavailable, whichever
// this error is.
func (e *Error) Is(target error) bool { return target == e.kind }

// Unwrap returns the attempts' errors, for errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, len(e.Attempts))
	for _, a := range e.Attempts {
		if a.Err != nil {
			errs = append(errs, a.Err)
		}
	}
	return errs
}

// Do calls fn with members of p until one succeeds, and returns its result.
//
// Members are tried in priority tiers, ordered inside a tier by the pool's
// Strategy, each at most once; members that are cooling down, disabled or
// being probed are skipped without a call. When fn fails, its error is
// classified: for a reason that fails over (see [Reason.FailsOver]) the
// member is cooled as its lane says and the next member is tried at once;
// otherwise (bad request, context length, content filter, the caller's
// cancellation) the error is returned unchanged and no member is penalised.
//
// When no member served, Do returns an [*Error]. fn receives a context that
// carries the attempt timeout, if any. A panic in fn propagates to the
// caller and leaves the pool consistent.
func Do[C, T any](ctx context.Context, p *Pool[C], fn func(ctx context.Context, m Member[C]) (T, error), opts ...CallOption) (T, error) {
	var zero T
	switch {
	case p == nil:
		return zero, ErrNilPool
	case fn == nil:
		return zero, fmt.Errorf("%w: Do with a nil function", ErrInvalid)
	case ctx == nil:
		return zero, fmt.Errorf("%w: Do with a nil context", ErrInvalid)
	}
	if p.set.hooks.Call != nil {
		return hookedDo(ctx, p, fn, opts)
	}
	return do(ctx, p, fn, opts)
}

// do is Do after its checks and the Call hook.
func do[C, T any](ctx context.Context, p *Pool[C], fn func(ctx context.Context, m Member[C]) (T, error), opts []CallOption) (T, error) {
	var zero T
	c := p.cfg.Load()
	limit := p.set.maxAttempts
	if limit == 0 {
		limit = len(c.members)
	}
	var cs callSettings
	for _, opt := range opts {
		if opt != nil {
			cs = opt(cs) // by value: the settings stay on the stack
		}
	}
	var (
		tried    bitset
		attempts []Attempt
		waited   time.Time // when the call started to wait, if it did
		early    bool      // the call made its last-resort probe
		start    time.Time // of the current attempt, when timed
	)
	if cs.only != nil {
		exclude(c, cs.only, &tried)
	}
	// sel is the current pass of selection; each pass reads the clock
	// afresh (sel.anew) and keeps what a failure narrowed (goesOn).
	sel := selection{ctx: ctx, tokens: cs.tokens, clock: p.set.now, skip: p.set.hooks.Skip, model: cs.model}
	if p.budget != nil {
		p.budget.deposit()
	}
	for len(attempts) < limit {
		if err := ctx.Err(); err != nil {
			return zero, err
		}

		wake := p.wake.Load()
		i, g, ok := p.next(c, &tried, &sel, &early)
		if !ok {
			e := p.unavailable(c, &tried, attempts, cs.tokens, cs.model, sel.now())
			if p.wait(ctx, e.RetryAt, *wake, &waited, sel.now()) {
				sel.anew()
				continue
			}
			p.exhausted(ctx, e)
			return zero, e
		}
		m := &c.members[i]
		if len(attempts) > 0 && p.budget != nil && !p.budget.spend() {
			p.release(ctx, m.st, g)
			p.budgetSpent(ctx, attempts[0])
			return zero, attempts[0].Err // the retry budget is spent: fail fast
		}
		if p.set.hedge > 0 && len(attempts) == 0 {
			sel.anew()
			return hedged(ctx, p, c, fn, i, g, sel, limit, tried)
		}
		if len(attempts) == 0 && p.set.timed() {
			start = p.now()
		}
		var f failure // the verdict, if the attempt fails
		out, err := attempt(ctx, p, c, m, g, fn, &sel, len(attempts)+1, &f)
		if err == nil {
			if len(attempts) > 0 {
				p.stick(c, i, sel.now())
			}
			return out, nil
		}
		if !goesOn(c, &tried, m, f.v, &sel) {
			return zero, err
		}
		attempts = append(attempts, p.attempted(m, f, err, start))
		tried.set(i)
		sel.anew()
		start = f.at
	}
	e := p.unavailable(c, &tried, attempts, cs.tokens, cs.model, p.now())
	p.exhausted(ctx, e)
	return zero, e
}

// attempted is the Attempt of a failed attempt on m that started at start
// (zero when it was not timed).
func (p *Pool[C]) attempted(m *entry[C], f failure, err error, start time.Time) Attempt {
	a := Attempt{Member: m.Name, Reason: f.v.Reason, Err: err}
	if !start.IsZero() {
		a.Duration = f.at.Sub(start)
	}
	return a
}

// goesOn reports whether a call goes on after its attempt on m failed
// with v. A prompt too long for m goes on only to untried members that
// declare a larger context: base is narrowed to them.
func goesOn[C any](c *config[C], tried *bitset, m *entry[C], v Verdict, base *selection) bool {
	if v.Reason == ReasonContextLength && largerContext(c, tried, m) {
		base.minContext = m.Limits.ContextTokens + 1
		return true
	}
	return v.Reason.FailsOver()
}

// largerContext reports whether an untried member declares a larger
// context than m (which must declare one).
func largerContext[C any](c *config[C], tried *bitset, m *entry[C]) bool {
	if m.Limits.ContextTokens == 0 {
		return false
	}
	for i := range c.members {
		if &c.members[i] != m && !tried.has(i) && c.members[i].Limits.ContextTokens > m.Limits.ContextTokens {
			return true
		}
	}
	return false
}

// anew starts a new pass of selection: the next look reads the clock again.
func (c *selection) anew() { c.t, c.set = time.Time{}, false }

// shard returns the shard of the striped counters (see calls) that the
// call counts on: here() read once per call, so that its start, its end
// and its served count pin the processor once. Any shard counts right.
func (c *selection) shard() uint32 {
	if c.proc == 0 {
		c.proc = here() + 1
	}
	return c.proc - 1
}

// failure is the verdict on a failed attempt and when it was reached.
type failure struct {
	v     Verdict
	at    time.Time
	until time.Time // end of the cooldown it opened or extended, if any
}

// attempt runs fn on member m, which the call holds with grant g (the
// n-th attempt of the call), and settles the member's state; a failure's
// verdict goes to *f. The grant is the attempt's from the pick on: if fn,
// the observer or the classifier panics, it is released and the panic goes
// on to the caller.
func attempt[C, T any](ctx context.Context, p *Pool[C], c *config[C], m *entry[C], g grant, fn func(context.Context, Member[C]) (T, error), clk *selection, n int, f *failure) (out T, err error) {
	if p.set.hooks.Attempt != nil {
		return hookedAttempt(ctx, p, c, m, g, fn, clk, n, f)
	}
	settled := false
	defer func() {
		if !settled {
			p.release(ctx, m.st, g)
		}
	}()
	if g.probe {
		p.emit(ctx, Event{Kind: EventProbe, Member: m.Name, Attempt: n})
	}
	actx := ctx
	if d := p.set.attemptTimeout; d > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	out, err = fn(actx, m.Member)
	settled = true
	if err == nil {
		p.served(ctx, m, g, clk)
		return out, nil
	}
	*f = p.settle(ctx, c, m, g, err, clk, n)
	return out, err
}

// hookedAttempt is attempt with the Attempt hook around it (see Hooks):
// the hook's context is the attempt's, and its end function hears the
// outcome, or ErrPanicked when fn, the classifier or an observer panics.
func hookedAttempt[C, T any](ctx context.Context, p *Pool[C], c *config[C], m *entry[C], g grant, fn func(context.Context, Member[C]) (T, error), clk *selection, n int, f *failure) (out T, err error) {
	settled := false
	began := p.now()
	actx, end := p.set.hooks.Attempt(ctx, m.Name, n)
	if actx == nil {
		actx = ctx
	}
	defer func() {
		if !settled {
			p.release(ctx, m.st, g)
		}
		if end != nil { // fn, the classifier or an observer panicked
			end(AttemptEnd{Member: m.Name, N: n, Err: ErrPanicked, Duration: p.now().Sub(began)})
		}
	}()
	if g.probe {
		p.emit(ctx, Event{Kind: EventProbe, Member: m.Name, Attempt: n})
	}
	if d := p.set.attemptTimeout; d > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(actx, d)
		defer cancel()
	}
	out, err = fn(actx, m.Member)
	settled = true
	*f = p.settle(ctx, c, m, g, err, clk, n)
	if end != nil {
		done := end
		end = nil // ended here, not by the deferred call
		done(p.attemptEnd(m.Name, n, err, *f, began))
	}
	return out, err
}

// settle records the outcome err of an attempt on m holding g: the
// member's state first, then the events. For a failure it returns the
// verdict. If the classifier panics, g is released.
func (p *Pool[C]) settle(ctx context.Context, c *config[C], m *entry[C], g grant, err error, clk *selection, n int) failure {
	if err == nil {
		p.served(ctx, m, g, clk)
		return failure{}
	}
	f := failure{at: p.now()}
	classified := false
	defer func() {
		if !classified {
			p.release(ctx, m.st, g)
		}
	}()
	f.v = p.verdict(ctx, err, f.at)
	classified = true
	if f.v.Reason == ReasonNotFound && clk.model != "" && m.Model == "" && p.stillThrough(m.Name) {
		if what := missing(err); what != missingNothing { // the caller's model or feature, not the member
			p.lacked(ctx, m.st, g, err, clk.model, what == missingModel, f.at, n)
			return f
		}
	}
	f.until = p.failed(ctx, c, m.Group, m.st, g, err, f.v, f.at, n)
	return f
}

// served records a success of an attempt on m holding g. It is succeed
// in two steps, so that a plain success returns no change to copy.
func (p *Pool[C]) served(ctx context.Context, m *entry[C], g grant, clk *selection) {
	st := m.st
	st.use.served.countOn(clk.shard())
	var ch change
	if !st.ended(g, clk) {
		ch = st.succeeded(g, clk) // a probe, or a history to forget
	}
	p.freed(st)
	if ch.kind != 0 || ch.wake {
		p.apply(ctx, st, ch, Event{Member: m.Name})
	}
}

// release ends an attempt on st that has no outcome (a panic in user code,
// a spent retry budget, a hedged attempt that lost).
func (p *Pool[C]) release(ctx context.Context, st *memberState, g grant) {
	ch := st.release(g)
	p.freed(st)
	p.apply(ctx, st, ch, Event{Member: st.name})
}

// freed wakes calls waiting for a slot of st, if its MaxInFlight limits it.
func (p *Pool[C]) freed(st *memberState) {
	if st.lim.Load().bySlots() {
		p.notify()
	}
}

// verdict classifies err of an attempt: the caller's cancellation first,
// then the configured classifier, then the default one.
func (p *Pool[C]) verdict(ctx context.Context, err error, now time.Time) Verdict {
	if ctx.Err() != nil {
		return Verdict{Reason: ReasonCanceled}
	}
	return p.classify(err, now)
}

func (p *Pool[C]) classify(err error, now time.Time) Verdict {
	if p.set.classifier != nil {
		if v, ok := p.set.classifier(err); ok {
			return v
		}
	}
	return classifyAt(err, now)
}

// failed records a failed outcome on st, cools its Group on a quota
// failure, and then emits the events: a panicking observer or logger finds
// the pool consistent. It returns the end of the cooldown the failure
// opened or extended on st, if any.
func (p *Pool[C]) failed(ctx context.Context, c *config[C], group string, st *memberState, g grant, err error, v Verdict, now time.Time, n int) (until time.Time) {
	st.calls.end()
	text := ""
	if v.Reason.FailsOver() {
		text = keptText(err)
	}
	ch := st.fail(g, v, text, &p.set.cooldowns, p.draw(st), now)
	var cooled []*memberState // the group members this failure cooled, with their changes
	var changes []change
	if ch.kind == EventCooldown && v.Reason.Lane() == LaneQuota && group != "" {
		for _, other := range c.groups[group] {
			if other != st {
				cooled = append(cooled, other)
				changes = append(changes, other.coolWith(LaneQuota, 1, v, ch.until, now))
			}
		}
	}
	p.freed(st)
	p.record(st, ch)
	for i, other := range cooled {
		p.record(other, changes[i])
	}
	rerr := p.redacted(err)
	if v.Reason.FailsOver() && n > 0 {
		p.emit(ctx, Event{Kind: EventAttemptFailed, Member: st.name, Reason: v.Reason, Err: rerr, Attempt: n})
	}
	p.announce(ctx, ch, Event{Member: st.name, Reason: v.Reason, Err: rerr, Attempt: n})
	for i, other := range cooled {
		p.announce(ctx, changes[i], Event{Member: other.name, Reason: v.Reason, Err: rerr})
	}
	if ch.kind == EventCooldown {
		return ch.until
	}
	return time.Time{}
}

// apply turns a state change into events and wakes waiters.
func (p *Pool[C]) apply(ctx context.Context, st *memberState, ch change, ev Event) {
	p.record(st, ch)
	p.announce(ctx, ch, ev)
}

// record wakes waiters and shares a state change: the bookkeeping, before
// any callback runs.
func (p *Pool[C]) record(st *memberState, ch change) {
	if ch.wake {
		p.notify()
	}
	if ch.kind != 0 && p.sh != nil {
		p.share(st)
	}
}

// announce emits the event of a state change, if it makes one.
func (p *Pool[C]) announce(ctx context.Context, ch change, ev Event) {
	if ch.kind != 0 {
		ev.Kind, ev.Until = ch.kind, ch.until
		p.emit(ctx, ev)
	}
}

// unavailable builds the error for a call that cannot go on: the attempts
// made, then every untried member with the reason it cannot serve, and the
// earliest time one of them recovers.
func (p *Pool[C]) unavailable(c *config[C], tried *bitset, attempts []Attempt, tokens int, model string, now time.Time) *Error {
	e := &Error{Attempts: attempts, kind: ErrExhausted, sec: c.sec.get()}
	if len(attempts) == 0 {
		e.kind = ErrUnavailable
	}
	for i := range c.members {
		if tried.has(i) {
			continue
		}
		m := &c.members[i]
		m.st.mu.Lock()
		ph, reason, until := m.st.phase.Load(), m.st.reason, m.st.until
		m.st.mu.Unlock()
		a := Attempt{Member: m.Name, Reason: reason, Skipped: true}
		recovers := time.Time{}
		switch ph {
		case phaseCooling:
			a.Err = coolingError{until}
			recovers = until
		case phaseProbing:
			a.Err, recovers = ErrProbing, now
		case phaseDisabled:
			a.Err = ErrDisabled
		default:
			if m.st.lacks(model, now) {
				a.Reason, a.Err = ReasonNotFound, ErrLacksModel
				break
			}
			lim := m.st.lim.Load()
			if lim == nil {
				continue // ready, but the call ran out of attempts
			}
			recovers = lim.next(now, tokens)
			if !lim.fits(tokens, 0) || recovers.IsZero() {
				recovers = time.Time{} // the call never fits its context, TPM or TPD
			} else if !recovers.After(now) && (lim.limits.MaxInFlight == 0 || m.st.calls.inFlight() < int64(lim.limits.MaxInFlight)) {
				continue
			}
			a.Reason, a.Err = ReasonLimited, limitedError{recovers}
		}
		e.Attempts = append(e.Attempts, a)
		if !recovers.IsZero() && (e.RetryAt.IsZero() || recovers.Before(e.RetryAt)) {
			e.RetryAt = recovers
		}
	}
	if e.RetryAt.Before(now) && !e.RetryAt.IsZero() {
		e.RetryAt = now
	}
	return e
}

// wait blocks until a member may have recovered, when WithWaitForRecovery
// allows it and the recovery fits both the wait budget and ctx's deadline.
// It reports whether the call should look again.
func (p *Pool[C]) wait(ctx context.Context, retryAt time.Time, wake chan struct{}, waited *time.Time, now time.Time) bool {
	if p.set.waitForRecovery <= 0 || retryAt.IsZero() {
		return false
	}
	if waited.IsZero() {
		*waited = now
	}
	limit := waited.Add(p.set.waitForRecovery)
	if dl, ok := ctx.Deadline(); ok && dl.Before(limit) {
		limit = dl
	}
	if retryAt.After(limit) || !now.Before(limit) {
		return false
	}
	// A member being probed recovers when its probe ends, which wakes us:
	// no timer for it, so the wait cannot spin.
	var due <-chan time.Time
	if retryAt.After(now) {
		timer := time.NewTimer(retryAt.Sub(now))
		defer timer.Stop()
		due = timer.C
	}
	budget := time.NewTimer(limit.Sub(now))
	defer budget.Stop()
	select {
	case <-due:
	case <-wake:
	case <-budget.C:
	case <-ctx.Done():
	}
	return true
}

// budgetSpent emits EventExhausted for a call that failed fast on the budget.
func (p *Pool[C]) budgetSpent(ctx context.Context, first Attempt) {
	p.emit(ctx, Event{Kind: EventExhausted, Member: first.Member, Reason: first.Reason,
		Err: fmt.Errorf("%w: %w", ErrRetryBudget, p.redacted(first.Err)), Attempt: 1})
}

// exhausted emits EventExhausted for a call that failed.
func (p *Pool[C]) exhausted(ctx context.Context, e *Error) {
	p.emit(ctx, Event{Kind: EventExhausted, Err: e, Until: e.RetryAt, Attempt: len(e.Attempts)})
}

// bitset marks members tried in one call without allocating for pools of up
// to 64 members.
type bitset struct {
	small uint64
	big   []uint64
}

func (b *bitset) set(i int) {
	if i < 64 {
		b.small |= 1 << i
		return
	}
	w := i/64 - 1
	if w >= len(b.big) {
		b.big = append(b.big, make([]uint64, w+1-len(b.big))...)
	}
	b.big[w] |= 1 << (i % 64)
}

func (b *bitset) has(i int) bool {
	if i < 64 {
		return b.small&(1<<i) != 0
	}
	w := i/64 - 1
	return w < len(b.big) && b.big[w]&(1<<(i%64)) != 0
}
