// Package redisstore shares the member state of failover pools through
// Redis, so that replicas of a service that use the same keys skip a key
// any of them found revoked or rate limited, probe a recovering key once
// between them, and keep RPM, TPM, RPD and TPD limits together.
//
// Create one [Store] per process and pass it to every pool with
// failover.WithStore:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
//	store, err := redisstore.New(rdb)
//	if err != nil { ... }
//	defer store.Close()
//	pool, err := failover.New(members, failover.WithStore(store))
//
// Each pool keeps a local copy of the state: the healthy path never waits
// on Redis. Changes are written by one script each (the state, its TTL,
// its version and the PUBLISH together) and reach the other replicas
// through pub/sub. When Redis is unreachable the pools go on with their
// local state; the store logs it once, keeps the changes made meanwhile,
// and when Redis is back writes them and reads everyone else's.
//
// The store keeps member names, states and counters in Redis: never API
// keys, clients or error texts.
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmfailover/failover"
	"github.com/redis/go-redis/v9"
)

// ErrUnavailable is returned by Lease and Take while Redis is unreachable;
// the pool then uses its local state.
var ErrUnavailable = errors.New("redisstore: Redis unavailable")

// Store is a failover.Store on Redis. Create it with [New]; its methods are
// safe for concurrent use.
type Store struct {
	rdb     *redis.Client
	keys    keys
	lease   time.Duration
	timeout time.Duration
	log     *slog.Logger
	// pingEvery is how long the listener waits for a message before it
	// pings (pingUp; tests shorten it).
	pingEvery time.Duration

	days sync.Map // DayZone → dayOf: the day a replica last counted in

	mu       sync.Mutex
	pending  map[string]failover.Shared // saved, not yet written
	watchers []func(failover.Shared)

	kick       chan struct{} // wakes the writer
	sub        *redis.PubSub
	down       atomic.Bool // Redis failed; the writer retries until it answers
	stale      atomic.Bool // (re)subscribed; the writer resyncs
	subscribed atomic.Bool // the listener hears the channel
	ctx        context.Context
	cancel     context.CancelFunc
	done       sync.WaitGroup
	closing    sync.Once
}

var _ failover.Store = (*Store)(nil)

// Option configures a [Store].
type Option func(*Store)

// WithPrefix sets the prefix of every key and of the channel, so that
// pools with different members share one Redis. The default is "failover".
func WithPrefix(p string) Option { return func(s *Store) { s.keys.prefix = p } }

// WithLeaseTime sets how long a probe lease lasts: if the replica that
// probes a member dies, another probes it after d. The default is 30 s;
// make it longer than your slowest call.
func WithLeaseTime(d time.Duration) Option { return func(s *Store) { s.lease = d } }

// WithTimeout bounds each call that waits on Redis (Lease and Take, which a
// pool makes before a probe and before each call on a member with RPM,
// TPM, RPD or TPD limits). On timeout the pool uses its local state. The
// default is 100 ms.
func WithTimeout(d time.Duration) Option { return func(s *Store) { s.timeout = d } }

// WithLogger sets where the store says that Redis went away and came back.
// The default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// New returns a store on rdb and starts its two goroutines: one reads
// everyone's changes, one writes this process's. It does not wait for
// Redis: a store started while Redis is down works on local state until it
// is back. rdb stays the caller's; Close does not close it.
//
// rdb must have ContextTimeoutEnabled set: without it go-redis ignores
// the deadline of a call's context and a stalled Redis holds each call on
// a limited member for the client's ReadTimeout (3 s by default) instead
// of the store's timeout.
func New(rdb *redis.Client, opts ...Option) (*Store, error) {
	if rdb == nil {
		return nil, fmt.Errorf("%w: redisstore.New with a nil client", failover.ErrInvalid)
	}
	if !rdb.Options().ContextTimeoutEnabled {
		return nil, fmt.Errorf("%w: redisstore.New: set ContextTimeoutEnabled in the client's redis.Options, so that WithTimeout bounds the calls that wait on Redis", failover.ErrInvalid)
	}
	s := &Store{
		rdb:       rdb,
		keys:      keys{prefix: "failover"},
		lease:     30 * time.Second,
		timeout:   100 * time.Millisecond,
		log:       slog.Default(),
		pingEvery: pingUp,
		pending:   make(map[string]failover.Shared),
		kick:      make(chan struct{}, 1),
	}
	var errs []error
	for i, opt := range opts {
		if opt == nil {
			errs = append(errs, fmt.Errorf("option %d is nil", i))
			continue
		}
		opt(s)
	}
	if s.keys.prefix == "" {
		errs = append(errs, errors.New("WithPrefix: empty prefix"))
	}
	if s.lease < time.Millisecond {
		errs = append(errs, fmt.Errorf("WithLeaseTime: %v is under 1 ms", s.lease))
	}
	if s.timeout <= 0 {
		errs = append(errs, fmt.Errorf("WithTimeout: %v is not positive", s.timeout))
	}
	if s.log == nil {
		errs = append(errs, errors.New("WithLogger: nil logger"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", failover.ErrInvalid, err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.sub = rdb.Subscribe(s.ctx) // no channel yet: no I/O before the listener runs
	s.done.Add(2)
	go s.listen()
	go s.write()
	return s, nil
}

// Close stops the store's goroutines and then, unless Redis is down,
// writes the changes not yet written (each within ten times the timeout).
// Pools that use the store go on with their local state.
func (s *Store) Close() error {
	var err error
	s.closing.Do(func() {
		s.cancel()
		err = s.sub.Close() // ends the listener's read
		s.done.Wait()
		if !s.down.Load() {
			err = errors.Join(err, s.flush(context.Background()))
		}
	})
	return err
}

// Save implements failover.Store: the change is written by the store's
// writer, at once, or when Redis is back.
func (s *Store) Save(sh failover.Shared) {
	s.mu.Lock()
	s.pending[sh.Member] = sh
	s.mu.Unlock()
	s.wake()
}

// wake wakes the writer.
func (s *Store) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Watch implements failover.Store. It reads the stored states for fn
// before it returns, waiting at most the timeout.
func (s *Store) Watch(fn func(failover.Shared)) {
	s.mu.Lock()
	s.watchers = append(s.watchers[:len(s.watchers):len(s.watchers)], fn)
	s.mu.Unlock()
	if s.down.Load() {
		return // the resync when Redis is back covers fn
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	states, err := s.load(ctx)
	if err != nil {
		s.failed(err)
		return
	}
	for _, sh := range states {
		fn(sh)
	}
}

// Lease implements failover.Store.
func (s *Store) Lease(ctx context.Context, member, holder string, now time.Time) (time.Time, bool, error) {
	if s.down.Load() {
		return time.Time{}, false, ErrUnavailable
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	r, err := leaseScript.Run(cctx, s.rdb, []string{s.keys.lease(member)}, holder, now.UnixMilli(), s.lease.Milliseconds()).Int64Slice()
	if err != nil || len(r) != 2 {
		return time.Time{}, false, s.callFailed(ctx, err)
	}
	return time.UnixMilli(r[1]), r[0] == 1, nil
}

// dayOf is a day of a DayZone: an instant in it and its end.
type dayOf struct{ asked, end time.Time }

// dayEnd is l.DayEnd(now), loading the zone once a day rather than on
// every call: any instant from asked to end is in the same day.
func (s *Store) dayEnd(l failover.Limits, now time.Time) time.Time {
	if v, ok := s.days.Load(l.DayZone); ok {
		if d := v.(dayOf); !now.Before(d.asked) && now.Before(d.end) {
			return d.end
		}
	}
	end := l.DayEnd(now)
	s.days.Store(l.DayZone, dayOf{now, end})
	return end
}

// Take implements failover.Store.
func (s *Store) Take(ctx context.Context, member string, l failover.Limits, tokens int, now time.Time) (bool, time.Time, error) {
	if s.down.Load() {
		return false, time.Time{}, ErrUnavailable
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	k := s.keys
	var dayEnd int64 // the day's key: every replica counts the same day
	if l.RPD > 0 || l.TPD > 0 {
		dayEnd = s.dayEnd(l, now).UnixMilli()
	}
	r, err := takeScript.Run(cctx, s.rdb, []string{k.starts(member), k.tokens(member), k.sum(member), k.seq(member), k.day(member, dayEnd)},
		now.UnixMilli(), l.RPM, l.TPM, tokens, l.RPD, l.TPD, dayEnd).Int64Slice()
	if err != nil || len(r) != 2 {
		return false, time.Time{}, s.callFailed(ctx, err)
	}
	if r[0] == 1 {
		return true, time.Time{}, nil
	}
	if r[1] == 0 {
		return false, time.Time{}, nil // never fits
	}
	return false, time.UnixMilli(r[1]), nil
}

// callFailed turns the error of a call that waited on Redis into the
// store's. It marks Redis down unless the caller's own context ended: a
// caller's deadline or cancellation is not Redis's fault.
func (s *Store) callFailed(ctx context.Context, err error) error {
	if err == nil {
		err = errors.New("redisstore: malformed script reply")
	}
	if ctx.Err() == nil {
		s.failed(err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// failed marks Redis unavailable, logging it once per outage, and wakes
// the writer to retry until it answers.
func (s *Store) failed(err error) {
	if s.ctx.Err() == nil && s.down.CompareAndSwap(false, true) {
		s.log.Warn("failover/redisstore: Redis unavailable; pools go on with local state", "error", err.Error())
		s.wake()
	}
}

// keys names the store's keys.
type keys struct{ prefix string }

func (k keys) record(m string) string { return k.prefix + ":member:" + m }
func (k keys) lease(m string) string  { return k.prefix + ":lease:" + m }
func (k keys) starts(m string) string { return k.prefix + ":rpm:" + m }
func (k keys) tokens(m string) string { return k.prefix + ":tpm:" + m }
func (k keys) sum(m string) string    { return k.prefix + ":tpmsum:" + m }
func (k keys) seq(m string) string    { return k.prefix + ":seq:" + m }
func (k keys) version() string        { return k.prefix + ":version" }
func (k keys) members() string        { return k.prefix + ":members" }
func (k keys) channel() string        { return k.prefix + ":changes" }

// day is the counts of a member's day that ends at end (ms since the
// epoch), a hash of requests (r) and tokens (t).
func (k keys) day(m string, end int64) string {
	return k.prefix + ":day:" + strconv.FormatInt(end, 10) + ":" + m
}

// wire is a published change; big numbers travel as decimal strings.
type wire struct {
	Member  string `json:"m"`
	State   string `json:"s"`
	Lane    string `json:"l"`
	Reason  string `json:"r"`
	Level   string `json:"n"`
	Until   string `json:"u"` // ns since the epoch; 0 none
	Manual  string `json:"x"` // 1 or 0
	Version string `json:"v"`
	Origin  string `json:"o"`
	Seq     string `json:"q"`
}

// shared decodes a change; ok is false for a malformed one.
func (w wire) shared() (failover.Shared, bool) {
	var sh failover.Shared
	lane, err1 := strconv.Atoi(w.Lane)
	level, err2 := strconv.Atoi(w.Level)
	until, err3 := strconv.ParseInt(w.Until, 10, 64)
	version, err4 := strconv.ParseUint(w.Version, 10, 64)
	if err := errors.Join(err1, err2, err3, err4, sh.State.UnmarshalText([]byte(w.State))); err != nil || w.Member == "" {
		return failover.Shared{}, false
	}
	sh.Member, sh.Lane, sh.Reason, sh.Level = w.Member, failover.Lane(lane), failover.Reason(w.Reason), level
	sh.Manual, sh.Version, sh.Origin = w.Manual == "1", version, w.Origin
	if w.Seq != "" {
		if sh.Seq, err1 = strconv.ParseUint(w.Seq, 10, 64); err1 != nil {
			return failover.Shared{}, false
		}
	}
	if until > 0 {
		sh.Until = time.Unix(0, until)
	}
	return sh, true
}

// decode reads a published change.
func decode(payload string) (failover.Shared, bool) {
	var w wire
	if json.Unmarshal([]byte(payload), &w) != nil {
		return failover.Shared{}, false
	}
	return w.shared()
}
