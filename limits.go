package failover

import (
	"context"
	"sync"
	"time"
)

// limiter enforces a member's Limits client-side over a sliding minute:
// at most RPM calls and TPM tokens started in any 60 s, and at most
// MaxInFlight calls at once; and over a calendar day in DayZone: at most
// RPD calls and TPD tokens started from one midnight to the next. A member
// without limits has no limiter.
//
// With a Store, the RPM and TPM windows and the day are the store's,
// shared by every pool: share asks it, and the local windows only note the
// calls, to take over when the store is unreachable.
type limiter struct {
	limits  Limits
	share   func(ctx context.Context, now time.Time, n int) (bool, time.Time, error) // nil: local windows
	mu      sync.Mutex
	starts  []time.Time    // ring of the last RPM call starts
	head    int            // oldest entry once the ring is full
	tokens  []spent        // calls of the last minute with their tokens, oldest first
	sum     int            // tokens in tokens
	blocked time.Time      // the shared windows are full until then
	dayEnd  time.Time      // end of the day counted in dayReqs and dayToks
	dayReqs int            // calls started in the day
	dayToks int            // tokens of the calls started in the day
	loc     *time.Location // of the day; nil without RPD and TPD
}

type spent struct {
	at time.Time
	n  int
}

func newLimiter(l Limits, name string, sh *sharing) *limiter {
	if l == (Limits{}) {
		return nil
	}
	lim := newWindows(l)
	if sh != nil && (l.RPM > 0 || l.TPM > 0 || lim.daily()) {
		lim.share = func(ctx context.Context, now time.Time, n int) (bool, time.Time, error) {
			return sh.store.Take(ctx, name, l, n, now)
		}
	}
	return lim
}

// newWindows returns a limiter of l on local windows only.
func newWindows(l Limits) *limiter {
	lim := &limiter{limits: l}
	if lim.daily() {
		loc, err := loadZone(l.DayZone)
		if err != nil {
			loc = time.UTC // New rejects such a zone; a store may still be asked
		}
		lim.loc = loc
	}
	return lim
}

// carryDay takes over old's counts of the current day when both count
// days in the same zone: a reload that changes another limit must not hand
// a spent member a new day.
func (l *limiter) carryDay(old *limiter) {
	if l == nil || old == nil || !l.daily() || !old.daily() || l.limits.DayZone != old.limits.DayZone {
		return
	}
	old.mu.Lock()
	end, reqs, toks := old.dayEnd, old.dayReqs, old.dayToks
	old.mu.Unlock()
	l.dayEnd, l.dayReqs, l.dayToks = end, reqs, toks
}

// daily reports whether l limits calls per day.
func (l *limiter) daily() bool { return l.limits.RPD > 0 || l.limits.TPD > 0 }

// day moves the day's counts on to the day of now, if that day is over.
// It is called with mu held.
func (l *limiter) day(now time.Time) {
	if !now.Before(l.dayEnd) {
		l.dayEnd = dayEnd(now, l.loc)
		l.dayReqs, l.dayToks = 0, 0
	}
}

// today returns the calls and tokens started in the day of now and when
// it ends; zeros without RPD and TPD.
func (l *limiter) today(now time.Time) (reqs, tokens int, ends time.Time) {
	if l == nil || !l.daily() {
		return 0, 0, time.Time{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !now.Before(l.dayEnd) {
		return 0, 0, dayEnd(now, l.loc)
	}
	return l.dayReqs, l.dayToks, l.dayEnd
}

// fits reports whether a call of n tokens fits the member's context, and
// whether its context is at least min when min > 0.
func (l *limiter) fits(n, min int) bool {
	if l == nil {
		return min == 0
	}
	ct := l.limits.ContextTokens
	return (ct == 0 || n <= ct) && (min == 0 || ct >= min)
}

// admit starts a call of n tokens at now, counted in c, if the limits
// allow it: an in-flight slot and a place in the RPM and TPM windows and
// in the day. It
// reports false, counting nothing, otherwise.
func (l *limiter) admit(ctx context.Context, now time.Time, n int, c *calls) bool {
	decided, ok := l.shared(ctx, now, n, c)
	return (!decided || ok) && l.admitLocal(now, n, c, decided)
}

// shared asks the store for a place in the shared RPM and TPM windows and
// the shared day. It
// reports decided false when the store has no say: no store, or it failed.
// A call that cannot start for local reasons asks nothing.
func (l *limiter) shared(ctx context.Context, now time.Time, n int, c *calls) (decided, ok bool) {
	if l.share == nil || !l.fits(n, 0) || (l.limits.MaxInFlight > 0 && c.inFlight() >= int64(l.limits.MaxInFlight)) {
		return false, false
	}
	l.mu.Lock()
	blocked := now.Before(l.blocked)
	l.mu.Unlock()
	if blocked {
		return true, false
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ok, at, err := l.share(ctx, now, n)
	if err != nil {
		return false, false
	}
	if !ok {
		l.mu.Lock()
		l.blocked = at
		l.mu.Unlock()
	}
	return true, ok
}

// admitLocal is admit on the local windows; with noted, the store has
// admitted the call and the windows only note it.
func (l *limiter) admitLocal(now time.Time, n int, c *calls, noted bool) bool {
	if !l.fits(n, 0) {
		return false
	}
	if limit := int64(l.limits.MaxInFlight); limit > 0 {
		if !c.startBelow(limit) {
			return false
		}
	} else {
		c.start()
	}
	if noted {
		l.mu.Lock()
		l.note(now, n)
		l.mu.Unlock()
	} else if !l.take(now, n) {
		c.unstart()
		return false
	}
	return true
}

// take reserves a call of n tokens at now in the RPM and TPM windows and
// the day, if they allow it.
func (l *limiter) take(now time.Time, n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if at, ok := l.free(now, n); !ok || at.After(now) {
		return false
	}
	l.note(now, n)
	return true
}

// note counts a call of n tokens at now in the windows. It is called with
// mu held.
func (l *limiter) note(now time.Time, n int) {
	if rpm := l.limits.RPM; rpm > 0 {
		if len(l.starts) < rpm {
			l.starts = append(l.starts, now)
		} else {
			l.starts[l.head] = now
			l.head = (l.head + 1) % rpm
		}
	}
	if l.limits.TPM > 0 && n > 0 {
		l.expire(now)
		l.tokens = append(l.tokens, spent{now, n})
		l.sum += n
	}
	if l.daily() {
		l.day(now)
		l.dayReqs++
		l.dayToks += max(n, 0)
	}
}

// next returns when a call of n tokens could start, without reserving it:
// zero if never, now or later otherwise.
func (l *limiter) next(now time.Time, n int) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.free(now, n)
	if !ok {
		return time.Time{}
	}
	return at
}

// bySlots reports whether calls wait for in-flight slots, so that a call
// ending must wake waiters.
func (l *limiter) bySlots() bool { return l != nil && l.limits.MaxInFlight > 0 }

// free returns when a call of n tokens fits the RPM and TPM windows and
// the day (now or later), and false if it never fits. It is called with mu
// held.
func (l *limiter) free(now time.Time, n int) (time.Time, bool) {
	at := now
	if l.blocked.After(at) {
		at = l.blocked
	}
	if rpm := l.limits.RPM; rpm > 0 && len(l.starts) == rpm {
		if end := l.starts[l.head].Add(time.Minute); end.After(at) {
			at = end
		}
	}
	if tpm := l.limits.TPM; tpm > 0 && n > 0 {
		if n > tpm {
			return time.Time{}, false
		}
		l.expire(now)
		sum := l.sum
		for _, s := range l.tokens {
			if sum+n <= tpm {
				break
			}
			sum -= s.n
			if end := s.at.Add(time.Minute); end.After(at) {
				at = end
			}
		}
	}
	if l.daily() {
		tpd := l.limits.TPD
		if tpd > 0 && n > tpd {
			return time.Time{}, false
		}
		l.day(now)
		if (l.limits.RPD > 0 && l.dayReqs >= l.limits.RPD) || (tpd > 0 && n > 0 && l.dayToks+n > tpd) {
			if l.dayEnd.After(at) {
				at = l.dayEnd // the next day has room: n fits TPD
			}
		}
	}
	return at, true
}

// expire forgets the tokens of calls a minute old at now. It is called
// with mu held.
func (l *limiter) expire(now time.Time) {
	for len(l.tokens) > 0 && !l.tokens[0].at.Add(time.Minute).After(now) {
		l.sum -= l.tokens[0].n
		l.tokens = l.tokens[1:]
	}
}
