package failover_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var chatReq = openai.ChatCompletionRequest{
	Model:    "gpt-4o",
	Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "hello"}},
}

func openAIPool(t *testing.T, srv *failovertest.Server, keys []string, opts ...failover.Option) *failover.OpenAI {
	t.Helper()
	p, err := failover.New(failover.OpenAIKeys("openai", srv.Config, keys...), opts...)
	require.NoError(t, err)
	return failover.NewOpenAI(p)
}

// Three keys: revoked (401), rate limited (429, Retry-After: 20), healthy.
// 100 chat calls all succeed; the revoked key gets exactly one call; the
// limited key is not called again for 20 s, then probed once.
func TestOpenAIThreeKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script("k-revoked", failovertest.Unauthorized())
		srv.Script("k-limited", failovertest.RateLimited(20*time.Second), failovertest.OK("limited ok"))
		srv.Script("k-healthy", failovertest.OK("healthy ok"))
		client := openAIPool(t, srv, []string{"k-revoked", "k-limited", "k-healthy"})

		start := time.Now()
		for i := range 100 {
			resp, err := client.CreateChatCompletion(ctx, chatReq)
			require.NoError(t, err, "call %d", i)
			require.Equal(t, "healthy ok", resp.Choices[0].Message.Content)
			time.Sleep(190 * time.Millisecond) // 100 calls in 19 s
		}
		assert.Less(t, time.Since(start), 20*time.Second)
		assert.Equal(t, 1, srv.Calls("k-revoked"))
		assert.Equal(t, 1, srv.Calls("k-limited"), "no call during the 20 s of Retry-After")
		assert.Equal(t, 100, srv.Calls("k-healthy"))

		st := client.Pool().Status()
		assert.Equal(t, failover.ReasonAuth, st[0].Reason)
		assert.Equal(t, failover.ReasonRateLimit, st[1].Reason)
		assert.Equal(t, start.Add(20*time.Second), st[1].Until, "Retry-After from the response headers")

		time.Sleep(time.Until(start.Add(20 * time.Second)))
		resp, err := client.CreateChatCompletion(ctx, chatReq)
		require.NoError(t, err)
		assert.Equal(t, "limited ok", resp.Choices[0].Message.Content, "one probe after 20 s")
		assert.Equal(t, 2, srv.Calls("k-limited"))
		assert.Equal(t, 1, srv.Calls("k-revoked"))
	})
}

func readStream(t *testing.T, s *failover.ChatStream) (string, error) {
	t.Helper()
	var b strings.Builder
	for {
		r, err := s.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return b.String(), nil
			}
			return b.String(), err
		}
		for _, c := range r.Choices {
			b.WriteString(c.Delta.Content)
		}
	}
}

// Stream: the first key answers 503 at open, the second errors inside its
// first chunk, the third streams: the caller gets exactly the third's chunks,
// once.
func TestOpenAIStreamFailsOverUntilFirstChunk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script("k1", failovertest.Error(503, "server_error", "", "The engine is currently overloaded"))
		srv.Script("k2", failovertest.Response{Chunks: []string{failovertest.ErrorEvent("server_error", "The server had an error while processing your request.")}})
		srv.Script("k3", failovertest.Stream("Hel", "lo", "!"))
		client := openAIPool(t, srv, []string{"k1", "k2", "k3"})

		s, err := client.CreateChatCompletionStream(ctx, chatReq)
		require.NoError(t, err)
		defer s.Close()
		assert.Equal(t, "openai#3", s.Member())
		got, err := readStream(t, s)
		require.NoError(t, err)
		assert.Equal(t, "Hello!", got)
		assert.Equal(t, []int{1, 1, 1}, []int{srv.Calls("k1"), srv.Calls("k2"), srv.Calls("k3")})
		st := client.Pool().Status()
		assert.Equal(t, failover.ReasonOverloaded, st[0].Reason)
		assert.Equal(t, failover.ReasonServer, st[1].Reason)
		assert.Equal(t, failover.Active, st[2].State)
		assert.True(t, srv.Requests("k3")[0].Stream)
		assert.Equal(t, "text/event-stream", s.Header().Get("Content-Type"))
	})
}

// After the first chunk, a failure goes to the caller and cools the member.
func TestOpenAIStreamMidStreamFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		resp failovertest.Response
		want failover.Reason
	}{
		{"error event", failovertest.Response{Chunks: []string{failovertest.Chunk("", "par"), failovertest.ErrorEvent("server_error", "The server had an error")}}, failover.ReasonServer},
		{"no [DONE]", failovertest.Response{Chunks: []string{failovertest.Chunk("", "par"), failovertest.Chunk("", "tial")}, NoDone: true}, failover.ReasonNetwork},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := failovertest.NewServer()
				srv.Script("k1", tc.resp)
				client := openAIPool(t, srv, []string{"k1", "k2"}, failover.WithCooldowns(exact()))
				s, err := client.CreateChatCompletionStream(ctx, chatReq)
				require.NoError(t, err)
				got, err := readStream(t, s)
				require.Error(t, err)
				require.NoError(t, s.Close())
				assert.True(t, strings.HasPrefix(got, "par"))
				assert.Equal(t, 0, srv.Calls("k2"), "no failover after the first chunk")
				st := client.Pool().Status()[0]
				assert.Equal(t, failover.CoolingDown, st.State)
				assert.Equal(t, tc.want, st.Reason)
				assert.Equal(t, 5*time.Second, time.Until(st.Until))
			})
		})
	}
}

// A stream that opens and stalls fails over after the first-chunk timeout;
// one that ends without [DONE] before its first chunk fails over too.
func TestOpenAIStreamStallAndTruncation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script("k1", failovertest.Response{Chunks: []string{failovertest.Chunk("", "late")}, ChunkDelay: time.Hour})
		srv.Script("k2", failovertest.Response{Chunks: []string{}, NoDone: true})
		srv.Script("k3", failovertest.Stream("fine"))
		p, err := failover.New(failover.OpenAIKeys("x", srv.Config, "k1", "k2", "k3"))
		require.NoError(t, err)
		client := failover.NewOpenAI(p, failover.WithFirstChunkTimeout(10*time.Second))
		start := time.Now()
		s, err := client.CreateChatCompletionStream(ctx, chatReq)
		require.NoError(t, err)
		assert.Equal(t, 10*time.Second, time.Since(start))
		got, err := readStream(t, s)
		require.NoError(t, err)
		assert.Equal(t, "fine", got)
		st := p.Status()
		assert.Equal(t, failover.ReasonTimeout, st[0].Reason)
		assert.Equal(t, failover.ReasonNetwork, st[1].Reason)
		require.NoError(t, s.Close())
	})
}

// Retry-After on a stream that fails to open still sets the cooldown
// (go-openai drops headers on that path; the member's HTTP client keeps them).
func TestOpenAIStreamOpenHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script("k1", failovertest.RateLimited(45*time.Second))
		client := openAIPool(t, srv, []string{"k1", "k2"})
		s, err := client.CreateChatCompletionStream(ctx, chatReq)
		require.NoError(t, err)
		_, _ = readStream(t, s)
		_ = s.Close()
		assert.Equal(t, 45*time.Second, time.Until(client.Pool().Status()[0].Until))
	})
}

// A 400 context_length_exceeded comes back unchanged; no other key is tried.
func TestOpenAIContextLengthUnchanged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script("k1", failovertest.Error(400, "invalid_request_error", "context_length_exceeded",
			"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens."))
		client := openAIPool(t, srv, []string{"k1", "k2", "k3"})
		_, err := client.CreateChatCompletion(ctx, chatReq)
		var ae *openai.APIError
		require.ErrorAs(t, err, &ae)
		assert.Same(t, ae, err, "the provider's error itself")
		assert.Equal(t, "context_length_exceeded", ae.Code)
		assert.Equal(t, []int{1, 0, 0}, []int{srv.Calls("k1"), srv.Calls("k2"), srv.Calls("k3")})
		assert.Equal(t, failover.Active, client.Pool().Status()[0].State)
	})
}

// Model-level fallback: the fallback member serves with its own model only
// after the primary fails; the caller's request is not changed.
func TestOpenAIModelFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script("primary", failovertest.Error(500, "server_error", "", "boom"), failovertest.OK("primary"))
		ms := []failover.Member[*openai.Client]{
			failover.OpenAIMember("gpt-4o", srv.Config("primary")),
			failover.OpenAIMember("gpt-4o-mini", srv.Config("mini")),
		}
		ms[1].Model, ms[1].Priority = "gpt-4o-mini", 1
		p, err := failover.New(ms, failover.WithCooldowns(exact()))
		require.NoError(t, err)
		client := failover.NewOpenAI(p)

		req := chatReq
		resp, err := client.CreateChatCompletion(ctx, req)
		require.NoError(t, err)
		assert.Equal(t, "gpt-4o-mini", resp.Model)
		assert.Equal(t, "gpt-4o", req.Model)
		time.Sleep(5 * time.Second)
		resp, err = client.CreateChatCompletion(ctx, req)
		require.NoError(t, err)
		assert.Equal(t, "primary", resp.Choices[0].Message.Content)

		var models []string
		for _, r := range srv.Requests("") {
			models = append(models, r.Key+":"+r.Model)
		}
		assert.Equal(t, []string{"primary:gpt-4o", "mini:gpt-4o-mini", "primary:gpt-4o"}, models)

		// Streams and embeddings take the member's model too.
		p.Disable("gpt-4o")
		s, err := client.CreateChatCompletionStream(ctx, req)
		require.NoError(t, err)
		_, _ = readStream(t, s)
		_ = s.Close()
		_, err = client.CreateEmbeddings(ctx, openai.EmbeddingRequest{Input: []string{"x"}, Model: openai.AdaEmbeddingV2})
		require.NoError(t, err)
		rs := srv.Requests("mini")
		require.Len(t, rs, 3)
		for _, r := range rs {
			assert.Equal(t, "gpt-4o-mini", r.Model, r.Path)
		}
	})
}

// Keys never show: not in returned errors, the status JSON, events or logs,
// including transport errors whose URL carries a key.
func TestOpenAICanaryKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			revoked = "sk-proj-CANARYrevoked0123456789abcdef"
			inURL   = "CANARY-url-key-42"
		)
		srv := failovertest.NewServer()
		srv.Script(revoked, failovertest.Error(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided: "+revoked+"."))
		urlCfg := openai.DefaultConfig("sk-proj-CANARYtransport0123456789")
		urlCfg.BaseURL = "https://gateway.example.com/v1"
		urlCfg.HTTPClient = doerFunc(func(r *http.Request) (*http.Response, error) {
			return nil, &url.Error{Op: "Post", URL: r.URL.String() + "?key=" + inURL, Err: errors.New("connection refused")}
		})
		var ev events
		var logs bytes.Buffer
		p, err := failover.New([]failover.Member[*openai.Client]{
			failover.OpenAIMember("revoked", srv.Config(revoked)),
			failover.OpenAIMember("transport", urlCfg),
		}, failover.WithObserver(ev.observe), failover.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		require.NoError(t, err)
		client := failover.NewOpenAI(p)

		_, err1 := client.CreateChatCompletion(ctx, chatReq)
		require.ErrorIs(t, err1, failover.ErrExhausted)
		_, err2 := client.CreateChatCompletionStream(ctx, chatReq)
		var fe *failover.Error
		require.ErrorAs(t, err2, &fe) // the transport member's blip is probed once more

		rec := httptest.NewRecorder()
		failover.StatusHandler(p).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
		require.Equal(t, http.StatusOK, rec.Code)
		var sts []failover.Status
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &sts))
		assert.Len(t, sts, 2)

		texts := []string{err1.Error(), err2.Error(), rec.Body.String(), logs.String()}
		for _, e := range ev.all {
			if e.Err != nil {
				texts = append(texts, e.Err.Error())
			}
		}
		for _, text := range texts {
			for _, key := range []string{revoked, inURL, "sk-proj-CANARYtransport0123456789"} {
				assert.NotContains(t, text, key)
			}
		}
		assert.Contains(t, rec.Body.String(), "[REDACTED]")

		rec = httptest.NewRecorder()
		failover.StatusHandler(p).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/status", nil))
		assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	})
}

type doerFunc func(*http.Request) (*http.Response, error)

func (f doerFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

// Concurrent calls on one member never mix their response headers.
func TestOpenAIHeadersPerCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script("k1", failovertest.Response{Delay: time.Second, Body: failovertest.OK("x").Body},
			failovertest.Response{Delay: 2 * time.Second, Status: 429, Header: http.Header{"Retry-After": {"33"}}, Body: failovertest.ErrorBody("requests", "rate_limit_exceeded", "slow")})
		client := openAIPool(t, srv, []string{"k1", "k2"}, failover.WithCooldowns(exact()))
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				_, err := client.CreateChatCompletion(ctx, chatReq)
				assert.NoError(t, err)
			})
			synctest.Wait()
		}
		wg.Wait()
		st := client.Pool().Status()[0]
		assert.Equal(t, 33*time.Second, time.Until(st.Until), "the 429's Retry-After, not the other call's headers")
	})
}

func TestOpenAICompletionAndEmbeddings(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Script("k1", failovertest.Error(502, "", "", "bad gateway"))
	client := openAIPool(t, srv, []string{"k1", "k2"})
	resp, err := client.CreateCompletion(ctx, openai.CompletionRequest{Model: "gpt-3.5-turbo-instruct", Prompt: "x"})
	require.NoError(t, err)
	assert.Equal(t, "ok", resp.Choices[0].Text)
	emb, err := client.CreateEmbeddings(ctx, &openai.EmbeddingRequestStrings{Input: []string{"x"}, Model: openai.SmallEmbedding3})
	require.NoError(t, err)
	assert.Len(t, emb.Data, 1)
	// k1's first call failed: no blip, it cools (and k2 is there, so no
	// last resort either).
	assert.Equal(t, []int{1, 2}, []int{srv.Calls("k1"), srv.Calls("k2")})

	_, err = client.CreateEmbeddings(context.Background(), nil)
	assert.ErrorIs(t, err, failover.ErrInvalid)
	_, err = client.CreateEmbeddings(context.Background(), (*openai.EmbeddingRequest)(nil))
	assert.ErrorIs(t, err, failover.ErrInvalid)
}

// Azure: the api-key header, deployments in the path, and retry-after-ms on
// a 429 set the cooldown.
func TestOpenAIAzure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script("azure-key-1", failovertest.Response{Status: 429, Header: http.Header{"Retry-After-Ms": {"7500"}},
			Body: `{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation have exceeded call rate limit. Please retry after 8 seconds."}}`})
		azure := func(key string) openai.ClientConfig {
			cfg := openai.DefaultAzureConfig(key, "https://my-resource.openai.azure.com")
			cfg.HTTPClient = srv.HTTPClient()
			return cfg
		}
		p, err := failover.New(failover.OpenAIKeys("azure", azure, "azure-key-1", "azure-key-2"))
		require.NoError(t, err)
		_, err = failover.NewOpenAI(p).CreateChatCompletion(ctx, chatReq)
		require.NoError(t, err)
		assert.Equal(t, 7500*time.Millisecond, time.Until(p.Status()[0].Until))
		assert.Contains(t, srv.Requests("azure-key-2")[0].Path, "/openai/deployments/gpt-4o/chat/completions")
	})
}
