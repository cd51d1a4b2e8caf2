// Command basic shows failover with a fake in-process provider: no keys, no
// network. Three members: a revoked key, a rate-limited key and a healthy
// paid fallback. It prints which member served each call and the final
// status of the pool.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/llmfailover/failover"
	"github.com/sashabaranov/go-openai"
)

// provider is a fake LLM endpoint for one key.
type provider struct {
	calls atomic.Int64
	fail  func(n int64) error
}

func (p *provider) complete(ctx context.Context, prompt string) (string, error) {
	n := p.calls.Add(1)
	if p.fail != nil {
		if err := p.fail(n); err != nil {
			return "", err
		}
	}
	return "echo: " + prompt, nil
}

// rateLimited is a 429 that carries Retry-After, as the go-openai glue
// reports it.
type rateLimited struct{ *openai.APIError }

func (e rateLimited) Unwrap() error { return e.APIError }
func (e rateLimited) Header() http.Header {
	return http.Header{"Retry-After": {"2"}}
}

func main() {
	revoked := &provider{fail: func(int64) error {
		return &openai.APIError{HTTPStatusCode: 401, HTTPStatus: "401 Unauthorized", Code: "invalid_api_key", Message: "Incorrect API key provided: sk-proj-demo****"}
	}}
	limited := &provider{fail: func(n int64) error {
		if n == 1 { // its first call hits the rate limit
			return rateLimited{&openai.APIError{HTTPStatusCode: 429, HTTPStatus: "429 Too Many Requests", Code: "rate_limit_exceeded", Message: "Rate limit reached"}}
		}
		return nil
	}}
	paid := &provider{}

	// Short transient cooldowns so the demo recovers within seconds; the
	// Retry-After of 2 s is a floor above them.
	cooldowns := failover.DefaultCooldowns()
	cooldowns.Transient.Base = 500 * time.Millisecond

	pool, err := failover.New([]failover.Member[*provider]{
		{Name: "free-key-1", Client: revoked, Priority: 0},
		{Name: "free-key-2", Client: limited, Priority: 0},
		{Name: "paid", Client: paid, Priority: 1},
	}, failover.WithCooldowns(cooldowns), failover.WithObserver(func(e failover.Event) {
		if e.Kind != failover.EventAttemptFailed {
			fmt.Printf("    event: %-9s %-10s %s\n", e.Kind, e.Member, e.Reason)
		}
	}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	ctx := context.Background()
	for i := 1; i <= 8; i++ {
		var servedBy string
		answer, err := failover.Do(ctx, pool, func(ctx context.Context, m failover.Member[*provider]) (string, error) {
			servedBy = m.Name
			return m.Client.complete(ctx, fmt.Sprintf("question %d", i))
		})
		if err != nil && !errors.Is(err, failover.ErrUnavailable) {
			fmt.Fprintln(os.Stderr, "call failed:", err)
			os.Exit(1)
		}
		fmt.Printf("call %d served by %-10s %q\n", i, servedBy, answer)
		if i == 4 {
			fmt.Println("    (waiting 2.5 s for free-key-2's Retry-After to pass)")
			time.Sleep(2500 * time.Millisecond)
		}
	}

	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "MEMBER\tSTATE\tREASON\tREQUESTS\tFAILURES\tLAST ERROR")
	for _, s := range pool.Status() {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\n", s.Name, s.State, s.Reason, s.Requests, s.Failures, s.LastError)
	}
	w.Flush()
	fmt.Printf("\nupstream calls: free-key-1=%d free-key-2=%d paid=%d\n", revoked.calls.Load(), limited.calls.Load(), paid.calls.Load())
}
