// Command openai-go runs failover under the official openai-go SDK through
// failover.Transport, against a fake provider on a loopback port: a revoked
// key and a rate-limited key are skipped, the third key serves.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// newClient returns an openai-go client whose requests fail over across
// the given upstreams. The SDK's own retries are off: the pool retries.
func newClient(members []failover.Member[failover.Upstream]) (openai.Client, *failover.Pool[failover.Upstream], error) {
	pool, err := failover.New(members)
	if err != nil {
		return openai.Client{}, nil, err
	}
	client := openai.NewClient(
		option.WithBaseURL("http://failover.local/v1/"), // any host: the transport routes
		option.WithAPIKey("unused"),                     // replaced per member
		option.WithHTTPClient(&http.Client{Transport: failover.NewTransport(pool)}),
		option.WithMaxRetries(0),
	)
	return client, pool, nil
}

func main() {
	srv := failovertest.NewServer()
	base := srv.Start()
	defer srv.Close()
	srv.Script("sk-revoked", failovertest.Unauthorized())
	srv.Script("sk-limited", failovertest.RateLimited(20*time.Second))
	srv.Script("sk-good", failovertest.OK("hello from sk-good's member"))

	var members []failover.Member[failover.Upstream]
	for _, key := range []string{"sk-revoked", "sk-limited", "sk-good"} {
		members = append(members, failover.Member[failover.Upstream]{
			Name: key[3:], Client: failover.Upstream{BaseURL: base, Key: key}})
	}
	client, pool, err := newClient(members)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for i := 1; i <= 3; i++ {
		resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model:    "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "call failed:", err)
			os.Exit(1)
		}
		fmt.Printf("call %d: %s\n", i, resp.Choices[0].Message.Content)
	}
	for _, s := range pool.Status() {
		fmt.Printf("%-8s %-13s %s\n", s.Name, s.State, s.Reason)
	}
	fmt.Printf("upstream calls: revoked=%d limited=%d good=%d\n", srv.Calls("sk-revoked"), srv.Calls("sk-limited"), srv.Calls("sk-good"))
}
