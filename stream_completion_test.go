package failover_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llmfailover/failover"
)

// A completion stream whose first event finishes with "error" and no text
// (OpenRouter's upstream failure in a 200 stream) fails over, as a chat
// stream does (regression: it reached the caller as a stream).
func TestCompletionStreamFailedFirstEvent(t *testing.T) {
	bad := &usageUpstream{status: http.StatusOK, body: func(string) string {
		return "data: {\"id\":\"c\",\"object\":\"text_completion\",\"choices\":[{\"text\":\"\",\"index\":0,\"finish_reason\":\"error\"}]}\n\ndata: [DONE]\n\n"
	}}
	good := &usageUpstream{status: http.StatusOK, body: func(string) string {
		return "data: {\"id\":\"c\",\"object\":\"text_completion\",\"choices\":[{\"text\":\"hi\",\"index\":0}]}\n\ndata: [DONE]\n\n"
	}}
	member := func(name string, rt http.RoundTripper) failover.Member[*openai.Client] {
		cfg := openai.DefaultConfig("sk-" + name + "-key")
		cfg.BaseURL, cfg.HTTPClient = "http://"+name+".test/v1", &http.Client{Transport: rt}
		return failover.OpenAIMember(name, cfg)
	}
	b, g := member("bad", bad), member("good", good)
	g.Priority = 1
	p, err := failover.New([]failover.Member[*openai.Client]{b, g})
	require.NoError(t, err)
	s, err := failover.NewOpenAI(p).CreateCompletionStream(context.Background(), openai.CompletionRequest{Model: "m", Prompt: "hi", Stream: true})
	require.NoError(t, err)
	defer s.Close()
	r, err := s.Recv()
	require.NoError(t, err)
	assert.Equal(t, "hi", r.Choices[0].Text)
	_, err = s.Recv()
	assert.True(t, errors.Is(err, io.EOF), "%v", err)
	assert.Equal(t, [2]int64{1, 1}, [2]int64{bad.calls.Load(), good.calls.Load()})
	assert.Equal(t, failover.ReasonServer, statusOf(p, "bad").Reason)
}
