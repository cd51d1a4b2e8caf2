package failover

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Store shares member state between pools: the replicas of a service that
// use the same keys. With a store, a key one replica finds revoked or rate
// limited is skipped by every replica, a cooldown's end is probed by one
// call across all of them, and RPM, TPM, RPD and TPD limits count every
// replica's calls. Without one (the default) a pool keeps its state in its own memory.
//
// The pool keeps a local copy of every member's state, so its healthy path
// never waits on the store: it tells the store about a change with Save and
// hears about everyone's changes through Watch. Only two calls wait on the
// store: Lease, when a member's window ends, and Take, before each call on
// a member with RPM, TPM, RPD or TPD limits. When either returns an error the pool
// goes on with its local state, so that no call fails because the store is
// down. [NewMemoryStore] shares state between pools of one process;
// the module github.com/llmfailover/failover/redisstore shares it through
// Redis.
type Store interface {
	// Save records s, a change of state made by a pool, and passes the
	// result on to every watcher (the saving pool included) with s's
	// Origin and Seq: s itself with a Version larger than any before, or,
	// when the stored state outranks s, the stored state with its
	// Version. The stored state outranks a CoolingDown state that ends no
	// later than its own CoolingDown state, any CoolingDown state when it
	// is Disabled, and any state that is not Manual when it is a Manual
	// Disabled. Every Save ends the member's probe lease. Save must not
	// block on I/O: a store that writes remotely queues the change, and
	// may drop a queued change when a newer one of the same member
	// replaces it.
	Save(s Shared)
	// Watch calls fn with every state saved from now on, by any pool, and
	// with each state stored now (also after the store reconnects). fn
	// may be called from several goroutines and out of order: the pool
	// keeps the largest Version.
	Watch(fn func(Shared))
	// Lease claims the probe of member, whose window has ended at now,
	// for holder. It returns the end of the lease and true if holder
	// holds it (a holder may claim its own lease again), or the end of
	// the other holder's lease and false.
	Lease(ctx context.Context, member, holder string, now time.Time) (time.Time, bool, error)
	// Take reserves a call of tokens tokens started at now on member,
	// whose limits are l, in the RPM and TPM windows and the RPD and TPD
	// day every pool shares: the day of now, which ends at l.DayEnd(now).
	// It returns true if the call fits, or false and when it may fit (the
	// zero time if it never does: tokens above TPM or TPD).
	Take(ctx context.Context, member string, l Limits, tokens int, now time.Time) (bool, time.Time, error)
}

// Shared is the part of a member's state that pools share through a
// [Store]: whether it is in rotation, and why and until when it is not.
// It holds no secret: the member's name, never its key.
type Shared struct {
	Member string
	State  State     // Active, CoolingDown or Disabled
	Lane   Lane      // the lane of the window
	Reason Reason    // why the member left rotation
	Level  int       // consecutive failures that shaped the window
	Until  time.Time // end of a CoolingDown window; zero otherwise
	// Manual is set for Enable and Disable, which outrank what calls find.
	Manual bool
	// At is when the pool saved the state, on its clock: Until - At is
	// the window.
	At time.Time
	// Origin and Seq identify the Save a state answers: the saving pool
	// and its count of saves of the member. A store passes them through.
	Origin string
	Seq    uint64
	// Version orders the states of a member: the store sets it.
	Version uint64
}

// WithStore shares member state with the other pools of store (see
// [Store]). The pool watches the store for as long as the store lives:
// create pools once, not per call. Members are matched by Name; a member
// that Update adds learns the shared state from its next change. A nil
// interface means no store; a nil pointer in the interface is an error of
// [New].
func WithStore(s Store) Option { return func(o *settings) { o.store = s } }

// leaseTime is how long a MemoryStore probe lease lasts.
const leaseTime = 30 * time.Second

// sharing is a pool's link to its store.
type sharing struct {
	store  Store
	holder string // this pool, for probe leases
}

func newSharing(s Store) *sharing {
	if s == nil {
		return nil
	}
	return &sharing{store: s, holder: fmt.Sprintf("%016x", rand.Uint64())}
}

// lease asks the store for the probe of st's member. On a store error the
// pool probes on its own.
func (sh *sharing) lease(ctx context.Context, name string, now time.Time) (time.Time, bool) {
	if ctx == nil {
		ctx = context.Background()
	}
	until, ok, err := sh.store.Lease(ctx, name, sh.holder, now)
	return until, ok || err != nil
}

// share saves st's latest state to the store. The saves of a member leave
// in the order of their Seq: one goroutine at a time saves, and it saves
// again when a change came while it did (a state saved late, after a newer
// one, would overwrite it in the store). A change made meanwhile by a
// watcher that the store calls from Save is saved by the loop too.
func (p *Pool[C]) share(st *memberState) {
	st.unsaved.Store(true)
	for st.unsaved.Load() && st.saving.CompareAndSwap(false, true) {
		if st.unsaved.Swap(false) {
			p.sh.store.Save(st.snapshot(p.now()))
		}
		st.saving.Store(false)
	}
}

// snapshot is st's state at now as the store shares it, with the count of
// its changes as Seq.
func (s *memberState) snapshot(now time.Time) Shared {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := Shared{Member: s.name, Lane: s.lane, Reason: s.reason, Level: s.level, Manual: s.enabled, At: now, Origin: s.sh.holder, Seq: s.seq}
	switch s.phase.Load() {
	case phaseCooling, phaseProbing:
		sh.State, sh.Until = CoolingDown, s.until
	case phaseDisabled:
		sh.State, sh.Manual = Disabled, s.manual
	default:
		sh.State = Active
	}
	return sh
}

// adopt applies a state from the store to the local copy: a newer state
// saved by another pool, or the answer to this pool's latest save (which
// may be a state that outranked it). An answer to an earlier save of this
// pool is older than the local copy and changes nothing. adopt keeps what
// the local copy knows better: a longer window, a Disable that only Enable
// lifts.
func (s *memberState) adopt(r Shared, now time.Time) change {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Origin == s.sh.holder {
		if r.Seq != s.seq || r.Version < s.version {
			return change{}
		}
	} else if r.Version <= s.version {
		return change{}
	}
	s.version = max(s.version, r.Version)
	p := s.phase.Load()
	switch r.State {
	case Active:
		if p == phaseActive || (p == phaseDisabled && s.manual && !r.Manual) {
			return change{}
		}
		if r.Manual {
			s.level, s.failCount, s.okCount, s.relapsed = 0, 0, 0, false
			s.lane, s.reason, s.stable = LaneNone, "", time.Time{}
		} else {
			s.stable = now.Add(s.window) // as after a probe of our own
		}
		s.manual, s.until = false, time.Time{}
		s.phase.Store(phaseActive)
		s.epoch.Add(1)
		return change{kind: EventRecovered, wake: true}
	case Disabled:
		if p == phaseDisabled {
			s.manual = s.manual || r.Manual
			return change{}
		}
		s.lane, s.reason, s.level, s.manual = r.Lane, r.Reason, r.Level, r.Manual
		s.dirty.Store(true)
		s.phase.Store(phaseDisabled)
		s.epoch.Add(1)
		return change{kind: EventDisabled}
	case CoolingDown:
		if p == phaseDisabled || !now.Before(r.Until) || (p == phaseCooling && !s.until.Before(r.Until)) {
			return change{}
		}
		s.lane, s.reason, s.level, s.until = r.Lane, r.Reason, max(r.Level, 1), r.Until
		s.window = r.Until.Sub(now)
		s.dirty.Store(true)
		s.phase.Store(phaseCooling)
		s.epoch.Add(1)
		return change{kind: EventCooldown, until: r.Until}
	}
	return change{}
}

// receive applies a state from the store and reports what it changed.
func (p *Pool[C]) receive(r Shared) {
	c := p.cfg.Load()
	i, ok := c.byName[r.Member]
	if !ok {
		return
	}
	ch := c.members[i].st.adopt(r, p.now())
	if ch.wake {
		p.notify()
	}
	if ch.kind != 0 {
		p.emit(context.Background(), Event{Kind: ch.kind, Member: r.Member, Reason: r.Reason, Until: ch.until})
	}
}
