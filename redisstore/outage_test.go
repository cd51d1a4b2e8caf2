package redisstore_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/redisstore"
	"github.com/llmfailover/failover/storetest"
)

// logBuffer collects a store's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// replica is one pool with its own store handle and log.
type replica struct {
	pool *failover.Pool[string]
	log  *logBuffer
}

func newReplica(t *testing.T, srv *server, clock *storetest.Clock, members []failover.Member[string]) replica {
	t.Helper()
	r := replica{log: &logBuffer{}}
	store := open(t, srv, redisstore.WithLogger(r.log.logger()))
	p, err := failover.New(members, failover.WithStore(store), failover.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	r.pool = p
	return r
}

func stateOf(p *failover.Pool[string], name string) failover.Status {
	for _, s := range p.Status() {
		if s.Name == name {
			return s
		}
	}
	return failover.Status{}
}

func members() []failover.Member[string] {
	return []failover.Member[string]{
		{Name: "free", Client: "free"},
		{Name: "paid", Client: "paid", Priority: 1},
	}
}

// serveAll runs n calls on r and fails the test if one fails.
func serveAll(t *testing.T, r replica, up *storetest.Provider, n int) map[string]int {
	t.Helper()
	served := map[string]int{}
	for range n {
		got, err := failover.Do(context.Background(), r.pool, up.Call)
		if err != nil {
			t.Fatalf("a call failed: %v", err)
		}
		served[got]++
	}
	return served
}

// TestRedisDownAndBack stops Redis in the middle of a run: every call still
// succeeds on local state, the outage is logged once per replica, and when
// Redis is back the replicas converge on what happened meanwhile.
func TestRedisDownAndBack(t *testing.T) {
	srv := startRedis(t)
	clock := storetest.NewClock()
	up := storetest.NewProvider(clock)
	a, b := newReplica(t, srv, clock, members()), newReplica(t, srv, clock, members())

	// Redis up: a Disable on A reaches B.
	if err := a.pool.Disable("paid"); err != nil {
		t.Fatal(err)
	}
	storetest.Eventually(t, "B never saw paid disabled", func() bool { return stateOf(b.pool, "paid").State == failover.Disabled })
	if err := a.pool.Enable("paid"); err != nil {
		t.Fatal(err)
	}
	storetest.Eventually(t, "B never saw paid enabled", func() bool { return stateOf(b.pool, "paid").State == failover.Active })

	srv.stop()
	// Down: each replica goes on with its own state, and no call fails.
	if got := serveAll(t, a, up, 50); got["free"] != 50 {
		t.Fatalf("A served %v, want free 50 times", got)
	}
	if err := a.pool.Disable("free"); err != nil { // B cannot hear of it now
		t.Fatal(err)
	}
	up.Script("free", storetest.RateLimited(30*time.Second))
	if got := serveAll(t, b, up, 50); got["free"] != 0 || got["paid"] != 50 {
		t.Fatalf("B served %v, want paid 50 times after free's 429", got)
	}
	if got := serveAll(t, a, up, 50); got["paid"] != 50 {
		t.Fatalf("A served %v, want paid 50 times after Disable", got)
	}
	clock.Advance(30 * time.Second)
	if got := serveAll(t, b, up, 50); got["free"] != 50 {
		t.Fatalf("B served %v, want free 50 times: it probes free on local state", got)
	}
	for name, r := range map[string]replica{"A": a, "B": b} {
		storetest.Eventually(t, name+" never logged the outage", func() bool { return r.log.count("Redis unavailable") > 0 })
	}

	srv.start(t)
	// Back: A's Disable, made while Redis was down, reaches B.
	storetest.Eventually(t, "B never learned of the Disable made during the outage", func() bool {
		return stateOf(b.pool, "free").State == failover.Disabled
	})
	before := up.Calls("free")
	if got := serveAll(t, b, up, 20); got["paid"] != 20 || up.Calls("free") != before {
		t.Fatalf("B served %v with %d new calls on free, want paid only", got, up.Calls("free")-before)
	}
	// And pub/sub works again.
	if err := b.pool.Enable("free"); err != nil {
		t.Fatal(err)
	}
	storetest.Eventually(t, "A never saw the Enable after the outage", func() bool { return stateOf(a.pool, "free").State == failover.Active })
	for name, r := range map[string]replica{"A": a, "B": b} {
		storetest.Eventually(t, name+" never logged the resync", func() bool { return r.log.count("Redis is back") == 1 })
		if n := r.log.count("Redis unavailable"); n != 1 {
			t.Fatalf("%s logged the outage %d times, want once:\n%s", name, n, r.log)
		}
	}
}

// TestStartsWhileRedisIsDown: a store made while Redis is down works on
// local state and joins when Redis comes up.
func TestStartsWhileRedisIsDown(t *testing.T) {
	srv := startRedis(t)
	srv.stop()
	clock := storetest.NewClock()
	up := storetest.NewProvider(clock)
	a, b := newReplica(t, srv, clock, members()), newReplica(t, srv, clock, members())
	if got := serveAll(t, a, up, 10); got["free"] != 10 {
		t.Fatalf("A served %v, want free 10 times", got)
	}
	srv.start(t)
	storetest.Eventually(t, "A never logged that Redis is back", func() bool { return a.log.count("Redis is back") == 1 })
	storetest.Eventually(t, "B never logged that Redis is back", func() bool { return b.log.count("Redis is back") == 1 })
	up.Script("free", storetest.Revoked)
	serveAll(t, a, up, 1)
	storetest.Eventually(t, "B never learned that free is revoked", func() bool { return stateOf(b.pool, "free").State == failover.CoolingDown })
}

// TestChangesRightAfterAnOutage: after an outage long enough for the
// listeners to back off, an Enable made on B as soon as B is back reaches
// A, whose listener may not be subscribed yet: A ends its outage only once
// it listens again, and an Enable is stored (for an hour) for A's resync
// to read if A missed its PUBLISH.
func TestChangesRightAfterAnOutage(t *testing.T) {
	srv := startRedis(t)
	clock := storetest.NewClock()
	a, b := newReplica(t, srv, clock, members()), newReplica(t, srv, clock, members())
	srv.stop()
	time.Sleep(4 * time.Second) // the listeners' retries reach 2 s
	if err := a.pool.Disable("free"); err != nil {
		t.Fatal(err)
	}
	srv.start(t)
	storetest.Eventually(t, "B never learned of A's Disable", func() bool { return stateOf(b.pool, "free").State == failover.Disabled })
	storetest.Eventually(t, "B never logged back", func() bool { return b.log.count("Redis is back") == 1 })
	if err := b.pool.Enable("free"); err != nil {
		t.Fatal(err)
	}
	storetest.Eventually(t, "A never saw B's Enable", func() bool { return stateOf(a.pool, "free").State == failover.Active })
	storetest.Eventually(t, "A never logged back", func() bool { return a.log.count("Redis is back") == 1 })
	for name, r := range map[string]replica{"A": a, "B": b} {
		if n := r.log.count("Redis unavailable"); n != 1 {
			t.Fatalf("%s logged the outage %d times, want once:\n%s", name, n, r.log)
		}
	}
}
