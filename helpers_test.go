package failover_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/require"
)

// fakeClient is a scripted provider: fail(n) decides the n-th call (1-based).
type fakeClient struct {
	calls atomic.Int64
	delay time.Duration
	fail  func(n int64) error
}

// call is the function the tests pass to Do.
func call(ctx context.Context, m failover.Member[*fakeClient]) (string, error) {
	n := m.Client.calls.Add(1)
	if d := m.Client.delay; d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return "", fmt.Errorf("fake %s: %w", m.Name, ctx.Err())
		}
	}
	if m.Client.fail != nil {
		if err := m.Client.fail(n); err != nil {
			return "", err
		}
	}
	return m.Name, nil
}

func always(err error) func(int64) error { return func(int64) error { return err } }

// firstN fails the first n calls with err.
func firstN(n int64, err error) func(int64) error {
	return func(i int64) error {
		if i <= n {
			return err
		}
		return nil
	}
}

func apiErr(status int, code any, msg string) *openai.APIError {
	return &openai.APIError{
		HTTPStatusCode: status,
		HTTPStatus:     fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Code:           code,
		Message:        msg,
	}
}

// headerErr is an error that carries the response headers, as the go-openai
// glue produces.
type headerErr struct {
	err error
	h   http.Header
}

func (e headerErr) Error() string       { return e.err.Error() }
func (e headerErr) Unwrap() error       { return e.err }
func (e headerErr) Header() http.Header { return e.h }

// bodyErr is an error that also carries the raw error body, as the go-openai
// glue's errors do.
type bodyErr struct {
	error
	body []byte
}

func (e bodyErr) Unwrap() error { return e.error }
func (e bodyErr) Body() []byte  { return e.body }

// members builds members named a, b, c… with the given clients, priority 0.
func members(clients ...*fakeClient) []failover.Member[*fakeClient] {
	ms := make([]failover.Member[*fakeClient], len(clients))
	for i, c := range clients {
		ms[i] = failover.Member[*fakeClient]{Name: string(rune('a' + i)), Client: c, Priority: i}
	}
	return ms
}

// exact is the default schedule without jitter, so windows are exact.
// exact is the default schedule without jitter and without blips: the
// first transient failure opens the Transient base window, as the tests
// of windows expect. blips_test.go covers the default Blips.
func exact() failover.Cooldowns {
	c := failover.DefaultCooldowns()
	c.Transient.Jitter, c.Quota.Jitter, c.Permanent.Jitter = 0, 0, 0
	c.Blips = 0
	return c
}

func newPool(t *testing.T, ms []failover.Member[*fakeClient], opts ...failover.Option) *failover.Pool[*fakeClient] {
	t.Helper()
	p, err := failover.New(ms, opts...)
	require.NoError(t, err)
	return p
}

func status(t *testing.T, p *failover.Pool[*fakeClient], name string) failover.Status {
	t.Helper()
	for _, s := range p.Status() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no member %q", name)
	return failover.Status{}
}

// events records observer events; safe for concurrent use.
type events struct {
	mu  sync.Mutex
	all []failover.Event
}

func (e *events) observe(ev failover.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) kinds(member string) []failover.EventKind {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []failover.EventKind
	for _, ev := range e.all {
		if ev.Member == member {
			out = append(out, ev.Kind)
		}
	}
	return out
}

// count is how many events of kind member had.
func (e *events) count(kind failover.EventKind, member string) int {
	n := 0
	for _, k := range e.kinds(member) {
		if k == kind {
			n++
		}
	}
	return n
}
