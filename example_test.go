package failover_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/llmfailover/failover"
	"github.com/sashabaranov/go-openai"
)

// A pool of two keys of one provider and a paid fallback. The first key is
// revoked: its 401 moves the call on and benches the key for 15 minutes.
func ExampleDo() {
	type client struct{ revoked bool }
	pool, err := failover.New([]failover.Member[*client]{
		{Name: "free-1", Client: &client{revoked: true}},
		{Name: "free-2", Client: &client{}},
		{Name: "paid", Client: &client{}, Priority: 1},
	})
	if err != nil {
		panic(err)
	}
	answer, err := failover.Do(context.Background(), pool,
		func(ctx context.Context, m failover.Member[*client]) (string, error) {
			if m.Client.revoked {
				return "", &openai.APIError{HTTPStatusCode: 401, Code: "invalid_api_key", Message: "Incorrect API key provided"}
			}
			return "hello from " + m.Name, nil
		})
	fmt.Println(answer, err)
	for _, s := range pool.Status() {
		fmt.Printf("%s %s %q\n", s.Name, s.State, s.Reason)
	}
	// Output:
	// hello from free-2 <nil>
	// free-1 cooling_down "auth"
	// free-2 active ""
	// paid active ""
}

// When every member is cooling down, Do fails fast with ErrUnavailable and
// says when to come back.
func ExampleError() {
	pool, _ := failover.New([]failover.Member[string]{{Name: "only", Client: "key"}})
	limited := &openai.APIError{HTTPStatusCode: 429, Type: "rate_limit_error", Message: "Rate limit reached"}
	fn := func(ctx context.Context, m failover.Member[string]) (string, error) { return "", limited }

	_, err := failover.Do(context.Background(), pool, fn)
	fmt.Println(errors.Is(err, failover.ErrExhausted))

	_, err = failover.Do(context.Background(), pool, fn)
	var fe *failover.Error
	if errors.As(err, &fe) && errors.Is(err, failover.ErrUnavailable) {
		fmt.Println("retry in about", time.Until(fe.RetryAt).Round(5*time.Second))
		fmt.Println(fe.Attempts[0].Member, fe.Attempts[0].Reason, fe.Attempts[0].Skipped)
	}
	// Output:
	// true
	// retry in about 5s
	// only rate_limit true
}

// Classify tells what an error means for failover.
func ExampleClassify() {
	err := &openai.APIError{HTTPStatusCode: 429, Code: "insufficient_quota",
		Message: "You exceeded your current quota, please check your plan and billing details."}
	v := failover.Classify(err)
	fmt.Println(v.Reason, v.Reason.Lane(), v.Reason.FailsOver())
	// Output: quota quota true
}

// Tiers and options: two free keys shared round robin, a paid key behind
// them; a call waits up to 10 s for a recovery instead of failing fast.
func ExampleNew() {
	pool, err := failover.New([]failover.Member[string]{
		{Name: "free-1", Client: "key-1", Group: "free-account"},
		{Name: "free-2", Client: "key-2", Group: "free-account"},
		{Name: "paid", Client: "key-3", Priority: 1, Model: "gpt-4o-mini"},
	},
		failover.WithStrategy(failover.RoundRobin),
		failover.WithAttemptTimeout(30*time.Second),
		failover.WithWaitForRecovery(10*time.Second),
		failover.WithStickiness(time.Minute),
	)
	fmt.Println(len(pool.Status()), err)

	_, err = failover.New([]failover.Member[string]{{Name: "a", Client: "k", Weight: -1}})
	fmt.Println(err)
	// Output:
	// 3 <nil>
	// failover: invalid configuration: member 0 ("a"): Weight -1 is negative
}

// Two pools share their members' state through a store: the 401 one of
// them sees benches the key for the other too, which then makes no call
// to it. Across processes, use the Redis store (module
// github.com/llmfailover/failover/redisstore) the same way.
func ExampleWithStore() {
	type client struct{ revoked bool }
	members := []failover.Member[*client]{
		{Name: "free", Client: &client{revoked: true}},
		{Name: "paid", Client: &client{}, Priority: 1},
	}
	store := failover.NewMemoryStore()
	a, err := failover.New(members, failover.WithStore(store))
	if err != nil {
		panic(err)
	}
	b, err := failover.New(members, failover.WithStore(store))
	if err != nil {
		panic(err)
	}
	calls := map[string]int{}
	call := func(ctx context.Context, m failover.Member[*client]) (string, error) {
		calls[m.Name]++
		if m.Client.revoked {
			return "", &openai.APIError{HTTPStatusCode: 401, Code: "invalid_api_key", Message: "Incorrect API key provided"}
		}
		return m.Name, nil
	}
	fromA, _ := failover.Do(context.Background(), a, call)
	fromB, _ := failover.Do(context.Background(), b, call)
	fmt.Println(fromA, fromB, calls["free"], "call to free")
	fmt.Println("b sees free as", b.Status()[0].State, b.Status()[0].Reason)
	// Output:
	// paid paid 1 call to free
	// b sees free as cooling_down auth
}
