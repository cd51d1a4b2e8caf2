package failover

import "time"

// earlyEvery is how often a last-resort probe may look at one member.
const earlyEvery = time.Second

// next claims the member a call tries next: the pick, or else a
// last-resort probe.
func (p *Pool[C]) next(c *config[C], tried *bitset, sel *selection, used *bool) (int, grant, bool) {
	if i, g, ok := p.pick(c, tried, sel); ok {
		return i, g, true
	}
	return p.lastResort(c, tried, sel, used)
}

// lastResort claims a member for an early probe when a call finds no
// member that can serve: a call that would fail anyway with ErrUnavailable
// may as well be the probe that notices the end of an outage. Only a member
// cooling for a transient reason the provider gave no hint for (server,
// timeout, network, overload; not a rate limit, which asked us to slow
// down) qualifies, at most one probe in flight per member and one per
// member per earlyEvery, and a call makes at most one such probe (used),
// so upstream calls never outnumber the calls made. Members are looked at
// in priority order.
func (p *Pool[C]) lastResort(c *config[C], tried *bitset, sel *selection, used *bool) (int, grant, bool) {
	if *used {
		return 0, grant{}, false
	}
	for _, t := range c.tiers {
		for _, i := range t.idx {
			if tried.has(i) {
				continue
			}
			if g, ok := c.members[i].st.early(sel); ok {
				*used = true
				return i, g, true
			}
		}
	}
	return 0, grant{}, false
}

// early claims a cooling member for a last-resort probe (see lastResort).
// It asks the store for a limit slot only once the member qualifies, so a
// look that makes no call spends nothing of a shared RPM or RPD.
func (s *memberState) early(sel *selection) (grant, bool) {
	if s.phase.Load() != phaseCooling || !s.lim.Load().fits(sel.tokens, sel.minContext) {
		return grant{}, false
	}
	t := sel.now()
	if s.lacks(sel.model, t) {
		return grant{}, false // it lacks the call's model: no probe would tell
	}
	s.mu.Lock()
	ok := s.earlyOK(t)
	s.mu.Unlock()
	if !ok {
		return grant{}, false
	}
	lim := s.lim.Load()
	var decided bool
	if lim != nil {
		if decided, ok = lim.shared(sel.ctx, t, sel.tokens, &s.calls); decided && !ok {
			return grant{}, false
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.earlyOK(t) {
		return grant{}, false // another call took the look in between
	}
	if lim == nil {
		s.calls.start()
	} else if !lim.admitLocal(t, sel.tokens, &s.calls, decided) {
		return grant{}, false
	}
	s.earlyAt = t
	s.phase.Store(phaseProbing)
	return grant{epoch: s.epoch.Load(), probe: true, early: true}, true
}

// earlyOK reports whether the member qualifies for a last-resort probe at
// t. It is called with mu held.
func (s *memberState) earlyOK(t time.Time) bool {
	return s.phase.Load() == phaseCooling && s.hintless && s.lane == LaneTransient && s.reason != ReasonRateLimit &&
		(s.earlyAt.IsZero() || !t.Before(s.earlyAt.Add(earlyEvery)))
}
