package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/redisstore"
	"github.com/llmfailover/failover/storetest"
	"github.com/redis/go-redis/v9"
)

// TestStallRecovers: Redis stalls for 300 ms (CLIENT PAUSE) while other
// replicas keep the channel busy. The call that timed out marks Redis
// down; the store then retries until Redis answers, at once, not at the
// listener's next idle ping (which a busy channel never reaches), and the
// changes saved meanwhile reach the other replica.
func TestStallRecovers(t *testing.T) {
	srv := startRedis(t)
	admin := srv.client(t)
	ctx := context.Background()
	log := &logBuffer{}
	a := open(t, srv, redisstore.WithLogger(log.logger()))
	b := open(t, srv)
	heard := make(chan failover.Shared, 1000)
	b.Watch(func(s failover.Shared) {
		if s.Member == "k" {
			heard <- s
		}
	})
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the other replicas' changes, every 20 ms
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				admin.Publish(ctx, "failover:changes", `{"m":"other","s":"active","l":"0","r":"","n":"0","u":"0","x":"0","v":"1","o":"x","q":"1"}`)
			}
		}
	}()
	if _, _, err := a.Take(ctx, "m", failover.Limits{RPM: 10}, 1, time.Now()); err != nil {
		t.Fatalf("Take before the stall: %v", err)
	}
	if err := admin.Do(ctx, "CLIENT", "PAUSE", "300", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Take(ctx, "m", failover.Limits{RPM: 10}, 1, time.Now()); err == nil {
		t.Fatal("Take during the stall: no error, want a timeout")
	}
	now := time.Now()
	a.Save(failover.Shared{Member: "k", State: failover.Disabled, Manual: true, At: now, Origin: "a", Seq: 1})
	storetest.Eventually(t, "the store never saw Redis back", func() bool {
		_, _, err := a.Lease(ctx, "m", "h", time.Now())
		return err == nil
	})
	storetest.Eventually(t, "the Disable saved during the stall never reached the other replica", func() bool {
		for {
			select {
			case s := <-heard:
				if s.State == failover.Disabled {
					return true
				}
			default:
				return false
			}
		}
	})
	if n, m := log.count("Redis unavailable"), log.count("Redis is back"); n != 1 || m != 1 {
		t.Fatalf("logged unavailable %d times and back %d times, want once each:\n%s", n, m, log)
	}
}

// TestCallerDeadlineIsNotAnOutage: a call whose own context has ended
// fails, but does not mark Redis down for the other calls.
func TestCallerDeadlineIsNotAnOutage(t *testing.T) {
	srv := startRedis(t)
	log := &logBuffer{}
	s := open(t, srv, redisstore.WithLogger(log.logger()))
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, _, err := s.Take(expired, "m", failover.Limits{RPM: 10}, 1, time.Now()); err == nil {
		t.Fatal("Take with an expired context: no error")
	}
	if _, _, err := s.Lease(expired, "m", "h", time.Now()); err == nil {
		t.Fatal("Lease with an expired context: no error")
	}
	if ok, _, err := s.Take(context.Background(), "m", failover.Limits{RPM: 10}, 1, time.Now()); err != nil || !ok {
		t.Fatalf("Take after a caller's deadline: %v, %v; want the call taken", ok, err)
	}
	if n := log.count("Redis unavailable"); n != 0 {
		t.Fatalf("a caller's deadline logged Redis unavailable:\n%s", log)
	}
}

// TestTPMRecountsAfterTheEntriesExpire: when the token entries expire in
// Redis before the running sum does, the sum no longer holds calls that
// do not fit.
func TestTPMRecountsAfterTheEntriesExpire(t *testing.T) {
	srv := startRedis(t)
	s := open(t, srv)
	rdb := srv.client(t)
	ctx := context.Background()
	l := failover.Limits{TPM: 100}
	t0 := time.Now()
	take := func(at time.Duration, n int) bool {
		t.Helper()
		ok, _, err := s.Take(ctx, "m", l, n, t0.Add(at))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !take(0, 50) || !take(30*time.Second, 50) {
		t.Fatal("100 tokens in an empty window of 100: refused")
	}
	if take(61*time.Second, 60) { // the first entry leaves the window: 50 + 60 > 100
		t.Fatal("60 tokens with 50 in the window of 100: taken")
	}
	// The entries' TTL (from the last call) ends before the sum's (from the
	// refused one): what Redis does 60 s after the second call.
	if err := rdb.Del(ctx, "failover:tpm:m").Err(); err != nil {
		t.Fatal(err)
	}
	if !take(91*time.Second, 60) {
		t.Fatal("60 tokens in an empty window: refused")
	}
	if !take(92*time.Second, 40) {
		t.Fatalf("40 tokens with 60 in the window of 100: refused (sum %q)", rdb.Get(ctx, "failover:tpmsum:m").Val())
	}
	if take(93*time.Second, 1) {
		t.Fatal("1 token with 100 in the window of 100: taken")
	}
}

// TestBusyReplyRecovers: a script that runs past busy-reply-threshold
// makes Redis answer -BUSY: to the idle PING of a subscribed replica (A)
// and to the SUBSCRIBE of a replica starting then (B). An error reply
// keeps the connection, where go-redis does not subscribe again by itself.
// Both must end the outage when the script ends, and share changes again.
func TestBusyReplyRecovers(t *testing.T) {
	srv := startRedis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.addr, ReadTimeout: time.Minute})
	defer admin.Close()
	ctx := context.Background()
	if err := admin.ConfigSet(ctx, "busy-reply-threshold", "100").Err(); err != nil {
		t.Fatal(err)
	}
	logA, logB := &logBuffer{}, &logBuffer{}
	a := open(t, srv, redisstore.WithLogger(logA.logger()), redisstore.WithPingEvery(50*time.Millisecond))
	storetest.Eventually(t, "A never subscribed", func() bool {
		_, _, err := a.Lease(ctx, "warmup", "h", time.Now())
		return err == nil
	})
	busy := make(chan error, 1)
	go func() { // busy for a second or two
		busy <- admin.Eval(ctx, `local s = tonumber(redis.call('TIME')[1]) + 1
while tonumber(redis.call('TIME')[1]) <= s do end return 1`, nil).Err()
	}()
	probe := srv.client(t)
	storetest.Eventually(t, "Redis never got busy", func() bool {
		err := probe.Ping(ctx).Err()
		return err != nil && strings.Contains(err.Error(), "BUSY")
	})
	b := open(t, srv, redisstore.WithLogger(logB.logger()))
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	for name, log := range map[string]*logBuffer{"A": logA, "B": logB} {
		storetest.Eventually(t, name+" never ended the outage after the script", func() bool { return log.count("Redis is back") == 1 })
		if n := log.count("Redis unavailable"); n != 1 {
			t.Fatalf("%s logged unavailable %d times, want once:\n%s", name, n, log)
		}
	}
	for _, pair := range [][2]*redisstore.Store{{a, b}, {b, a}} {
		heard := make(chan failover.Shared, 100)
		member := fmt.Sprintf("k%p", pair[0])
		pair[1].Watch(func(s failover.Shared) {
			if s.Member == member {
				heard <- s
			}
		})
		pair[0].Save(failover.Shared{Member: member, State: failover.Disabled, Manual: true, At: time.Now(), Origin: "o", Seq: 1})
		storetest.Eventually(t, "a Disable saved after the outage never reached the other replica", func() bool {
			select {
			case s := <-heard:
				return s.State == failover.Disabled
			default:
				return false
			}
		})
	}
}
