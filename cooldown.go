package failover

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Backoff is the cooldown schedule of one lane: the n-th consecutive failure
// cools a member for Base·Factor^(n-1), at most Max, spread by ±Jitter.
type Backoff struct {
	Base   time.Duration // first cooldown
	Max    time.Duration // cap; 0 means Base
	Factor float64       // growth per consecutive failure; 0 means 2
	Jitter float64       // relative spread in [0, 1]; 0.2 means ±20 %
}

// Cooldowns holds the schedule of each lane.
type Cooldowns struct {
	Transient Backoff // rate limits, overload, 5xx, timeouts, network
	Quota     Backoff // quota and billing; applies to the member's whole Group
	Permanent Backoff // auth, forbidden, not found
	// PermanentUntilEnable disables a member on a permanent-lane failure
	// until Enable is called, instead of cooling it on the Permanent
	// schedule and probing it when the window ends.
	PermanentUntilEnable bool
	// Blips is how many consecutive server, timeout or network failures
	// without a retry hint a healthy member may have before the Transient
	// schedule cools it. Each of them opens a window of no length: the next
	// call probes the member (one probe at a time) and a success keeps it
	// in rotation, so a cheap primary that fails now and then keeps its
	// traffic. A member is healthy when it is Active, its last call
	// succeeded, its backoff has been forgotten (see stableCalls) and its
	// recent failure rate is under 0.2 (each outcome weighs 1/4; after a
	// blip a member is on trial until 10 calls in a row succeed), so one
	// that fails every other call is cooled at its third failure. Rate
	// limits, overload, quotas, hints, a first call that fails and failures
	// of a member that just recovered cool at once.
	// DefaultCooldowns sets 1; 0 cools at the first failure.
	Blips int
}

// DefaultCooldowns returns the default schedules:
//   - transient: 5 s, ×2 per consecutive failure, cap 5 min, jitter ±20 %;
//   - quota: 1 h, ×2, cap 24 h, jitter ±20 %;
//   - permanent: 15 min, ×2, cap 6 h, jitter ±20 %;
//   - one blip: a healthy member's first server, timeout or network
//     failure without a hint opens no window, only a probe.
func DefaultCooldowns() Cooldowns {
	return Cooldowns{
		Transient: Backoff{Base: 5 * time.Second, Max: 5 * time.Minute, Factor: 2, Jitter: 0.2},
		Quota:     Backoff{Base: time.Hour, Max: 24 * time.Hour, Factor: 2, Jitter: 0.2},
		Permanent: Backoff{Base: 15 * time.Minute, Max: 6 * time.Hour, Factor: 2, Jitter: 0.2},
		Blips:     1,
	}
}

func (c Cooldowns) lane(l Lane) Backoff {
	switch l {
	case LaneQuota:
		return c.Quota
	case LanePermanent:
		return c.Permanent
	}
	return c.Transient
}

func (c Cooldowns) validate() []error {
	var errs []error
	for _, b := range []struct {
		name string
		b    Backoff
	}{{"Transient", c.Transient}, {"Quota", c.Quota}, {"Permanent", c.Permanent}} {
		field := "WithCooldowns: " + b.name
		if b.b.Base < 0 {
			errs = append(errs, fmt.Errorf("%s.Base: duration %v is negative", field, b.b.Base))
		}
		if b.b.Max < 0 {
			errs = append(errs, fmt.Errorf("%s.Max: duration %v is negative", field, b.b.Max))
		} else if b.b.Max != 0 && b.b.Max < b.b.Base {
			errs = append(errs, fmt.Errorf("%s.Max: %v is below Base %v", field, b.b.Max, b.b.Base))
		}
		if !(b.b.Jitter >= 0 && b.b.Jitter <= 1) {
			errs = append(errs, fmt.Errorf("%s.Jitter: %v is outside [0, 1]", field, b.b.Jitter))
		}
		if b.b.Factor != 0 && !(b.b.Factor >= 1 && b.b.Factor <= 1e6) {
			errs = append(errs, fmt.Errorf("%s.Factor: %v is outside [1, 1e6]", field, b.b.Factor))
		}
	}
	if c.Blips < 0 {
		errs = append(errs, fmt.Errorf("WithCooldowns: Blips: %d is negative", c.Blips))
	}
	return errs
}

// Window returns the cooldown after the level-th consecutive failure
// (level 1 is the first), with jitter r in [0, 1) (0.5 means none).
func (b Backoff) Window(level int, r float64) time.Duration {
	limit := b.Max
	if limit == 0 {
		limit = b.Base
	}
	factor := b.Factor
	if factor == 0 {
		factor = 2
	}
	d := float64(b.Base) * math.Pow(factor, float64(max(level, 1)-1))
	d *= 1 + b.Jitter*(2*r-1)
	if !(d < float64(limit)) { // also +Inf
		return limit
	}
	return time.Duration(max(d, 0))
}

// phase is a member's state; the exported view is State.
type phase = int32

const (
	phaseActive phase = iota
	phaseCooling
	phaseProbing
	phaseDisabled
)

// stableCalls is how many consecutive successes prove a recovered member
// healthy: its backoff level is then forgotten, as it is when the member
// stays healthy for as long as its last window. Until then a new failure
// continues the backoff, so a member that fails every other call keeps
// doubling its window instead of flapping at the base.
const stableCalls = 10

// rateWeight is the weight of one outcome in a member's recent failure
// rate, and blipRate the rate under which a failure may still be a blip:
// a member that fails now and then (1 %) has a rate near 0 between its
// failures; one that fails every other call passes 0.2 at its third
// failure and is cooled.
const (
	rateWeight = 0.25
	blipRate   = 0.2
)

// blipTrial is how long a member stays on trial after a blip unless it
// serves stableCalls calls in a row first.
const blipTrial = time.Hour

// relapseMax caps the backoff of a member that relapses, fails again right
// after each recovery, in place of its lane's Max: a flapping member is
// benched for up to an hour, while one that fails its probes (an outage)
// is still probed at least every Max.
const relapseMax = time.Hour

// staleEpoch marks an outcome that belongs to no call of the current window.
const staleEpoch = math.MaxUint64

// memberState is the state of one member, kept by name across Update.
//
// phase and epoch are read without the lock on the hot path; they change
// only under mu. Writers store phase before epoch and readers load epoch
// before phase, so a call that sees a new epoch also sees the phase that
// came with it.
type memberState struct {
	name string

	phase     atomic.Int32
	lim       atomic.Pointer[limiter] // nil without Limits
	epoch     atomic.Uint64           // bumped whenever a window opens or ends
	dirty     atomic.Bool             // a success must take the lock to reset counters
	calls     calls                   // in flight and started
	failures  atomic.Uint64
	hedged    atomic.Uint64
	skips     [skipCauses]calls      // selections that passed it over, by cause (striped like calls)
	lacking   atomic.Pointer[[]lack] // models it answered not_found for (lacks.go); nil if none
	use       usage                  // calls served and their tokens
	mu        sync.Mutex
	lane      Lane
	reason    Reason
	level     int           // consecutive failures in lane that shaped the window
	window    time.Duration // length of the last window
	until     time.Time     // end of the window
	hintless  bool          // the window has no provider hint behind it
	rate      float64       // failures per outcome, decaying, while the member is on trial
	earlyAt   time.Time     // the last last-resort probe
	stable    time.Time     // before this, a failure continues the backoff
	okCount   int           // consecutive successes since the last failure
	relapsed  bool          // failed again right after a recovery: flapping
	failCount int           // consecutive failures, reset on success
	lastErr   string        // the start of the last failure's text, redacted when shown
	manual    bool          // disabled by Disable
	version   uint64        // of the last state adopted from the store
	seq       uint64        // saves of this member to the store
	enabled   bool          // the latest change was an Enable
	unsaved   atomic.Bool   // a change waits to be saved to the store
	saving    atomic.Bool   // a goroutine is saving this member's state
	sh        *sharing      // nil without a store
}

// grant is a member acquired for one attempt.
type grant struct {
	epoch uint64
	probe bool
	early bool // a last-resort probe before the window's end (see lastResort)
}

// acquire claims the member for a call if it can serve now: Active, or at
// the end of its window with no probe in flight (then the call is the probe),
// and within its Limits. The clock is read only for a member that is
// cooling or has limits. With a store, the probe takes the store's lease
// and the limits ask the store, before the member is claimed.
func (s *memberState) acquire(sel *selection) (grant, bool) {
	if sel.minContext > 0 && !s.lim.Load().fits(sel.tokens, sel.minContext) {
		return s.pass(sel, skipLimited)
	}
	if sel.model != "" && s.lacking.Load() != nil && s.lacks(sel.model, sel.now()) {
		return s.pass(sel, skipModel)
	}
	epoch := s.epoch.Load()
	switch ph := s.phase.Load(); ph {
	case phaseActive:
		if lim := s.lim.Load(); lim == nil {
			s.calls.startOn(sel.shard())
		} else if !lim.admit(sel.ctx, sel.now(), sel.tokens, &s.calls) {
			return s.pass(sel, skipLimited)
		}
		return grant{epoch: epoch}, true
	case phaseCooling:
		t := sel.now()
		if s.sh != nil && !s.leased(sel, t) {
			return s.pass(sel, skipCooling)
		}
		lim := s.lim.Load()
		var decided, ok bool
		if lim != nil {
			if decided, ok = lim.shared(sel.ctx, t, sel.tokens, &s.calls); decided && !ok {
				return s.pass(sel, skipLimited)
			}
		}
		g, why := s.claimProbe(t, sel.tokens, lim, decided)
		if why != skipNone {
			return s.pass(sel, why)
		}
		return g, true
	default:
		return s.pass(sel, causeOf(ph))
	}
}

// claimProbe makes the call the probe of a member whose window ended at
// or before t, or returns why it cannot. It takes mu.
func (s *memberState) claimProbe(t time.Time, tokens int, lim *limiter, decided bool) (grant, skipCause) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ph := s.phase.Load(); ph != phaseCooling || t.Before(s.until) {
		return grant{}, causeOf(ph)
	}
	if lim == nil {
		s.calls.start()
	} else if !lim.admitLocal(t, tokens, &s.calls, decided) {
		return grant{}, skipLimited
	}
	s.phase.Store(phaseProbing)
	return grant{epoch: s.epoch.Load(), probe: true}, skipNone
}

// leased reports whether this pool may probe the member, whose window may
// have ended at t: its window has ended and the store's lease is this
// pool's (or the store is unreachable). When another pool holds the lease,
// the member cools locally until the lease ends; the holder's outcome
// reaches this pool through the store before then.
func (s *memberState) leased(sel *selection, t time.Time) bool {
	s.mu.Lock()
	over := s.phase.Load() == phaseCooling && !t.Before(s.until)
	epoch := s.epoch.Load()
	s.mu.Unlock()
	if !over {
		return false
	}
	end, ok := s.sh.lease(sel.ctx, s.name, t)
	if ok {
		return true
	}
	s.mu.Lock()
	if s.epoch.Load() == epoch && s.phase.Load() == phaseCooling && end.After(s.until) {
		s.until = end
	}
	s.mu.Unlock()
	return false
}

// ready reports whether acquire would succeed now, without claiming.
func (s *memberState) ready(sel *selection) bool { return s.unready(sel) == skipNone }

// unready returns why the member cannot serve the selection now, or
// skipNone when it can.
func (s *memberState) unready(sel *selection) skipCause {
	if !s.lim.Load().fits(sel.tokens, sel.minContext) {
		return skipLimited
	}
	if sel.model != "" && s.lacking.Load() != nil && s.lacks(sel.model, sel.now()) {
		return skipModel
	}
	switch ph := s.phase.Load(); ph {
	case phaseActive:
	case phaseCooling:
		t := sel.now()
		s.mu.Lock()
		ph = s.phase.Load()
		open := ph == phaseCooling && !t.Before(s.until)
		s.mu.Unlock()
		if !open {
			return causeOf(ph)
		}
	default:
		return causeOf(ph)
	}
	lim := s.lim.Load()
	if lim == nil {
		return skipNone
	}
	t := sel.now()
	at := lim.next(t, sel.tokens)
	if !at.IsZero() && !at.After(t) && (lim.limits.MaxInFlight == 0 || s.calls.inFlight() < int64(lim.limits.MaxInFlight)) {
		return skipNone
	}
	return skipLimited
}

// skipCause is why a selection passed over a member.
type skipCause int8

const (
	skipCooling skipCause = iota
	skipProbing
	skipDisabled
	skipLimited
	skipModel            // it lacks the call's model (ForModel)
	skipCauses           // the number of causes
	skipNone   skipCause = -1
)

// causeOf is the skip cause of a member in phase ph that cannot serve.
func causeOf(ph int32) skipCause {
	switch ph {
	case phaseProbing:
		return skipProbing
	case phaseDisabled:
		return skipDisabled
	}
	return skipCooling // cooling, or active again but its probe taken
}

// pass counts a call that passed the member (sel.cur) over for cause k,
// once a call however often it looks again (after a failure, a wait, a
// hedge's delay, another draw), tells the Skip hook, and returns
// acquire's refusal. It is called with no lock held.
func (s *memberState) pass(sel *selection, k skipCause) (grant, bool) {
	if !sel.counted.has(sel.cur) {
		sel.counted.set(sel.cur)
		s.skips[k].count()
		if sel.skip != nil {
			sel.skip(sel.ctx, s.name, k.err())
		}
	}
	return grant{}, false
}

// err is the error the Skip hook receives for k.
func (k skipCause) err() error {
	switch k {
	case skipCooling:
		return ErrCoolingDown
	case skipProbing:
		return ErrProbing
	case skipDisabled:
		return ErrDisabled
	case skipModel:
		return ErrLacksModel
	}
	return ErrLimited
}

// change is what an outcome did to a member, for events.
type change struct {
	kind   EventKind // EventCooldown, EventDisabled or EventRecovered; 0 none
	until  time.Time
	wake   bool // a member may have become available
	manual bool // made by Enable or Disable
}

// succeed records a success of a call that acquired g.
func (s *memberState) succeed(g grant, sel *selection) change {
	if s.ended(g, sel) {
		return change{}
	}
	return s.succeeded(g, sel)
}

// ended is succeed's lock-free part: it counts the call's end and reports
// whether that was all, a plain call on a member with nothing to reset.
// Otherwise succeeded must record the success.
func (s *memberState) ended(g grant, sel *selection) bool {
	s.calls.endOn(sel.shard())
	return !g.probe && !s.dirty.Load()
}

// succeeded is succeed's part under the lock, after ended.
func (s *memberState) succeeded(g grant, sel *selection) (ch change) {
	t := sel.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.count(&ch)
	if g.epoch != s.epoch.Load() {
		return change{} // the window changed while this call was in flight
	}
	s.failCount = 0
	s.okCount++
	s.rate *= 1 - rateWeight
	if g.probe && s.phase.Load() == phaseProbing {
		s.phase.Store(phaseActive)
		s.stable = t.Add(s.window)
		if s.level == 0 {
			s.stable = t.Add(blipTrial) // after a blip, only stableCalls successes forget it
		}
		s.epoch.Add(1)
		return change{kind: EventRecovered, wake: true}
	}
	if s.okCount >= stableCalls || !t.Before(s.stable) {
		s.level, s.lane, s.reason, s.relapsed, s.rate = 0, LaneNone, "", false, 0
		s.dirty.Store(false)
	}
	return change{}
}

// fail records a failed outcome of a call that acquired g (epoch staleEpoch
// for an outcome reported from outside a call). It opens, escalates or
// extends the member's window as the verdict's lane requires.
func (s *memberState) fail(g grant, v Verdict, errText string, cd *Cooldowns, r float64, now time.Time) (ch change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.count(&ch)
	lane := v.Reason.Lane()
	// The member served before: its last call succeeded, or it has a
	// history of calls and nothing left to forget (a clean member counts
	// no successes, to keep its healthy path off the lock).
	served := s.okCount > 0 || (!s.dirty.Load() && s.calls.requests() > 1)
	rate := s.rate // the recent failure rate, before this failure
	if v.Reason.FailsOver() {
		s.rate = s.rate*(1-rateWeight) + rateWeight
		s.failures.Add(1)
		s.failCount++
		s.okCount = 0
		s.lastErr = errText
		s.dirty.Store(true)
	}
	fresh := g.epoch == s.epoch.Load()
	if lane == LaneNone {
		if g.probe && fresh && s.phase.Load() == phaseProbing {
			s.phase.Store(phaseCooling) // no verdict: release the probe slot
			return change{wake: true}
		}
		return change{}
	}
	p := s.phase.Load()
	if !fresh || (p != phaseActive && p != phaseProbing) {
		// A call already in flight when the window opened: it escalates
		// nothing, but a more severe lane replaces the window and a longer
		// hint extends it.
		if p == phaseActive || (p == phaseDisabled && s.manual) {
			return change{}
		}
		if lane > s.lane {
			return s.open(lane, 1, v, cd, r, now)
		}
		if end := now.Add(v.RetryAfter); v.RetryAfter > 0 && end.After(s.until) {
			s.until, s.hintless = end, false
			return change{kind: EventCooldown, until: end}
		}
		return change{}
	}
	if p == phaseActive && served && rate < blipRate && s.blip(v, cd, now) {
		// An isolated failure of a healthy member: a window of no length,
		// which the next call probes.
		s.lane, s.level, s.reason, s.window, s.until, s.hintless = LaneTransient, 0, v.Reason, 0, now, true
		s.dirty.Store(true)
		s.phase.Store(phaseCooling)
		s.epoch.Add(1)
		return change{kind: EventCooldown, until: now, wake: true}
	}
	if g.early && p == phaseProbing && lane == LaneTransient {
		// A failed last-resort probe looked early: the window stands (a
		// later hint extends it), and the member cools on.
		s.phase.Store(phaseCooling)
		s.reason = v.Reason // a 429 now: no more early probes
		if end := now.Add(v.RetryAfter); v.RetryAfter > 0 && end.After(s.until) {
			s.until, s.hintless = end, false
			return change{kind: EventCooldown, until: end, wake: true}
		}
		return change{wake: true}
	}
	level := s.level + 1
	if lane != s.lane || (p == phaseActive && !now.Before(s.stable)) {
		level = 1 // a new kind of failure, or the member was stable long enough
	}
	// Failing again while Active before it proved stable, the member
	// relapsed: it flaps rather than recovers.
	if level > 1 && p == phaseActive {
		s.relapsed = true
		level++ // and its backoff grows twice as fast
	}
	s.relapsed = s.relapsed && level > 1
	return s.open(lane, level, v, cd, r, now)
}

// open starts a window. It is called with mu held.
func (s *memberState) open(lane Lane, level int, v Verdict, cd *Cooldowns, r float64, now time.Time) change {
	s.lane, s.level, s.reason = lane, level, v.Reason
	b := cd.lane(lane)
	if s.relapsed {
		b.Max = max(b.Max, b.Base, relapseMax) // a flapping member's backoff outgrows the cap
	}
	s.window, s.hintless = max(b.Window(level, r), v.RetryAfter), v.RetryAfter == 0
	if lane == LaneQuota && level == 1 && v.Reset && v.RetryAfter > 0 {
		// A quota with a hint names its reset (a period quota): rest until
		// then, not a lane's hour past it. A refusal after the reset backs
		// off on the lane.
		s.window = v.RetryAfter
	}
	s.until = now.Add(s.window)
	s.dirty.Store(true)
	kind := EventCooldown
	if lane == LanePermanent && cd.PermanentUntilEnable {
		s.phase.Store(phaseDisabled)
		kind = EventDisabled
	} else {
		s.phase.Store(phaseCooling)
	}
	s.epoch.Add(1)
	return change{kind: kind, until: s.until}
}

// blip reports whether a failure with v of the Active member is one of the
// isolated failures Cooldowns.Blips lets pass: a server, timeout or network
// failure without a hint, within the first Blips consecutive ones, of a
// member whose backoff is forgotten. It is called with mu held, after
// failCount counted the failure.
func (s *memberState) blip(v Verdict, cd *Cooldowns, now time.Time) bool {
	switch v.Reason {
	case ReasonServer, ReasonTimeout, ReasonNetwork:
	default:
		return false
	}
	return v.RetryAfter == 0 && s.failCount <= cd.Blips && (s.level == 0 || !now.Before(s.stable))
}

// coolWith puts a member of the failing member's Group on the same quota
// window, unless it is already out for longer.
func (s *memberState) coolWith(lane Lane, level int, v Verdict, until, now time.Time) (ch change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.count(&ch)
	if p := s.phase.Load(); p == phaseDisabled || (p == phaseCooling && !s.until.Before(until)) {
		return change{}
	}
	s.lane, s.level, s.reason, s.until = lane, max(level, s.level), v.Reason, until
	s.window = until.Sub(now)
	s.dirty.Store(true)
	s.phase.Store(phaseCooling)
	s.epoch.Add(1)
	return change{kind: EventCooldown, until: until}
}

// release ends a call that produced no outcome (a panic in the caller's
// function): the in-flight count drops and a probe slot is freed.
func (s *memberState) release(g grant) change {
	s.calls.end()
	if !g.probe {
		return change{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if g.epoch == s.epoch.Load() && s.phase.Load() == phaseProbing {
		s.phase.Store(phaseCooling)
		return change{wake: true}
	}
	return change{}
}

// setEnabled clears every window (Enable) or takes the member out of
// rotation (Disable).
func (s *memberState) setEnabled(on bool) (ch change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.count(&ch)
	if on {
		s.lane, s.level, s.reason, s.failCount, s.okCount, s.manual, s.relapsed = LaneNone, 0, "", 0, 0, false, false
		s.until, s.stable, s.window = time.Time{}, time.Time{}, 0
		s.lacking.Store(nil) // the models it lacked too: an operator's Enable starts it afresh
		s.dirty.Store(false)
		s.phase.Store(phaseActive)
		s.epoch.Add(1)
		return change{kind: EventRecovered, wake: true, manual: true}
	}
	s.manual = true
	s.phase.Store(phaseDisabled)
	s.epoch.Add(1)
	return change{kind: EventDisabled, manual: true}
}

// rest takes an Active member out until until without counting a failure:
// its responses say its rate limit is spent (a proactive cooldown).
func (s *memberState) rest(until time.Time, now time.Time) (ch change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.count(&ch)
	switch s.phase.Load() {
	case phaseCooling, phaseProbing:
		if until.After(s.until) {
			s.until, s.hintless = until, false
			return change{kind: EventCooldown, until: until}
		}
		return change{}
	case phaseDisabled:
		return change{}
	}
	s.lane, s.reason, s.until, s.window, s.hintless = LaneTransient, ReasonRateLimit, until, until.Sub(now), false
	s.dirty.Store(true)
	s.phase.Store(phaseCooling)
	s.epoch.Add(1)
	return change{kind: EventCooldown, until: until}
}

// count counts a change of state as one save to the store, for the
// answers to tell the latest save apart (see adopt). It is called with mu
// held.
func (s *memberState) count(ch *change) {
	if ch.kind != 0 {
		s.seq++
		s.enabled = ch.manual && ch.kind == EventRecovered
	}
}
