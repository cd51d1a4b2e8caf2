package redisstore

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/llmfailover/failover"
	"github.com/redis/go-redis/v9"
)

// The store's pace: how long the listener waits for a message before it
// pings, and how the listener and the writer back off while Redis does
// not answer.
const (
	pingUp     = 15 * time.Second
	retryFirst = 50 * time.Millisecond
	retryMax   = 2 * time.Second
)

// listen reads everyone's changes from the channel. Each (re)subscription
// asks the writer for a resync: a change published while the listener was
// not subscribed is read from the stored states.
func (s *Store) listen() {
	defer s.done.Done()
	ps := s.sub
	_ = ps.Subscribe(s.ctx, s.keys.channel()) // on an error, the first Receive reconnects and subscribes
	retry := retryFirst
	for {
		msg, err := ps.ReceiveTimeout(s.ctx, s.pingEvery)
		if s.ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				err = ps.Ping(s.ctx) // the answer comes back as a *redis.Pong
			}
			if err != nil {
				s.subscribed.Store(false)
				s.failed(err)
				sleep(s.ctx, retry)
				retry = min(2*retry, retryMax)
				var reply redis.Error
				if errors.As(err, &reply) {
					// An error reply (BUSY, say, to the PING or to the
					// SUBSCRIBE) keeps the connection, where go-redis does
					// not subscribe again by itself: subscribe again, for
					// the "subscribe" that ends the outage.
					_ = ps.Subscribe(s.ctx, s.keys.channel())
				}
			}
			continue
		}
		retry = retryFirst
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				s.subscribed.Store(true)
				s.stale.Store(true)
				s.wake()
			}
		case *redis.Message:
			if sh, ok := decode(m.Payload); ok {
				s.deliver(sh)
			}
		}
	}
}

// errListening ends a resync that would end an outage before the listener
// is subscribed again: changes published meanwhile would be missed.
var errListening = errors.New("redisstore: not subscribed yet")

// write is the only goroutine that writes to Redis while the store runs,
// so a member's changes are written in the order they were saved. It
// writes saved changes as they come and resyncs after a (re)subscription.
// After an error, and while Redis is down, it retries from retryFirst,
// doubling up to retryMax, until a resync succeeds.
func (s *Store) write() {
	defer s.done.Done()
	retry := time.NewTimer(0)
	defer retry.Stop()
	wait := retryFirst
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		case <-retry.C:
		}
		var err error
		if s.down.Load() || s.stale.Load() {
			err = s.resync()
		} else {
			err = s.flush(s.ctx)
		}
		if err == nil {
			wait = retryFirst
			continue
		}
		s.failed(err)
		retry.Reset(wait)
		wait = min(2*wait, retryMax)
	}
}

// resync makes the local copies and Redis agree again: the changes saved
// meanwhile are written, then every stored state is read and delivered.
// It ends an outage only once the listener is subscribed again.
func (s *Store) resync() error {
	if s.down.Load() && !s.subscribed.Load() {
		return errListening
	}
	s.stale.Store(false)
	ctx, cancel := context.WithTimeout(s.ctx, 10*s.timeout)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return err
	}
	if err := s.flush(ctx); err != nil {
		return err
	}
	states, err := s.load(ctx)
	if err != nil {
		return err
	}
	if s.down.Swap(false) {
		s.log.Info("failover/redisstore: Redis is back; state resynced", "states", len(states))
	}
	for _, sh := range states {
		s.deliver(sh)
	}
	return nil
}

// flush writes the pending changes. On an error it keeps the changes not
// written, unless a newer one replaced them, for the next try.
func (s *Store) flush(ctx context.Context) error {
	for {
		s.mu.Lock()
		batch := s.pending
		if len(batch) == 0 {
			s.mu.Unlock()
			return nil
		}
		s.pending = make(map[string]failover.Shared)
		s.mu.Unlock()
		for name, sh := range batch {
			if err := s.save(ctx, sh); err != nil {
				s.mu.Lock()
				for name, sh := range batch {
					if _, newer := s.pending[name]; !newer {
						s.pending[name] = sh
					}
				}
				s.mu.Unlock()
				return err
			}
			delete(batch, name)
		}
	}
}

// save runs the save script for one change.
func (s *Store) save(ctx context.Context, sh failover.Shared) error {
	ctx, cancel := context.WithTimeout(ctx, 10*s.timeout)
	defer cancel()
	until, manual := "0", "0"
	if !sh.Until.IsZero() {
		until = strconv.FormatInt(sh.Until.UnixNano(), 10)
	}
	if sh.Manual {
		manual = "1"
	}
	state, err := sh.State.MarshalText()
	if err != nil {
		return nil // not a state to share; nothing to retry
	}
	k := s.keys
	now := strconv.FormatInt(sh.At.UnixNano(), 10)
	return saveScript.Run(ctx, s.rdb,
		[]string{k.record(sh.Member), k.lease(sh.Member), k.version(), k.members()},
		sh.Member, string(state), int(sh.Lane), string(sh.Reason), sh.Level, until, manual, now, k.channel(),
		sh.Origin, strconv.FormatUint(sh.Seq, 10)).Err()
}

// load reads every stored state.
func (s *Store) load(ctx context.Context) ([]failover.Shared, error) {
	names, err := s.rdb.SMembers(ctx, s.keys.members()).Result()
	if err != nil {
		return nil, err
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(names))
	for i, name := range names {
		cmds[i] = pipe.HGetAll(ctx, s.keys.record(name))
	}
	if len(names) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, err
		}
	}
	var out []failover.Shared
	for i, cmd := range cmds {
		f := cmd.Val()
		if len(f) == 0 {
			continue // expired
		}
		w := wire{Member: names[i], State: f["state"], Lane: f["lane"], Reason: f["reason"], Level: f["level"], Until: f["until"], Manual: f["manual"], Version: f["version"]}
		if sh, ok := w.shared(); ok {
			out = append(out, sh)
		}
	}
	return out, nil
}

// deliver hands a state to every watcher.
func (s *Store) deliver(sh failover.Shared) {
	s.mu.Lock()
	watchers := s.watchers
	s.mu.Unlock()
	for _, fn := range watchers {
		fn(sh)
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
