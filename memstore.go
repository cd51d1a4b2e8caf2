package failover

import (
	"context"
	"sync"
	"time"
)

// MemoryStore is a [Store] in memory, for pools of one process that share
// keys (and for tests of shared state). The zero MemoryStore is empty and
// ready to use; its methods are safe for concurrent use and never fail.
type MemoryStore struct {
	mu       sync.Mutex
	version  uint64
	states   map[string]Shared
	leases   map[string]lease
	limits   map[string]*limiter
	watchers []func(Shared)
}

type lease struct {
	holder string
	until  time.Time
}

// NewMemoryStore returns an empty store. Its probe leases last 30 s.
func NewMemoryStore() *MemoryStore { return new(MemoryStore) }

// init makes the maps of a zero store. It is called with mu held.
func (m *MemoryStore) init() {
	if m.states == nil {
		m.states = make(map[string]Shared)
		m.leases = make(map[string]lease)
		m.limits = make(map[string]*limiter)
	}
}

// Save implements [Store]: it stores s and calls the watchers before it
// returns.
func (m *MemoryStore) Save(s Shared) {
	m.mu.Lock()
	m.init()
	delete(m.leases, s.Member)
	if old := m.states[s.Member]; !keeps(old, s) {
		old.Origin, old.Seq = s.Origin, s.Seq // the answer: what outranked s
		s = old
	} else {
		m.version++
		s.Version = m.version
		if s.State == Active {
			delete(m.states, s.Member)
		} else {
			m.states[s.Member] = s
		}
	}
	watchers := m.watchers
	m.mu.Unlock()
	for _, fn := range watchers {
		fn(s)
	}
}

// keeps reports whether a store holding old takes s, by the rules of
// [Store.Save]. The zero old is an Active member.
func keeps(old, s Shared) bool {
	if old.State == Disabled && old.Manual && !s.Manual {
		return false
	}
	if s.State == CoolingDown && (old.State == Disabled || (old.State == CoolingDown && !old.Until.Before(s.Until))) {
		return false
	}
	return true
}

// Watch implements [Store]: fn gets the stored states before Watch returns.
func (m *MemoryStore) Watch(fn func(Shared)) {
	m.mu.Lock()
	m.watchers = append(m.watchers[:len(m.watchers):len(m.watchers)], fn)
	stored := make([]Shared, 0, len(m.states))
	for _, s := range m.states {
		stored = append(stored, s)
	}
	m.mu.Unlock()
	for _, s := range stored {
		fn(s)
	}
}

// Lease implements [Store].
func (m *MemoryStore) Lease(_ context.Context, member, holder string, now time.Time) (time.Time, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	if l, ok := m.leases[member]; ok && l.holder != holder && now.Before(l.until) {
		return l.until, false, nil
	}
	l := lease{holder: holder, until: now.Add(leaseTime)}
	m.leases[member] = l
	return l.until, true, nil
}

// Take implements [Store]. A change of limits starts the member's windows
// afresh.
func (m *MemoryStore) Take(_ context.Context, member string, l Limits, tokens int, now time.Time) (bool, time.Time, error) {
	m.mu.Lock()
	m.init()
	lim := m.limits[member]
	if lim == nil || lim.limits != l {
		fresh := newWindows(l)
		fresh.carryDay(lim) // other limits keep the day's counts
		lim = fresh
		m.limits[member] = lim
	}
	m.mu.Unlock()
	if lim.take(now, tokens) {
		return true, time.Time{}, nil
	}
	return false, lim.next(now, tokens), nil
}
