package failover_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func rvRoute(t *testing.T, base, path string) string {
	var urls []string
	p, err := failover.New([]failover.Member[failover.Upstream]{{Name: "m", Client: failover.Upstream{
		BaseURL: base, Key: "route-key", Auth: failover.AuthAPIKey, Transport: recordURL(&urls)}}})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, "http://failover.local"+path, strings.NewReader(`{}`))
	require.NoError(t, err)
	resp, err := failover.NewTransport(p).RoundTrip(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Len(t, urls, 1)
	return urls[0]
}

// R1: an Azure member whose BaseURL names its deployment, called with the
// README's SDK base ("http://failover.local/v1/").
func TestAzureDeploymentBase(t *testing.T) {
	got := rvRoute(t, "https://x.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21", "/v1/chat/completions")
	assert.Equal(t, "https://x.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21", got)
}

// S2: Transport, Responses: a stream that ends with the terminal "error"
// event reads as io.ErrUnexpectedEOF although the provider ended it.
func TestTransportResponsesErrorEventEnd(t *testing.T) {
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		body := "event: response.created\ndata: {\"type\":\"response.created\"}\n\nevent: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"boom\"}\n\n"
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}},
			Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	})
	p, err := failover.New([]failover.Member[failover.Upstream]{{Name: "m", Client: failover.Upstream{BaseURL: "https://api.openai.com/v1", Key: "k", Transport: rt}}})
	require.NoError(t, err)
	req, _ := http.NewRequest(http.MethodPost, "http://failover.local/v1/responses", strings.NewReader(`{"model":"x","stream":true,"input":"hi"}`))
	resp, err := failover.NewTransport(p).RoundTrip(req)
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	assert.NoError(t, err, "the error event is one of the Responses API's terminal events (go-openai glue treats it so)")
}

// E1: CreateEmbeddings counts 1 token: ContextTokens/TPM never apply.
func TestEmbeddingsIgnoreContextTokens(t *testing.T) {
	srv := failovertest.NewServer()
	small := failover.OpenAIMember("small", srv.Config("k1"))
	small.Limits.ContextTokens = 100
	big := failover.OpenAIMember("big", srv.Config("k2"))
	big.Priority = 1
	p, err := failover.New([]failover.Member[*openai.Client]{small, big})
	require.NoError(t, err)
	o := failover.NewOpenAI(p)
	resp, err := o.CreateEmbeddings(context.Background(), openai.EmbeddingRequest{Model: "e", Input: []string{strings.Repeat("word ", 4000)}})
	require.NoError(t, err)
	assert.Equal(t, "big", resp.Header().Get("X-Failover-Member"), "a 5,000-token input should skip a 100-token member")
}

// Regression (issue 17 review): an account-bound GET through Call without OnlyMember: the member
// that does not own the file answers 404 and is cooled as not_found.
func TestCallForeignFile404Cools(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Script("k1", failovertest.Error(404, "invalid_request_error", "", "No such File object: file-abc"))
	a := failover.OpenAIMember("a", srv.Config("k1"))
	b := failover.OpenAIMember("b", srv.Config("k2"))
	b.Priority = 1
	p, err := failover.New([]failover.Member[*openai.Client]{a, b})
	require.NoError(t, err)
	o := failover.NewOpenAI(p)
	_, err = failover.Call(context.Background(), o, func(ctx context.Context, c *openai.Client) (openai.File, error) {
		return c.GetFile(ctx, "file-abc")
	})
	t.Logf("err=%v", err)
	for _, s := range p.Status() {
		t.Logf("%s state=%v reason=%v until=%v", s.Name, s.State, s.Reason, time.Until(s.Until).Round(time.Second))
	}
	st := p.Status()[0]
	assert.True(t, st.Until.IsZero() || time.Until(st.Until) < time.Minute, "a 404 for another account's file ID must not take member a out")
}

var _ = errors.Is

// Regression (issue 17 review): the same with OnlyMember, as Call's docs advise: a file ID that no
// longer exists takes the member out of every model call for minutes.
func TestPinnedMissingFile404Cools(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Script("k1", failovertest.Error(404, "invalid_request_error", "", "No such File object: file-gone"), failovertest.OK("hi"))
	a := failover.OpenAIMember("a", srv.Config("k1"))
	b := failover.OpenAIMember("b", srv.Config("k2"))
	b.Priority = 1
	p, err := failover.New([]failover.Member[*openai.Client]{a, b})
	require.NoError(t, err)
	o := failover.NewOpenAI(p)
	_, err = failover.Call(context.Background(), o, func(ctx context.Context, c *openai.Client) (openai.File, error) {
		return c.GetFile(ctx, "file-gone")
	}, failover.OnlyMember("a"))
	require.Error(t, err)
	resp, err := o.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}})
	require.NoError(t, err)
	st := p.Status()[0]
	t.Logf("a: state=%v reason=%v for %v; chat served by %s", st.State, st.Reason, time.Until(st.Until).Round(time.Second), resp.Header().Get("X-Failover-Member"))
	assert.Equal(t, "a", resp.Header().Get("X-Failover-Member"), "a missing file is the caller's error, not the member's")
}

// Regression (issue 17 review): Transport, GET of another account's object.
func TestTransportFile404Cools(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Script("k1", failovertest.Error(404, "invalid_request_error", "", "No such File object: file-abc"))
	client := srv.HTTPClient()
	p, err := failover.New([]failover.Member[failover.Upstream]{
		{Name: "a", Client: failover.Upstream{BaseURL: "https://api.openai.com/v1", Key: "k1", Transport: client.Transport}},
		{Name: "b", Priority: 1, Client: failover.Upstream{BaseURL: "https://api.openai.com/v1", Key: "k2", Transport: client.Transport}},
	})
	require.NoError(t, err)
	req, _ := http.NewRequest(http.MethodGet, "http://failover.local/v1/files/file-abc", nil)
	resp, err := failover.NewTransport(p).RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	st := p.Status()[0]
	t.Logf("served by %s (status %d); a: state=%v reason=%v for %v", resp.Header.Get("X-Failover-Member"), resp.StatusCode, st.State, st.Reason, time.Until(st.Until).Round(time.Second))
	assert.Equal(t, "a", resp.Header.Get("X-Failover-Member"))
}

// P1: proactive cooldown on remaining tokens depends on whether the body
// had GetBody (strings.Reader) or not.
func TestProactiveTokensGetBody(t *testing.T) {
	for _, getBody := range []bool{false, true} {
		rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			h := http.Header{"Content-Type": {"application/json"}, "X-Ratelimit-Remaining-Tokens": {"10"}, "X-Ratelimit-Reset-Tokens": {"30s"},
				"X-Ratelimit-Remaining-Requests": {"100"}, "X-Ratelimit-Reset-Requests": {"1s"}}
			return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader(`{}`)), Request: r}, nil
		})
		p, err := failover.New([]failover.Member[failover.Upstream]{
			{Name: "a", Client: failover.Upstream{BaseURL: "https://api.openai.com/v1", Key: "k", Transport: rt}},
			{Name: "b", Priority: 1, Client: failover.Upstream{BaseURL: "https://api.openai.com/v1", Key: "k2", Transport: rt}},
		})
		require.NoError(t, err)
		body := `{"model":"x","messages":[{"role":"user","content":"` + strings.Repeat("word ", 4000) + `"}]}`
		var r io.Reader = strings.NewReader(body)
		if !getBody {
			r = io.MultiReader(r)
		}
		req, _ := http.NewRequest(http.MethodPost, "http://failover.local/v1/chat/completions", r)
		resp, err := failover.NewTransport(p).RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		st := p.Status()[0]
		t.Logf("GetBody=%v: a state=%v until=%v", getBody, st.State, time.Until(st.Until).Round(time.Second))
		assert.Equal(t, failover.CoolingDown, st.State, "GetBody=%v: 10 tokens left, a 5,000-token call", getBody)
	}
}
