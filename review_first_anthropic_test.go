package failover_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llmfailover/failover"
)

// Regression (a design gap the review found): Anthropic sends its
// mid-stream overloaded_error after message_start (and a ping), before any
// content block. The caller has received no text, yet the check stops at
// message_start, so the error reaches the SDK instead of failing over.
func TestReviewAnthropicOverloadedAfterMessageStart(t *testing.T) {
	first := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n" +
		"event: ping\ndata: {\"type\": \"ping\"}\n\n" +
		"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
	a, b := &sseUpstream{body: first}, &sseUpstream{body: anthropicOK}
	p, err := failover.New([]failover.Member[failover.Upstream]{
		{Name: "a", Client: failover.Upstream{BaseURL: "https://a.example", Key: "a-key-123456", Transport: a}},
		{Name: "b", Priority: 1, Client: failover.Upstream{BaseURL: "https://b.example", Key: "b-key-123456", Transport: b}},
	}, failover.WithCooldowns(exact()))
	require.NoError(t, err)
	resp := do(t, failover.NewTransport(p), http.MethodPost, "http://x/v1/messages", `{"model":"m","stream":true}`)
	_, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Equal(t, "b", resp.Header.Get("X-Failover-Member"), "no content was sent before the error: fail over")
}
