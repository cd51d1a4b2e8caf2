package failover_test

import (
	"context"
	"fmt"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/sashabaranov/go-openai"
)

// Call runs any go-openai call through the pool with the retry hints
// intact; OnlyMember pins a call on an account-bound resource.
func ExampleCall() {
	srv := failovertest.NewServer()
	srv.Script("sk-a", failovertest.RateLimited(60*time.Second))
	pool, _ := failover.New(failover.OpenAIKeys("openai", srv.Config, "sk-a", "sk-b"))
	client := failover.NewOpenAI(pool)

	files, err := failover.Call(context.Background(), client, func(ctx context.Context, c *openai.Client) (openai.FilesList, error) {
		return c.ListFiles(ctx)
	})
	fmt.Println(files.Header().Get("X-Failover-Member"), err)
	st := pool.Status()[0]
	fmt.Println(st.Name, st.Reason, time.Until(st.Until).Round(time.Minute))

	_, err = failover.Call(context.Background(), client, func(ctx context.Context, c *openai.Client) (openai.File, error) {
		return c.GetFile(ctx, "file-1")
	}, failover.OnlyMember("openai#1"))
	fmt.Println(err != nil)
	// Output:
	// openai#2 <nil>
	// openai#1 rate_limit 1m0s
	// true
}
