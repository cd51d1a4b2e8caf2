package failover

import (
	"sync"
	"time"
)

// limiter enforces a member's Limits client-side over a sliding minute:
// at most RPM calls and TPM tokens started in any 60 s, and at most
// MaxInFlight calls at once. A member without limits has no limiter.
type limiter struct {
	limits Limits
	mu     sync.Mutex
	starts []time.Time // ring of the last RPM call starts
	head   int         // oldest entry once the ring is full
	tokens []spent     // calls of the last minute with their tokens, oldest first
	sum    int         // tokens in tokens
}

type spent struct {
	at time.Time
	n  int
}

func newLimiter(l Limits) *limiter {
	if l == (Limits{}) {
		return nil
	}
	return &limiter{limits: l}
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
// allow it: an in-flight slot and a place in the RPM and TPM windows. It
// reports false, counting nothing, otherwise.
func (l *limiter) admit(now time.Time, n int, c *calls) bool {
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
	if !l.take(now, n) {
		c.unstart()
		return false
	}
	return true
}

// take reserves a call of n tokens at now in the RPM and TPM windows, if
// they allow it.
func (l *limiter) take(now time.Time, n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if at, ok := l.free(now, n); !ok || at.After(now) {
		return false
	}
	if rpm := l.limits.RPM; rpm > 0 {
		if len(l.starts) < rpm {
			l.starts = append(l.starts, now)
		} else {
			l.starts[l.head] = now
			l.head = (l.head + 1) % rpm
		}
	}
	if l.limits.TPM > 0 && n > 0 {
		l.tokens = append(l.tokens, spent{now, n})
		l.sum += n
	}
	return true
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

// free returns when a call of n tokens fits the RPM and TPM windows (now or
// later), and false if it never fits. It is called with mu held.
func (l *limiter) free(now time.Time, n int) (time.Time, bool) {
	at := now
	if rpm := l.limits.RPM; rpm > 0 && len(l.starts) == rpm {
		if end := l.starts[l.head].Add(time.Minute); end.After(at) {
			at = end
		}
	}
	if tpm := l.limits.TPM; tpm > 0 && n > 0 {
		if n > tpm {
			return time.Time{}, false
		}
		for len(l.tokens) > 0 && !l.tokens[0].at.Add(time.Minute).After(now) {
			l.sum -= l.tokens[0].n
			l.tokens = l.tokens[1:]
		}
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
	return at, true
}
