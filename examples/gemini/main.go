// Command gemini runs failover under Google's Gen AI SDK
// (google.golang.org/genai, Gemini API backend) through failover.Transport,
// against failovertest's Gemini protocol in memory: a revoked key and a
// rate-limited key are skipped, the third key serves, and a stream arrives
// chunk by chunk.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"google.golang.org/genai"
)

// newClient returns a Gemini API client whose requests fail over across
// the given upstreams. The SDK retries nothing unless HTTPOptions asks it
// to: the pool is the one retry loop.
func newClient(ctx context.Context, members []failover.Member[failover.Upstream]) (*genai.Client, *failover.Pool[failover.Upstream], error) {
	pool, err := failover.New(members)
	if err != nil {
		return nil, nil, err
	}
	client, err := genai.NewClient(ctx, &genai.ClientConfig{
		Backend:    genai.BackendGeminiAPI,
		APIKey:     "unused", // replaced per member
		HTTPClient: &http.Client{Transport: failover.NewTransport(pool)},
		HTTPOptions: genai.HTTPOptions{
			BaseURL:    "http://failover.local/", // any host: the transport routes
			APIVersion: "v1beta",
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return client, pool, nil
}

// member is a Gemini API upstream served by srv in memory.
func member(srv *failovertest.Server, name, key string) failover.Member[failover.Upstream] {
	return failover.Member[failover.Upstream]{Name: name, Client: failover.Upstream{
		BaseURL:   "https://generativelanguage.googleapis.com/v1beta", // srv answers whatever the host
		Key:       key,
		Auth:      failover.AuthGoogKey,
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
	srv.Script("AIza-revoked", failovertest.GeminiUnauthorized())
	srv.Script("AIza-limited", failovertest.GeminiRateLimited(20*time.Second))
	srv.Script("AIza-good", failovertest.GeminiOK("hello from the good key"), failovertest.GeminiStream("hello ", "from ", "a stream"))

	client, pool, err := newClient(ctx, []failover.Member[failover.Upstream]{
		member(srv, "revoked", "AIza-revoked"), member(srv, "limited", "AIza-limited"), member(srv, "good", "AIza-good"),
	})
	if err != nil {
		return err
	}
	resp, err := client.Models.GenerateContent(ctx, "gemini-2.5-flash", genai.Text("hi"), nil)
	if err != nil {
		return fmt.Errorf("call failed: %w", err)
	}
	fmt.Println("response:", resp.Text())

	fmt.Print("stream: ")
	for chunk, err := range client.Models.GenerateContentStream(ctx, "gemini-2.5-flash", genai.Text("hi"), nil) {
		if err != nil {
			return fmt.Errorf("stream failed: %w", err)
		}
		fmt.Print(chunk.Text())
	}
	fmt.Println()
	for _, s := range pool.Status() {
		fmt.Printf("%-8s %-13s %s\n", s.Name, s.State, s.Reason)
	}
	fmt.Printf("upstream calls: revoked=%d limited=%d good=%d\n",
		srv.Calls("AIza-revoked"), srv.Calls("AIza-limited"), srv.Calls("AIza-good"))
	return nil
}
