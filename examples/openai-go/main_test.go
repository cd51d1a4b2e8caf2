package main

import (
	"context"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/openai/openai-go/v3"
)

// The official SDK through the transport: the 401 key and the 429 key are
// skipped, each after one call; the third key serves every call.
func TestOpenAIGoThroughTransport(t *testing.T) {
	srv := failovertest.NewServer()
	base := srv.Start()
	defer srv.Close()
	srv.Script("k-revoked", failovertest.Unauthorized())
	srv.Script("k-limited", failovertest.RateLimited(20*time.Second))
	var members []failover.Member[failover.Upstream]
	for _, k := range []string{"k-revoked", "k-limited", "k-good"} {
		members = append(members, failover.Member[failover.Upstream]{Name: k, Client: failover.Upstream{BaseURL: base, Key: k}})
	}
	client, pool, err := newClient(members)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model:    "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got := resp.Choices[0].Message.Content; got != "ok" {
			t.Fatalf("call %d: content %q", i, got)
		}
	}
	if a, b, c := srv.Calls("k-revoked"), srv.Calls("k-limited"), srv.Calls("k-good"); a != 1 || b != 1 || c != 5 {
		t.Fatalf("calls: revoked=%d limited=%d good=%d, want 1 1 5", a, b, c)
	}
	st := pool.Status()
	if st[0].Reason != failover.ReasonAuth || st[1].Reason != failover.ReasonRateLimit {
		t.Fatalf("reasons: %s %s", st[0].Reason, st[1].Reason)
	}
	if d := time.Until(st[1].Until); d < 19*time.Second || d > 20*time.Second {
		t.Fatalf("limited key cools %v, want the Retry-After of 20 s", d)
	}
	for _, r := range srv.Requests("") {
		if r.Key == "unused" {
			t.Fatal("the SDK's own key reached an upstream")
		}
	}
}
