// Package storetest checks that a [failover.Store] shares member state as
// the interface says, in the spirit of testing/fstest: an implementation
// calls [Run] from its own tests.
//
// Each test runs several pools (replicas) on one virtual clock
// ([failover.WithClock]) against an in-process provider that counts the
// calls each key receives, so the checks are exact: which member served,
// how many calls reached a key, where a cooldown ends. A store that
// delivers changes asynchronously is waited for, up to a few seconds of
// real time, before a check.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the day of SharedRPD and SharedTPD is Los Angeles's, whatever the machine has

	"github.com/llmfailover/failover"
)

// Connect returns a new handle on one shared state: each call is one
// replica. Handles from different calls of a [Backend] must not share
// state.
type Connect func() failover.Store

// Backend starts a fresh shared state for one test and returns how to
// connect to it. It registers its cleanup with t.
type Backend func(t *testing.T) Connect

// Settle is how long Run waits, in real time, for a change to reach every
// replica before it fails a check.
const Settle = 5 * time.Second

// Run runs the conformance tests against backend, each as a subtest.
func Run(t *testing.T, backend Backend) {
	tests := []struct {
		name string
		fn   func(*testing.T, Connect)
	}{
		{"RevokedKeyReachesEveryReplica", testRevoked},
		{"RetryAfterKeepsEveryReplicaOff", testRetryAfter},
		{"LateReplicaStartsWithTheState", testLateReplica},
		{"OneProbeAcrossReplicas", testOneProbe},
		{"SharedRPM", testSharedRPM},
		{"SharedTPM", testSharedTPM},
		{"SharedRPD", testSharedRPD},
		{"SharedTPD", testSharedTPD},
		{"EnableAndDisable", testEnableDisable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, backend(t)) })
	}
}

// Clock is a virtual clock that replicas share.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at a fixed instant.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Provider is an in-process upstream: it answers each key from a script
// and counts the calls each key receives.
type Provider struct {
	mu     sync.Mutex
	calls  map[string]int
	at     map[string][]time.Time
	script map[string][]error
	gate   map[string]chan struct{}
	clock  *Clock
}

// NewProvider returns a provider on clock whose keys all succeed.
func NewProvider(clock *Clock) *Provider {
	return &Provider{calls: map[string]int{}, at: map[string][]time.Time{}, script: map[string][]error{}, gate: map[string]chan struct{}{}, clock: clock}
}

// Script makes the next calls of key fail with errs, one each; nil
// succeeds. Calls after the script succeed.
func (p *Provider) Script(key string, errs ...error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.script[key] = errs
}

// Hold makes calls of key wait until the returned function is called.
func (p *Provider) Hold(key string) (release func()) {
	ch := make(chan struct{})
	p.mu.Lock()
	p.gate[key] = ch
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			delete(p.gate, key)
			p.mu.Unlock()
			close(ch)
		})
	}
}

// Calls returns how many calls key received.
func (p *Provider) Calls(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[key]
}

// Times returns when, on the virtual clock, the calls of key arrived.
func (p *Provider) Times(key string) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.at[key]...)
}

// Call is the function for [failover.Do]: the member's Client is its key.
func (p *Provider) Call(ctx context.Context, m failover.Member[string]) (string, error) {
	p.mu.Lock()
	key := m.Client
	p.calls[key]++
	p.at[key] = append(p.at[key], p.clock.Now())
	var err error
	if s := p.script[key]; len(s) > 0 {
		err, p.script[key] = s[0], s[1:]
	}
	gate := p.gate[key]
	p.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if err != nil {
		return "", err
	}
	return m.Name, nil
}

// Errors as providers send them.
var (
	// Revoked is OpenAI's 401 for a revoked key.
	Revoked = &failover.HTTPError{StatusCode: http.StatusUnauthorized, Body: []byte(`{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`)}
	// ServerError is a bare 500. A healthy member's first one is a blip
	// (see failover.Cooldowns.Blips): it opens a window of no length.
	ServerError = &failover.HTTPError{StatusCode: http.StatusInternalServerError, Body: []byte(`{"error":{"message":"The server had an error while processing your request.","type":"server_error"}}`)}
	// Overloaded is a 503 of an overloaded provider: it cools a member at once.
	Overloaded = &failover.HTTPError{StatusCode: http.StatusServiceUnavailable, Body: []byte(`{"error":{"message":"The engine is currently overloaded, please try again later.","type":"server_error"}}`)}
)

// RateLimited is OpenAI's 429 with a Retry-After header.
func RateLimited(after time.Duration) error {
	return &failover.HTTPError{
		StatusCode: http.StatusTooManyRequests,
		Header:     http.Header{"Retry-After": {fmt.Sprint(int(after.Seconds()))}},
		Body:       []byte(`{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}`),
	}
}

// replicas starts n pools on clock, each with its own store handle, over
// the same members. Each pool's events go to its log.
func replicas(t *testing.T, connect Connect, clock *Clock, n int, members []failover.Member[string]) ([]*failover.Pool[string], []*events) {
	t.Helper()
	pools := make([]*failover.Pool[string], n)
	logs := make([]*events, n)
	for i := range pools {
		logs[i] = &events{}
		p, err := failover.New(members, failover.WithStore(connect()), failover.WithClock(clock.Now), failover.WithObserver(logs[i].add))
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		pools[i] = p
	}
	return pools, logs
}

// events records a pool's events.
type events struct {
	mu  sync.Mutex
	all []failover.Event
}

func (e *events) add(ev failover.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

// count returns how many events of kind the pool saw for member.
func (e *events) count(kind failover.EventKind, member string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Kind == kind && ev.Member == member {
			n++
		}
	}
	return n
}

// one starts one replica over twoKeys.
func one(t *testing.T, connect Connect, clock *Clock) *failover.Pool[string] {
	pools, _ := replicas(t, connect, clock, 1, twoKeys())
	return pools[0]
}

// twoKeys is a paid key behind a free one.
func twoKeys() []failover.Member[string] {
	return []failover.Member[string]{
		{Name: "free", Client: "free", Priority: 0},
		{Name: "paid", Client: "paid", Priority: 1},
	}
}

// state returns the status of member in p.
func state(p *failover.Pool[string], member string) failover.Status {
	for _, s := range p.Status() {
		if s.Name == member {
			return s
		}
	}
	return failover.Status{}
}

// Eventually waits up to Settle for cond, and fails the test with what if
// it does not hold by then.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Settle)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", Settle, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// serve runs one call on p and returns the member that served it.
func serve(t *testing.T, p *failover.Pool[string], up *Provider) string {
	t.Helper()
	got, err := failover.Do(context.Background(), p, up.Call)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	return got
}

func testRevoked(t *testing.T, connect Connect) {
	clock := NewClock()
	up := NewProvider(clock)
	pools, _ := replicas(t, connect, clock, 2, twoKeys())
	up.Script("free", Revoked)
	if got := serve(t, pools[0], up); got != "paid" {
		t.Fatalf("replica 0 served by %q, want paid after the 401", got)
	}
	Eventually(t, "replica 1 never learned that free is revoked", func() bool {
		return state(pools[1], "free").State != failover.Active
	})
	for range 20 {
		if got := serve(t, pools[1], up); got != "paid" {
			t.Fatalf("replica 1 served by %q, want paid", got)
		}
	}
	if n := up.Calls("free"); n != 1 {
		t.Fatalf("free got %d calls, want 1 (replica 0's)", n)
	}
	s := state(pools[1], "free")
	if s.Reason != failover.ReasonAuth {
		t.Fatalf("replica 1 sees reason %q, want %q", s.Reason, failover.ReasonAuth)
	}
}

func testRetryAfter(t *testing.T, connect Connect) {
	clock := NewClock()
	up := NewProvider(clock)
	pools, logs := replicas(t, connect, clock, 2, twoKeys())
	start := clock.Now()
	up.Script("free", RateLimited(30*time.Second))
	if got := serve(t, pools[0], up); got != "paid" {
		t.Fatalf("replica 0 served by %q, want paid after the 429", got)
	}
	want := start.Add(30 * time.Second)
	Eventually(t, "replica 1 never learned of the 429", func() bool {
		return state(pools[1], "free").Until.Equal(want)
	})
	clock.Advance(30*time.Second - time.Millisecond)
	for range 10 {
		if got := serve(t, pools[1], up); got != "paid" {
			t.Fatalf("replica 1 served by %q before Retry-After ended, want paid", got)
		}
	}
	if n := up.Calls("free"); n != 1 {
		t.Fatalf("free got %d calls within Retry-After, want 1", n)
	}
	clock.Advance(time.Millisecond)
	if got := serve(t, pools[1], up); got != "free" {
		t.Fatalf("replica 1 served by %q once Retry-After ended, want free", got)
	}
	Eventually(t, "replica 0 never learned that free recovered", func() bool {
		return logs[0].count(failover.EventRecovered, "free") == 1
	})
	if got := serve(t, pools[0], up); got != "free" {
		t.Fatalf("replica 0 served by %q after the recovery, want free", got)
	}
	if n := up.Calls("free"); n != 3 {
		t.Fatalf("free got %d calls, want 3: the 429, replica 1's probe, replica 0's call", n)
	}
}

func testLateReplica(t *testing.T, connect Connect) {
	clock := NewClock()
	up := NewProvider(clock)
	first := one(t, connect, clock)
	up.Script("free", Revoked)
	serve(t, first, up)
	Eventually(t, "replica 0's own state never came back from the store", func() bool {
		return state(first, "free").State != failover.Active
	})
	late := one(t, connect, clock)
	Eventually(t, "a replica started later never learned that free is revoked", func() bool {
		return state(late, "free").State != failover.Active
	})
	if got := serve(t, late, up); got != "paid" || up.Calls("free") != 1 {
		t.Fatalf("late replica served by %q with %d calls on free, want paid and 1", got, up.Calls("free"))
	}
}

func testOneProbe(t *testing.T, connect Connect) {
	clock := NewClock()
	up := NewProvider(clock)
	pools, logs := replicas(t, connect, clock, 4, twoKeys())
	up.Script("free", Overloaded)
	serve(t, pools[0], up)
	var until time.Time
	Eventually(t, "the cooldown never reached every replica", func() bool {
		until = state(pools[0], "free").Until
		for _, p := range pools {
			if s := state(p, "free"); s.State != failover.CoolingDown || !s.Until.Equal(until) {
				return false
			}
		}
		return true
	})
	clock.Advance(until.Sub(clock.Now()))
	release := up.Hold("free") // the probe stays in flight
	var wg sync.WaitGroup
	errs := make(chan error, 4*8)
	for _, p := range pools {
		for range 8 {
			wg.Go(func() {
				got, err := failover.Do(context.Background(), p, up.Call)
				if err == nil && got != "paid" && got != "free" {
					err = fmt.Errorf("served by %q", got)
				}
				if err != nil {
					errs <- err
				}
			})
		}
	}
	Eventually(t, "no replica probed free", func() bool { return up.Calls("free") >= 2 })
	Eventually(t, "the other calls did not fall back to paid", func() bool { return up.Calls("paid") >= 4*8-1 })
	if n := up.Calls("free") - 1; n != 1 {
		t.Fatalf("%d probes of free across 4 replicas, want 1", n)
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, p := range pools {
		Eventually(t, fmt.Sprintf("replica %d never learned that free recovered", i), func() bool {
			return logs[i].count(failover.EventRecovered, "free") == 1
		})
		if got := serve(t, p, up); got != "free" {
			t.Fatalf("replica %d served by %q after the probe succeeded, want free", i, got)
		}
	}
}

func testSharedRPM(t *testing.T, connect Connect) {
	clock := NewClock()
	up := NewProvider(clock)
	members := twoKeys()
	members[0].Limits = failover.Limits{RPM: 60}
	pools, _ := replicas(t, connect, clock, 4, members)
	start := clock.Now()
	// A burst: 4 replicas × 25 calls at the same instant.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for _, p := range pools {
		for range 25 {
			wg.Go(func() {
				if _, err := failover.Do(context.Background(), p, up.Call); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := up.Calls("free"); n != 60 {
		t.Fatalf("the burst sent %d calls to free, want its 60 RPM", n)
	}
	// Then 200 calls a minute, spread over the replicas, until 179.7 s.
	for i := range 599 {
		clock.Advance(300 * time.Millisecond)
		serve(t, pools[i%4], up)
	}
	times := up.Times("free")
	for i := range times {
		if j := i + 60; j < len(times) && times[j].Sub(times[i]) < time.Minute {
			t.Fatalf("61 calls reached free within %v (from %v), want at most 60 a minute", times[j].Sub(times[i]), times[i].Sub(start))
		}
	}
	// Every minute's 60 calls are used: the minutes starting at 0, 60
	// and 120 s.
	if n := len(times); n != 180 {
		t.Fatalf("free served %d calls in three minutes, want 180 (60 a minute)", n)
	}
}

func testSharedTPM(t *testing.T, connect Connect) {
	clock := NewClock()
	up := NewProvider(clock)
	members := twoKeys()
	members[0].Limits = failover.Limits{TPM: 1000}
	pools, _ := replicas(t, connect, clock, 4, members)
	burst := func() {
		var wg sync.WaitGroup
		for _, p := range pools {
			for range 10 {
				wg.Go(func() {
					if _, err := failover.Do(context.Background(), p, up.Call, failover.Tokens(100)); err != nil {
						t.Error(err)
					}
				})
			}
		}
		wg.Wait()
	}
	burst() // 4 replicas × 10 calls of 100 tokens at once
	if n := up.Calls("free"); n != 10 {
		t.Fatalf("the burst sent %d calls of 100 tokens to free, want 10 (its 1,000 TPM)", n)
	}
	clock.Advance(time.Minute - time.Millisecond)
	for _, p := range pools {
		if got, err := failover.Do(context.Background(), p, up.Call, failover.Tokens(100)); err != nil || got != "paid" {
			t.Fatalf("a call of 100 tokens: %q, %v; want paid", got, err)
		}
	}
	if n := up.Calls("free"); n != 10 {
		t.Fatalf("free got a call %v after the burst, want none before a minute", time.Minute-time.Millisecond)
	}
	clock.Advance(time.Millisecond)
	burst()
	if n := up.Calls("free"); n != 20 {
		t.Fatalf("a minute later free got %d calls in all, want 20", n)
	}
}

// pacificNight returns a clock a minute before midnight in Los Angeles at
// the end of 8 March 2026, the 23-hour day the clocks spring forward, and
// that midnight.
func pacificNight(t *testing.T) (*Clock, time.Time) {
	la, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		t.Fatal(err)
	}
	return &Clock{t: time.Date(2026, 3, 8, 23, 59, 0, 0, la)}, time.Date(2026, 3, 9, 0, 0, 0, 0, la)
}

// burst runs calls calls on each pool at once, with tokens each; every one
// must succeed.
func burst(t *testing.T, pools []*failover.Pool[string], up *Provider, calls, tokens int) {
	t.Helper()
	var wg sync.WaitGroup
	for _, p := range pools {
		for range calls {
			wg.Go(func() {
				if _, err := failover.Do(context.Background(), p, up.Call, failover.Tokens(tokens)); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
}

// today sums the requests and tokens of member that the pools counted
// today.
func today(pools []*failover.Pool[string], member string) (reqs, tokens int) {
	for _, p := range pools {
		s := state(p, member)
		reqs += s.RequestsToday
		tokens += s.TokensToday
	}
	return reqs, tokens
}

func testSharedRPD(t *testing.T, connect Connect) {
	clock, midnight := pacificNight(t)
	up := NewProvider(clock)
	members := twoKeys()
	members[0].Limits = failover.Limits{RPD: 10, DayZone: "America/Los_Angeles"}
	pools, _ := replicas(t, connect, clock, 2, members)
	burst(t, pools, up, 10, 0) // 2 replicas × 10 calls at once
	if n := up.Calls("free"); n != 10 {
		t.Fatalf("the burst sent %d calls to free, want its 10 RPD", n)
	}
	if reqs, _ := today(pools, "free"); reqs != 10 {
		t.Fatalf("the replicas counted %d calls on free today, want 10 in all", reqs)
	}
	for i, p := range pools {
		if s := state(p, "free"); !s.DayEnds.Equal(midnight) {
			t.Fatalf("replica %d: free's day ends at %v, want midnight in Los Angeles (%v)", i, s.DayEnds, midnight)
		}
	}
	clock.Advance(time.Minute - time.Millisecond)
	for i := range 10 {
		if got := serve(t, pools[i%2], up); got != "paid" {
			t.Fatalf("a call a millisecond before midnight was served by %q, want paid", got)
		}
	}
	if n := up.Calls("free"); n != 10 {
		t.Fatalf("free got %d calls in its day, want 10", n)
	}
	clock.Advance(time.Millisecond) // midnight in Los Angeles: 07:00 UTC
	served := 0
	for i := range 30 {
		if serve(t, pools[i%2], up) == "free" {
			served++
		}
	}
	if served != 10 {
		t.Fatalf("free served %d of 30 calls in its new day, want 10", served)
	}
	for _, at := range up.Times("free")[10:] {
		if !at.Equal(midnight) {
			t.Fatalf("a call of the new day reached free at %v, want %v", at, midnight)
		}
	}
}

func testSharedTPD(t *testing.T, connect Connect) {
	clock, midnight := pacificNight(t)
	up := NewProvider(clock)
	members := twoKeys()
	members[0].Limits = failover.Limits{TPD: 1000, DayZone: "America/Los_Angeles"}
	pools, _ := replicas(t, connect, clock, 2, members)
	burst(t, pools, up, 10, 100) // 2 replicas × 10 calls of 100 tokens at once
	if n := up.Calls("free"); n != 10 {
		t.Fatalf("the burst sent %d calls of 100 tokens to free, want 10 (its 1,000 TPD)", n)
	}
	if reqs, tokens := today(pools, "free"); reqs != 10 || tokens != 1000 {
		t.Fatalf("the replicas counted %d calls and %d tokens on free today, want 10 and 1,000", reqs, tokens)
	}
	clock.Advance(time.Minute - time.Millisecond)
	for _, p := range pools {
		if got, err := failover.Do(context.Background(), p, up.Call, failover.Tokens(1)); err != nil || got != "paid" {
			t.Fatalf("a call of 1 token a millisecond before midnight: %q, %v; want paid", got, err)
		}
	}
	clock.Advance(time.Millisecond)
	for _, p := range pools {
		// More than the day holds: never free, at any time.
		if got, err := failover.Do(context.Background(), p, up.Call, failover.Tokens(1001)); err != nil || got != "paid" {
			t.Fatalf("a call of 1,001 tokens: %q, %v; want paid", got, err)
		}
	}
	if n := up.Calls("free"); n != 10 {
		t.Fatalf("free got %d calls, want 10 before its new day has a call that fits", n)
	}
	burst(t, pools, up, 10, 100)
	if n := up.Calls("free"); n != 20 {
		t.Fatalf("after midnight free got %d calls in all, want 20", n)
	}
	for _, at := range up.Times("free")[10:] {
		if !at.Equal(midnight) {
			t.Fatalf("a call of the new day reached free at %v, want %v", at, midnight)
		}
	}
}

func testEnableDisable(t *testing.T, connect Connect) {
	clock := NewClock()
	up := NewProvider(clock)
	pools, _ := replicas(t, connect, clock, 2, twoKeys())
	if err := pools[0].Disable("free"); err != nil {
		t.Fatal(err)
	}
	Eventually(t, "Disable never reached replica 1", func() bool {
		return state(pools[1], "free").State == failover.Disabled
	})
	clock.Advance(24 * time.Hour)
	if got := serve(t, pools[1], up); got != "paid" || up.Calls("free") != 0 {
		t.Fatalf("replica 1 served by %q with %d calls on free, want paid and none", got, up.Calls("free"))
	}
	if err := pools[1].Enable("free"); err != nil {
		t.Fatal(err)
	}
	Eventually(t, "Enable never reached replica 0", func() bool {
		return state(pools[0], "free").State == failover.Active
	})
	if got := serve(t, pools[0], up); got != "free" {
		t.Fatalf("replica 0 served by %q after Enable, want free", got)
	}
	if err := pools[0].Disable("nobody"); !errors.Is(err, failover.ErrUnknownMember) {
		t.Fatalf("Disable of an unknown member: %v, want ErrUnknownMember", err)
	}
}
