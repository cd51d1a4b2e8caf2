package failovertest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover/failovertest"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var req = openai.ChatCompletionRequest{Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}}

func TestScriptsPerKey(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Script("a", failovertest.RateLimited(7*time.Second), failovertest.OK("second"))
	a := openai.NewClientWithConfig(srv.Config("a"))
	b := openai.NewClientWithConfig(srv.Config("b"))

	_, err := a.CreateChatCompletion(context.Background(), req)
	var ae *openai.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 429, ae.HTTPStatusCode)
	for range 2 { // the last answer repeats
		resp, err := a.CreateChatCompletion(context.Background(), req)
		require.NoError(t, err)
		assert.Equal(t, "second", resp.Choices[0].Message.Content)
	}
	resp, err := b.CreateChatCompletion(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, "ok", resp.Choices[0].Message.Content, "unscripted keys succeed")
	assert.Equal(t, "m", resp.Model)
	assert.Equal(t, 3, srv.Calls("a"))
	assert.Equal(t, 1, srv.Calls("b"))
	assert.Len(t, srv.Requests(""), 4)
	srv.Reset()
	assert.Zero(t, srv.Calls("a"))
}

// Chunks arrive one by one: the first is readable before the server
// finishes, on fake time.
func TestStreamsChunkByChunk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		r := failovertest.Stream("a", "b", "c")
		r.ChunkDelay = time.Second
		srv.Script("k", r)
		c := openai.NewClientWithConfig(srv.Config("k"))
		start := time.Now()
		s, err := c.CreateChatCompletionStream(context.Background(), req)
		require.NoError(t, err)
		defer s.Close()
		var at []time.Duration
		for {
			chunk, err := s.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			at = append(at, time.Since(start))
			assert.Len(t, chunk.Choices, 1)
		}
		assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}, at)
		assert.True(t, srv.Requests("k")[0].Stream)
	})
}

func TestAzureKeysAndMidStreamError(t *testing.T) {
	srv := failovertest.NewServer()
	srv.Script("azure-key", failovertest.Response{Chunks: []string{failovertest.ErrorEvent("server_error", "boom")}})
	cfg := openai.DefaultAzureConfig("azure-key", "http://failovertest.invalid")
	cfg.HTTPClient = srv.HTTPClient()
	c := openai.NewClientWithConfig(cfg)
	s, err := c.CreateChatCompletionStream(context.Background(), req)
	require.NoError(t, err)
	_, err = s.Recv()
	var ae *openai.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, "server_error", ae.Type)
	assert.Equal(t, 1, srv.Calls("azure-key"))
}

func TestStartServesOverTheNetwork(t *testing.T) {
	srv := failovertest.NewServer()
	defer srv.Close()
	url := srv.Start()
	cfg := srv.Config("k")
	assert.Equal(t, url, cfg.BaseURL)
	resp, err := openai.NewClientWithConfig(cfg).CreateChatCompletion(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, "ok", resp.Choices[0].Message.Content)
	assert.Equal(t, 1, srv.Calls("k"))
	hr, err := http.Get(url + "/embeddings")
	require.NoError(t, err)
	_ = hr.Body.Close()
}

// A caller that goes away ends the scripted delay.
func TestDelayHonoursCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script("k", failovertest.Response{Delay: time.Hour})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := openai.NewClientWithConfig(srv.Config("k")).CreateChatCompletion(ctx, req)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func ExampleServer() {
	srv := failovertest.NewServer()
	srv.Script("revoked-key", failovertest.Unauthorized())
	srv.Script("good-key", failovertest.OK("hello"))

	for _, key := range []string{"revoked-key", "good-key"} {
		client := openai.NewClientWithConfig(srv.Config(key))
		resp, err := client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
			Model:    "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}},
		})
		if err != nil {
			fmt.Println(key, "error:", err.(*openai.APIError).HTTPStatusCode)
			continue
		}
		fmt.Println(key, resp.Choices[0].Message.Content)
	}
	fmt.Println(srv.Calls("revoked-key"), srv.Calls("good-key"))
	// Output:
	// revoked-key error: 401
	// good-key hello
	// 1 1
}
