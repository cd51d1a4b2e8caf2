package failover_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llmfailover/failover"
)

// skipCounter counts Skip hook calls per member for the current call.
type skipCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *skipCounter) hook(_ context.Context, member string, _ error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[string]int{}
	}
	s.n[member]++
}

func (s *skipCounter) take() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.n
	s.n = nil
	return n
}

// Regression (found by review): Hooks.Skip says "once per call and member, as Status.Skipped
// counts"; the README says the same. Under Weighted, every draw that lands
// on a member that cannot serve calls the hook (and counts a skip), so a
// heavy disabled member is reported up to drawTries (8) times by one call.
func TestReviewSkipHookOncePerCallWeighted(t *testing.T) {
	var sc skipCounter
	a, b := &fakeClient{}, &fakeClient{}
	ms := members(a, b)
	ms[1].Priority = 0
	ms[0].Weight, ms[1].Weight = 9, 1
	p := newPool(t, ms, failover.WithStrategy(failover.Weighted), failover.WithHooks(failover.Hooks{Skip: sc.hook}))
	require.NoError(t, p.Disable("a"))
	worst := 0
	for range 50 {
		_, err := failover.Do(context.Background(), p, call)
		require.NoError(t, err)
		worst = max(worst, sc.take()["a"])
	}
	assert.LessOrEqual(t, worst, 1, "Skip hook calls for one member in one call")
	assert.LessOrEqual(t, status(t, p, "a").Skipped.Disabled, uint64(50), "skips counted for 50 calls")
}

// Regression (found by review): with stickiness, a sticky member that cannot serve is passed over
// twice by one selection: once by pick's sticky check, once by the tier scan.
func TestReviewSkipStickyCountedTwice(t *testing.T) {
	var sc skipCounter
	a := &fakeClient{fail: firstN(1, apiErr(429, "rate_limit_exceeded", "Rate limit reached"))}
	b, c := &fakeClient{}, &fakeClient{}
	p := newPool(t, members(a, b, c), failover.WithCooldowns(exact()), failover.WithStickiness(time.Hour),
		failover.WithHooks(failover.Hooks{Skip: sc.hook}))
	got, err := failover.Do(context.Background(), p, call) // a fails, b takes over and sticks
	require.NoError(t, err)
	require.Equal(t, "b", got)
	require.NoError(t, p.Disable("b"))
	sc.take()
	before := status(t, p, "b").Skipped.Disabled
	got, err = failover.Do(context.Background(), p, call)
	require.NoError(t, err)
	require.Equal(t, "c", got)
	assert.Equal(t, 1, sc.take()["b"], "Skip hook calls for b in one call")
	assert.Equal(t, uint64(1), status(t, p, "b").Skipped.Disabled-before, "skips of b counted by one call")
}

// Regression (found by review): WithWaitForRecovery: the selection after a wait is not marked
// "again", so one call counts (and reports) the same member once per wait.
func TestReviewSkipCountedAgainAfterWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sc skipCounter
		a := &fakeClient{}
		b := &fakeClient{fail: firstN(1, apiErr(429, "rate_limit_exceeded", "Rate limit reached"))}
		p := newPool(t, members(a, b), failover.WithCooldowns(exact()), failover.WithWaitForRecovery(time.Minute),
			failover.WithHooks(failover.Hooks{Skip: sc.hook}))
		require.NoError(t, p.Disable("a"))
		_, err := failover.Do(context.Background(), p, call) // a skipped, b fails with a 429 and cools 5 s
		require.Error(t, err)
		sc.take()
		before := status(t, p, "a").Skipped.Disabled
		got, err := failover.Do(context.Background(), p, call) // waits for b's window, then probes b
		require.NoError(t, err)
		require.Equal(t, "b", got)
		assert.Equal(t, 1, sc.take()["a"], "Skip hook calls for a in one call")
		assert.Equal(t, uint64(1), status(t, p, "a").Skipped.Disabled-before, "skips of a counted by one call")
	})
}

// Regression (found by review): the Usage hook runs with usageMeter.mu held (usage.go report is
// called under u.mu from read and flush). A hook that closes the body (or
// anything that waits for a Close on another goroutine) deadlocks.
func TestReviewUsageHookRunsUnderLock(t *testing.T) {
	body := `{"id":"x","model":"gpt-4o","usage":{"prompt_tokens":3,"completion_tokens":2}}`
	up := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(bytes.NewReader([]byte(body))), ContentLength: int64(len(body)), Request: r}, nil
	})
	var resp *http.Response
	closed := make(chan struct{})
	p, err := failover.New([]failover.Member[failover.Upstream]{
		{Name: "a", Client: failover.Upstream{BaseURL: "https://a.example", Key: "a-key-123456", Transport: up}},
	}, failover.WithHooks(failover.Hooks{Usage: func(ctx context.Context, u failover.Usage) {
		// e.g. a hook that hands off to a goroutine that cleans up the response
		go func() { _ = resp.Body.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(time.Second):
			t.Error("Close blocked while the Usage hook ran: the hook holds usageMeter.mu")
		}
	}}))
	require.NoError(t, err)
	resp = do(t, failover.NewTransport(p), http.MethodPost, "http://x/v1/chat/completions", `{"model":"m"}`)
	_, _ = io.ReadAll(resp.Body)
	<-closed
}

// Regression (found by review): a caller that asks for a compressed answer itself (Accept-Encoding:
// gzip) gets the upstream's gzip body: net/http does not decompress it. The
// first-event check parses the compressed bytes, finds no event, and fails
// a healthy stream over as "ended before its first event".
func TestReviewFirstEventGzipStream(t *testing.T) {
	sse := "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write([]byte(sse))
	_ = w.Close()
	calls := 0
	up := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		calls++
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}, "Content-Encoding": {"gzip"}},
			Body: io.NopCloser(bytes.NewReader(gz.Bytes())), ContentLength: -1, Request: r}, nil
	})
	p, err := failover.New([]failover.Member[failover.Upstream]{
		{Name: "a", Client: failover.Upstream{BaseURL: "https://a.example", Key: "a-key-123456", Transport: up}},
	})
	require.NoError(t, err)
	resp := do(t, failover.NewTransport(p), http.MethodPost, "http://x/v1/chat/completions", `{"model":"m","stream":true}`, "Accept-Encoding", "gzip")
	defer resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode, "a healthy gzip stream is served")
	assert.Equal(t, "a", resp.Header.Get("X-Failover-Member"))
	assert.Equal(t, 1, calls)
	assert.Equal(t, 0, int(statusOf(p, "a").Failures))
}

// Regression (found by review): the opposite of counting twice: after a failed attempt every
// later selection of the call counts nothing (selection.again), so a member
// the call first passes over after a failure is never counted nor
// reported, though the call passed it over.
func TestReviewSkipAfterFailureNotCounted(t *testing.T) {
	var sc skipCounter
	a := &fakeClient{fail: always(apiErr(500, "server_error", "boom"))}
	b, c := &fakeClient{}, &fakeClient{}
	p := newPool(t, members(a, b, c), failover.WithCooldowns(exact()), failover.WithHooks(failover.Hooks{Skip: sc.hook}))
	p.Report("b", apiErr(429, "rate_limit_exceeded", "Rate limit reached")) // b cools
	require.Equal(t, failover.CoolingDown, status(t, p, "b").State)
	got, err := failover.Do(context.Background(), p, call) // a fails, b is passed over, c serves
	require.NoError(t, err)
	require.Equal(t, "c", got)
	assert.Zero(t, b.calls.Load())
	assert.Equal(t, 1, sc.take()["b"], "Skip hook calls for b")
	assert.Equal(t, failover.Skips{Cooling: 1}, status(t, p, "b").Skipped)
}
