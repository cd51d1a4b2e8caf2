// Command anthropic runs failover under Anthropic's official Go SDK
// (github.com/anthropics/anthropic-sdk-go) through failover.Transport,
// against failovertest's Anthropic protocol in memory: a revoked key and a
// rate-limited key are skipped, the third key serves, and a stream arrives
// delta by delta.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
)

// newClient returns an Anthropic client whose requests fail over across
// the given upstreams. The SDK's own retries are off (the pool is the one
// retry loop), and so is its reading of ANTHROPIC_* variables: each member
// brings its own key.
func newClient(members []failover.Member[failover.Upstream]) (anthropic.Client, *failover.Pool[failover.Upstream], error) {
	pool, err := failover.New(members)
	if err != nil {
		return anthropic.Client{}, nil, err
	}
	client := anthropic.NewClient(
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL("http://failover.local/"), // any host: the transport routes
		option.WithAPIKey("unused"),                  // replaced per member
		option.WithHTTPClient(&http.Client{Transport: failover.NewTransport(pool)}),
		option.WithMaxRetries(0),
	)
	return client, pool, nil
}

// member is an Anthropic upstream served by srv in memory.
func member(srv *failovertest.Server, name, key string) failover.Member[failover.Upstream] {
	return failover.Member[failover.Upstream]{Name: name, Client: failover.Upstream{
		BaseURL:   "https://api.anthropic.com/v1", // srv answers whatever the host
		Key:       key,
		Auth:      failover.AuthXAPIKey,
		Transport: srv.HTTPClient().Transport,
	}}
}

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	srv := failovertest.NewServer()
	srv.Script("sk-ant-revoked", failovertest.AnthropicUnauthorized())
	srv.Script("sk-ant-limited", failovertest.AnthropicRateLimited(20*time.Second))
	srv.Script("sk-ant-good", failovertest.AnthropicOK("hello from the good key"), failovertest.AnthropicStream("hello ", "from ", "a stream"))

	client, pool, err := newClient([]failover.Member[failover.Upstream]{
		member(srv, "revoked", "sk-ant-revoked"), member(srv, "limited", "sk-ant-limited"), member(srv, "good", "sk-ant-good"),
	})
	if err != nil {
		return err
	}
	params := anthropic.MessageNewParams{
		Model:     anthropic.Model("claude-sonnet-4-5"),
		MaxTokens: 256,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
	}
	msg, err := client.Messages.New(ctx, params)
	if err != nil {
		return fmt.Errorf("call failed: %w", err)
	}
	fmt.Println("message:", msg.Content[0].Text)

	stream := client.Messages.NewStreaming(ctx, params)
	fmt.Print("stream: ")
	for stream.Next() {
		if ev, ok := stream.Current().AsAny().(anthropic.ContentBlockDeltaEvent); ok {
			fmt.Print(ev.Delta.Text)
		}
	}
	fmt.Println()
	if err := stream.Err(); err != nil {
		return fmt.Errorf("stream failed: %w", err)
	}
	for _, s := range pool.Status() {
		fmt.Printf("%-8s %-13s %s\n", s.Name, s.State, s.Reason)
	}
	fmt.Printf("upstream calls: revoked=%d limited=%d good=%d\n",
		srv.Calls("sk-ant-revoked"), srv.Calls("sk-ant-limited"), srv.Calls("sk-ant-good"))
	return nil
}
